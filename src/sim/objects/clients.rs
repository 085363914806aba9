//! Clients' writes in the simulator, and the responsible node's side of them: a lookup, the
//! write at the node it ends at, which gives it its version, commits its own copy, sends the
//! others' and answers once they are in.

use bytes::Bytes;

use crate::error::Result;
use crate::id::{key_of, NodeInfo};
use crate::protocol::membership::{Phase, Token};
use crate::protocol::objects::{
    copy_answer, copy_head, delete_outcome, may_order, put_outcome, Rebalance,
};
use crate::protocol::versions::next_version;
use crate::store::Commit;
use crate::wire::{Message, RecordHead, RemoteCode};

use super::{refusal, Acked, ClientWrite, Cont, Purpose, WriteOp};
use crate::sim::Sim;

impl Sim {
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

    pub(in crate::sim) fn client_write(
        &mut self,
        via: crate::Id,
        name: &[u8],
        data: Option<Bytes>,
    ) {
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
    pub(in crate::sim) fn object_looked(
        &mut self,
        slot: usize,
        purpose: Purpose,
        end: Result<NodeInfo>,
    ) {
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
                            direct: false,
                        };
                        (Message::Record(head), data.clone())
                    }
                    None => {
                        let delete = Message::Delete {
                            name: write.name.clone(),
                            request: write.request,
                            relayed: false,
                            direct: false,
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

    /// A client's write reaches `slot`: if responsible, it gives the write its version,
    /// commits its own copy and sends the others'.
    pub(in crate::sim) fn order(
        &mut self,
        slot: usize,
        token: Token,
        head: RecordHead,
        body: Bytes,
    ) {
        let now = self.instant();
        let now_ns = self.now_ns();
        let node = &mut self.nodes[slot];
        let me = node.core.me();
        let key = key_of(&head.name);
        if node.core.phase() != Phase::Joined || node.core.state().route(key, |_| false).id != me.id
        {
            let reply = refusal(RemoteCode::NotResponsible, "not responsible for this key");
            self.reply_with(token, reply, Vec::new());
            return;
        }
        if let Some(outcome) = node.objects.outcomes.get(head.request, now) {
            self.reply_with(token, outcome.reply(), Vec::new());
            return;
        }
        let holders = node.core.other_replicas(key);
        let last = holders.is_empty()
            && self
                .registry
                .joined_peers(self.instant())
                .iter()
                .all(|p| p.id == me.id);
        if !may_order(holders.len(), self.config.replicas, last) {
            let reply = refusal(
                RemoteCode::NotResponsible,
                "cut off from every other holder",
            );
            self.reply_with(token, reply, Vec::new());
            return;
        }
        let node = &mut self.nodes[slot];
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
            return;
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
    }

    /// Answers write `id` once every copy is answered.
    pub(in crate::sim) fn finish_write(&mut self, slot: usize, id: u64) {
        let now = self.instant();
        let node = &mut self.nodes[slot];
        if node
            .objects
            .writes
            .get(&id)
            .is_none_or(|op| op.waiting != 0)
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

    /// A client's write was answered: acknowledged if it was done.
    pub(in crate::sim) fn client_answered(&mut self, id: u64, result: Result<Message>) {
        let Some((_, write)) = self.client_writes.remove(&id) else {
            return;
        };
        let version = match result {
            Ok(Message::Stored { version, .. } | Message::Deleted { version, .. }) => version,
            _ => return,
        };
        self.acked.push(Acked {
            name: write.name,
            version,
            data: write.data,
        });
    }

    /// `holder` answered the copy of write `id`.
    pub(in crate::sim) fn copy_answered(
        &mut self,
        slot: usize,
        id: u64,
        holder: NodeInfo,
        result: Result<Message>,
    ) {
        let objects = &mut self.nodes[slot].objects;
        if let Some(op) = objects.writes.get_mut(&id) {
            op.waiting -= 1;
            if let Ok(answer) = result.and_then(|reply| copy_answer(holder, reply)) {
                op.answers.push(answer);
            }
        }
        self.finish_write(slot, id);
    }
}
