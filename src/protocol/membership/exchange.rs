//! The leaf-set exchange between neighbours (the nearest every maintenance round, the others
//! in turn): the liveness check of each neighbour, and the way leaf sets repair gaps and
//! settle concurrent joins.
//!
//! A leaf set is sent only when the receiver may not have it: it changed since this node
//! last sent it to that neighbour, the neighbour sent its own (it changed, so it wants ours
//! back), the exchange repairs a gap, or every [`FULL_EVERY`] rounds in any case (a reply
//! lost on the way is made good then). Otherwise the exchange carries no leaf set, only
//! "alive": in a settled overlay a round costs one small message each way per neighbour
//! instead of `2l` members each way, which is what lets the simulator run the whole id space.
//!
//! An exchange serves both of its ends, so a neighbour that exchanged with this node since
//! the last round it was due in is not called: each pair of neighbours makes one exchange
//! where it made two, and a neighbour that falls silent is called again (and found gone)
//! one turn later at most.

use std::collections::HashMap;
use std::time::Instant;

use super::upkeep::another_node_answers;
use super::{Membership, Target, Waiting};
use crate::error::Result;
use crate::id::{Id, NodeInfo};
use crate::wire::Message;

/// Rounds between exchanges that carry the leaf set whatever was sent before.
pub const FULL_EVERY: u64 = 8;

/// Rounds between exchanges with a leaf-set member beyond the nearest on its side
/// (`FULL_EVERY` is a multiple of it).
pub const FAR_EVERY: u64 = 4;
const _: () = assert!(FULL_EVERY % FAR_EVERY == 0);

/// Leaf-set members on each side exchanged with every round, at the least (more when more
/// copies are kept: every other holder of this node's objects is among them).
const MIN_NEAR: usize = 2;

/// What this node last sent of its leaf set to each neighbour.
#[derive(Debug, Default)]
pub(super) struct Told {
    /// Changes of the leaf set so far.
    changes: u64,
    /// For each neighbour, `changes` when it was last sent the leaf set.
    sent: HashMap<Id, u64>,
    /// For each neighbour, the number of the round that followed its last exchange with
    /// this node.
    heard: HashMap<Id, u64>,
}

impl Told {
    pub(super) fn leaf_set_changed(&mut self) {
        self.changes += 1;
    }
}

impl Membership {
    /// Whether this round is `peer`'s turn of those that come every `every` rounds. Turns
    /// are spread by a hash of the id, so that neighbours whose ids are alike (as in a
    /// small or regular id space) do not all come in the same round; a turn every
    /// [`FULL_EVERY`] rounds is also a turn every [`FAR_EVERY`] rounds.
    fn turn_of(&self, peer: Id, every: u64) -> bool {
        let spread = u64::from(peer.0).wrapping_mul(0x9e37_79b9) >> 16;
        (self.round + spread) % every == 0
    }

    /// The leaf set to send `peer`: whole when it may not have it (or `whole`), else empty.
    pub(super) fn leaf_set_for(&mut self, peer: Id, whole: bool) -> Vec<NodeInfo> {
        let due = self.turn_of(peer, FULL_EVERY);
        let current = self.told.sent.get(&peer) == Some(&self.told.changes);
        if current && !whole && !due {
            return Vec::new();
        }
        self.told.sent.insert(peer, self.told.changes);
        self.state.leaf_set().members()
    }

    /// Exchanges with the leaf-set members due this round, and forgets what was told to
    /// former ones. The nearest on each side, among them every other holder of this node's
    /// objects, are due every round: they are the ones whose failure this node must act on
    /// at once (copy its objects again). The others are due every [`FAR_EVERY`] rounds, in
    /// turn by id so that a round's calls stay even; a failure among them is noticed by its
    /// own nearest neighbours first, and by a call of any protocol that finds it silent.
    /// One that exchanged with this node since the last round it was due in is left out.
    pub(super) fn probe_neighbours(&mut self) {
        let leaf = self.state.leaf_set();
        let members = leaf.members();
        let near = self.config.replicas.saturating_sub(1).max(MIN_NEAR);
        let mut due: Vec<NodeInfo> = Vec::with_capacity(members.len());
        for side in [leaf.cw(), leaf.ccw()] {
            for (rank, node) in side.iter().enumerate() {
                let turn = self.turn_of(node.id, FAR_EVERY);
                // It exchanged with this node since the last round it was due in: both ends
                // are told.
                let every = if rank < near { 1 } else { FAR_EVERY };
                let heard = (self.told.heard.get(&node.id))
                    .is_some_and(|&after| self.round < after + every);
                if (rank < near || turn) && !heard && !due.iter().any(|d| d.id == node.id) {
                    due.push(*node);
                }
            }
        }
        let member = |id: &Id| members.iter().any(|m| m.id == *id);
        self.told.sent.retain(|id, _| member(id));
        self.told.heard.retain(|id, _| member(id));
        for node in due {
            self.exchange_with(node, false);
        }
    }

    /// Exchanges leaf sets with `node`, sending ours whole if `whole`.
    pub(super) fn exchange_with(&mut self, node: NodeInfo, whole: bool) {
        let request = Message::Exchange {
            node: self.me,
            leaf_set: self.leaf_set_for(node.id, whole),
        };
        self.call(node.into(), request, None, Waiting::Exchange);
    }

    /// A neighbour's exchange: learn from it, and answer with our leaf set when it sent its
    /// own or may not have ours.
    pub(super) fn serve_exchange(
        &mut self,
        now: Instant,
        node: NodeInfo,
        leaf_set: &[NodeInfo],
    ) -> Message {
        if node.id != self.me.id {
            self.learn_leaf_set_of(now, Some(node), leaf_set);
            self.told.heard.insert(node.id, self.round);
        }
        let leaf_set = self.leaf_set_for(node.id, !leaf_set.is_empty());
        Message::LeafSet {
            node: self.me,
            leaf_set,
        }
    }

    /// A neighbour's answer to an exchange; a failure is evidence against it, and it may
    /// have missed what was sent.
    pub(super) fn exchanged(&mut self, now: Instant, to: Target, result: Result<Message>) {
        match result {
            Ok(Message::LeafSet { node, leaf_set }) if Some(node.id) == to.id => {
                self.health.answered(node.id);
                self.learn_leaf_set_of(now, Some(node), &leaf_set);
            }
            // Another node answers at that address: the one we knew is gone.
            Ok(_) => self.suspect(now, to, &another_node_answers(to)),
            Err(e) => {
                if let Some(id) = to.id {
                    self.told.sent.remove(&id);
                }
                self.suspect(now, to, &e);
            }
        }
    }
}
