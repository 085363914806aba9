//! The nodes a client has met on its routes, by id: where it sends a request for a key
//! first, so that a small get, put or delete costs one round trip rather than a lookup and
//! then one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::id::{responsible, Id, Key, NodeInfo};

/// How long a node met on a route is guessed at before a route must name it again. Bounds
/// how long a client keeps sending to an address whose node left, should something else
/// answer there as if it were one.
pub(super) const MET_FOR: Duration = Duration::from_secs(60);

/// Nodes met on routes (the hops and the key's holders), one per id, with when each was
/// last met. Bounded by the id space: at most 65,536 entries, about 3 MiB.
///
/// A guess from it may be wrong (a node the client has not met is closer, or a node met has
/// gone): a request sent on a guess is marked direct, the node serves it only if it is
/// responsible by its own view, and the client routes it otherwise, meeting that key's
/// holders on the way.
#[derive(Default)]
pub(super) struct Known {
    nodes: RwLock<BTreeMap<Id, (NodeInfo, Instant)>>,
}

impl Known {
    /// Keeps `nodes`, met at `now`, replacing what was known of their ids (a node restarted
    /// elsewhere).
    pub(super) fn learn<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeInfo>, now: Instant) {
        let mut known = self.nodes.write();
        for node in nodes {
            known.insert(node.id, (*node, now));
        }
    }

    /// Forgets `node` (it did not answer), unless its id is known at another address by now.
    pub(super) fn forget(&self, node: NodeInfo) {
        let mut known = self.nodes.write();
        if known.get(&node.id).is_some_and(|(n, _)| *n == node) {
            known.remove(&node.id);
        }
    }

    /// The node met that is closest to `key`: its neighbours on either side, the better of
    /// the two by the responsibility rule. `None` if no node is known, or if that one was
    /// last met more than [`MET_FOR`] before `now` (the request is then routed, and the
    /// route meets the key's holders again).
    pub(super) fn responsible(&self, key: Key, now: Instant) -> Option<NodeInfo> {
        let known = self.nodes.read();
        let after = known.range(key..).next().or_else(|| known.iter().next());
        let before = known
            .range(..key)
            .next_back()
            .or_else(|| known.iter().next_back());
        let best = responsible(key, after.into_iter().chain(before).map(|(id, _)| *id))?;
        let (node, met) = known.get(&best)?;
        (now.saturating_duration_since(*met) <= MET_FOR).then_some(*node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::loopback_node as node;

    #[test]
    fn the_guess_is_the_responsible_node_among_those_met() {
        let (known, now) = (Known::default(), Instant::now());
        assert_eq!(known.responsible(Id(5), now), None);
        let met: Vec<NodeInfo> = [0x1000, 0x4000, 0x8000, 0xf000].map(node).to_vec();
        known.learn(&met, now);
        let ids: Vec<Id> = met.iter().map(|n| n.id).collect();
        // Every key, against the rule applied to all of them at once (ties and wrap-around
        // included).
        for key in (0..=u16::MAX)
            .step_by(7)
            .chain([0x2800, 0xa000, 0, u16::MAX])
        {
            let want = responsible(Id(key), ids.iter().copied());
            let guess = known.responsible(Id(key), now).map(|n| n.id);
            assert_eq!(guess, want, "key {key:04x}");
        }
    }

    #[test]
    fn a_node_gone_is_forgotten_unless_met_again_elsewhere() {
        let (known, now) = (Known::default(), Instant::now());
        let (a, b) = (node(0x1000), node(0x9000));
        known.learn(&[a, b], now);
        known.forget(a);
        assert_eq!(known.responsible(Id(0x1000), now), Some(b));
        let moved = NodeInfo {
            addr: ([127, 0, 0, 2], 7).into(),
            ..b
        };
        known.learn(&[moved], now);
        known.forget(b); // its old address: the new one stays
        assert_eq!(known.responsible(Id(0x1000), now), Some(moved));
    }

    #[test]
    fn a_node_not_met_again_for_a_while_is_guessed_at_no_more_until_met_again() {
        let (known, met) = (Known::default(), Instant::now());
        let a = node(0x1000);
        known.learn(&[a], met);
        assert_eq!(known.responsible(Id(0x1001), met + MET_FOR), Some(a));
        let later = met + MET_FOR + Duration::from_millis(1);
        assert_eq!(known.responsible(Id(0x1001), later), None);
        known.learn(&[a], later);
        assert_eq!(known.responsible(Id(0x1001), later), Some(a));
    }
}
