//! The rules that decide where a node's copies go and when one may be dropped, with time
//! passed in: what a holder's answer about a record asks of this node, and what becomes of
//! this node's own copy once its holders answered. The node's maintenance (`node/migrate.rs`)
//! asks the holders and moves the bytes; these decide.
//!
//! A deletion record (tombstone) is kept for the node's tombstone grace after its delete,
//! then collected once every holder has it or holds nothing of the name. A node started
//! again after an absence longer than that treats the records it kept from before as
//! unconfirmed: it never sends one to a holder that holds nothing of the name, and drops it
//! when no other holder holds the name at all (it was deleted, and the deletion record
//! collected, while the node was away).

use crate::store::RecordMeta;

/// What a node is to do with one of its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
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
pub enum Reach {
    /// That version or a newer one (perhaps just sent).
    Holds,
    /// Nothing of the name, and it was not sent the record.
    Absent,
}

/// How a node judges its records at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Keeping {
    now_ns: u64,
    grace_ns: u64,
    /// Records up to this version are unconfirmed: the node's start after an absence
    /// longer than the grace period.
    unconfirmed_before: Option<u64>,
}

impl Keeping {
    /// The judgement at `now_ns` (the wall clock, in nanoseconds since the Unix epoch) of a
    /// node that keeps deletion records `grace_ns` and, if it came back from a long
    /// absence, started then at `unconfirmed_before`.
    pub fn new(now_ns: u64, grace_ns: u64, unconfirmed_before: Option<u64>) -> Keeping {
        Keeping {
            now_ns,
            grace_ns,
            unconfirmed_before,
        }
    }

    /// What to do with `meta`. Versions are the writer's clock in nanoseconds (give or take
    /// 65 µs), so a version tells a record's age.
    pub fn verdict(&self, meta: &RecordMeta) -> Verdict {
        if meta.deleted && self.now_ns.saturating_sub(meta.version) > self.grace_ns {
            Verdict::Expired
        } else if self.unconfirmed_before.is_some_and(|t| meta.version <= t) {
            Verdict::Unconfirmed
        } else {
            Verdict::Current
        }
    }
}

/// What a holder said it has of a record this node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// This version or a newer one.
    AsNew,
    /// An older version (or a damaged copy).
    Older,
    /// Nothing of the name.
    Nothing,
}

/// What a holder's answer asks of this node: send it the record, or count what it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the record; once the holder confirms, it [`Reach::Holds`] it.
    Send,
    /// Nothing to send: count this.
    Count(Reach),
}

/// What to do about a holder that `held` a record judged `verdict`.
pub fn step(held: Held, verdict: Verdict) -> Step {
    match held {
        Held::AsNew => Step::Count(Reach::Holds),
        // Nothing there to overwrite: an expired deletion record need not go, and a record
        // kept from before a long absence waits for another holder's word.
        Held::Nothing if verdict != Verdict::Current => Step::Count(Reach::Absent),
        Held::Nothing | Held::Older => Step::Send,
    }
}

/// What becomes of this node's copy once its other holders answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Kept: this node is one of its holders.
    Keep,
    /// Deleted here (unless it changed meanwhile).
    Drop,
    /// Kept for now: not every holder has it yet; the next pass tries again.
    Unsettled,
}

/// The fate of a copy judged `verdict`, when `others` of its holders are other nodes (this
/// node is one of them if `mine`), `holding` of them hold it and `absent` hold nothing of
/// the name.
pub fn fate(verdict: Verdict, holding: usize, absent: usize, others: usize, mine: bool) -> Fate {
    let keep_unless_mine = if mine { Fate::Keep } else { Fate::Drop };
    match verdict {
        // Deletion records past their grace go once no holder has the name older.
        Verdict::Expired if holding + absent == others => Fate::Drop,
        // Kept from before a long absence, and no other holder knows it: deleted and
        // collected meanwhile (it must not come back).
        Verdict::Unconfirmed if others > 0 && absent == others => Fate::Drop,
        Verdict::Unconfirmed if holding > 0 => keep_unless_mine,
        _ if holding == others => keep_unless_mine,
        _ => Fate::Unsettled,
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
    fn only_current_records_go_to_a_holder_with_nothing() {
        use Verdict::*;
        assert_eq!(step(Held::Older, Unconfirmed), Step::Send);
        assert_eq!(step(Held::Nothing, Current), Step::Send);
        assert_eq!(step(Held::Nothing, Expired), Step::Count(Reach::Absent));
        assert_eq!(step(Held::Nothing, Unconfirmed), Step::Count(Reach::Absent));
        assert_eq!(step(Held::AsNew, Current), Step::Count(Reach::Holds));
    }

    #[test]
    fn a_copy_goes_only_when_its_holders_have_it_or_it_must_not_come_back() {
        use Verdict::*;
        // Every other holder has it: kept by a holder, dropped by a node that is not one.
        assert_eq!(fate(Current, 2, 0, 2, true), Fate::Keep);
        assert_eq!(fate(Current, 3, 0, 3, false), Fate::Drop);
        assert_eq!(fate(Current, 1, 1, 2, false), Fate::Unsettled);
        // An expired deletion record goes once no holder has the name older.
        assert_eq!(fate(Expired, 1, 1, 2, true), Fate::Drop);
        assert_eq!(fate(Expired, 1, 0, 2, true), Fate::Unsettled);
        // An unconfirmed record nobody else knows was deleted meanwhile.
        assert_eq!(fate(Unconfirmed, 0, 2, 2, true), Fate::Drop);
        assert_eq!(fate(Unconfirmed, 1, 1, 2, true), Fate::Keep);
        // The only holder: nobody to confirm it, nobody to say it was deleted.
        assert_eq!(fate(Unconfirmed, 0, 0, 0, true), Fate::Keep);
    }
}
