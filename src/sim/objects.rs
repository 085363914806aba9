//! The object store's protocol in the simulator: the same decisions and passes the threaded
//! node makes ([`crate::protocol::objects`]), over the simulated network and an in-memory
//! store per node. Writes from clients (a lookup, then the write at the node it ends at),
//! the responsible node's copies, rebalance passes every maintenance round, hand-offs before
//! a leave and pulls during a join.
//!
//! What the simulator leaves out: a write is not relayed by a node that is not responsible
//! (the client's write fails, and counts as unacknowledged), clients do not retry, and no copy
//! is damaged, so there is nothing to repair.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::{key_of, Key, NodeInfo};
use crate::protocol::membership::{CallId, Effect, OpId, Phase, Token};
use crate::protocol::objects::{
    bring_up_to_date, copy_answer, copy_head, copy_reply, delete_outcome, lacking, pull_selection,
    put_outcome, record_head, CopyAnswer, HandOff, Rebalance, HOLDS_BATCH,
};
use crate::protocol::outcomes::{Outcome, Outcomes};
use crate::protocol::placement::Keeping;
use crate::protocol::versions::{check_incoming, next_version};
use crate::store::{Commit, RecordMeta};
use crate::wire::{Message, RecordHead, RemoteCode};

use super::store::MemStore;
use super::Sim;

/// Object calls' ids have this bit set: the rest of the ids belong to the nodes' overlay
/// protocols.
pub(super) const OBJECT_CALL: CallId = 1 << 63;

/// The wall clock of the simulated nodes at virtual time zero (2026-01-01), in ns: versions
/// follow it.
const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

/// Records in flight with a message: a copy, or a pull's answer.
pub(super) type Records = Vec<(RecordHead, Bytes)>;

/// One node's object state.
#[derive(Debug, Default)]
pub(super) struct NodeObjects {
    pub store: MemStore,
    /// The last version given to each name here.
    given: HashMap<Vec<u8>, u64>,
    outcomes: Outcomes,
    /// Writes ordered here, waiting for their copies' answers.
    writes: HashMap<u64, WriteOp>,
    rebalance: Option<Pass>,
    leaving: Option<Leave>,
    /// Pulls of a join not answered yet.
    pulls: usize,
}

/// A write this node ordered, waiting for the other holders.
#[derive(Debug)]
struct WriteOp {
    token: Token,
    copy: RecordHead,
    request: u64,
    /// Its own commit stored it (was not overtaken).
    stored: bool,
    /// What it replaced here: version, and whether it was an object.
    here: Option<(u64, bool)>,
    waiting: usize,
    answers: Vec<CopyAnswer>,
}

/// A rebalance pass and the calls it waits for.
#[derive(Debug)]
struct Pass {
    pass: Rebalance,
    waiting: usize,
    asked: bool,
}

/// A hand-off before leaving, and the round in progress.
#[derive(Debug)]
struct Leave {
    handoff: HandOff,
    keeping: Keeping,
    holders: HashMap<NodeInfo, HolderRound>,
}

/// One member's part of a hand-off round.
#[derive(Debug)]
struct HolderRound {
    asked: usize,
    reached: Vec<Vec<u8>>,
    failed: Option<Error>,
    waiting: usize,
}

/// What an object call's answer continues.
#[derive(Debug)]
pub(super) enum Cont {
    /// A client's write, sent to the node its lookup ended at.
    Client(u64),
    /// A copy of write `write` to `holder`.
    Copy { write: u64, holder: NodeInfo },
    /// A rebalance asks `responsible` for the holders of `key`.
    Find { key: Key, responsible: NodeInfo },
    /// A rebalance asks `holder` about `batch`.
    Holds {
        holder: NodeInfo,
        batch: Vec<RecordMeta>,
    },
    /// A rebalance pushed a record at `version`.
    Push { name: Vec<u8>, version: u64 },
    /// A hand-off asks `holder` about `batch`.
    LeaveHolds {
        holder: NodeInfo,
        batch: Vec<RecordMeta>,
    },
    /// A hand-off pushed a record at `version` to `holder`.
    LeavePush {
        holder: NodeInfo,
        name: Vec<u8>,
        version: u64,
    },
    /// A joining node's pull.
    Pull,
}

/// What a lookup made for the object protocol is for.
#[derive(Debug)]
pub(super) enum Purpose {
    /// A client's write: it goes to the node the lookup ends at.
    Client(u64),
    /// A rebalance looks for the node responsible for `key`.
    Find(Key),
}

/// A client's write: a put of `data`, or a delete.
#[derive(Clone, Debug)]
pub(super) struct ClientWrite {
    pub name: Vec<u8>,
    pub data: Option<Bytes>,
    pub request: u64,
}

/// A write the client heard was done.
#[derive(Clone, Debug)]
pub struct Acked {
    /// The object's name.
    pub name: Vec<u8>,
    /// The version the write got.
    pub version: u64,
    /// The data put, or `None` for a delete.
    pub data: Option<Bytes>,
}

impl Sim {
    /// The wall clock of the simulated nodes, in ns.
    pub(super) fn now_ns(&self) -> u64 {
        EPOCH_NS + u64::try_from(self.now.as_nanos()).unwrap_or(u64::MAX)
    }

    fn keeping(&self) -> Keeping {
        let grace = u64::try_from(crate::DEFAULT_TOMBSTONE_GRACE.as_nanos()).unwrap_or(u64::MAX);
        Keeping::new(self.now_ns(), grace, None)
    }

    /// Puts `data` under `name` as a client of `via` would: a lookup from `via`, then the
    /// write at the node it ends at. Whether it was acknowledged shows in
    /// [`acked`](Self::acked) once the simulation has run long enough.
    pub fn put(&mut self, via: crate::Id, name: &[u8], data: &[u8]) {
        self.client_write(via, name, Some(Bytes::copy_from_slice(data)));
    }

    /// Deletes `name` as a client of `via` would.
    pub fn delete(&mut self, via: crate::Id, name: &[u8]) {
        self.client_write(via, name, None);
    }

    /// The writes acknowledged so far.
    pub fn acked(&self) -> &[Acked] {
        &self.acked
    }

    /// Client writes not yet answered.
    pub fn writes_in_flight(&self) -> usize {
        self.client_writes.len()
    }

    fn client_write(&mut self, via: crate::Id, name: &[u8], data: Option<Bytes>) {
        let Some(&slot) = self.live.get(&via) else {
            return;
        };
        let id = self.next_op;
        self.next_op += 1;
        let write = ClientWrite {
            name: name.to_vec(),
            data,
            request: self.rng.next_u64() | 1,
        };
        self.client_writes.insert(id, (slot, write));
        self.object_lookups.insert(id, Purpose::Client(id));
        let now = self.instant();
        let effects = self.nodes[slot].core.lookup(now, id, key_of(name));
        self.carry_out(slot, effects);
    }

    /// An object lookup of `slot` ended.
    pub(super) fn object_looked(&mut self, slot: usize, purpose: Purpose, end: Result<NodeInfo>) {
        match purpose {
            Purpose::Client(id) => {
                let Ok(to) = end else {
                    self.client_writes.remove(&id);
                    return;
                };
                let Some((_, write)) = self.client_writes.get(&id).cloned() else {
                    return;
                };
                let (request, body) = match &write.data {
                    Some(data) => {
                        let head = RecordHead {
                            name: write.name.clone(),
                            size: data.len() as u64,
                            version: 0,
                            deleted: false,
                            handoff: false,
                            request: write.request,
                            existed: false,
                            relayed: false,
                        };
                        (Message::Record(head), data.clone())
                    }
                    None => {
                        let delete = Message::Delete {
                            name: write.name.clone(),
                            request: write.request,
                            relayed: false,
                        };
                        (delete, Bytes::new())
                    }
                };
                self.object_call(slot, to, request, body, Cont::Client(id));
            }
            Purpose::Find(key) => match end {
                Ok(responsible) if responsible.id != self.nodes[slot].core.me().id => {
                    let ask = Message::Replicas { key };
                    self.object_call(
                        slot,
                        responsible,
                        ask,
                        Bytes::new(),
                        Cont::Find { key, responsible },
                    );
                    self.pass_done(slot, |_| {});
                }
                Ok(responsible) => self.pass_done(slot, |p| p.found(key, responsible, None)),
                Err(_) => self.pass_done(slot, Rebalance::not_found),
            },
        }
    }

    /// Makes an object call from `slot` to `to`, carrying `body` with it.
    fn object_call(
        &mut self,
        slot: usize,
        to: NodeInfo,
        request: Message,
        body: Bytes,
        cont: Cont,
    ) {
        let id = OBJECT_CALL | self.next_object_call;
        self.next_object_call += 1;
        self.conts.insert(id, cont);
        if let Some(pass) = self.nodes[slot].objects.rebalance.as_mut() {
            if matches!(
                self.conts.get(&id),
                Some(Cont::Find { .. } | Cont::Holds { .. } | Cont::Push { .. })
            ) {
                pass.waiting += 1;
            }
        }
        let wait = self.config.call_timeout;
        self.send_with(slot, id, to.into(), request, body, wait);
    }

    /// Serves an object request at `slot`; gives it back if it is not one.
    pub(super) fn serve_object(
        &mut self,
        slot: usize,
        token: Token,
        request: Message,
        body: Bytes,
    ) -> Option<Message> {
        let now = self.instant();
        let now_ns = self.now_ns();
        let k = self.config.replicas;
        let node = &mut self.nodes[slot];
        let reply = match request {
            Message::Record(head) if !head.handoff => return self.order(slot, token, head, body),
            Message::Delete { name, request, .. } => {
                let head = RecordHead {
                    name,
                    size: 0,
                    version: 0,
                    deleted: true,
                    handoff: false,
                    request,
                    existed: false,
                    relayed: false,
                };
                return self.order(slot, token, head, Bytes::new());
            }
            Message::Record(head) => {
                if !check_incoming(head.version, now_ns) {
                    refusal(RemoteCode::BadVersion, "version too far ahead")
                } else if node.core.phase() != Phase::Joined {
                    refusal(RemoteCode::NotResponsible, "not taking writes")
                } else {
                    let (commit, before) = node.objects.store.commit(&head, body);
                    node.objects
                        .outcomes
                        .remember(head.request, Outcome::of_copy(&head), now);
                    copy_reply(&commit, before.as_ref())
                }
            }
            Message::Holds { records } => {
                let store = &node.objects.store;
                lacking(records, |name| Ok::<_, ()>(store.meta(name)))
            }
            Message::Pull { joiner } => {
                let store = &node.objects.store;
                let picked = pull_selection(node.core.state(), joiner, k, store.records());
                let records = picked
                    .iter()
                    .filter_map(|meta| store.get(&meta.name))
                    .map(|(meta, data)| (record_head(&meta, true), data))
                    .collect();
                self.reply_with(token, Message::Ack, records);
                return None;
            }
            other => return Some(other),
        };
        self.reply_with(token, reply, Vec::new());
        None
    }

    /// A client's write reaches `slot`: if responsible, it gives the write its version,
    /// commits its own copy and sends the others'.
    fn order(
        &mut self,
        slot: usize,
        token: Token,
        head: RecordHead,
        body: Bytes,
    ) -> Option<Message> {
        let now = self.instant();
        let now_ns = self.now_ns();
        let node = &mut self.nodes[slot];
        let me = node.core.me();
        let key = key_of(&head.name);
        if node.core.phase() != Phase::Joined || node.core.state().route(key, |_| false).id != me.id
        {
            let reply = refusal(RemoteCode::NotResponsible, "not responsible for this key");
            self.reply_with(token, reply, Vec::new());
            return None;
        }
        if let Some(outcome) = node.objects.outcomes.get(head.request, now) {
            self.reply_with(token, outcome.reply(), Vec::new());
            return None;
        }
        let store = &mut node.objects.store;
        let floor = [
            store.meta(&head.name).map(|m| m.version),
            node.objects.given.get(&head.name).copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        let Some(version) = next_version(now_ns, floor, me.id) else {
            let reply = refusal(RemoteCode::BadVersion, "no newer version left");
            self.reply_with(token, reply, Vec::new());
            return None;
        };
        node.objects.given.insert(head.name.clone(), version);
        let mut copy = copy_head(&head, version);
        let (commit, before) = store.commit(&copy, body.clone());
        let stored = matches!(commit, Commit::Stored(_));
        let here = before.map(|m| (m.version, !m.deleted));
        copy.existed = here.is_some_and(|(_, live)| live);
        self.issued.insert(
            (head.name.clone(), version),
            (!head.deleted).then(|| body.clone()),
        );
        let holders = node.core.other_replicas(key);
        let id = self.next_object_call;
        let op = WriteOp {
            token,
            copy: copy.clone(),
            request: head.request,
            stored,
            here,
            waiting: holders.len(),
            answers: Vec::new(),
        };
        self.nodes[slot].objects.writes.insert(id, op);
        self.next_object_call += 1;
        for holder in holders {
            let request = Message::Record(copy.clone());
            let cont = Cont::Copy { write: id, holder };
            self.object_call(slot, holder, request, body.clone(), cont);
        }
        self.finish_write(slot, id);
        None
    }

    /// Answers write `id` once every copy is answered.
    fn finish_write(&mut self, slot: usize, id: u64) {
        let now = self.instant();
        let node = &mut self.nodes[slot];
        if !node
            .objects
            .writes
            .get(&id)
            .is_some_and(|op| op.waiting == 0)
        {
            return;
        }
        let Some(op) = node.objects.writes.remove(&id) else {
            return;
        };
        let me = node.core.me().id;
        let (outcome, _behind) = if op.copy.deleted {
            delete_outcome(me, op.copy.version, op.here, &op.answers)
        } else {
            put_outcome(me, op.copy.version, op.stored, &op.answers)
        };
        node.objects.outcomes.remember(op.request, outcome, now);
        self.reply_with(op.token, outcome.reply(), Vec::new());
    }

    /// The answer to an object call of `slot`.
    pub(super) fn object_answer(
        &mut self,
        slot: usize,
        call: CallId,
        result: Result<Message>,
        records: Records,
    ) {
        let Some(cont) = self.conts.remove(&call) else {
            return;
        };
        match cont {
            Cont::Client(id) => {
                let Some((_, write)) = self.client_writes.remove(&id) else {
                    return;
                };
                let version = match result {
                    Ok(Message::Stored { version, .. } | Message::Deleted { version, .. }) => {
                        version
                    }
                    _ => return,
                };
                self.acked.push(Acked {
                    name: write.name,
                    version,
                    data: write.data,
                });
            }
            Cont::Copy { write: id, holder } => {
                let objects = &mut self.nodes[slot].objects;
                if let Some(op) = objects.writes.get_mut(&id) {
                    op.waiting -= 1;
                    if let Ok(answer) = result.and_then(|reply| copy_answer(holder, reply)) {
                        op.answers.push(answer);
                    }
                }
                self.finish_write(slot, id);
            }
            Cont::Find { key, responsible } => {
                self.pass_done(slot, |p| p.found(key, responsible, result.ok()));
            }
            Cont::Holds { holder, batch } => match result {
                Ok(Message::Lacking { older, absent }) => {
                    let send = match self.nodes[slot].objects.rebalance.as_mut() {
                        Some(p) => p.pass.answered(&batch, &older, &absent),
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
                _ => self.pass_done(slot, Rebalance::failed),
            },
            Cont::Push { name, version } => {
                let confirmed = pushed(&result, version);
                self.pass_done(slot, |p| p.sent(&name, confirmed));
            }
            Cont::LeaveHolds { holder, batch } => {
                let leave = self.nodes[slot].objects.leaving.as_mut();
                let Some(leave) = leave else { return };
                let send = match result {
                    Ok(Message::Lacking { older, absent }) => {
                        let answered = bring_up_to_date(&batch, &older, &absent, &leave.keeping);
                        if let Some(round) = leave.holders.get_mut(&holder) {
                            round
                                .reached
                                .extend(answered.counted.into_iter().map(|(name, _)| name));
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
                    if let Some(round) = self.nodes[slot]
                        .objects
                        .leaving
                        .as_mut()
                        .and_then(|l| l.holders.get_mut(&holder))
                    {
                        round.waiting += 1;
                    }
                    self.push(slot, holder, &meta.name, |name, version| Cont::LeavePush {
                        holder,
                        name,
                        version,
                    });
                }
                self.leave_answered(slot, holder, None);
            }
            Cont::LeavePush {
                holder,
                name,
                version,
            } => {
                let reached = pushed(&result, version).then_some(name);
                self.leave_answered(slot, holder, reached);
            }
            Cont::Pull => {
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
    }

    /// Sends `to` this node's current record of `name` as a hand-off copy; `cont` continues
    /// with the name and the version sent. A record gone meanwhile counts as sent.
    fn push(
        &mut self,
        slot: usize,
        to: NodeInfo,
        name: &[u8],
        cont: impl FnOnce(Vec<u8>, u64) -> Cont,
    ) {
        let Some((meta, data)) = self.nodes[slot].objects.store.get(name) else {
            // Deleted here since the listing: nothing to send, and nothing left to drop.
            let cont = cont(name.to_vec(), 0);
            if let (Cont::Push { .. }, Some(pass)) =
                (&cont, self.nodes[slot].objects.rebalance.as_mut())
            {
                pass.waiting += 1;
            }
            let call = OBJECT_CALL | self.next_object_call;
            self.next_object_call += 1;
            self.conts.insert(call, cont);
            let stored = Message::Stored {
                version: 0,
                kept: true,
                before: 0,
                before_live: false,
            };
            return self.object_answer(slot, call, Ok(stored), Vec::new());
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
    fn pass_done(&mut self, slot: usize, f: impl FnOnce(&mut Rebalance)) {
        let Some(pass) = self.nodes[slot].objects.rebalance.as_mut() else {
            return;
        };
        f(&mut pass.pass);
        pass.waiting = pass.waiting.saturating_sub(1);
        self.advance_pass(slot);
    }

    /// Starts a rebalance pass at `slot` unless one is under way.
    pub(super) fn start_rebalance(&mut self, slot: usize) {
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
    fn advance_pass(&mut self, slot: usize) {
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
    pub(super) fn start_leave(&mut self, slot: usize) {
        let keeping = self.keeping();
        let node = &mut self.nodes[slot];
        let records = node.objects.store.records();
        let me = node.core.me();
        let last = self.registry.joined_peers().iter().all(|p| p.id == me.id);
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
    fn leave_round(&mut self, slot: usize) {
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
    fn leave_answered(&mut self, slot: usize, holder: NodeInfo, reached: Option<Vec<u8>>) {
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
    pub(super) fn start_pulls(&mut self, slot: usize) {
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

    fn finish_join(&mut self, slot: usize) {
        if self.nodes[slot].core.phase() != Phase::Joining {
            return;
        }
        let now = self.instant();
        let more = self.nodes[slot].core.finish_join(now);
        self.joined(slot);
        self.carry_out(slot, more);
    }

    /// Whether an effect is news for the object protocol: a lookup it made ended.
    pub(super) fn object_effect(&mut self, slot: usize, effect: &Effect) -> bool {
        let Effect::Looked { op, result } = effect else {
            return false;
        };
        let op: OpId = *op;
        let Some(purpose) = self.object_lookups.remove(&op) else {
            return false;
        };
        let end = match result {
            Ok((path, _)) => path
                .last()
                .copied()
                .ok_or_else(|| Error::Config("empty path".into())),
            Err(e) => Err(Error::Config(e.to_string())),
        };
        self.object_looked(slot, purpose, end);
        true
    }
}

/// Whether a pushed record at `version` is confirmed by `result`.
fn pushed(result: &Result<Message>, version: u64) -> bool {
    matches!(result, Ok(Message::Stored { version: held, .. }) if *held >= version)
}

/// A member's part of a hand-off round failed: the rest of its answers count for nothing.
fn fail_round(leave: &mut Leave, holder: NodeInfo, e: Error) {
    if let Some(round) = leave.holders.get_mut(&holder) {
        round.failed.get_or_insert(e);
    }
}

fn refusal(code: RemoteCode, message: &str) -> Message {
    Message::Error {
        code,
        message: message.to_string(),
    }
}
