//! Discovery's registry as a state machine: requests and the time come in, answers and the
//! one effect it needs (ask a node whether it is alive) go out. No sockets, threads or clock:
//! the discovery server drives it, and its rules are tested here with time passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::id::{Id, NodeInfo};
use crate::identity::PublicKey;

/// How long a registration may stay unfinished before its id is free again (the node
/// joining crashed, or gave up without withdrawing).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a joined node stays registered without a reminder: many reminders (a node
/// sends one every five maintenance rounds, 5 s by default), so that only a node gone
/// (crashed, cut off, or its discovery pointed elsewhere) loses its id.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Entry {
    node: NodeInfo,
    /// The key the id is bound to: only its holder speaks for the id.
    key: PublicKey,
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
    /// The id is held by another key: ask its holder whether it is alive (answering with
    /// that key), then call [`Registry::holder_gone`] if it is not.
    AskHolder(NodeInfo, PublicKey),
}

/// What heartbeat of a node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// Known (or relearnt, after discovery restarted) as joined.
    Noted,
    /// The id is held by another key.
    HeldBy(NodeInfo),
}

/// Why a request about an id is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The id is not registered.
    Unknown,
    /// The id is registered to another key.
    OtherKey,
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

    /// `node`, holding `key`, asks to join at `now`.
    pub fn register(&mut self, node: NodeInfo, key: PublicKey, now: Instant) -> Registration {
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
        match self.live(node.id, now) {
            Some(e) if e.key != key => Registration::AskHolder(e.node, e.key),
            // New, repeated by the same joining node, or claimed again by its key (the
            // holder itself, restarted, perhaps at another address).
            _ => {
                self.enter(node, key, now);
                Registration::Accepted
            }
        }
    }

    /// The entry of `id`, unless its node has been silent too long (then it is dropped).
    fn live(&mut self, id: Id, now: Instant) -> Option<Entry> {
        let entry = *self.entries.get(&id)?;
        if entry.joined && now.saturating_duration_since(entry.since) >= SILENCE_TIMEOUT {
            self.remove(id);
            return None;
        }
        Some(entry)
    }

    /// The driver found `held`, which held `claimant`'s id, not alive: the id goes to the
    /// claimant (holding `key`), unless someone else took it meanwhile. Returns whether it
    /// was registered.
    pub fn holder_gone(
        &mut self,
        claimant: NodeInfo,
        key: PublicKey,
        held: NodeInfo,
        now: Instant,
    ) -> bool {
        if self
            .entries
            .get(&claimant.id)
            .is_some_and(|e| e.node != held)
        {
            return false;
        }
        self.enter(claimant, key, now);
        true
    }

    fn enter(&mut self, node: NodeInfo, key: PublicKey, now: Instant) {
        self.set(Entry {
            node,
            key,
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

    /// `id` finished joining, says the holder of `key` at `now`: it may be handed out.
    /// Returns the node, or why not.
    pub fn joined(&mut self, id: Id, key: PublicKey, now: Instant) -> Result<NodeInfo, Claim> {
        let mut entry = self.live(id, now).ok_or(Claim::Unknown)?;
        if entry.key != key {
            return Err(Claim::OtherKey);
        }
        if !entry.joined {
            entry.joined = true;
            entry.since = now;
            self.set(entry);
        }
        Ok(entry.node)
    }

    /// `node` left (or its registration is withdrawn), says the holder of `key`: forgotten
    /// only if registered to that key at the same address, so that neither another key nor
    /// a stale request can remove a new holder.
    pub fn deregister(&mut self, node: NodeInfo, key: PublicKey) -> Result<(), Claim> {
        let entry = self.entries.get(&node.id).ok_or(Claim::Unknown)?;
        if entry.key != key {
            return Err(Claim::OtherKey);
        }
        if entry.node.addr != node.addr {
            return Err(Claim::Unknown);
        }
        self.remove(node.id);
        Ok(())
    }

    /// `node` was found dead: forgotten if it is still what holds its id. Returns whether
    /// it was.
    pub fn deregister_dead(&mut self, node: NodeInfo) -> bool {
        let held = self.holds(node);
        if held {
            self.remove(node.id);
        }
        held
    }

    /// Whether `node` (its id at its address) is registered to `key`.
    pub fn is_held_by(&self, node: NodeInfo, key: PublicKey) -> bool {
        self.entries
            .get(&node.id)
            .is_some_and(|e| e.key == key && e.node.addr == node.addr)
    }

    /// Whether `node` is registered, at its address: a report that it is dead is worth
    /// checking.
    pub fn holds(&self, node: NodeInfo) -> bool {
        self.entries.get(&node.id).is_some_and(|e| e.node == node)
    }

    /// A joined `node`, holding `key`, says it is alive at `now`: noted as joined
    /// (relearnt if this registry lost it), unless another key holds the id.
    pub fn heartbeat(&mut self, node: NodeInfo, key: PublicKey, now: Instant) -> Heartbeat {
        match self.live(node.id, now) {
            Some(e) if e.key != key => Heartbeat::HeldBy(e.node),
            _ => {
                self.set(Entry {
                    node,
                    key,
                    joined: true,
                    since: now,
                });
                Heartbeat::Noted
            }
        }
    }

    /// The joined peers heard from lately, by id.
    pub fn joined_peers(&self, now: Instant) -> Vec<NodeInfo> {
        self.entries
            .values()
            .filter(|e| e.joined && now.saturating_duration_since(e.since) < SILENCE_TIMEOUT)
            .map(|e| e.node)
            .collect()
    }

    /// A joined peer heard from lately, the one at `pick` modulo their number (the driver
    /// draws `pick` at random); the silent ones it comes across are dropped.
    pub fn joined_peer(&mut self, mut pick: u64, now: Instant) -> Option<NodeInfo> {
        // Bounded: each turn either answers or drops an entry.
        while let Some(count) = u64::try_from(self.joined.len()).ok().filter(|n| *n > 0) {
            let at = usize::try_from(pick % count).ok()?;
            let id = *self.joined.get(at)?;
            if let Some(entry) = self.live(id, now) {
                return Some(entry.node);
            }
            pick = pick.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        None
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

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    #[test]
    fn newcomers_wait_for_the_first_node_and_ids_are_held_by_their_key() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        assert_eq!(r.register(node(1, 1), key(1), t0), Registration::Accepted);
        // The first node has not joined: a second waits; the first may ask again.
        assert_eq!(
            r.register(node(2, 2), key(2), t0),
            Registration::FirstStillJoining
        );
        assert_eq!(r.register(node(1, 1), key(1), t0), Registration::Accepted);
        assert_eq!(r.joined(Id(1), key(2), t0), Err(Claim::OtherKey));
        assert_eq!(r.joined(Id(1), key(1), t0), Ok(node(1, 1)));
        assert_eq!(r.register(node(2, 2), key(2), t0), Registration::Accepted);
        assert_eq!(r.joined_peers(t0), vec![node(1, 1)]); // 2 is still joining
                                                          // The id of 1 claimed by another key, from anywhere: the driver asks the holder.
        for addr in [9, 1] {
            assert_eq!(
                r.register(node(1, addr), key(9), t0),
                Registration::AskHolder(node(1, 1), key(1))
            );
        }
        // Its own key takes it back at once, at a new address (restarted).
        assert_eq!(r.register(node(1, 7), key(1), t0), Registration::Accepted);
        assert!(r.holder_gone(node(1, 9), key(9), node(1, 7), t0));
        assert!(!r.holder_gone(node(1, 8), key(8), node(1, 7), t0)); // taken meanwhile
        assert!(r.is_held_by(node(1, 9), key(9)));
        assert!(!r.is_held_by(node(1, 7), key(9)), "another address");
        assert_eq!(r.joined_peers(t0), vec![]);
    }

    #[test]
    fn unfinished_registrations_expire_and_departures_need_the_key_and_address() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        r.register(node(1, 1), key(1), t0);
        r.joined(Id(1), key(1), t0).unwrap();
        r.register(node(2, 2), key(2), t0);
        // Still within the join timeout: 2 holds its id.
        let early = t0 + JOIN_TIMEOUT - Duration::from_millis(1);
        assert_eq!(
            r.register(node(2, 3), key(3), early),
            Registration::AskHolder(node(2, 2), key(2))
        );
        // After it, the id is free again.
        assert_eq!(
            r.register(node(2, 3), key(3), t0 + JOIN_TIMEOUT),
            Registration::Accepted
        );
        // A stale departure from the old address, or another key's, changes nothing.
        assert_eq!(r.deregister(node(2, 2), key(3)), Err(Claim::Unknown));
        assert_eq!(r.deregister(node(2, 3), key(2)), Err(Claim::OtherKey));
        assert_eq!(r.deregister(node(2, 3), key(3)), Ok(()));
        assert_eq!(r.joined(Id(2), key(3), t0), Err(Claim::Unknown));
    }

    #[test]
    fn heartbeats_relearn_nodes_and_silent_ones_expire() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        assert_eq!(r.joined_peer(7, t0), None);
        assert_eq!(r.heartbeat(node(5, 5), key(5), t0), Heartbeat::Noted);
        assert_eq!(
            r.heartbeat(node(5, 6), key(6), t0),
            Heartbeat::HeldBy(node(5, 5))
        );
        r.heartbeat(node(9, 9), key(9), t0);
        r.register(node(3, 3), key(3), t0); // joining: never picked
        let picks: Vec<_> = (0..4).map(|p| r.joined_peer(p, t0).unwrap().id).collect();
        assert_eq!(picks, vec![Id(5), Id(9), Id(5), Id(9)]);
        // 9 goes silent; 5 keeps reminding.
        let later = t0 + SILENCE_TIMEOUT;
        assert_eq!(r.heartbeat(node(5, 5), key(5), later), Heartbeat::Noted);
        assert_eq!(r.joined_peers(later), vec![node(5, 5)]);
        for pick in 0..4 {
            assert_eq!(r.joined_peer(pick, later), Some(node(5, 5)));
        }
        assert!(!r.is_held_by(node(9, 9), key(9)), "forgotten");
        assert_eq!(
            r.register(node(9, 10), key(10), later),
            Registration::Accepted,
            "a silent node's id is free"
        );
    }
}
