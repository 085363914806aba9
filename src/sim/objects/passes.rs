//! The passes that move copies in the simulator, as the threaded node runs them: a rebalance
//! every maintenance round, the hand-off before a leave, the pulls of a join.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::NodeInfo;
use crate::protocol::membership::Phase;
use crate::protocol::objects::{bring_up_to_date, record_head, HandOff, Rebalance, HOLDS_BATCH};
use crate::protocol::versions::check_incoming;
use crate::store::RecordMeta;
use crate::wire::Message;

use super::{fail_round, Cont, HolderRound, Leave, Pass, Purpose, Records};
use crate::sim::Sim;

impl Sim {
    /// Sends `to` this node's current record of `name` as a hand-off copy; `cont` continues
    /// with the name and the version sent. A record gone meanwhile counts as sent.
    pub(in crate::sim) fn push(
        &mut self,
        slot: usize,
        to: NodeInfo,
        name: &[u8],
        cont: impl FnOnce(Vec<u8>, u64) -> Cont,
    ) {
        let Some((meta, data)) = self.nodes[slot].objects.store.get(name) else {
            // Deleted here since the listing: nothing to send, and nothing left to drop.
            match cont(name.to_vec(), 0) {
                Cont::Push { name, .. } => {
                    if let Some(pass) = self.nodes[slot].objects.rebalance.as_mut() {
                        pass.pass.sent(&name, true);
                    }
                }
                Cont::LeavePush { holder, name, .. } => {
                    self.leave_answered(slot, holder, Some(name));
                }
                _ => {}
            }
            return;
        };
        let head = record_head(&meta, true);
        self.object_call(
            slot,
            to,
            Message::Record(head),
            data,
            cont(meta.name, meta.version),
        );
    }

    /// One call of the rebalance pass of `slot` was answered and `f` applied to the pass;
    /// moves the pass on when none is left.
    pub(in crate::sim) fn pass_done(&mut self, slot: usize, f: impl FnOnce(&mut Rebalance)) {
        let Some(pass) = self.nodes[slot].objects.rebalance.as_mut() else {
            return;
        };
        f(&mut pass.pass);
        pass.waiting = pass.waiting.saturating_sub(1);
        self.advance_pass(slot);
    }

    /// Starts a rebalance pass at `slot` unless one is under way.
    pub(in crate::sim) fn start_rebalance(&mut self, slot: usize) {
        let keeping = self.keeping();
        let k = self.config.replicas;
        let node = &mut self.nodes[slot];
        if node.objects.rebalance.is_some() || node.core.phase() != Phase::Joined {
            return;
        }
        let records = node.objects.store.records();
        if records.is_empty() {
            return;
        }
        let pass = Rebalance::new(node.core.state(), k, keeping, records);
        let unknown = pass.unknown(node.core.state());
        let me = node.core.me();
        node.objects.rebalance = Some(Pass {
            pass,
            waiting: 1, // this start, done below
            asked: false,
        });
        for (key, responsible) in unknown {
            match responsible {
                Some(r) if r.id != me.id => {
                    let ask = Message::Replicas { key };
                    self.object_call(
                        slot,
                        r,
                        ask,
                        Bytes::new(),
                        Cont::Find {
                            key,
                            responsible: r,
                        },
                    );
                }
                Some(r) => {
                    if let Some(p) = self.nodes[slot].objects.rebalance.as_mut() {
                        p.pass.found(key, r, None);
                    }
                }
                None => {
                    let op = self.next_op;
                    self.next_op += 1;
                    self.object_lookups.insert(op, Purpose::Find(key));
                    if let Some(p) = self.nodes[slot].objects.rebalance.as_mut() {
                        p.waiting += 1;
                    }
                    let now = self.instant();
                    let effects = self.nodes[slot].core.lookup(now, op, key);
                    self.carry_out(slot, effects);
                }
            }
        }
        self.pass_done(slot, |_| {});
    }

    /// Moves the rebalance pass of `slot` on once it waits for nothing: asks the holders, or
    /// ends it.
    pub(in crate::sim) fn advance_pass(&mut self, slot: usize) {
        let Some(pass) = self.nodes[slot].objects.rebalance.as_mut() else {
            return;
        };
        if pass.waiting > 0 {
            return;
        }
        if !pass.asked {
            pass.asked = true;
            pass.waiting = 1;
            let asks = pass.pass.asks();
            for (holder, batch) in asks {
                let request = Message::Holds {
                    records: batch.iter().map(|m| (m.name.clone(), m.version)).collect(),
                };
                let cont = Cont::Holds { holder, batch };
                self.object_call(slot, holder, request, Bytes::new(), cont);
            }
            return self.pass_done(slot, |_| {});
        }
        let Some(pass) = self.nodes[slot].objects.rebalance.take() else {
            return;
        };
        let (drops, _complete) = pass.pass.finish();
        let store = &mut self.nodes[slot].objects.store;
        for meta in drops {
            store.remove(&meta.name, meta.version);
        }
    }

    /// Starts `slot`'s hand-off before it leaves; it leaves once that ends.
    pub(in crate::sim) fn start_leave(&mut self, slot: usize) {
        let keeping = self.keeping();
        let node = &mut self.nodes[slot];
        let records = node.objects.store.records();
        let me = node.core.me();
        let last = self
            .registry
            .joined_peers(self.instant())
            .iter()
            .all(|p| p.id == me.id);
        let node = &mut self.nodes[slot];
        let handoff = HandOff::new(node.core.state(), self.config.replicas, records, last);
        node.objects.leaving = Some(Leave {
            handoff,
            keeping,
            holders: HashMap::new(),
        });
        self.leave_round(slot);
    }

    /// The next hand-off round of `slot`, or its departure when none is left.
    pub(in crate::sim) fn leave_round(&mut self, slot: usize) {
        let Some(leave) = self.nodes[slot].objects.leaving.as_mut() else {
            return;
        };
        let round = leave.handoff.round();
        if round.is_empty() {
            let Some(leave) = self.nodes[slot].objects.leaving.take() else {
                return;
            };
            return match leave.handoff.finish() {
                Ok(_) => self.depart(slot),
                Err(e) => {
                    log::debug!("sim: {} stays: {e}", self.nodes[slot].core.me());
                    self.nodes[slot].core.abort_leave();
                }
            };
        }
        for (holder, metas) in &round {
            let batches = metas.len().div_ceil(HOLDS_BATCH);
            leave.holders.insert(
                *holder,
                HolderRound {
                    asked: metas.len(),
                    reached: Vec::new(),
                    failed: None,
                    waiting: batches,
                },
            );
        }
        for (holder, metas) in round {
            for batch in metas.chunks(HOLDS_BATCH) {
                let request = Message::Holds {
                    records: batch.iter().map(|m| (m.name.clone(), m.version)).collect(),
                };
                let cont = Cont::LeaveHolds {
                    holder,
                    batch: batch.to_vec(),
                };
                self.object_call(slot, holder, request, Bytes::new(), cont);
            }
        }
    }

    /// One call of `slot`'s hand-off to `holder` was answered (`reached` a record); moves the
    /// hand-off on when the round waits for nothing.
    pub(in crate::sim) fn leave_answered(
        &mut self,
        slot: usize,
        holder: NodeInfo,
        reached: Option<Vec<u8>>,
    ) {
        let Some(leave) = self.nodes[slot].objects.leaving.as_mut() else {
            return;
        };
        if let Some(round) = leave.holders.get_mut(&holder) {
            round.reached.extend(reached);
            round.waiting = round.waiting.saturating_sub(1);
            if round.waiting > 0 {
                return;
            }
        }
        if let Some(round) = leave.holders.remove(&holder) {
            match round.failed {
                Some(e) => leave.handoff.failed(holder, e),
                None => leave.handoff.answered(holder, round.asked, round.reached),
            }
        }
        if leave.holders.is_empty() {
            self.leave_round(slot);
        }
    }

    /// `slot`'s join walked: it pulls the copies it is to keep from its nearest neighbours,
    /// then finishes the join.
    pub(in crate::sim) fn start_pulls(&mut self, slot: usize) {
        let node = &self.nodes[slot];
        let me = node.core.me();
        let leaf = node.core.state().leaf_set();
        let mut nearest: Vec<NodeInfo> = leaf.cw().first().copied().into_iter().collect();
        nearest.extend(leaf.ccw().first().filter(|n| !nearest.contains(n)));
        self.nodes[slot].objects.pulls = nearest.len();
        if nearest.is_empty() {
            return self.finish_join(slot);
        }
        for to in nearest {
            let pull = Message::Pull { joiner: me };
            self.object_call(slot, to, pull, Bytes::new(), Cont::Pull);
        }
    }

    pub(in crate::sim) fn finish_join(&mut self, slot: usize) {
        if self.nodes[slot].core.phase() != Phase::Joining {
            return;
        }
        let now = self.instant();
        let more = self.nodes[slot].core.finish_join(now);
        self.joined(slot);
        self.carry_out(slot, more);
    }

    /// A holder answered a rebalance pass's [`Message::Holds`] about `batch`.
    pub(in crate::sim) fn holds_answered(
        &mut self,
        slot: usize,
        holder: NodeInfo,
        batch: &[RecordMeta],
        result: Result<Message>,
    ) {
        let Ok(Message::Lacking { older, absent }) = result else {
            return self.pass_done(slot, Rebalance::failed);
        };
        let send = match self.nodes[slot].objects.rebalance.as_mut() {
            Some(p) => p.pass.answered(batch, &older, &absent),
            None => Vec::new(),
        };
        for meta in send {
            self.push(slot, holder, &meta.name, |name, version| Cont::Push {
                name,
                version,
            });
        }
        self.pass_done(slot, |_| {});
    }

    /// A member answered a hand-off's [`Message::Holds`] about `batch`.
    pub(in crate::sim) fn leave_holds_answered(
        &mut self,
        slot: usize,
        holder: NodeInfo,
        batch: &[RecordMeta],
        result: Result<Message>,
    ) {
        let Some(leave) = self.nodes[slot].objects.leaving.as_mut() else {
            return;
        };
        let send = match result {
            Ok(Message::Lacking { older, absent }) => {
                let answered = bring_up_to_date(batch, &older, &absent, &leave.keeping);
                if let Some(round) = leave.holders.get_mut(&holder) {
                    let counted = answered.counted.into_iter().map(|(name, _)| name);
                    round.reached.extend(counted);
                    round.waiting += answered.send.len();
                }
                answered.send
            }
            Ok(other) => {
                let e = Error::unexpected_reply(holder.addr, "Lacking", &other);
                fail_round(leave, holder, e);
                Vec::new()
            }
            Err(e) => {
                fail_round(leave, holder, e);
                Vec::new()
            }
        };
        for meta in send {
            self.push(slot, holder, &meta.name, |name, version| Cont::LeavePush {
                holder,
                name,
                version,
            });
        }
        self.leave_answered(slot, holder, None);
    }

    /// A pull of `slot`'s join was answered with `records`: it keeps them, and finishes the
    /// join once every pull is in.
    pub(in crate::sim) fn pulled(
        &mut self,
        slot: usize,
        result: Result<Message>,
        records: Records,
    ) {
        if result.is_ok() {
            let now_ns = self.now_ns();
            let store = &mut self.nodes[slot].objects.store;
            for (head, data) in records {
                if check_incoming(head.version, now_ns) {
                    store.commit(&head, data);
                }
            }
        }
        let objects = &mut self.nodes[slot].objects;
        objects.pulls = objects.pulls.saturating_sub(1);
        if objects.pulls == 0 {
            self.finish_join(slot);
        }
    }
}
