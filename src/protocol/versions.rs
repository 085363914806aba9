//! Versions of object records, as rules with the clock passed in: one writer, the responsible
//! node, orders each object's writes (the node's `VersionClock` hands them out).
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

use std::time::Duration;

use crate::id::Id;

/// Bits of a version that name the node that gave it.
const WRITER_BITS: u32 = 16;

/// How far ahead of this node's clock a version may be before it is refused: far beyond any
/// sane clock skew between nodes, far below the clock's range (2^48 units, about 584 years).
pub const MAX_VERSION_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// The version after `floor` (if any) that `writer` gives at `now_ns`; `None` if the clock's
/// range is used up (which [`check_incoming`] keeps from happening).
pub fn next_version(now_ns: u64, floor: Option<u64>, writer: Id) -> Option<u64> {
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
pub fn writer_of(version: u64) -> Id {
    Id(version as u16) // the low 16 bits, by construction
}

/// Whether a version that arrived from elsewhere (a copy, a hand-off, a pull) is acceptable
/// at `now_ns`: not more than [`MAX_VERSION_AHEAD`] ahead of the clock.
pub fn check_incoming(version: u64, now_ns: u64) -> bool {
    let ahead = u64::try_from(MAX_VERSION_AHEAD.as_nanos()).unwrap_or(u64::MAX);
    version <= now_ns.saturating_add(ahead)
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
}
