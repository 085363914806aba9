//! Writes. The responsible node orders every put and delete of a name: it gives each write
//! its version ([`super::versions`]), writes its own copy and the other holders' copies
//! (primary/backup), and only then answers. No client ever writes a copy, so the bytes under
//! a version are always the ones its write sent. Copies arriving from other nodes (the
//! responsible node's, hand-offs, repairs) are kept if newer than what is held.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::id::{key_of, Key, NodeInfo};
use crate::net::Session;
use crate::store::{Commit, RecordMeta, CHUNK_SIZE};
use crate::transfer::{recv_record, Forward, Sink};
use crate::wire::{Message, RecordHead, RemoteCode};

use super::objects::{drain, refuse, store_reply};
use super::versions::{check_incoming, wall_clock_ns, Ticket};
use super::{Inner, Phase};
use crate::calls::refusal::error_reply;
use crate::protocol::objects::{
    copy_answer, copy_head, copy_reply, delete_outcome, may_order, put_outcome, relay_target,
    CopyAnswer,
};
use crate::protocol::outcomes::Outcome;

/// Puts up to this size are received into memory and written here and to the other holders
/// side by side (a put then costs about one disk write, not two in a row); larger ones are
/// streamed to disk, then copied from there.
const SIDE_BY_SIDE: u64 = CHUNK_SIZE as u64;

/// Chunks queued for each holder a large put is copied to while it arrives: bounds the
/// memory a put holds (this many chunks per holder) and lets a slow holder slow the put.
const COPY_QUEUE: usize = 4;

/// What a large put's copy threads are fed.
enum Piece {
    Chunk(bytes::Bytes),
    /// The data is complete; its CRC-32.
    End(u32),
}

/// A sink that writes a record to this node's store and passes each chunk on to the copy
/// threads; a holder that went away is dropped from the feeds.
struct Tee<'a, 's> {
    writer: &'a mut crate::store::RecordWriter<'s>,
    feeds: &'a mut Vec<Option<std::sync::mpsc::SyncSender<Piece>>>,
}

impl Sink for Tee<'_, '_> {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.writer.write_chunk(chunk)?;
        if self.feeds.iter().all(Option::is_none) {
            return Ok(()); // no copy to feed: no copy of the chunk either
        }
        let shared = bytes::Bytes::copy_from_slice(chunk);
        for slot in self.feeds.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|feed| feed.send(Piece::Chunk(shared.clone())).is_err())
            {
                *slot = None;
            }
        }
        Ok(())
    }

    fn crc(&self) -> Option<u32> {
        self.writer.crc()
    }
}

/// How this node's own copy was committed, and what it replaced.
type LocalCommit = (Commit, Option<RecordMeta>);

impl Inner {
    /// A record sent as a request: a client's put, or a copy from another node.
    pub(super) fn receive_record(
        self: &Arc<Self>,
        head: RecordHead,
        phase: Phase,
        session: &mut Session<'_>,
    ) -> Message {
        if phase != Phase::Joined {
            let reply = refuse(RemoteCode::NotResponsible, "this node is not taking writes");
            return drain(&head, session, reply);
        }
        if head.handoff {
            if !self.is_neighbour(session.peer(), "Record") {
                let reply = refuse(
                    RemoteCode::NotResponsible,
                    "hand-offs come from neighbours only",
                );
                return drain(&head, session, reply);
            }
            self.receive_copy(head, session)
        } else {
            self.receive_put(head, session)
        }
    }

    /// A client's put: this node, if responsible, gives it a version and writes every copy.
    fn receive_put(self: &Arc<Self>, head: RecordHead, session: &mut Session<'_>) -> Message {
        let key = key_of(&head.name);
        if !self.is_responsible(key) {
            // A direct put is the client's guess: refused, never passed on.
            return match self.relay_target(key, head.relayed || head.direct) {
                Some(to) => self.relay_put(to, head, session),
                None => drain(&head, session, not_responsible()),
            };
        }
        if let Some(outcome) = self.outcome_of(head.request) {
            return drain(&head, session, outcome.reply());
        }
        // Held until this node's copy is committed, so that leaving (which hands this node's
        // records over) waits for it; the other holders' answers may come after.
        let _writing = self.objects.write_gate.read();
        if self.phase() != Phase::Joined {
            return drain(&head, session, not_responsible());
        }
        let holders = self.other_replicas(key);
        if !self.may_order(&holders) {
            return drain(&head, session, cut_off());
        }
        if head.size <= SIDE_BY_SIDE {
            return match self.put_small(&head, &holders, session) {
                Ok(()) => Message::Ack, // dropped: the reply goes later
                Err(reply) => reply,
            };
        }
        match self.put_large(&head, &holders, session) {
            Ok((version, (commit, _), answers)) => {
                self.put_done(head.request, &head.name, version, &commit, &answers)
            }
            Err(reply) => reply,
        }
    }

    /// The reply to the put `request` of `name`, given `version`, once this node's copy was
    /// committed and the other holders answered; the outcome is remembered for a retry.
    fn put_done(
        &self,
        request: u64,
        name: &[u8],
        version: u64,
        commit: &Commit,
        answers: &[CopyAnswer],
    ) -> Message {
        let stored = matches!(commit, Commit::Stored(_));
        let (outcome, behind) = put_outcome(self.me.id, version, stored, answers);
        if behind {
            self.schedule_repair(name);
        }
        self.remember(request, outcome);
        outcome.reply()
    }

    /// A small put: the data first, then the version, then the copies sent and this node's
    /// own written meanwhile; the reply goes once the other holders answered, with no thread
    /// waiting for them ([`copy_then`](Self::copy_then)). A write waits for the older ones of
    /// its name only for the time of their own disk writes, never for a peer's bytes or
    /// answers. `Err` is the reply for a failure before anything was written.
    fn put_small(
        self: &Arc<Self>,
        head: &RecordHead,
        holders: &[NodeInfo],
        session: &mut Session<'_>,
    ) -> std::result::Result<(), Message> {
        // Grown as bytes arrive, never sized from the head: at most a chunk.
        let mut data = Vec::new();
        if let Err(e) = recv_record(session.framed(), head, &mut data) {
            session.close_after_reply(); // the stream is out of step
            return Err(error_reply(&e));
        }
        let ticket = self.new_version(&head.name).ok_or_else(version_exhausted)?;
        ticket.wait_turn(self.config.net.io_timeout);
        let copy = copy_head(head, ticket.version);
        let data = Bytes::from(data);
        let later = session.reply_later();
        let (request, version, name) = (head.request, ticket.version, head.name.clone());
        let local = || self.write_local(&copy, &data);
        self.copy_then(
            holders,
            &copy,
            data.clone(),
            local,
            move |node, local, answers| {
                later.send(match local {
                    Ok((commit, _)) => node.put_done(request, &name, version, &commit, &answers),
                    Err(e) => error_reply(&e),
                });
            },
        );
        Ok(())
    }

    /// A large put, streamed: each chunk goes to this node's disk and on to the other
    /// holders as it arrives (each holder fed by a thread of its own through a short queue),
    /// so that a large object is copied at the pace of the slowest holder, not twice over.
    fn put_large(
        &self,
        head: &RecordHead,
        holders: &[NodeInfo],
        session: &mut Session<'_>,
    ) -> std::result::Result<(u64, LocalCommit, Vec<CopyAnswer>), Message> {
        let Some(ticket) = self.new_version(&head.name) else {
            return Err(drain(head, session, version_exhausted()));
        };
        let mut writer = match self.objects.store.writer(&head.name, ticket.version, false) {
            Ok(writer) => writer,
            Err(e) => return Err(drain(head, session, store_reply(&head.name, e))),
        };
        let copy = copy_head(head, ticket.version);
        std::thread::scope(|scope| {
            let mut feeds = Vec::with_capacity(holders.len());
            let mut copies = Vec::with_capacity(holders.len());
            for &holder in holders {
                let (feed, pieces) = std::sync::mpsc::sync_channel(COPY_QUEUE);
                feeds.push(Some(feed));
                let copy = &copy;
                copies.push(scope.spawn(move || (holder, self.stream_copy(holder, copy, pieces))));
            }
            let mut tee = Tee {
                writer: &mut writer,
                feeds: &mut feeds,
            };
            let received = recv_record(session.framed(), head, &mut tee);
            if let Ok(crc) = received {
                for feed in feeds.iter().flatten() {
                    let _ = feed.send(Piece::End(crc));
                }
            }
            drop(feeds); // ends the copies of a record that did not arrive whole
            let answers = self.collect(copies.into_iter().map(|c| c.join()).collect());
            if let Err(e) = received {
                session.close_after_reply(); // the stream is out of step
                return Err(error_reply(&e));
            }
            ticket.wait_turn(self.config.net.io_timeout);
            writer
                .finish_replacing()
                .map(|local| (ticket.version, local, answers))
                .map_err(|e| store_reply(&head.name, e))
        })
    }

    /// Sends `copy` to `holder`, its data from `pieces` as they come.
    fn stream_copy(
        &self,
        holder: NodeInfo,
        copy: &RecordHead,
        pieces: std::sync::mpsc::Receiver<Piece>,
    ) -> Result<CopyAnswer> {
        self.pool.session(holder.addr, |conn| {
            conn.queue(&Message::Record(copy.clone()));
            loop {
                match pieces.recv() {
                    Ok(Piece::Chunk(data)) => conn
                        .send_chunk(&data)
                        .map_err(|e| conn.error(crate::net::ReadError::Io(e)))?,
                    Ok(Piece::End(crc)) => {
                        conn.queue(&Message::RecordEnd { crc });
                        conn.flush_or_fail()?;
                        break;
                    }
                    Err(_) => {
                        return Err(Error::Protocol {
                            addr: holder.addr,
                            what: "the record being copied did not arrive whole".into(),
                        })
                    }
                }
            }
            copy_answer(holder, conn.recv_or_fail()?)
        })
    }

    /// Writes the small record `copy` holding `data` to this node's store.
    fn write_local(&self, copy: &RecordHead, data: &[u8]) -> Result<LocalCommit> {
        let name = &copy.name;
        let mut writer = (self.objects.store)
            .writer(name, copy.version, false)
            .map_err(|e| Error::from_store(name, e))?;
        writer.write(data).map_err(|e| Error::from_store(name, e))?;
        writer
            .finish_replacing()
            .map_err(|e| Error::from_store(name, e))
    }

    /// The answers of the copies that were written; the others are left to maintenance.
    pub(super) fn collect(
        &self,
        results: Vec<std::thread::Result<(NodeInfo, Result<CopyAnswer>)>>,
    ) -> Vec<CopyAnswer> {
        let mut answers = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for result in results {
            match result {
                Ok((_, Ok(answer))) => answers.push(answer),
                Ok((holder, Err(e))) => failed.push(format!("{holder}: {e}")),
                Err(_) => failed.push("a copy's thread panicked".to_string()),
            }
        }
        if !failed.is_empty() {
            log::debug!("node {}: copies left to maintenance: {failed:?}", self.me);
            self.wake_maintenance();
        }
        answers
    }

    /// A copy from another node: kept if newer than what is held, whoever is responsible.
    fn receive_copy(&self, head: RecordHead, session: &mut Session<'_>) -> Message {
        if !check_incoming(head.version, wall_clock_ns()) {
            let reply = refuse(
                RemoteCode::BadVersion,
                &format!(
                    "version {} is too far ahead of this node's clock",
                    head.version
                ),
            );
            return drain(&head, session, reply);
        }
        // Not waited for: a node that started leaving refuses copies (its hand-off may be under
        // way), and the responsible node writing this copy may itself be waiting to leave,
        // which must not wait on this one.
        let writing = self.objects.write_gate.try_read();
        if writing.is_none() || self.phase() != Phase::Joined {
            return drain(&head, session, not_responsible());
        }
        let mut writer = match self
            .objects
            .store
            .writer(&head.name, head.version, head.deleted)
        {
            Ok(w) => w,
            Err(e) => return drain(&head, session, store_reply(&head.name, e)),
        };
        if let Err(e) = recv_record(session.framed(), &head, &mut writer) {
            session.close_after_reply();
            return error_reply(&e);
        }
        let (commit, before) = match writer.finish_replacing() {
            Ok(done) => done,
            Err(e) => return store_reply(&head.name, e),
        };
        // The write's outcome travels with its copies, for a retry that reaches this node.
        let outcome = Outcome::of_copy(&head);
        self.remember(head.request, outcome);
        copy_reply(&commit, before.as_ref())
    }

    /// A client's delete: this node, if responsible, writes a deletion record here, then to
    /// the other holders. Not passed on if `relayed` (passed on already, or sent direct on the
    /// client's guess).
    pub(super) fn delete(
        self: &Arc<Self>,
        name: &[u8],
        request: u64,
        relayed: bool,
        session: &mut Session<'_>,
    ) -> Message {
        let key = key_of(name);
        if !self.is_responsible(key) {
            let Some(to) = self.relay_target(key, relayed) else {
                return not_responsible();
            };
            let relay = Message::Delete {
                name: name.to_vec(),
                request,
                relayed: true,
                direct: false,
            };
            return match self.pool.call(to.addr, &relay) {
                Ok(reply @ Message::Deleted { .. }) => reply,
                Ok(other) => relay_failed(&Error::unexpected_reply(to.addr, "Deleted", &other)),
                Err(e) => relay_failed(&e),
            };
        }
        if let Some(outcome) = self.outcome_of(request) {
            return outcome.reply();
        }
        let _writing = self.objects.write_gate.read();
        if self.phase() != Phase::Joined {
            return not_responsible();
        }
        let holders = self.other_replicas(key);
        if !self.may_order(&holders) {
            return cut_off();
        }
        let Some((ticket, at_start)) = self.new_version_seeing(name) else {
            return version_exhausted();
        };
        ticket.wait_turn(self.config.net.io_timeout);
        let committed = self
            .objects
            .store
            .writer(name, ticket.version, true)
            .and_then(|w| w.finish_replacing());
        let (commit, before) = match committed {
            Ok(done) => done,
            Err(e) => return store_reply(name, e),
        };
        // What this delete removed here: the record its commit replaced or, overtaken by a
        // newer copy from elsewhere (writes given versions here commit in order), what was
        // there when it began.
        let here = match commit {
            Commit::Stored(_) => before,
            Commit::Superseded(_) => at_start,
        }
        .map(|m| (m.version, !m.deleted));
        let copy = RecordHead {
            name: name.to_vec(),
            size: 0,
            version: ticket.version,
            deleted: true,
            handoff: true,
            request,
            existed: here.is_some_and(|(_, live)| live),
            relayed: false,
            direct: false,
        };
        let (version, name) = (ticket.version, name.to_vec());
        let later = session.reply_later();
        let finish = move |node: &Inner, (), answers: Vec<CopyAnswer>| {
            let (outcome, behind) = delete_outcome(node.me.id, version, here, &answers);
            if behind {
                node.schedule_repair(&name);
            }
            node.remember(request, outcome);
            later.send(outcome.reply());
        };
        self.copy_then(&holders, &copy, Bytes::new(), || (), finish);
        Message::Ack // dropped: the reply goes later
    }

    /// Whether this node may order a write whose other holders are `holders` ([`may_order`]):
    /// discovery is asked only when there are none.
    fn may_order(&self, holders: &[NodeInfo]) -> bool {
        let last = holders.is_empty() && self.alone();
        may_order(holders.len(), self.config.replicas, last)
    }

    /// A new version for a write of `name`; `None` if none is left.
    fn new_version(&self, name: &[u8]) -> Option<Ticket<'_>> {
        self.new_version_seeing(name).map(|(ticket, _)| ticket)
    }

    /// [`new_version`](Self::new_version), with the record stored when it was given if the
    /// clock read it (it does when no other write of `name` is in flight).
    fn new_version_seeing(&self, name: &[u8]) -> Option<(Ticket<'_>, Option<RecordMeta>)> {
        let mut stored = None;
        let ticket = self.objects.versions.begin(name, wall_clock_ns(), || {
            // A damaged record counts as absent: the write replaces it.
            stored = self.objects.store.meta(name).ok().flatten();
            stored.as_ref().map(|m| m.version)
        })?;
        Some((ticket, stored))
    }

    /// The node a client's write for `key` is passed on to when this node is not responsible:
    /// the responsible one, if this node's leaf set spans the key and the write was not
    /// passed on already (so a write is relayed at most once).
    fn relay_target(&self, key: Key, relayed: bool) -> Option<NodeInfo> {
        relay_target(self.core.read().state(), key, relayed)
    }

    /// Passes a client's put on to `to`, streaming it through, and relays the answer: lets a
    /// client write through a holder when the responsible node refuses it a connection.
    fn relay_put(&self, to: NodeInfo, head: RecordHead, session: &mut Session<'_>) -> Message {
        let relayed = RecordHead {
            relayed: true,
            ..head.clone()
        };
        let result = self.pool.session(to.addr, |conn| {
            conn.queue(&Message::Record(relayed));
            let crc = recv_record(session.framed(), &head, &mut Forward(conn))?;
            conn.queue(&Message::RecordEnd { crc });
            conn.flush_or_fail()?;
            conn.recv_or_fail()
        });
        match result {
            Ok(reply @ Message::Stored { .. }) => reply,
            Ok(other) => relay_failed(&Error::unexpected_reply(to.addr, "Stored", &other)),
            Err(e) => {
                // The client's stream may be unread in part.
                session.close_after_reply();
                relay_failed(&e)
            }
        }
    }

    /// The remembered outcome of the client's request `request`.
    fn outcome_of(&self, request: u64) -> Option<Outcome> {
        self.objects.outcomes.lock().get(request, Instant::now())
    }

    fn remember(&self, request: u64, outcome: Outcome) {
        self.objects
            .outcomes
            .lock()
            .remember(request, outcome, Instant::now());
    }
}

/// The reply for a relayed write that failed: the responsible node's own refusal, or
/// Unroutable (retryable: this node is fine, the one after it failed).
fn relay_failed(e: &Error) -> Message {
    match e {
        Error::Refused { .. } => error_reply(e),
        _ => refuse(RemoteCode::Unroutable, &e.to_string()),
    }
}

/// The refusal of a node cut off from every other holder: retryable, as not responsible.
fn cut_off() -> Message {
    refuse(
        RemoteCode::NotResponsible,
        "cut off from every other holder of this key",
    )
}

fn not_responsible() -> Message {
    refuse(RemoteCode::NotResponsible, "not responsible for this key")
}

fn version_exhausted() -> Message {
    refuse(
        RemoteCode::BadVersion,
        "the stored version of this name leaves no newer version",
    )
}
