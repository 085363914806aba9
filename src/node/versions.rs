//! The version clock of a node: hands out versions for the writes it orders, and has the
//! writes of one name commit in the order of their versions. The rules of versions are in
//! [`crate::protocol::versions`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::protocol::versions::MAX_VERSION_AHEAD;
pub(crate) use crate::protocol::versions::{check_incoming, next_version};

use parking_lot::{Condvar, Mutex};

use crate::id::Id;

/// Nanoseconds since the Unix epoch by this machine's clock (0 before it).
pub(crate) fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
            // Waits on another write, which may wait on peers: the reactor reads on meanwhile.
            crate::net::may_block();
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
