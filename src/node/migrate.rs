//! Moving objects to the node responsible for them: pulls when a node joins, hand-offs when a
//! node leaves, and the rebalance that pushes away what a node no longer owns.
//!
//! One rule keeps every move safe: a copy is deleted only after its new holder has confirmed
//! holding a version at least as new, and only if it was not rewritten in between.

use crate::error::{Error, Result};

use crate::id::NodeInfo;
use crate::store::{RecordMeta, StoreError};
use crate::transfer::{lossy, recv_record, send_whole_record, SliceSource};
use crate::wire::{Message, RecordHead};

use super::objects::head_of;
use super::versions::{check_incoming, wall_clock_ns};
use super::Inner;
use crate::protocol::objects::{bring_up_to_date, HandOff, Rebalance, HOLDS_BATCH};

/// A holder's answer about some records: the names it holds older, and those it lacks.
type Lacking = (Vec<Vec<u8>>, Vec<Vec<u8>>);

impl Inner {
    /// One rebalance pass ([`Rebalance`]): every record goes where it belongs. Returns
    /// whether everything was done.
    pub(super) fn rebalance(&self) -> bool {
        let records = match self.objects.store.records() {
            Ok(records) => records,
            Err(e) => {
                log::warn!("node {}: cannot list objects: {e}", self.me);
                return false;
            }
        };
        let (mut pass, unknown) = {
            let core = self.core.read();
            let pass = Rebalance::new(core.state(), self.config.replicas, self.keeping(), records);
            let unknown = pass.unknown(core.state());
            (pass, unknown)
        };
        for (key, responsible) in unknown {
            let responsible = match responsible {
                Some(node) => node,
                None => match self.lookup(key) {
                    Ok(route) => route.responsible(),
                    Err(e) => {
                        log::debug!("node {}: holders of {key} unknown: {e}", self.me);
                        pass.not_found();
                        continue;
                    }
                },
            };
            let reply = if responsible.id == self.me.id {
                None
            } else {
                self.pool
                    .call(responsible.addr, &Message::Replicas { key })
                    .inspect_err(|e| log::debug!("node {}: holders of {key} unknown: {e}", self.me))
                    .ok()
                    .map(|answer| self.unvouch(answer, None))
            };
            pass.found(key, responsible, reply);
        }
        for (holder, batch) in pass.asks() {
            let Ok((older, absent)) = self.ask_holds(holder, &batch) else {
                pass.failed();
                continue;
            };
            for meta in pass.answered(&batch, &older, &absent) {
                let confirmed = self.push_logged(holder, &meta);
                pass.sent(&meta.name, confirmed);
            }
        }
        let (drops, mut done) = pass.finish();
        for meta in drops {
            // Unless it changed meanwhile.
            match self.objects.store.remove(&meta.name, meta.version) {
                Ok(true) => log::debug!(
                    "node {}: dropped {:?} ({}), kept by its holders",
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
        done
    }

    /// Asks `holder` which of `batch` it holds older and which not at all.
    fn ask_holds(&self, holder: NodeInfo, batch: &[RecordMeta]) -> Result<Lacking> {
        let request = Message::Holds {
            records: batch.iter().map(|m| (m.name.clone(), m.version)).collect(),
        };
        let answer = match self.pool.call(holder.addr, &request) {
            Ok(Message::Lacking { older, absent }) => Ok((older, absent)),
            Ok(other) => Err(Error::unexpected_reply(holder.addr, "Lacking", &other)),
            Err(e) => Err(e),
        };
        if let Err(e) = &answer {
            log::debug!("node {}: {holder} not brought up to date: {e}", self.me);
        }
        answer
    }

    /// [`push_record`](Self::push_record), reporting whether `to` confirmed it.
    fn push_logged(&self, to: NodeInfo, meta: &RecordMeta) -> bool {
        match self.push_record(to, meta) {
            Ok(_) => true,
            Err(e) => {
                log::debug!("node {}: push to {to} failed: {e}", self.me);
                false
            }
        }
    }

    /// Brings `holder` up to date with `metas`: returns the names it now holds (or need not
    /// be sent), or why it could not be asked.
    fn bring_up_to_date(&self, holder: NodeInfo, metas: &[RecordMeta]) -> Result<Vec<Vec<u8>>> {
        let keeping = self.keeping();
        let mut reached = Vec::with_capacity(metas.len());
        for batch in metas.chunks(HOLDS_BATCH) {
            let (older, absent) = self.ask_holds(holder, batch)?;
            let answered = bring_up_to_date(batch, &older, &absent, &keeping);
            reached.extend(answered.counted.into_iter().map(|(name, _)| name));
            for meta in answered.send {
                if self.push_logged(holder, &meta) {
                    reached.push(meta.name);
                }
            }
        }
        Ok(reached)
    }

    /// Sends the current version of `meta`'s record to `to` as a hand-off. Returns what was
    /// sent once `to` holds that version or a newer one, `None` if the record is gone here.
    fn push_record(&self, to: NodeInfo, meta: &RecordMeta) -> Result<Option<RecordMeta>> {
        let reader = if meta.deleted {
            None
        } else {
            match self.objects.store.reader(&meta.name) {
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

    /// Hands every record to the nodes that keep it once this one is gone ([`HandOff`])
    /// before leaving. Returns what at least one of them now holds, to be deleted once this
    /// node is gone from the others' tables; fails if some record could not be handed to any.
    pub(super) fn hand_off_all(&self) -> Result<Vec<RecordMeta>> {
        let records = self
            .objects
            .store
            .records()
            .map_err(|e| Error::from_store(b"", e))?;
        // Apart, so that no lock on the core is held while discovery is asked.
        let no_neighbour = self.core.read().state().leaf_set().members().is_empty();
        let last = no_neighbour && self.alone();
        let mut handoff = HandOff::new(
            self.core.read().state(),
            self.config.replicas,
            records,
            last,
        );
        loop {
            let round = handoff.round();
            if round.is_empty() {
                break;
            }
            for (holder, metas) in round {
                match self.bring_up_to_date(holder, &metas) {
                    Ok(reached) => handoff.answered(holder, metas.len(), reached),
                    Err(e) => {
                        log::debug!("node {}: hand-off to {holder} failed: {e}", self.me);
                        handoff.failed(holder, e);
                    }
                }
            }
        }
        handoff.finish()
    }

    /// Whether discovery knows no other node (or this node has no discovery): a node with an
    /// empty leaf set is then the last of its overlay, not cut off from the others. Unknown
    /// (discovery unreachable) counts as not alone.
    pub(super) fn alone(&self) -> bool {
        let Some(addr) = *self.discovery.lock() else {
            return true;
        };
        let link = crate::calls::discovery::DiscoveryLink {
            pool: &self.pool,
            addr,
        };
        link.peers()
            .is_ok_and(|peers| peers.iter().all(|p| p.id == self.me.id))
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
                    .objects
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
