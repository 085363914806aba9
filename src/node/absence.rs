//! How long deletion records are kept, and what a node does with records it kept through a
//! long absence.
//!
//! A deletion record (tombstone) is kept for [`NodeConfig::tombstone_grace`] after its delete,
//! then collected once every holder has it or holds nothing of the name (a holder with an
//! older copy is sent the deletion record first, however old).
//!
//! What keeps a holder that was away longer than that from bringing a deleted object back
//! with its old copy: a node notes in its data directory when it was last alive (every few
//! maintenance rounds). Started again after an absence longer than the grace period, it
//! treats the records it kept from before as unconfirmed: it never sends one to a holder
//! that holds nothing of the name, and drops it when no other holder holds the name at all
//! (it was deleted, and the deletion record collected, while this node was away). The one
//! case this cannot catch: every holder of the object away longer than the grace period.
//!
//! [`NodeConfig::tombstone_grace`]: super::NodeConfig::tombstone_grace

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::store::RecordMeta;

use super::versions::wall_clock_ns;
use super::Inner;

/// The file in a node's data directory that says when it was last alive (nanoseconds since
/// the Unix epoch, in decimal).
pub const LAST_ALIVE_FILE: &str = "last-alive";

/// What this node is to do with one of its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Kept and copied to its holders as usual.
    Current,
    /// A deletion record past its grace period: collected once no holder has the name older.
    Expired,
    /// Kept from before an absence longer than the grace period: only another holder's copy
    /// confirms it.
    Unconfirmed,
}

/// What a holder has of a record after a copy check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reach {
    /// That version or a newer one (perhaps just sent).
    Holds,
    /// Nothing of the name, and it was not sent the record.
    Absent,
}

/// How this node judges its records at one moment.
pub(super) struct Keeping {
    now_ns: u64,
    grace_ns: u64,
    /// Records up to this version are unconfirmed: this node's start after an absence
    /// longer than the grace period.
    unconfirmed_before: Option<u64>,
}

impl Keeping {
    pub(super) fn new(now_ns: u64, grace_ns: u64, unconfirmed_before: Option<u64>) -> Keeping {
        Keeping {
            now_ns,
            grace_ns,
            unconfirmed_before,
        }
    }

    /// What to do with `meta`. Versions are the writer's clock in nanoseconds (give or take
    /// 65 µs), so a version tells a record's age.
    pub(super) fn verdict(&self, meta: &RecordMeta) -> Verdict {
        if meta.deleted && self.now_ns.saturating_sub(meta.version) > self.grace_ns {
            Verdict::Expired
        } else if self.unconfirmed_before.is_some_and(|t| meta.version <= t) {
            Verdict::Unconfirmed
        } else {
            Verdict::Current
        }
    }
}

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
    /// How this node judges its records now.
    pub(super) fn keeping(&self) -> Keeping {
        let grace = nanos(self.config.tombstone_grace);
        Keeping::new(wall_clock_ns(), grace, self.unconfirmed_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn record(version: u64, deleted: bool) -> RecordMeta {
        RecordMeta {
            name: b"x".to_vec(),
            key: Id(0),
            size: 0,
            version,
            crc: 0,
            deleted,
        }
    }

    #[test]
    fn deletion_records_expire_after_the_grace_and_old_records_wait_for_confirmation() {
        let keeping = Keeping::new(1_000, 100, None);
        assert_eq!(keeping.verdict(&record(950, true)), Verdict::Current);
        assert_eq!(keeping.verdict(&record(899, true)), Verdict::Expired);
        assert_eq!(keeping.verdict(&record(1, false)), Verdict::Current);
        // A version ahead of the clock is not expired.
        assert_eq!(keeping.verdict(&record(5_000, true)), Verdict::Current);

        let back = Keeping::new(1_000, 100, Some(700));
        assert_eq!(back.verdict(&record(700, false)), Verdict::Unconfirmed);
        assert_eq!(back.verdict(&record(701, false)), Verdict::Current);
        assert_eq!(back.verdict(&record(600, true)), Verdict::Expired);
    }

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
