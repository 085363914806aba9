//! The clock of a node's absences: when it was last alive, noted in its data directory, and
//! whether it comes back from an absence longer than the grace of deletion records (the
//! rules for its records then are in [`crate::protocol::placement`]).
//!
//! A deletion record (tombstone) is kept for [`NodeConfig::tombstone_grace`] after its delete,
//! then collected once every holder has it or holds nothing of the name (a holder with an
//! older copy is sent the deletion record first, however old).
//!
//! What keeps a holder that was away longer than that from bringing a deleted object back
//! with its old copy: a node notes in its data directory when it was last alive (every
//! minute, or every sixteenth of the grace if that is shorter). Started again after an
//! absence longer than the grace period, it treats the records it kept from before as
//! unconfirmed: it never sends one to a holder that holds nothing of the name, and drops it
//! when no other holder holds the name at all (it was deleted, and the deletion record
//! collected, while this node was away). The one case this cannot catch: every holder of
//! the object away longer than the grace period.
//!
//! [`NodeConfig::tombstone_grace`]: super::NodeConfig::tombstone_grace

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::protocol::placement::Keeping;

use super::versions::wall_clock_ns;
use super::Inner;

/// The file in a node's data directory that says when it was last alive (nanoseconds since
/// the Unix epoch, in decimal).
pub const LAST_ALIVE_FILE: &str = "last-alive";

/// Longest between two notes that the node is alive (a sixteenth of the grace if that is
/// shorter). A note this old at a crash makes the absence seem longer than it was, which
/// errs on the safe side: the records kept wait for confirmation sooner, never later.
const NOTE_EVERY: Duration = Duration::from_secs(60);

/// When the node with the data directory `dir` noted it was last alive; `None` if it never
/// did (a new directory) or the note cannot be read.
pub(super) fn last_alive(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join(LAST_ALIVE_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// For a node starting at `now_ns` on the data directory `dir`: if it was away longer than
/// `grace`, the records kept from before this start (versions up to `now_ns`) wait for
/// confirmation, and this returns `now_ns`.
pub(super) fn unconfirmed_before(dir: &Path, now_ns: u64, grace: Duration) -> Option<u64> {
    let t = last_alive(dir).filter(|&t| now_ns.saturating_sub(t) > nanos(grace))?;
    log::warn!(
        "away since {t} ns, longer than the tombstone grace: the records kept in {} wait for confirmation",
        dir.display()
    );
    Some(now_ns)
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Notes in `dir` that its node is alive at `now_ns`. Written aside and renamed, so that a
/// crash leaves the old note or the new one; not synced (an absence is judged in hours).
pub(super) fn note_alive(dir: &Path, now_ns: u64) {
    let tmp = dir.join(format!("{LAST_ALIVE_FILE}.tmp"));
    let written = fs::write(&tmp, now_ns.to_string())
        .and_then(|()| fs::rename(&tmp, dir.join(LAST_ALIVE_FILE)));
    if let Err(e) = written {
        log::warn!(
            "cannot note that the node is alive in {}: {e}",
            dir.display()
        );
    }
}

impl Inner {
    /// Notes that this node is alive, unless it did less than [`NOTE_EVERY`] ago: an absence
    /// is judged in hours, and a file written and renamed every few seconds by every node of
    /// a host costs more than the rest of an idle node's upkeep on the disk.
    pub(super) fn note_alive_when_due(&self) {
        let now = wall_clock_ns();
        let every = nanos(NOTE_EVERY.min(self.config.tombstone_grace / 16));
        let noted = &self.objects.alive_noted;
        if now.saturating_sub(noted.load(Ordering::Relaxed)) < every {
            return;
        }
        noted.store(now, Ordering::Relaxed);
        note_alive(&self.objects.data_dir.path, now);
    }

    /// How this node judges its records now.
    pub(super) fn keeping(&self) -> Keeping {
        let grace = nanos(self.config.tombstone_grace);
        Keeping::new(wall_clock_ns(), grace, self.objects.unconfirmed_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alive_note_is_read_back() {
        let dir = std::env::temp_dir().join(format!("pastry-alive-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(last_alive(&dir), None);
        note_alive(&dir, 1_234_567);
        assert_eq!(last_alive(&dir), Some(1_234_567));
        fs::write(dir.join(LAST_ALIVE_FILE), "garbage").unwrap();
        assert_eq!(last_alive(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
