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
use std::collections::HashMap;

use crate::id::{Key, NodeInfo};
use crate::store::{RecordMeta, StoreError};
use crate::transfer::{lossy, recv_record, send_whole_record, SliceSource};
use crate::wire::{Message, RecordHead};

use super::objects::head_of;
use super::versions::{check_incoming, wall_clock_ns};
use super::{Inner, Phase};
use crate::protocol::placement::{self, Fate, Held, Keeping, Reach, Step, Verdict};

/// Records asked about in one [`Message::Holds`]: keeps the frame far below the payload limit
/// even with long names.
const HOLDS_BATCH: usize = 256;

/// Maintenance rounds between full copy checks when nothing woke one: the safety net that
/// bounds how long any object stays off its best-placed nodes, even if a change was missed.
const FULL_CHECK_EVERY: u64 = 5;

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
                let due = Instant::now() >= next_probe;
                if due {
                    // Moved on whatever the phase, so that a node not (or no longer) joined
                    // waits a whole interval instead of spinning.
                    next_probe = Instant::now() + interval;
                    inner.pool.close_idle();
                }
                if inner.phase() != Phase::Joined {
                    continue;
                }
                if due {
                    inner.maintain_overlay();
                    if probes % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1 {
                        pending = true;
                    }
                    probes += 1;
                }
                inner.repair_scheduled();
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

    /// Puts every record where it belongs: each of its replica holders gets the current
    /// version if it lacks it, and a copy this node should not keep is deleted once all of
    /// them confirmed. Also collects deletion records past their grace period once every
    /// holder has them (or nothing of the name), and drops a record kept from before a long
    /// absence that no other holder knows ([`Keeping`]). Returns whether everything was done.
    fn rebalance(&self) -> bool {
        let records = match self.store.records() {
            Ok(records) => records,
            Err(e) => {
                log::warn!("node {}: cannot list objects: {e}", self.me);
                return false;
            }
        };
        let keeping = self.keeping();
        let mut done = true;
        // Where each record should be, and which records go to each other holder.
        let mut placements: Vec<(RecordMeta, Vec<NodeInfo>)> = Vec::with_capacity(records.len());
        let mut by_holder: HashMap<NodeInfo, Vec<RecordMeta>> = HashMap::new();
        // Names that share a key share its holders: asked for once a pass.
        let mut holders_by_key: HashMap<Key, Option<Vec<NodeInfo>>> = HashMap::new();
        for meta in records {
            let found = holders_by_key
                .entry(meta.key)
                .or_insert_with(|| self.holders_of(meta.key));
            let Some(holders) = found.clone() else {
                done = false;
                continue;
            };
            for h in holders.iter().filter(|h| h.id != self.me.id) {
                by_holder.entry(*h).or_default().push(meta.clone());
            }
            placements.push((meta, holders));
        }
        // What each other holder has of each record, by name: (holds it, holds nothing).
        let mut reached: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
        for (holder, metas) in by_holder {
            match self.bring_up_to_date(holder, &metas, &keeping) {
                Ok(answers) => {
                    for (name, reach) in answers {
                        let counts = reached.entry(name).or_default();
                        match reach {
                            Reach::Holds => counts.0 += 1,
                            Reach::Absent => counts.1 += 1,
                        }
                    }
                }
                Err(e) => {
                    log::debug!("node {}: {holder} not brought up to date: {e}", self.me);
                    done = false;
                }
            }
        }
        for (meta, holders) in placements {
            let others = holders.iter().filter(|h| h.id != self.me.id).count();
            let (holding, absent) = reached.get(&meta.name).copied().unwrap_or_default();
            let mine = others < holders.len();
            let verdict = keeping.verdict(&meta);
            let drop = match placement::fate(verdict, holding, absent, others, mine) {
                Fate::Drop => {
                    if verdict == Verdict::Unconfirmed && others > 0 && absent == others {
                        log::info!(
                            "node {}: dropping {:?}, unknown to its holders since this node was away",
                            self.me,
                            lossy(&meta.name)
                        );
                    }
                    true
                }
                Fate::Keep => false,
                Fate::Unsettled => {
                    done = false;
                    false
                }
            };
            if drop {
                // Unless it changed meanwhile.
                match self.store.remove(&meta.name, meta.version) {
                    Ok(true) => log::debug!(
                        "node {}: dropped {:?} ({}), kept by {holders:?}",
                        self.me,
                        lossy(&meta.name),
                        meta.key
                    ),
                    Ok(false) => done = false,
                    Err(e) => {
                        log::warn!("node {}: cannot drop a copy: {e}", self.me);
                        done = false;
                    }
                }
            }
        }
        done
    }

    /// The nodes that should hold records of `key`: its replica set when this node can be
    /// sure of it; else the set the node responsible for it gives (found in the leaf set, or
    /// by a lookup), which sees every holder of its keys. `None` if that failed.
    fn holders_of(&self, key: Key) -> Option<Vec<NodeInfo>> {
        let responsible = {
            let core = self.core.read();
            let state = core.state();
            if let Some(set) = state.exact_replica_set(key, self.config.replicas) {
                return Some(set);
            }
            state
                .leaf_set()
                .covers(key)
                .then(|| state.route(key, |_| false))
        };
        let responsible = match responsible {
            Some(node) => node,
            None => self.lookup(key).ok()?.responsible(),
        };
        if responsible.id == self.me.id {
            return None; // this node's own view was not sure a moment ago: try again later
        }
        match self.pool.call(responsible.addr, &Message::Replicas { key }) {
            Ok(Message::ReplicaSet { nodes }) if nodes.len() < self.config.replicas => {
                let mut holders = vec![responsible];
                holders.extend(nodes.into_iter().filter(|n| n.id != responsible.id));
                Some(holders)
            }
            Ok(other) => {
                let e = Error::unexpected_reply(responsible.addr, "ReplicaSet", &other);
                log::debug!("node {}: {e}", self.me);
                None
            }
            Err(e) => {
                log::debug!("node {}: holders of {key} unknown: {e}", self.me);
                None
            }
        }
    }

    /// Asks `holder` which of `metas` it lacks and pushes those that `keeping` says must
    /// reach it. Returns, for each record it answered about, whether it now holds that
    /// version or a newer one, or holds nothing of the name and was not sent it.
    fn bring_up_to_date(
        &self,
        holder: NodeInfo,
        metas: &[RecordMeta],
        keeping: &Keeping,
    ) -> Result<Vec<(Vec<u8>, Reach)>> {
        let mut answers = Vec::with_capacity(metas.len());
        for batch in metas.chunks(HOLDS_BATCH) {
            let request = Message::Holds {
                records: batch.iter().map(|m| (m.name.clone(), m.version)).collect(),
            };
            let (older, absent) = match self.pool.call(holder.addr, &request)? {
                Message::Lacking { older, absent } => (older, absent),
                other => return Err(Error::unexpected_reply(holder.addr, "Lacking", &other)),
            };
            for meta in batch {
                let held = if absent.contains(&meta.name) {
                    Held::Nothing
                } else if older.contains(&meta.name) {
                    Held::Older
                } else {
                    Held::AsNew
                };
                if let Step::Count(reach) = placement::step(held, keeping.verdict(meta)) {
                    answers.push((meta.name.clone(), reach));
                    continue;
                }
                match self.push_record(holder, meta) {
                    Ok(_) => answers.push((meta.name.clone(), Reach::Holds)),
                    Err(e) => log::debug!("node {}: push to {holder} failed: {e}", self.me),
                }
            }
        }
        Ok(answers)
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
                other => Err(Error::unexpected_reply(to.addr, "Stored", &other)),
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

    /// Hands every record to the nodes that keep it once this one is gone (the `k` best
    /// placed among the leaf set) before leaving. Returns what at least one of them now holds,
    /// to be deleted once this node is gone from the others' tables; fails if some record
    /// could not be handed to any of them. The maintenance of the new holders restores the
    /// full count of copies if some were unreachable.
    pub(super) fn hand_off_all(&self) -> Result<Vec<RecordMeta>> {
        let records = self
            .store
            .records()
            .map_err(|e| Error::from_store(b"", e))?;
        let members = self.core.read().state().leaf_set().members();
        if members.is_empty() {
            return Ok(Vec::new()); // the last node: nowhere to go, the data stays on disk
        }
        let keeping = self.keeping();
        let mut held: HashMap<Vec<u8>, usize> = HashMap::new();
        // Members that refused or failed (leaving too, say): the next best placed take their
        // place. Each round excludes at least one more member, or ends.
        let mut excluded: Vec<NodeInfo> = Vec::new();
        let mut last_error = None;
        for _ in 0..=members.len() {
            let mut by_holder: HashMap<NodeInfo, Vec<RecordMeta>> = HashMap::new();
            for meta in records.iter().filter(|m| !held.contains_key(&m.name)) {
                let mut holders: Vec<NodeInfo> = members
                    .iter()
                    .filter(|m| !excluded.contains(m))
                    .copied()
                    .collect();
                holders.sort_by(|a, b| a.id.cmp_for_key(b.id, meta.key));
                holders.truncate(self.config.replicas);
                for h in holders {
                    by_holder.entry(h).or_default().push(meta.clone());
                }
            }
            if by_holder.is_empty() {
                break;
            }
            for (holder, metas) in by_holder {
                match self.bring_up_to_date(holder, &metas, &keeping) {
                    Ok(answers) => {
                        if answers.len() < metas.len() {
                            excluded.push(holder); // it refused some: leaving too, perhaps
                        }
                        // An expired deletion record or an unconfirmed record left behind
                        // is no loss.
                        for (name, _) in answers {
                            *held.entry(name).or_default() += 1;
                        }
                    }
                    Err(e) => {
                        log::debug!("node {}: hand-off to {holder} failed: {e}", self.me);
                        excluded.push(holder);
                        last_error = Some(e);
                    }
                }
            }
        }
        let (handed, stranded): (Vec<RecordMeta>, Vec<RecordMeta>) = records
            .into_iter()
            .partition(|m| held.get(&m.name).is_some_and(|&n| n > 0));
        if let Some(meta) = stranded.first() {
            return Err(last_error.unwrap_or_else(|| Error::Protocol {
                addr: self.me.addr,
                what: format!("no neighbour took {:?}", crate::transfer::lossy(&meta.name)),
            }));
        }
        Ok(handed)
    }

    /// Pulls, while joining, copies of the records this node will be responsible for from its
    /// nearest neighbours on each side (who held them until now). Best effort: whatever is
    /// missed is pushed by their rebalancing once they know of this node.
    pub(super) fn pull_from_neighbours(&self) {
        let nearest: Vec<NodeInfo> = {
            let core = self.core.read();
            let state = core.state();
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
                    Message::Record(head) if check_incoming(head.version, wall_clock_ns()) => head,
                    Message::Ack => return Ok(stored),
                    other => return Err(Error::unexpected_reply(node.addr, "Record", &other)),
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
