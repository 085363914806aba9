//! The reactor's threads, as leader and followers. One thread at a time leads: it holds the
//! poller, waits on every socket and reads what comes. When requests come, it queues them and
//! lets go of the poller; a follower takes the lead, and the former leader serves the first
//! request itself: the thread that read a request runs it, with no hand-off on the way.
//!
//! Threads are started as requests need them, up to a bound, and let go after a while
//! without work; one (the first) stays for the life of the reactor. A request that would
//! leave no thread free to lead is refused at once rather than queued: a handler may wait on
//! another node, and a queue behind it could wait on this one (DESIGN.md section 4: nothing
//! may deadlock when every node is busy).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::super::THREAD_STACK;
use super::{Request, Shared, StreamHandle};

thread_local! {
    /// The crew this thread belongs to (its reactor's address, 0 for none) and its number:
    /// a thread of the crew that stops the reactor does not join itself. (Not the thread's
    /// handle, which would be made, and never freed, on a C program's main thread.)
    static MEMBER: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
}

/// How long a thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The bookkeeping of a reactor's threads.
pub(super) struct Crew {
    /// Most threads, the leader included.
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Requests queued for the next free thread.
    jobs: VecDeque<Request>,
    /// Threads not serving a request: the leader and those waiting to lead.
    idle: usize,
    threads: HashMap<u64, JoinHandle<()>>,
    /// Threads that have ended and can be joined.
    ended: Vec<JoinHandle<()>>,
    next: u64,
}

impl Crew {
    /// A crew of at most `max` threads (at least one).
    pub fn new(max: usize) -> Crew {
        Crew {
            max: max.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn has_jobs(&self) -> bool {
        !self.state.lock().jobs.is_empty()
    }

    /// Takes a queued request to serve, if any.
    fn take(&self) -> Option<Request> {
        let mut state = self.state.lock();
        let job = state.jobs.pop_front()?;
        state.idle -= 1;
        Some(job)
    }

    /// Thread `id`, idle, ends unless it is needed: another thread must stay to lead and
    /// every queued request must have a thread.
    fn retire(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        if state.idle < state.jobs.len() + 2 {
            return false;
        }
        state.idle -= 1;
        if let Some(handle) = state.threads.remove(&id) {
            state.ended.push(handle);
        }
        true
    }
}

impl Shared {
    /// Starts the thread that stays for the reactor's life.
    pub(super) fn start_crew(self: &Arc<Self>) -> io::Result<()> {
        let mut state = self.crew.state.lock();
        self.spawn_member(&mut state, true)
    }

    fn spawn_member(self: &Arc<Self>, state: &mut State, permanent: bool) -> io::Result<()> {
        let id = state.next;
        state.next += 1;
        let shared = Arc::clone(self);
        let name = if permanent {
            format!("{}-reactor", self.name)
        } else {
            format!("{}-work", self.name)
        };
        let handle = thread::Builder::new()
            .name(name)
            .stack_size(THREAD_STACK)
            .spawn(move || shared.member(id, permanent))?;
        state.idle += 1;
        state.threads.insert(id, handle);
        Ok(())
    }

    /// Takes the requests in `opened`: each is queued for a thread of the crew (threads are
    /// started as needed), or refused at once when serving it would leave no thread to lead.
    pub(super) fn take_requests(self: &Arc<Self>, opened: &mut Vec<Request>) {
        if opened.is_empty() {
            return;
        }
        if self.serve.is_none() {
            for (conn, stream) in opened.drain(..) {
                conn.refuse(stream, "this end serves no requests");
            }
            return;
        }
        let mut refused = Vec::new();
        let ended = {
            let mut state = self.crew.state.lock();
            let stopping = self.stop.load(Ordering::SeqCst);
            for request in opened.drain(..) {
                let startable = self.crew.max.saturating_sub(state.threads.len());
                // Threads free once the queued requests have theirs: one to serve this
                // request, one to lead.
                let free = (state.idle + startable).saturating_sub(state.jobs.len());
                if free >= 2 && !stopping {
                    state.jobs.push_back(request);
                } else {
                    refused.push(request);
                }
            }
            let wanted = (state.jobs.len() + 1).saturating_sub(state.idle);
            for _ in 0..wanted {
                if let Err(e) = self.spawn_member(&mut state, false) {
                    log::warn!("{}: cannot start a thread: {e}", self.name);
                    break;
                }
            }
            // Requests counted on threads that did not start are refused: one thread must
            // stay free to lead.
            while state.idle < state.jobs.len() + 1 {
                match state.jobs.pop_back() {
                    Some(request) => refused.push(request),
                    None => break,
                }
            }
            std::mem::take(&mut state.ended)
        };
        for (conn, stream) in refused {
            conn.refuse(stream, "every handler thread of the server is busy");
        }
        for handle in ended {
            let _ = handle.join();
        }
    }

    /// A thread's life: serving queued requests, waiting to lead, and leading until requests
    /// come; until it retires, or the reactor stops.
    fn member(self: &Arc<Self>, id: u64, permanent: bool) {
        MEMBER.with(|m| m.set((self.address(), id)));
        let mut opened = Vec::new();
        // Bounded: each pass serves a request, leads until one comes, or ends the thread
        // after a wait without either.
        while !self.stop.load(Ordering::SeqCst) {
            if let Some(request) = self.crew.take() {
                self.serve_request(request);
                continue;
            }
            let Some(mut poller) = self.poller.try_lock_for(IDLE_EXIT) else {
                if !permanent && self.crew.retire(id) {
                    return;
                }
                continue;
            };
            let since = Instant::now();
            while opened.is_empty() && !self.crew.has_jobs() && !self.stop.load(Ordering::SeqCst) {
                self.turn(&mut poller, &mut opened);
                // Not with requests just read: they are this thread's to hand on.
                if !permanent
                    && opened.is_empty()
                    && since.elapsed() >= IDLE_EXIT
                    && self.crew.retire(id)
                {
                    return;
                }
            }
            self.take_requests(&mut opened);
            // The lead passes to a follower; this thread serves the first request.
        }
    }

    /// What tells this reactor's crew from another's.
    fn address(&self) -> usize {
        self as *const Shared as usize
    }

    /// Serves one request on this thread.
    fn serve_request(&self, (conn, stream): Request) {
        if let Some(serve) = &self.serve {
            let handle = StreamHandle::new(conn, stream, self.config.io_timeout);
            // A handler that panics loses its request, not the thread or the server.
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(handle)));
            if served.is_err() {
                log::error!("{}: a request handler panicked", self.name);
            }
        }
        self.crew.state.lock().idle += 1;
    }

    /// Joins every thread once the reactor is stopping.
    pub(super) fn join_crew(&self) {
        // Bounded: each pass joins the threads there are; none starts once stopping.
        for _ in 0..1024 {
            // A handler that drops the last handle of its server runs this on a thread of
            // the crew: it cannot join itself.
            let (crew, me) = MEMBER.with(Cell::get);
            let me = (crew == self.address()).then_some(me);
            let handles: Vec<JoinHandle<()>> = {
                let mut state = self.crew.state.lock();
                let mut all: Vec<JoinHandle<()>> = std::mem::take(&mut state.ended);
                let ids: Vec<u64> = state.threads.keys().copied().collect();
                for id in ids.into_iter().filter(|id| Some(*id) != me) {
                    all.extend(state.threads.remove(&id));
                }
                all
            };
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
#[path = "crew_tests.rs"]
mod tests;
