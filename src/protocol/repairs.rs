//! Which damaged or stale copies a node is to replace, with time passed in: a copy found
//! corrupt by a get, or behind another holder's by a write, is scheduled once, and not again
//! for [`REPAIR_EVERY`], so that two holders whose copies are both damaged do not ask each
//! other for a sound one without end. The node's maintenance fetches the sound copies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often one name's copy is repaired at most.
pub const REPAIR_EVERY: Duration = Duration::from_secs(30);

/// Names whose copies are to be repaired, and when each was last scheduled.
#[derive(Debug, Default)]
pub struct Repairs {
    due: Vec<Vec<u8>>,
    scheduled: HashMap<Vec<u8>, Instant>,
}

impl Repairs {
    /// Schedules the repair of `name` at `now`, unless it was scheduled within
    /// [`REPAIR_EVERY`]; returns whether it was.
    pub fn schedule(&mut self, name: &[u8], now: Instant) -> bool {
        self.scheduled
            .retain(|_, at| now.saturating_duration_since(*at) < REPAIR_EVERY);
        if self.scheduled.contains_key(name) {
            return false;
        }
        self.scheduled.insert(name.to_vec(), now);
        self.due.push(name.to_vec());
        true
    }

    /// The names due for repair, in the order scheduled; they are no longer due.
    pub fn take_due(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_repaired_once_per_period() {
        let t0 = Instant::now();
        let mut r = Repairs::default();
        assert!(r.schedule(b"a", t0));
        assert!(!r.schedule(b"a", t0 + REPAIR_EVERY / 2));
        assert!(r.schedule(b"b", t0));
        assert_eq!(r.take_due(), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(r.take_due().is_empty());
        assert!(r.schedule(b"a", t0 + REPAIR_EVERY));
    }
}
