//! What a reactor has in service on the crew's threads: the requests it took (at most
//! `max_workers`), its owner's chores, and the wait for them at shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Chore, Shared};

impl Shared {
    /// Counts a request taken for service, if there is room for it.
    pub(super) fn take_one(&self) -> bool {
        let mut busy = self.busy.lock();
        let room = *busy < self.config.max_workers && !self.stop.load(Ordering::SeqCst);
        *busy += usize::from(room);
        room
    }

    /// Counts a chore started (a chore has no bound: there is one a node, at most one at
    /// a time).
    pub(super) fn take_chore(&self) {
        *self.busy.lock() += 1;
    }

    /// The chores of the reactor's owner, while it runs.
    pub(super) fn chores(&self) -> Vec<Arc<dyn Chore>> {
        if self.stop.load(Ordering::SeqCst) {
            return Vec::new();
        }
        let mut chores = self.chores.lock();
        chores.retain(|c| c.strong_count() > 0);
        chores.iter().filter_map(std::sync::Weak::upgrade).collect()
    }

    /// A request taken is served (or dropped).
    pub(super) fn served(&self) {
        *self.busy.lock() -= 1;
        self.served.notify_all();
    }

    /// Waits until the requests in service are served, but the one this thread serves
    /// (`mine`): handlers end soon once their connections are closed, and at the latest
    /// when their waits time out.
    pub(super) fn wait_served(&self, mine: bool) {
        let deadline = Instant::now() + self.config.io_timeout * 4;
        let mut busy = self.busy.lock();
        // Bounded by the deadline.
        while *busy > usize::from(mine) {
            if self.served.wait_until(&mut busy, deadline).timed_out() {
                log::warn!(
                    "{}: {} requests still in service at shutdown",
                    self.name,
                    *busy
                );
                return;
            }
        }
    }
}
