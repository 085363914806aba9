//! Grouped commits: one sync of the log makes every write before it durable.
//!
//! A writer that needs its entry on disk waits here. If no sync is running it runs one, which
//! covers every entry appended so far; if one is running it waits for it and, if that did not
//! cover its entry, for the next, which by then covers everything that piled up meanwhile. So
//! under load a synced write costs about one sync shared by all the writes of that moment,
//! however many there are.

use std::io;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long a waiter sleeps before looking again: only a safety net, as the syncer wakes
/// every waiter when it is done.
const RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct State {
    /// Every entry numbered up to this is on disk.
    durable: u64,
    /// A sync is running.
    busy: bool,
}

/// Sequences of appended entries made durable in groups.
#[derive(Debug, Default)]
pub(super) struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupSync {
    /// Returns once entry `seq` is durable. `sync` syncs the log and returns the number of the
    /// last entry that sync covers (read before it starts).
    pub fn wait(&self, seq: u64, sync: impl Fn() -> io::Result<u64>) -> io::Result<()> {
        let mut state = self.state.lock();
        // Each pass either returns, runs a sync, or waits for the running one to end: the
        // entry is covered by the second sync that starts after it at the latest.
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if state.busy {
                self.done.wait_for(&mut state, RECHECK);
                continue;
            }
            state.busy = true;
            let result = parking_lot::MutexGuard::unlocked(&mut state, &sync);
            state.busy = false;
            self.done.notify_all();
            // A failed sync is this caller's error; the others try again themselves.
            state.durable = state.durable.max(result?);
        }
    }

    /// Records that everything up to `seq` is durable (the log was rewritten and synced whole).
    pub fn covered(&self, seq: u64) {
        let mut state = self.state.lock();
        state.durable = state.durable.max(seq);
        self.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn concurrent_waiters_share_syncs() {
        let appended = AtomicU64::new(0);
        let syncs = AtomicU64::new(0);
        let group = GroupSync::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let seq = appended.fetch_add(1, Ordering::SeqCst) + 1;
                        group
                            .wait(seq, || {
                                let covered = appended.load(Ordering::SeqCst);
                                syncs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(1));
                                Ok(covered)
                            })
                            .expect("sync");
                    }
                });
            }
        });
        let syncs = syncs.load(Ordering::SeqCst);
        assert!(syncs < 400, "{syncs} syncs for 400 writes: none grouped");
    }

    #[test]
    fn a_failed_sync_fails_its_caller_and_the_next_one_retries() {
        let group = GroupSync::default();
        let err = group.wait(1, || Err(io::Error::other("disk gone")));
        assert!(err.is_err());
        group.wait(1, || Ok(1)).expect("retried");
        group
            .wait(1, || panic!("already durable"))
            .expect("no sync");
    }
}
