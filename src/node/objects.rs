//! The node's side of the object protocol: puts, hand-offs, gets, deletes and pulls, served
//! from its store. Only local disk and the request's own connection are used here.

use crate::error::Error;
use crate::id::{key_of, Key, NodeInfo};
use crate::net::Session;
use crate::store::{Commit, RecordMeta, StoreError, CHUNK_SIZE};
use crate::transfer::{recv_record, send_record, send_whole_record, SliceSource};
use crate::wire::{Message, RecordHead, RemoteCode};

use super::{Inner, Phase};

impl Inner {
    /// Whether this node holds `key` by its own view of the overlay.
    pub(super) fn is_responsible(&self, key: Key) -> bool {
        self.state.read().route(key, |_| false).id == self.me.id
    }

    /// A version newer than `existing` and than any this node handed out before: wall-clock
    /// nanoseconds, so that versions from different holders of one key compare sensibly.
    fn next_version(&self, existing: Option<u64>) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let floor = existing.unwrap_or(0).max(now);
        let mut last = self.last_version.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            let next = floor.max(last + 1);
            match self.last_version.compare_exchange_weak(
                last,
                next,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// A put (from a client) or a hand-off (from a node): stores the record that follows.
    pub(super) fn receive_record(
        &self,
        head: RecordHead,
        phase: Phase,
        session: &mut Session<'_>,
    ) -> Message {
        let refusal = if phase != Phase::Joined {
            Some(refuse(
                RemoteCode::NotResponsible,
                "this node is not taking writes",
            ))
        } else if !head.handoff && !self.is_responsible(key_of(&head.name)) {
            Some(refuse(
                RemoteCode::NotResponsible,
                "not responsible for this key",
            ))
        } else {
            None
        };
        if let Some(reply) = refusal {
            return drain(&head, session, reply);
        }
        // Held for the whole write, so that leaving waits for it.
        let _writing = self.write_gate.read();
        if *self.phase.lock() != Phase::Joined {
            return drain(
                &head,
                session,
                refuse(RemoteCode::NotResponsible, "leaving"),
            );
        }
        let version = if head.handoff {
            head.version
        } else {
            match self.store.meta(&head.name) {
                Ok(existing) => self.next_version(existing.map(|m| m.version)),
                Err(e) => return drain(&head, session, store_reply(&head.name, e)),
            }
        };
        let mut writer = match self.store.writer(&head.name, version, head.deleted) {
            Ok(w) => w,
            Err(e) => return drain(&head, session, store_reply(&head.name, e)),
        };
        if let Err(e) = recv_record(session.framed(), &head, &mut writer) {
            // The stream is out of step; the unfinished write is discarded with `writer`.
            session.close_after_reply();
            return error_reply(&e);
        }
        let replicas = if head.handoff {
            Vec::new()
        } else {
            self.other_replicas(key_of(&head.name))
        };
        match writer.finish() {
            Ok(Commit::Stored(meta)) => Message::Stored {
                version: meta.version,
                kept: true,
                replicas,
            },
            Ok(Commit::Superseded(meta)) => Message::Stored {
                version: meta.version,
                kept: false,
                replicas,
            },
            Err(e) => store_reply(&head.name, e),
        }
    }

    /// A get: streams the object if this node holds it.
    pub(super) fn serve_get(&self, name: &[u8], session: &mut Session<'_>) -> Message {
        let mut reader = match self.store.reader(name) {
            Ok(reader) => reader,
            // Not here and not ours: the asker's route is out of date.
            Err(StoreError::NotFound) if !self.is_responsible(key_of(name)) => {
                return refuse(RemoteCode::NotResponsible, "not responsible for this key")
            }
            Err(e) => return store_reply(name, e),
        };
        let head = head_of(reader.meta(), false);
        match send_record(session.framed(), &head, &mut reader) {
            Ok(crc) => Message::RecordEnd { crc },
            // Half a record is out: the error ends it, and the asker discards what it got.
            Err(e) => error_reply(&e),
        }
    }

    /// A delete: writes a deletion record newer than the object.
    pub(super) fn delete(&self, name: &[u8]) -> Message {
        if !self.is_responsible(key_of(name)) {
            return refuse(RemoteCode::NotResponsible, "not responsible for this key");
        }
        let _writing = self.write_gate.read();
        let existing = match self.store.meta(name) {
            Ok(existing) => existing,
            Err(e) => return store_reply(name, e),
        };
        let existed = existing.as_ref().is_some_and(|m| !m.deleted);
        let version = self.next_version(existing.map(|m| m.version));
        match self.store.delete(name, version) {
            Ok(commit) => Message::Deleted {
                existed,
                version: match commit {
                    Commit::Stored(m) | Commit::Superseded(m) => m.version,
                },
                replicas: self.other_replicas(key_of(name)),
            },
            Err(e) => store_reply(name, e),
        }
    }

    /// The nodes besides this one that keep copies of `key`.
    pub(super) fn other_replicas(&self, key: Key) -> Vec<NodeInfo> {
        let mut set = self.state.read().replica_set(key, self.config.replicas);
        set.retain(|n| n.id != self.me.id);
        set
    }

    /// Which of `records` this node lacks, or holds at an older version.
    pub(super) fn lacking(&self, records: Vec<(Vec<u8>, u64)>) -> Message {
        let mut names = Vec::new();
        for (name, version) in records {
            match self.store.meta(&name) {
                Ok(Some(held)) if held.version >= version => {}
                _ => names.push(name),
            }
        }
        Message::Lacking { names }
    }

    /// A joining node's pull: streams copies of the records it will keep.
    pub(super) fn serve_pull(&self, joiner: NodeInfo, session: &mut Session<'_>) -> Message {
        let records = match self.store.records() {
            Ok(records) => records,
            Err(e) => return store_reply(b"", e),
        };
        let mut state = self.state.read().clone();
        state.learn(joiner);
        let k = self.config.replicas;
        let mut sent = 0usize;
        for meta in records {
            if !state.replica_set(meta.key, k).contains(&joiner) {
                continue;
            }
            if let Err(e) = self.send_copy(&meta, session) {
                log::warn!("node {}: pull by {joiner} stopped: {e}", self.me);
                return error_reply(&e);
            }
            sent += 1;
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
        let mut reader = match self.store.reader(&meta.name) {
            Ok(reader) => reader,
            Err(StoreError::NotFound) => return Ok(()), // deleted since the listing
            Err(e) => return Err(Error::from_store(&meta.name, e)),
        };
        let head = head_of(reader.meta(), true);
        send_whole_record(session.framed(), &head, &mut reader)
    }
}

/// The head for streaming a stored record.
pub(super) fn head_of(meta: &RecordMeta, handoff: bool) -> RecordHead {
    RecordHead {
        name: meta.name.clone(),
        size: meta.size,
        version: meta.version,
        deleted: meta.deleted,
        handoff,
    }
}

fn refuse(code: RemoteCode, message: &str) -> Message {
    Message::Error {
        code,
        message: message.to_string(),
    }
}

/// Reads and discards the data of a record that is refused, so that the connection stays in
/// step; closes it instead if the stream is not a record.
fn drain(head: &RecordHead, session: &mut Session<'_>, reply: Message) -> Message {
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
fn store_reply(name: &[u8], e: StoreError) -> Message {
    error_reply(&Error::from_store(name, e))
}

/// The error reply for `e`.
pub(super) fn error_reply(e: &Error) -> Message {
    let code = match e {
        Error::NotFound { .. } => RemoteCode::NotFound,
        Error::Corrupt { .. } => RemoteCode::Corrupt,
        Error::InvalidName { .. } => RemoteCode::InvalidName,
        _ => RemoteCode::Internal,
    };
    Message::Error {
        code,
        message: e.to_string(),
    }
}
