//! The node's maintenance, a chore its server's crew does for it (`net::Chore`): every
//! `maintenance_interval` it checks the neighbours and retries leftover work; woken early
//! (membership changed), it rebalances at once. No thread of its own: a process of hundreds
//! of nodes runs the passes under way, not a waiting thread for each node.

use std::time::Instant;

use super::{Inner, Phase};

/// Maintenance rounds between full copy checks when nothing woke one: the safety net that
/// bounds how long any object stays off its best-placed nodes, even if a change was missed.
const FULL_CHECK_EVERY: u64 = 5;

/// When the next pass is due, and what it owes.
pub(super) struct Schedule {
    next_probe: Instant,
    /// A pass was asked for (`wake_maintenance`) since the last began.
    woken: bool,
    /// A rebalance is owed: asked for, or the last one left work.
    pending: bool,
    /// A pass is under way.
    running: bool,
    probes: u64,
}

impl Schedule {
    /// The schedule of a node started now: its first probe one interval on.
    pub(super) fn new(first_probe: Instant) -> Schedule {
        Schedule {
            next_probe: first_probe,
            woken: false,
            pending: false,
            running: false,
            probes: 0,
        }
    }
}

impl Inner {
    /// Asks for a rebalance pass, started within the crew's next look.
    pub(super) fn wake_maintenance(&self) {
        self.maintenance.lock().woken = true;
    }

    /// One maintenance pass: the probe, if due, and the work owed.
    fn maintain(&self) {
        let now = Instant::now();
        let (due, mut pending, probes) = {
            let mut s = self.maintenance.lock();
            s.pending |= std::mem::take(&mut s.woken);
            let due = now >= s.next_probe;
            if due {
                // Moved on whatever the phase, so that a node not (or no longer) joined
                // waits a whole interval instead of spinning.
                s.next_probe = now + self.config.maintenance_interval;
            }
            (due, s.pending, s.probes)
        };
        if due {
            self.close_idle_connections();
        }
        let joined = self.phase() == Phase::Joined;
        let probed = due && joined;
        if joined {
            if probed {
                self.maintain_overlay();
                self.update_apps();
                if probes % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1 {
                    pending = true;
                }
            }
            self.repair_scheduled();
            if pending {
                pending = !self.rebalance();
            }
        }
        let mut s = self.maintenance.lock();
        s.probes += u64::from(probed);
        s.pending = pending;
    }
}

impl crate::net::Chore for Inner {
    fn start_if_due(&self, now: Instant) -> bool {
        let mut s = self.maintenance.lock();
        let due = !s.running && (s.woken || now >= s.next_probe);
        s.running |= due;
        due
    }

    fn run(&self) {
        self.maintain();
        self.maintenance.lock().running = false;
    }
}
