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

    /// The owner's chores due at `now`, each marked under way and counted in service; none
    /// once the reactor is stopping. (The check is made with the count held, so that a
    /// shutdown, which stops the reactor and then waits for the count, waits for a chore
    /// started meanwhile.) A chore has no bound: there is one a node, one pass at a time.
    pub(super) fn due_chores(&self, now: Instant) -> Vec<Arc<dyn Chore>> {
        let mut chores = self.chores.lock();
        chores.retain(|c| c.strong_count() > 0);
        let mut due = Vec::new();
        for chore in chores.iter().filter_map(std::sync::Weak::upgrade) {
            let mut busy = self.busy.lock();
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if chore.start_if_due(now) {
                *busy += 1;
                due.push(chore);
            }
        }
        due
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
