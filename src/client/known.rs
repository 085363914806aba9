//! The nodes a client has met on its routes, by id: where it sends a request for a key
//! first, so that a small get, put or delete costs one round trip rather than a lookup and
//! then one.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::id::{responsible, Id, Key, NodeInfo};

/// Nodes met on routes (the hops and the key's holders), one per id. Bounded by the id
/// space: at most 65,536 entries, about 3 MiB.
///
/// A guess from it may be wrong (a node the client has not met is closer, or a node met has
/// gone): a request sent on a guess is marked direct, the node serves it only if it is
/// responsible by its own view, and the client routes it otherwise, meeting that key's
/// holders on the way.
#[derive(Default)]
pub(super) struct Known {
    nodes: RwLock<BTreeMap<Id, NodeInfo>>,
}

impl Known {
    /// Keeps `nodes`, replacing what was known of their ids (a node restarted elsewhere).
    pub(super) fn learn<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeInfo>) {
        let mut known = self.nodes.write();
        for node in nodes {
            known.insert(node.id, *node);
        }
    }

    /// Forgets `node` (it did not answer), unless its id is known at another address by now.
    pub(super) fn forget(&self, node: NodeInfo) {
        let mut known = self.nodes.write();
        if known.get(&node.id) == Some(&node) {
            known.remove(&node.id);
        }
    }

    /// The node met that is closest to `key`: its neighbours on either side, the better of
    /// the two by the responsibility rule. `None` if no node is known.
    pub(super) fn responsible(&self, key: Key) -> Option<NodeInfo> {
        let known = self.nodes.read();
        let after = known.range(key..).next().or_else(|| known.iter().next());
        let before = known
            .range(..key)
            .next_back()
            .or_else(|| known.iter().next_back());
        let best = responsible(key, after.into_iter().chain(before).map(|(id, _)| *id))?;
        known.get(&best).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::loopback_node as node;

    #[test]
    fn the_guess_is_the_responsible_node_among_those_met() {
        let known = Known::default();
        assert_eq!(known.responsible(Id(5)), None);
        let met: Vec<NodeInfo> = [0x1000, 0x4000, 0x8000, 0xf000].map(node).to_vec();
        known.learn(&met);
        let ids: Vec<Id> = met.iter().map(|n| n.id).collect();
        // Every key, against the rule applied to all of them at once (ties and wrap-around
        // included).
        for key in (0..=u16::MAX)
            .step_by(7)
            .chain([0x2800, 0xa000, 0, u16::MAX])
        {
            let want = responsible(Id(key), ids.iter().copied());
            assert_eq!(
                known.responsible(Id(key)).map(|n| n.id),
                want,
                "key {key:04x}"
            );
        }
    }

    #[test]
    fn a_node_gone_is_forgotten_unless_met_again_elsewhere() {
        let known = Known::default();
        let (a, b) = (node(0x1000), node(0x9000));
        known.learn(&[a, b]);
        known.forget(a);
        assert_eq!(known.responsible(Id(0x1000)), Some(b));
        let moved = NodeInfo {
            addr: ([127, 0, 0, 2], 7).into(),
            ..b
        };
        known.learn(&[moved]);
        known.forget(b); // its old address: the new one stays
        assert_eq!(known.responsible(Id(0x1000)), Some(moved));
    }
}
