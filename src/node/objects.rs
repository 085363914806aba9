//! The node's side of the object protocol for reads: gets, pulls and checks of copies,
//! served from its store, and the replies the write side shares.

use crate::error::Error;
use crate::id::{key_of, Key, NodeInfo};
use crate::net::Session;
use crate::store::{RecordMeta, StoreError, CHUNK_SIZE};
use crate::transfer::{send_record, send_whole_record, SliceSource};
use crate::wire::{Message, RecordHead, RemoteCode};

use super::Inner;
use crate::calls::refusal::error_reply;
use crate::protocol::objects::pull_selection;
pub(super) use crate::protocol::objects::record_head as head_of;

impl Inner {
    /// Whether this node holds `key` by its own view of the overlay.
    pub(super) fn is_responsible(&self, key: Key) -> bool {
        self.core.read().state().route(key, |_| false).id == self.me.id
    }

    /// A get: streams the object if this node holds it. A copy found corrupt is reported
    /// (the asker turns to another holder) and replaced from a sound one soon after.
    ///
    /// A `direct` get, sent on the client's guess rather than a route, is served only by the
    /// responsible node (another holder's copy may be behind), and not by one that sees no
    /// other holder while it should have some: cut off from its neighbours, it may be
    /// responsible in its own view only, with a copy the overlay has moved past. The client
    /// then routes the get.
    pub(super) fn serve_get(
        &self,
        name: &[u8],
        direct: bool,
        session: &mut Session<'_>,
    ) -> Message {
        let key = key_of(name);
        let cut_off = || self.config.replicas > 1 && self.other_replicas(key).is_empty();
        if direct && (!self.is_responsible(key) || cut_off()) {
            return refuse(RemoteCode::NotResponsible, "not responsible for this key");
        }
        let mut reader = self.objects.store.reader(name);
        if let Err(StoreError::NotFound) = reader {
            reader = Err(match self.objects.store.meta(name) {
                // The responsible node's deletion record is the last word on the name.
                Ok(Some(m)) if m.deleted && self.is_responsible(m.key) => {
                    return refuse(RemoteCode::Gone, "the object was deleted")
                }
                // Not here and not ours: the asker's route is out of date.
                _ if !self.is_responsible(key_of(name)) => {
                    return refuse(RemoteCode::NotResponsible, "not responsible for this key")
                }
                _ => StoreError::NotFound,
            });
        }
        let mut reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                if matches!(e, StoreError::Corrupt { .. }) {
                    self.schedule_repair(name);
                }
                return store_reply(name, e);
            }
        };
        let head = head_of(reader.meta(), false);
        match send_record(session.framed(), &head, &mut reader) {
            Ok(crc) => Message::RecordEnd { crc },
            // Half a record is out: the error ends it, and the asker discards what it got.
            Err(e) => {
                if matches!(e, Error::Corrupt { .. }) {
                    self.schedule_repair(name);
                }
                error_reply(&e)
            }
        }
    }

    /// The nodes besides this one that keep copies of `key`.
    pub(super) fn other_replicas(&self, key: Key) -> Vec<NodeInfo> {
        self.core.read().other_replicas(key)
    }

    /// Which of `records` this node holds at an older version, and which not at all.
    pub(super) fn lacking(&self, records: Vec<(Vec<u8>, u64)>) -> Message {
        crate::protocol::objects::lacking(records, |name| self.objects.store.meta(name))
    }

    /// A joining node's pull: streams copies of the records it will keep.
    pub(super) fn serve_pull(&self, joiner: NodeInfo, session: &mut Session<'_>) -> Message {
        let records = match self.objects.store.records() {
            Ok(records) => records,
            Err(e) => return store_reply(b"", e),
        };
        let records = {
            let core = self.core.read();
            pull_selection(core.state(), joiner, self.config.replicas, records)
        };
        let sent = records.len();
        for meta in records {
            if let Err(e) = self.send_copy(&meta, session) {
                log::warn!("node {}: pull by {joiner} stopped: {e}", self.me);
                return error_reply(&e);
            }
        }
        log::debug!("node {}: {joiner} pulled {sent} records", self.me);
        Message::Ack
    }

    /// Streams one record as a hand-off copy on `session`.
    fn send_copy(&self, meta: &RecordMeta, session: &mut Session<'_>) -> crate::Result<()> {
        if meta.deleted {
            let head = head_of(meta, true);
            return send_whole_record(session.framed(), &head, &mut SliceSource(&[]));
        }
        let mut reader = match self.objects.store.reader(&meta.name) {
            Ok(reader) => reader,
            Err(StoreError::NotFound) => return Ok(()), // deleted since the listing
            Err(e) => return Err(Error::from_store(&meta.name, e)),
        };
        let head = head_of(reader.meta(), true);
        send_whole_record(session.framed(), &head, &mut reader)
    }
}

pub(super) fn refuse(code: RemoteCode, message: &str) -> Message {
    Message::Error {
        code,
        message: message.to_string(),
    }
}

/// Reads and discards the data of a record that is refused, so that the connection stays in
/// step; closes it instead if the stream is not a record.
pub(super) fn drain(head: &RecordHead, session: &mut Session<'_>, reply: Message) -> Message {
    // At most the announced data in chunks, and the end.
    let frames = head.size.div_ceil(CHUNK_SIZE as u64).saturating_add(1);
    let mut got = 0u64;
    for _ in 0..=frames {
        match session.framed().recv() {
            Ok(Message::Chunk { data }) if got + data.len() as u64 <= head.size => {
                got += data.len() as u64;
            }
            Ok(Message::RecordEnd { .. }) => return reply,
            _ => break,
        }
    }
    session.close_after_reply();
    reply
}

/// The error reply for a store failure on `name`.
pub(super) fn store_reply(name: &[u8], e: StoreError) -> Message {
    error_reply(&Error::from_store(name, e))
}
