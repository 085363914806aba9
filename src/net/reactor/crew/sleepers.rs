//! The crew's threads waiting for work, woken last in, first out: the one that waited least
//! is woken first. Under light work the same few threads then serve, and the others, left
//! waiting, retire after a while. (A condition variable shared by all wakes the one that
//! waited longest: every thread took its turn, none was ever idle long enough to retire,
//! and a process kept the threads of its busiest moment, their stacks and allocator caches
//! with them.)

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, MutexGuard};

/// Waiting threads, the most recent last: each with what signals it.
#[derive(Default)]
pub(super) struct Sleepers(Vec<(u64, Arc<Condvar>)>);

impl Sleepers {
    /// Thread `id` waits, with its own `signal`, until woken or until `timeout` has passed;
    /// `guard` is released meanwhile. `sleepers` finds the crew's waiting threads in what
    /// `guard` holds.
    pub(super) fn wait<T>(
        guard: &mut MutexGuard<'_, T>,
        sleepers: impl Fn(&mut T) -> &mut Sleepers,
        id: u64,
        signal: &Arc<Condvar>,
        timeout: Duration,
    ) {
        sleepers(guard).0.push((id, Arc::clone(signal)));
        signal.wait_for(guard, timeout);
        // Still there when the time ran out (a thread woken was taken off).
        sleepers(guard).0.retain(|(waiting, _)| *waiting != id);
    }

    /// Wakes the `n` threads that waited least (fewer if fewer wait). Called under the lock
    /// the threads wait with, so that none is missed between its check and its wait.
    pub(super) fn wake(&mut self, n: usize) {
        for _ in 0..n {
            let Some((_, signal)) = self.0.pop() else {
                return;
            };
            signal.notify_one();
        }
    }

    /// Wakes every waiting thread.
    pub(super) fn wake_all(&mut self) {
        self.wake(self.0.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Instant;

    #[test]
    fn the_thread_that_waited_least_is_woken_first() {
        let state = Arc::new(Mutex::new((Sleepers::default(), Vec::<u64>::new())));
        let threads: Vec<_> = (0..3u64)
            .map(|id| {
                let shared = Arc::clone(&state);
                let handle = std::thread::spawn(move || {
                    let signal = Arc::new(Condvar::new());
                    let mut guard = shared.lock();
                    Sleepers::wait(
                        &mut guard,
                        |s| &mut s.0,
                        id,
                        &signal,
                        Duration::from_secs(10),
                    );
                    guard.1.push(id);
                });
                // The next starts once this one waits, so the order is known.
                let deadline = Instant::now() + Duration::from_secs(10);
                while state.lock().0 .0.len() <= id as usize {
                    assert!(Instant::now() < deadline, "thread {id} never waited");
                    std::thread::yield_now();
                }
                handle
            })
            .collect();
        state.lock().0.wake(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.lock().1.is_empty() {
            assert!(Instant::now() < deadline, "no thread woke");
            std::thread::yield_now();
        }
        assert_eq!(state.lock().1, vec![2], "the last to wait wakes first");
        assert_eq!(state.lock().0 .0.len(), 2, "the others still wait");
        state.lock().0.wake_all();
        for handle in threads {
            handle.join().unwrap();
        }
        assert_eq!(state.lock().1.len(), 3);
    }
}
