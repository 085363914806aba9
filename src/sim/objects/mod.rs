//! The object store's protocol in the simulator: the same decisions and passes the threaded
//! node makes ([`crate::protocol::objects`]), over the simulated network and an in-memory
//! store per node. Writes from clients (a lookup, then the write at the node it ends at),
//! the responsible node's copies, rebalance passes every maintenance round, hand-offs before
//! a leave and pulls during a join.
//!
//! What the simulator leaves out: a write is not relayed by a node that is not responsible
//! (the client's write fails, and counts as unacknowledged), clients do not retry, and no copy
//! is damaged, so there is nothing to repair.

mod clients;
mod passes;

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::{Key, NodeInfo};
use crate::protocol::membership::{CallId, Effect, OpId, Phase, Token};
use crate::protocol::objects::{
    copy_reply, lacking, pull_selection, record_head, CopyAnswer, HandOff, Rebalance,
};
use crate::protocol::outcomes::{Outcome, Outcomes};
use crate::protocol::placement::Keeping;
use crate::protocol::versions::check_incoming;
use crate::store::RecordMeta;
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

    /// How the nodes judge their records now: the default tombstone grace, and no node back
    /// from a long absence (a run is far shorter than the grace).
    pub(super) fn keeping(&self) -> Keeping {
        let grace = u64::try_from(crate::DEFAULT_TOMBSTONE_GRACE.as_nanos()).unwrap_or(u64::MAX);
        Keeping::new(self.now_ns(), grace, None)
    }

    /// Makes an object call from `slot` to `to`, carrying `body` with it.
    pub(super) fn object_call(
        &mut self,
        slot: usize,
        to: NodeInfo,
        request: Message,
        body: Bytes,
        cont: Cont,
    ) {
        let id = OBJECT_CALL | self.next_object_call;
        self.next_object_call += 1;
        // A rebalance pass moves on once every call it made is answered.
        let of_pass = matches!(
            cont,
            Cont::Find { .. } | Cont::Holds { .. } | Cont::Push { .. }
        );
        if let Some(pass) = self.nodes[slot]
            .objects
            .rebalance
            .as_mut()
            .filter(|_| of_pass)
        {
            pass.waiting += 1;
        }
        self.conts.insert(id, cont);
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
            Message::Record(head) if !head.handoff => {
                self.order(slot, token, head, body);
                return None;
            }
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
                    direct: false,
                };
                self.order(slot, token, head, Bytes::new());
                return None;
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
            Cont::Client(id) => self.client_answered(id, result),
            Cont::Copy { write, holder } => self.copy_answered(slot, write, holder, result),
            Cont::Find { key, responsible } => {
                self.pass_done(slot, |p| p.found(key, responsible, result.ok()));
            }
            Cont::Holds { holder, batch } => self.holds_answered(slot, holder, &batch, result),
            Cont::Push { name, version } => {
                let confirmed = pushed(&result, version);
                self.pass_done(slot, |p| p.sent(&name, confirmed));
            }
            Cont::LeaveHolds { holder, batch } => {
                self.leave_holds_answered(slot, holder, &batch, result);
            }
            Cont::LeavePush {
                holder,
                name,
                version,
            } => {
                let reached = pushed(&result, version).then_some(name);
                self.leave_answered(slot, holder, reached);
            }
            Cont::Pull => self.pulled(slot, result, records),
        }
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
