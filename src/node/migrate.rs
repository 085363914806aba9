//! Moving objects to the node responsible for them: pulls when a node joins, hand-offs when a
//! node leaves, and the maintenance thread that pushes away what a node no longer owns.
//!
//! One rule keeps every move safe: a copy is deleted only after its new holder has confirmed
//! holding a version at least as new, and only if it was not rewritten in between.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::id::NodeInfo;
use crate::store::{RecordMeta, StoreError};
use crate::transfer::{recv_record, send_whole_record, SliceSource};
use crate::wire::{Message, RecordHead};

use super::objects::head_of;
use super::{Inner, Phase};

/// Maintenance rounds between reminders to discovery that this node is alive.
const HEARTBEAT_EVERY: u64 = 5;

/// Starts the maintenance thread: every `maintenance_interval` it checks the neighbours and
/// retries leftover work; woken early (membership changed), it rebalances at once.
pub(super) fn start_maintenance(
    inner: &Arc<Inner>,
    wakeups: Receiver<()>,
) -> Result<JoinHandle<()>> {
    let inner = Arc::clone(inner);
    thread::Builder::new()
        .name(format!("pastry-{}-maint", inner.me.id))
        .spawn(move || {
            let interval = inner.config.maintenance_interval;
            let mut pending = false;
            let mut next_probe = Instant::now() + interval;
            let mut probes = 0u64;
            loop {
                match wakeups.recv_timeout(next_probe.saturating_duration_since(Instant::now())) {
                    Ok(()) => pending = true,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return, // shut down
                }
                while wakeups.try_recv().is_ok() {} // one pass serves every wake-up so far
                if *inner.phase.lock() != Phase::Joined {
                    continue;
                }
                if Instant::now() >= next_probe {
                    inner.probe_neighbours();
                    if probes % HEARTBEAT_EVERY == 0 {
                        inner.heartbeat_discovery();
                    }
                    probes += 1;
                    next_probe = Instant::now() + interval;
                    pending = true; // retry what was left undone
                }
                if pending {
                    pending = !inner.rebalance();
                }
            }
        })
        .map_err(|e| Error::Config(format!("cannot start the maintenance thread: {e}")))
}

impl Inner {
    /// Asks the maintenance thread for a rebalance pass.
    pub(super) fn wake_maintenance(&self) {
        if let Some(wake) = self.maintenance.lock().as_ref() {
            let _ = wake.send(());
        }
    }

    /// Pushes every record this node is not responsible for to the node that is, deleting
    /// the copy here once confirmed. Returns whether everything was done.
    fn rebalance(&self) -> bool {
        let records = match self.store.records() {
            Ok(records) => records,
            Err(e) => {
                log::warn!("node {}: cannot list objects: {e}", self.me);
                return false;
            }
        };
        let mut done = true;
        for meta in records {
            if self.is_responsible(meta.key) {
                continue;
            }
            let moved = self
                .lookup(meta.key)
                .map(|route| route.responsible())
                .and_then(|holder| {
                    if holder.id == self.me.id {
                        return Ok(false); // the route says ours after all: keep it
                    }
                    self.move_record(holder, &meta)
                });
            match moved {
                Ok(true) => {}
                Ok(false) => done = false,
                Err(e) => {
                    log::debug!("node {}: {:?} not moved yet: {e}", self.me, meta.key);
                    done = false;
                }
            }
        }
        done
    }

    /// Hands `meta`'s record to `holder` and deletes it here once confirmed. Returns false if
    /// it had to stay (rewritten meanwhile, or the holder kept an older version).
    fn move_record(&self, holder: NodeInfo, meta: &RecordMeta) -> Result<bool> {
        let Some(sent) = self.push_record(holder, meta)? else {
            return Ok(true); // gone meanwhile
        };
        let removed = self
            .store
            .remove(&sent.name, sent.version)
            .map_err(|e| Error::from_store(&sent.name, e))?;
        if removed {
            log::debug!("node {}: moved {:?} to {holder}", self.me, sent.key);
        }
        Ok(removed)
    }

    /// Sends the current version of `meta`'s record to `to` as a hand-off. Returns what was
    /// sent once `to` holds that version or a newer one, `None` if the record is gone here.
    fn push_record(&self, to: NodeInfo, meta: &RecordMeta) -> Result<Option<RecordMeta>> {
        let reader = if meta.deleted {
            None
        } else {
            match self.store.reader(&meta.name) {
                Ok(reader) => Some(reader),
                Err(StoreError::NotFound) => return Ok(None),
                Err(e) => return Err(Error::from_store(&meta.name, e)),
            }
        };
        let sent = reader
            .as_ref()
            .map_or_else(|| meta.clone(), |r| r.meta().clone());
        let head = head_of(&sent, true);
        let confirmed = self.pool.session(to.addr, |conn| {
            match reader {
                Some(mut reader) => send_whole_record(conn, &head, &mut reader)?,
                None => send_whole_record(conn, &head, &mut SliceSource(&[]))?,
            }
            match conn.recv_or_fail()? {
                Message::Stored { version, .. } => Ok(version >= sent.version),
                other => Err(crate::discovery::unexpected(to.addr, "Stored", &other)),
            }
        })?;
        if confirmed {
            Ok(Some(sent))
        } else {
            Err(Error::Protocol {
                addr: to.addr,
                what: "the new holder kept an older version".into(),
            })
        }
    }

    /// Hands every record to its next holder before leaving: the nearest remaining node by
    /// the responsibility rule, or the next one if that fails. Returns what was handed over,
    /// to be deleted once the node is gone from the others' tables.
    pub(super) fn hand_off_all(&self) -> Result<Vec<RecordMeta>> {
        let records = self
            .store
            .records()
            .map_err(|e| Error::from_store(b"", e))?;
        let members = self.state.read().leaf_set().members();
        let mut handed = Vec::with_capacity(records.len());
        for meta in records {
            let mut candidates = members.clone();
            candidates.sort_by(|a, b| a.id.cmp_for_key(b.id, meta.key));
            let mut last_error = None;
            for to in candidates {
                match self.push_record(to, &meta) {
                    Ok(Some(sent)) => {
                        handed.push(sent);
                        last_error = None;
                        break;
                    }
                    Ok(None) => {
                        last_error = None;
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if let Some(e) = last_error {
                return Err(e);
            }
        }
        Ok(handed)
    }

    /// Pulls, while joining, copies of the records this node will be responsible for from its
    /// nearest neighbours on each side (who held them until now). Best effort: whatever is
    /// missed is pushed by their rebalancing once they know of this node.
    pub(super) fn pull_from_neighbours(&self) {
        let nearest: Vec<NodeInfo> = {
            let state = self.state.read();
            let leaf = state.leaf_set();
            let mut nearest: Vec<NodeInfo> = leaf.cw().first().copied().into_iter().collect();
            nearest.extend(leaf.ccw().first().filter(|n| !nearest.contains(n)));
            nearest
        };
        for node in nearest {
            match self.pull_from(node) {
                Ok(n) => log::debug!("node {}: pulled {n} records from {node}", self.me),
                Err(e) => log::warn!("node {}: pull from {node} failed: {e}", self.me),
            }
        }
    }

    /// Pulls copies from `node`; returns how many records were stored.
    fn pull_from(&self, node: NodeInfo) -> Result<usize> {
        self.pool.session(node.addr, |conn| {
            conn.send(&Message::Pull { joiner: self.me })
                .map_err(|e| conn.error(crate::net::ReadError::Io(e)))?;
            let mut stored = 0;
            loop {
                let head: RecordHead = match conn.recv_or_fail()? {
                    Message::Record(head) => head,
                    Message::Ack => return Ok(stored),
                    other => return Err(crate::discovery::unexpected(node.addr, "Record", &other)),
                };
                let mut writer = self
                    .store
                    .writer(&head.name, head.version, head.deleted)
                    .map_err(|e| Error::from_store(&head.name, e))?;
                recv_record(conn, &head, &mut writer)?;
                writer
                    .finish()
                    .map_err(|e| Error::from_store(&head.name, e))?;
                stored += 1;
            }
        })
    }
}
