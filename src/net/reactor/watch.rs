//! The watch over leaders that serve a request while they keep the lead (`crew.rs`): one
//! thread per process, while the crew runs, looks every [`TICK`] and relieves a leader
//! that has served one request for longer than [`GRACE`], so that a handler waiting on
//! something that did not call `may_block` (a lock, a slow disk) holds up the process's
//! other connections for a few milliseconds at most. It also starts the chores that are due
//! (`crew::Chore`).

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::crew::Crew;

/// How long a leader may serve one request before a follower takes the lead.
const GRACE: Duration = Duration::from_millis(5);
/// How often the watch looks.
const TICK: Duration = Duration::from_millis(5);

/// The crews watched (one, but while one stops and the next starts), and the watch's
/// thread while there are any.
static WATCHED: Mutex<Watched> = Mutex::new(Watched {
    crews: Vec::new(),
    thread: None,
});

struct Watched {
    crews: Vec<Weak<Crew>>,
    /// The thread, and the sender whose drop ends it.
    thread: Option<(JoinHandle<()>, Sender<()>)>,
}

/// Watches `crew` until [`unwatch`]; starts the watch's thread if it is not running.
pub(super) fn watch(crew: &Arc<Crew>) -> io::Result<()> {
    let mut watched = WATCHED.lock();
    if watched.thread.is_none() {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name("pastry-watch".into())
            .stack_size(super::super::THREAD_STACK)
            .spawn(move || run(&rx))?;
        watched.thread = Some((handle, tx));
    }
    watched.crews.push(Arc::downgrade(crew));
    Ok(())
}

/// Stops watching `crew`; the last one out ends the watch's thread and joins it.
pub(super) fn unwatch(crew: &Crew) {
    let ended = {
        let mut watched = WATCHED.lock();
        watched
            .crews
            .retain(|r| r.strong_count() > 0 && !std::ptr::eq(r.as_ptr(), crew));
        if watched.crews.is_empty() {
            watched.thread.take()
        } else {
            None
        }
    };
    if let Some((handle, stop)) = ended {
        drop(stop);
        // The watch thread never stops a crew itself, so this is never that thread.
        let _ = handle.join();
    }
}

/// The watch's thread: until its sender is dropped.
fn run(stop: &mpsc::Receiver<()>) {
    // Bounded: each pass waits one tick; the loop ends when the sender is dropped.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
        let crews: Vec<Arc<Crew>> = WATCHED
            .lock()
            .crews
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let now = Instant::now();
        for crew in crews {
            crew.stop_serving_lead(0, Some((now, GRACE)));
            crew.run_chores(now);
        }
    }
}
