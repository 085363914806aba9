//! Discovery's registry as a state machine: requests and the time come in, answers and the
//! one effect it needs (ask a node whether it is alive) go out. No sockets, threads or clock:
//! the discovery server drives it, and its rules are tested here with time passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::id::{Id, NodeInfo};

/// How long a registration may stay unfinished before its id is free again (the node
/// joining crashed, or gave up without withdrawing).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
struct Entry {
    node: NodeInfo,
    /// Only joined peers are handed out: a joining one cannot route yet.
    joined: bool,
    /// When it registered or was last heard of.
    since: Instant,
}

/// What a registration asks of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Registered: answer with a random joined peer (none for the first node).
    Accepted,
    /// The very first node is still joining: try again shortly (concurrent first joins
    /// would build several rings).
    FirstStillJoining,
    /// The id is held by this node at another address: ask it whether it is alive, then call
    /// [`Registry::holder_gone`] if it is not (a node restarted at once claims its id back).
    AskHolder(NodeInfo),
}

/// What heartbeat of a node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// Known (or relearnt, after discovery restarted) as joined.
    Noted,
    /// The id is held by another address.
    HeldBy(NodeInfo),
}

/// The peers discovery knows of, by id.
///
/// Every operation costs at most the logarithm of the number of peers (or the number of
/// peers still joining), so that a registry of all 65,536 ids is as quick as a small one.
#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<Id, Entry>,
    /// The joined ids, in no order, for a random pick.
    joined: Vec<Id>,
    /// Where each joined id is in `joined`.
    joined_at: HashMap<Id, usize>,
    /// The ids still joining.
    joining: BTreeSet<Id>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// `node` asks to join at `now`.
    pub fn register(&mut self, node: NodeInfo, now: Instant) -> Registration {
        let expired: Vec<Id> = self
            .joining
            .iter()
            .filter(|id| {
                self.entries
                    .get(id)
                    .is_some_and(|e| now.duration_since(e.since) >= JOIN_TIMEOUT)
            })
            .copied()
            .collect();
        for id in expired {
            self.remove(id);
        }
        let any_joined = !self.joined.is_empty();
        let another_joining = self.joining.iter().any(|id| *id != node.id);
        if !any_joined && another_joining {
            return Registration::FirstStillJoining;
        }
        match self.entries.get(&node.id) {
            Some(e) if e.node.addr != node.addr => Registration::AskHolder(e.node),
            // New, repeated by the same joining node, or claimed again from the holder's own
            // address (the holder itself, restarted).
            _ => {
                self.enter(node, now);
                Registration::Accepted
            }
        }
    }

    /// The driver found `held`, which held `claimant`'s id, not alive: the id goes to the
    /// claimant, unless someone else took it meanwhile. Returns whether it was registered.
    pub fn holder_gone(&mut self, claimant: NodeInfo, held: NodeInfo, now: Instant) -> bool {
        if self
            .entries
            .get(&claimant.id)
            .is_some_and(|e| e.node != held)
        {
            return false;
        }
        self.enter(claimant, now);
        true
    }

    fn enter(&mut self, node: NodeInfo, now: Instant) {
        self.set(Entry {
            node,
            joined: false,
            since: now,
        });
    }

    /// Puts `entry` in, in place of any entry of its id.
    fn set(&mut self, entry: Entry) {
        let id = entry.node.id;
        self.remove(id);
        if entry.joined {
            self.joined_at.insert(id, self.joined.len());
            self.joined.push(id);
        } else {
            self.joining.insert(id);
        }
        self.entries.insert(id, entry);
    }

    /// Takes `id` out.
    fn remove(&mut self, id: Id) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.joining.remove(&id);
        if let Some(at) = self.joined_at.remove(&id) {
            self.joined.swap_remove(at);
            if let Some(moved) = self.joined.get(at) {
                self.joined_at.insert(*moved, at);
            }
        }
        Some(entry)
    }

    /// `id` finished joining: it may be handed out. Returns the node, or `None` if it is not
    /// registered.
    pub fn joined(&mut self, id: Id) -> Option<NodeInfo> {
        let mut entry = *self.entries.get(&id)?;
        if !entry.joined {
            entry.joined = true;
            self.set(entry);
        }
        Some(entry.node)
    }

    /// `node` left (or its registration is withdrawn): forgotten only if registered at the
    /// same address, so that a stale request cannot remove a new holder. Returns whether it
    /// was.
    pub fn deregister(&mut self, node: NodeInfo) -> bool {
        let same = self
            .entries
            .get(&node.id)
            .is_some_and(|e| e.node.addr == node.addr);
        if same {
            self.remove(node.id);
        }
        same
    }

    /// Whether `node` is registered, at its address: a report that it is dead is worth
    /// checking.
    pub fn holds(&self, node: NodeInfo) -> bool {
        self.entries.get(&node.id).is_some_and(|e| e.node == node)
    }

    /// A joined `node` says it is alive at `now`: noted as joined (relearnt if this registry
    /// lost it), unless another address holds the id.
    pub fn heartbeat(&mut self, node: NodeInfo, now: Instant) -> Heartbeat {
        match self.entries.get(&node.id) {
            Some(e) if e.node.addr != node.addr => Heartbeat::HeldBy(e.node),
            _ => {
                self.set(Entry {
                    node,
                    joined: true,
                    since: now,
                });
                Heartbeat::Noted
            }
        }
    }

    /// The joined peers, by id.
    pub fn joined_peers(&self) -> Vec<NodeInfo> {
        self.entries
            .values()
            .filter(|e| e.joined)
            .map(|e| e.node)
            .collect()
    }

    /// The joined peer at `pick` modulo their number (the driver draws `pick` at random).
    pub fn joined_peer(&self, pick: u64) -> Option<NodeInfo> {
        let count = u64::try_from(self.joined.len()).ok().filter(|n| *n > 0)?;
        let at = usize::try_from(pick % count).ok()?;
        self.entries.get(self.joined.get(at)?).map(|e| e.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u16, port: u16) -> NodeInfo {
        NodeInfo {
            id: Id(id),
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    #[test]
    fn newcomers_wait_for_the_first_node_and_ids_are_held() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        assert_eq!(r.register(node(1, 1), t0), Registration::Accepted);
        // The first node has not joined: a second waits; the first may ask again.
        assert_eq!(r.register(node(2, 2), t0), Registration::FirstStillJoining);
        assert_eq!(r.register(node(1, 1), t0), Registration::Accepted);
        assert_eq!(r.joined(Id(1)), Some(node(1, 1)));
        assert_eq!(r.register(node(2, 2), t0), Registration::Accepted);
        assert_eq!(r.joined_peers(), vec![node(1, 1)]); // 2 is still joining
                                                        // The id of 1 claimed from elsewhere: the driver must ask the holder.
        assert_eq!(
            r.register(node(1, 9), t0),
            Registration::AskHolder(node(1, 1))
        );
        assert!(r.holder_gone(node(1, 9), node(1, 1), t0));
        assert!(!r.holder_gone(node(1, 8), node(1, 1), t0)); // taken meanwhile
        assert_eq!(r.joined_peers(), vec![]);
    }

    #[test]
    fn unfinished_registrations_expire_and_departures_need_the_address() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        r.register(node(1, 1), t0);
        r.joined(Id(1));
        r.register(node(2, 2), t0);
        // Still within the join timeout: 2 holds its id.
        let early = t0 + JOIN_TIMEOUT - Duration::from_millis(1);
        assert_eq!(
            r.register(node(2, 3), early),
            Registration::AskHolder(node(2, 2))
        );
        // After it, the id is free again.
        assert_eq!(
            r.register(node(2, 3), t0 + JOIN_TIMEOUT),
            Registration::Accepted
        );
        // A stale departure from the old address changes nothing.
        assert!(!r.deregister(node(2, 2)));
        assert!(r.deregister(node(2, 3)));
        assert_eq!(r.joined(Id(2)), None);
    }

    #[test]
    fn heartbeats_relearn_nodes_and_a_random_pick_is_a_joined_one() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        assert_eq!(r.joined_peer(7), None);
        assert_eq!(r.heartbeat(node(5, 5), t0), Heartbeat::Noted);
        assert_eq!(r.heartbeat(node(5, 6), t0), Heartbeat::HeldBy(node(5, 5)));
        r.heartbeat(node(9, 9), t0);
        r.register(node(3, 3), t0); // joining: never picked
        let picks: Vec<_> = (0..4).map(|p| r.joined_peer(p).unwrap().id).collect();
        assert_eq!(picks, vec![Id(5), Id(9), Id(5), Id(9)]);
    }
}
