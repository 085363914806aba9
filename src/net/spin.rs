//! Polling briefly before sleeping (`NetConfig::spin`). A thread that waits for bytes a
//! peer is about to send (an answer, the next request of a busy client) polls for them a
//! few tens of microseconds before it sleeps: on virtual machines, waking a sleeping thread
//! on an idle processor costs tens of microseconds of both processors' time, more than most
//! answers take to come. At most one thread a processor spins at a time, and a spinning
//! thread yields to any other that is ready to run, so that spinning delays no work. A
//! crew's leader, which waits whether or not anything is on its way, polls for a window
//! adapted to what its waits find ([`Window`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Threads spinning now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// The processors this process may run on.
pub(crate) fn processors() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// How long a leader polls before it sleeps, adapted to what its waits find (as KVM adapts
/// its halt polling): grown while its bytes come soon after it stops polling, shrunk while
/// it sleeps long. An idle node's upkeep wakes its leader every few milliseconds: polling
/// after each would be in vain, and cost more processor time than the upkeep itself.
#[derive(Debug, Default)]
pub(crate) struct Window(Duration);

/// The first window grown from none.
const START: Duration = Duration::from_micros(5);

/// A sleep at most this many times the longest window counts as short: polling a little
/// longer would have found its bytes.
const SOON: u32 = 4;

impl Window {
    /// How long to poll now, at most `most`.
    pub(crate) fn now(&self, most: Duration) -> Duration {
        self.0.min(most)
    }

    /// Adapts to a wait that polled in vain, then slept `slept`. (One whose polling found
    /// its bytes keeps the window.)
    pub(crate) fn slept(&mut self, most: Duration, slept: Duration) {
        self.0 = if slept <= most.saturating_mul(SOON) {
            self.0.saturating_mul(2).max(START).min(most)
        } else if self.0 / 2 >= START {
            self.0 / 2
        } else {
            Duration::ZERO
        };
    }
}

/// Polls `ready` until it holds (`true`) or `budget` has passed (`false`), yielding the
/// processor between polls; `false` at once when every processor already has a spinning
/// thread.
pub(crate) fn spin(budget: Duration, ready: impl FnMut() -> bool) -> bool {
    spin_counted(&SPINNING, processors(), budget, ready)
}

/// [`spin`], with the threads spinning counted in `spinning`, at most `most` at once.
fn spin_counted(
    spinning: &AtomicUsize,
    most: usize,
    budget: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if budget.is_zero() {
        return false;
    }
    if spinning.fetch_add(1, Ordering::Relaxed) >= most {
        spinning.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    let start = Instant::now();
    // Bounded by the budget.
    let found = loop {
        if ready() {
            break true;
        }
        if start.elapsed() >= budget {
            break false;
        }
        std::thread::yield_now();
    };
    spinning.fetch_sub(1, Ordering::Relaxed);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_ends_when_ready_or_when_the_budget_is_spent() {
        // A counter of its own: other tests' nodes spin on the process's.
        let spinning = AtomicUsize::new(0);
        let mut polls = 0;
        assert!(spin_counted(&spinning, 1, Duration::from_secs(10), || {
            polls += 1;
            polls == 3
        }));
        assert_eq!(polls, 3);
        let start = Instant::now();
        assert!(!spin_counted(
            &spinning,
            1,
            Duration::from_micros(300),
            || false
        ));
        assert!(start.elapsed() >= Duration::from_micros(300));
        let never = || panic!("polled with no budget");
        assert!(!spin_counted(&spinning, 1, Duration::ZERO, never));
        assert_eq!(spinning.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_window_grows_while_waits_end_soon_and_shrinks_to_none_while_they_do_not() {
        let most = Duration::from_micros(50);
        let mut window = Window::default();
        assert_eq!(window.now(most), Duration::ZERO);
        window.slept(most, Duration::from_micros(30));
        assert_eq!(window.now(most), START);
        for _ in 0..10 {
            window.slept(most, Duration::from_micros(30));
        }
        assert_eq!(window.now(most), most, "grown to the most");
        window.slept(most, Duration::from_millis(5));
        assert_eq!(window.now(most), most / 2);
        for _ in 0..10 {
            window.slept(most, Duration::from_millis(5));
        }
        assert_eq!(window.now(most), Duration::ZERO, "none while idle");
    }

    #[test]
    fn no_more_threads_spin_than_allowed() {
        let spinning = AtomicUsize::new(2);
        let polled = spin_counted(&spinning, 2, Duration::from_secs(10), || true);
        assert!(!polled, "a third thread polled");
        assert_eq!(spinning.load(Ordering::Relaxed), 2);
        assert!(spin_counted(&spinning, 3, Duration::from_secs(10), || true));
        assert_eq!(
            spinning.load(Ordering::Relaxed),
            2,
            "the count is given back"
        );
    }
}
