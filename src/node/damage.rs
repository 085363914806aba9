//! Damaged and stale copies. A get that finds this node's copy corrupt reports it (the asker
//! turns to another holder) and schedules a repair (the schedule's rules are in
//! [`crate::protocol::repairs`]), as does a write that finds another holder ahead of this
//! node; maintenance then replaces the copy with a sound one from another holder, at the
//! same version or a newer one.

use std::time::Instant;

use crate::error::Error;
use crate::id::key_of;
use crate::store::Commit;
use crate::transfer::{get_record, lossy};

use super::versions::{check_incoming, wall_clock_ns};
use super::Inner;

impl Inner {
    /// Has maintenance repair this node's copy of `name`, unless it did lately.
    pub(super) fn schedule_repair(&self, name: &[u8]) {
        let scheduled = self.objects.repairs.lock().schedule(name, Instant::now());
        if scheduled {
            self.wake_maintenance();
        }
    }

    /// Repairs the copies scheduled so far.
    pub(super) fn repair_scheduled(&self) {
        let due = self.objects.repairs.lock().take_due();
        for name in due {
            self.repair_copy(&name);
        }
    }

    /// Replaces this node's copy of `name` with a sound one from another holder, at the same
    /// version or a newer one; returns whether one was stored.
    fn repair_copy(&self, name: &[u8]) -> bool {
        for holder in self.other_replicas(key_of(name)) {
            let fetched = self.pool.session(holder.addr, |conn| {
                let (head, writer) = get_record(conn, name, false, |head| {
                    if !check_incoming(head.version, wall_clock_ns()) {
                        return Err(Error::Protocol {
                            addr: holder.addr,
                            what: format!("version {} is too far ahead", head.version),
                        });
                    }
                    self.objects
                        .store
                        .writer(name, head.version, false)
                        .map_err(|e| Error::from_store(name, e))
                })?;
                // Newest wins would keep the damaged copy at the same version: it goes first
                // (only once the sound one is here, and only if it is still that version).
                self.objects
                    .store
                    .remove(name, head.version)
                    .map_err(|e| Error::from_store(name, e))?;
                writer.finish().map_err(|e| Error::from_store(name, e))
            });
            match fetched {
                Ok(Commit::Stored(meta)) => {
                    log::info!(
                        "node {}: copy of {:?} replaced by version {} from {holder}",
                        self.me,
                        lossy(name),
                        meta.version
                    );
                    return true;
                }
                // Nothing newer there: perhaps another holder has it.
                Ok(Commit::Superseded(_)) => {}
                Err(e) => log::debug!("node {}: no sound copy from {holder}: {e}", self.me),
            }
        }
        false
    }
}
