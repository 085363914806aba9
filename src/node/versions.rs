//! Versions of object records: one writer, the responsible node, orders each object's writes.
//!
//! A version is `t << 16 | writer`: `t` is a hybrid logical clock in units of 2^16 ns
//! (65.5 µs) since the Unix epoch, and `writer` the id of the node that gave the version. `t`
//! is the wall clock, except that a new version of a name is always above every version of it
//! stored or given out here before (its `t` plus one), so:
//! - **versions are unique per write**: two versions of one name given by one node differ in
//!   `t`; given by two nodes (the responsibility moved between them), they differ in `writer`;
//! - **newer wins means the responsible node's order**: a node's versions of a name grow in the
//!   order it gives them, and a node taking over a key continues above what it holds;
//! - **no arithmetic overflows**: a version far ahead of the clock is refused on arrival
//!   ([`check_incoming`]), so `t` cannot be pushed near its end, and every step is checked.
//!
//! Versions written by earlier releases (wall-clock nanoseconds) have the same magnitude, so a
//! store written by them keeps its order.
//!
//! Why not per-object counters or vector clocks: a counter needs the old holders' state to
//! continue after the responsibility moves (a crash loses it), and version vectors let two
//! writes both survive as siblings, which a get of one object cannot return. The clock needs
//! nothing but the stored record, and the tie-break by writer keeps versions unique even when
//! two nodes believe for a moment that they are responsible.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use crate::id::Id;

/// Bits of a version that name the node that gave it.
const WRITER_BITS: u32 = 16;

/// How far ahead of this node's clock a version may be before it is refused: far beyond any
/// sane clock skew between nodes, far below the clock's range (2^48 units, about 584 years).
pub const MAX_VERSION_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Nanoseconds since the Unix epoch by this machine's clock (0 before it).
pub(crate) fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The version after `floor` (if any) that `writer` gives at `now_ns`; `None` if the clock's
/// range is used up (which [`check_incoming`] keeps from happening).
pub(crate) fn next_version(now_ns: u64, floor: Option<u64>, writer: Id) -> Option<u64> {
    let clock = now_ns >> WRITER_BITS;
    let t = match floor {
        Some(f) => clock.max((f >> WRITER_BITS).checked_add(1)?),
        None => clock,
    };
    // `t` has at most 48 bits left after the shift: check it fits.
    let shifted = t.checked_shl(WRITER_BITS)?;
    (shifted >> WRITER_BITS == t).then_some(shifted | u64::from(writer.0))
}

/// The node that gave `version`.
pub(crate) fn writer_of(version: u64) -> Id {
    Id(version as u16) // the low 16 bits, by construction
}

/// Whether a version that arrived from elsewhere (a copy, a hand-off, a pull) is acceptable
/// at `now_ns`: not more than [`MAX_VERSION_AHEAD`] ahead of the clock.
pub(crate) fn check_incoming(version: u64, now_ns: u64) -> bool {
    let ahead = u64::try_from(MAX_VERSION_AHEAD.as_nanos()).unwrap_or(u64::MAX);
    version <= now_ns.saturating_add(ahead)
}

/// Names with writes in flight: the last version given, and the versions in flight.
type InFlight = HashMap<Vec<u8>, (u64, BTreeSet<u64>)>;

/// Hands out versions for writes of this node, and has the writes of one name commit in
/// the order of their versions: the last version given to a write not yet finished is
/// remembered per name, with the versions still in flight.
pub(crate) struct VersionClock {
    writer: Id,
    in_flight: Mutex<InFlight>,
    /// Signalled when a write finishes, for those waiting for their turn.
    finished: Condvar,
}

/// A version given to a write in flight; dropping it ends the write's claim on the name.
pub(crate) struct Ticket<'a> {
    clock: &'a VersionClock,
    name: Vec<u8>,
    /// The version given.
    pub version: u64,
}

impl VersionClock {
    /// A clock for the node `writer`.
    pub(crate) fn new(writer: Id) -> VersionClock {
        VersionClock {
            writer,
            in_flight: Mutex::new(HashMap::new()),
            finished: Condvar::new(),
        }
    }

    /// A version for a new write of `name` at `now_ns`, above the stored one that `stored`
    /// reads and above every version given to a write of `name` still in flight. `None` if
    /// no version is left (refuse the write).
    ///
    /// `stored` runs under this clock's lock, so that a write that finishes meanwhile is seen
    /// either as stored or as in flight: reading one record header, it is brief.
    pub(crate) fn begin(
        &self,
        name: &[u8],
        now_ns: u64,
        stored: impl FnOnce() -> Option<u64>,
    ) -> Option<Ticket<'_>> {
        let mut in_flight = self.in_flight.lock();
        let floor = match in_flight.get(name) {
            Some((last, _)) => Some(*last),
            None => stored(),
        };
        let version = next_version(now_ns, floor, self.writer)?;
        let (last, pending) = in_flight.entry(name.to_vec()).or_default();
        *last = version;
        pending.insert(version);
        Some(Ticket {
            clock: self,
            name: name.to_vec(),
            version,
        })
    }
}

impl Ticket<'_> {
    /// Waits (at most `limit`) until every write of this name with an older version has
    /// finished, so that commits happen in version order: what a write replaces is then the
    /// write just before it. Waiting holds no lock; writes of a name are rarely concurrent,
    /// and each takes the time of one disk write once its data is in.
    pub(crate) fn wait_turn(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut in_flight = self.clock.in_flight.lock();
        while in_flight
            .get(&self.name)
            .and_then(|(_, pending)| pending.first())
            .is_some_and(|&first| first < self.version)
        {
            if self
                .clock
                .finished
                .wait_until(&mut in_flight, deadline)
                .timed_out()
            {
                log::warn!(
                    "a write older than version {} is stuck; going on",
                    self.version
                );
                return;
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.clock.in_flight.lock();
        if let Some((_, pending)) = in_flight.get_mut(&self.name) {
            pending.remove(&self.version);
            if pending.is_empty() {
                in_flight.remove(&self.name);
            }
            self.clock.finished.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000_000_000; // late 2026, in ns

    #[test]
    fn versions_follow_the_clock_and_carry_the_writer() {
        let v = next_version(NOW, None, Id(0xabcd)).unwrap();
        assert_eq!(v & 0xffff, 0xabcd);
        assert_eq!(v >> 16, NOW >> 16);
        // A stored version in the past does not hold the clock back.
        assert_eq!(
            next_version(NOW, Some(5), Id(1)),
            Some((NOW >> 16) << 16 | 1)
        );
    }

    #[test]
    fn a_new_version_is_above_the_floor_whatever_the_clock() {
        for floor in [NOW, NOW + 1, NOW + (1 << 30), (NOW >> 16) << 16 | 0xffff] {
            for writer in [0, 1, 0xffff] {
                let v = next_version(NOW - 1_000_000, Some(floor), Id(writer)).unwrap();
                assert!(v > floor, "{v} after {floor}");
            }
        }
    }

    #[test]
    fn the_end_of_the_clock_is_refused_not_wrapped() {
        assert_eq!(next_version(NOW, Some(u64::MAX), Id(1)), None);
        assert_eq!(next_version(u64::MAX, None, Id(1)), Some(u64::MAX - 0xfffe));
        assert_eq!(
            next_version(NOW, Some(u64::MAX - (1 << 16)), Id(2)),
            Some(u64::MAX - 0xfffd)
        );
    }

    #[test]
    fn versions_far_ahead_are_refused() {
        assert!(check_incoming(NOW, NOW));
        assert!(check_incoming(NOW + 3_600_000_000_000, NOW));
        assert!(!check_incoming(u64::MAX, NOW));
        assert!(!check_incoming(NOW + 2 * 24 * 3_600_000_000_000, NOW));
    }

    #[test]
    fn concurrent_writes_of_a_name_get_increasing_versions() {
        let clock = VersionClock::new(Id(7));
        let a = clock.begin(b"x", NOW, || None).unwrap();
        // Same clock reading, nothing stored yet: still above the one in flight.
        let b = clock.begin(b"x", NOW, || None).unwrap();
        assert!(b.version > a.version);
        drop(a);
        let c = clock.begin(b"x", NOW, || None).unwrap();
        assert!(c.version > b.version);
        drop((b, c));
        // Nothing in flight: the stored version is the floor again.
        assert!(clock.in_flight.lock().is_empty());
        let d = clock.begin(b"x", NOW, || Some(NOW + (1 << 20))).unwrap();
        assert!(d.version > NOW + (1 << 20));
        // Other names are independent.
        let e = clock.begin(b"y", NOW, || None).unwrap();
        assert_eq!(e.version, (NOW >> 16) << 16 | 7);
    }

    #[test]
    fn a_write_waits_for_the_older_ones_of_its_name() {
        let clock = VersionClock::new(Id(7));
        let older = clock.begin(b"x", NOW, || None).unwrap();
        let newer = clock.begin(b"x", NOW, || None).unwrap();
        let other = clock.begin(b"y", NOW, || None).unwrap();
        other.wait_turn(Duration::from_secs(5)); // another name: no wait
        let released = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiting = s.spawn(|| {
                newer.wait_turn(Duration::from_secs(30));
                released.load(std::sync::atomic::Ordering::SeqCst)
            });
            std::thread::sleep(Duration::from_millis(20)); // let it start waiting
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(older);
            assert!(
                waiting.join().unwrap(),
                "went on before the older write finished"
            );
        });
    }
}
