//! The watch over leaders that serve a request while they keep the lead (`crew.rs`): one
//! thread per process, while any reactor runs, looks every [`TICK`] and relieves a leader
//! that has served one request for longer than [`GRACE`], so that a handler waiting on
//! something that did not call `may_block` (a lock, a slow disk) holds up the reactor's
//! other connections for a few milliseconds at most. One thread for every reactor of the
//! process: a process may run hundreds of nodes.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Shared;

/// How long a leader may serve one request before a follower takes the lead.
const GRACE: Duration = Duration::from_millis(5);
/// How often the watch looks.
const TICK: Duration = Duration::from_millis(5);

/// The reactors watched, and the watch's thread while there are any.
static WATCHED: Mutex<Watched> = Mutex::new(Watched {
    reactors: Vec::new(),
    thread: None,
});

struct Watched {
    reactors: Vec<Weak<Shared>>,
    /// The thread, and the sender whose drop ends it.
    thread: Option<(JoinHandle<()>, Sender<()>)>,
}

/// Watches `reactor` until [`unwatch`]; starts the watch's thread if it is not running.
pub(super) fn watch(reactor: &Arc<Shared>) -> io::Result<()> {
    let mut watched = WATCHED.lock();
    if watched.thread.is_none() {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name("pastry-watch".into())
            .stack_size(super::super::THREAD_STACK)
            .spawn(move || run(&rx))?;
        watched.thread = Some((handle, tx));
    }
    watched.reactors.push(Arc::downgrade(reactor));
    Ok(())
}

/// Stops watching `reactor`; the last one out ends the watch's thread and joins it.
pub(super) fn unwatch(reactor: &Shared) {
    let ended = {
        let mut watched = WATCHED.lock();
        watched
            .reactors
            .retain(|r| r.strong_count() > 0 && !std::ptr::eq(r.as_ptr(), reactor));
        if watched.reactors.is_empty() {
            watched.thread.take()
        } else {
            None
        }
    };
    if let Some((handle, stop)) = ended {
        drop(stop);
        // The watch thread never stops a reactor itself, so this is never that thread.
        let _ = handle.join();
    }
}

/// The watch's thread: until its sender is dropped.
fn run(stop: &mpsc::Receiver<()>) {
    // Bounded: each pass waits one tick; the loop ends when the sender is dropped.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
        let reactors: Vec<Arc<Shared>> = WATCHED
            .lock()
            .reactors
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let now = Instant::now();
        for reactor in reactors {
            reactor.crew.stop_serving_lead(0, Some((now, GRACE)));
        }
    }
}
