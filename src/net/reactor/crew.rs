//! The reactor's threads, as leader and followers. One thread at a time leads: it holds the
//! poller, waits on every socket and reads what comes. When requests come, it queues them and
//! serves them itself, one after another: the thread that read a request runs it, with no
//! hand-off on the way. It keeps the lead meanwhile, since most requests are answered from
//! memory in microseconds, less than a sleeping thread takes to wake; a request that is about
//! to wait (on a peer, on the disk) calls [`may_block`], and the lead passes to a follower
//! first, with a follower woken for each request still queued. One that waits on something
//! no such call announces is relieved after a grace period (`watch.rs`). Followers wait on a
//! condition variable, so that waiting costs no spinning.
//!
//! Threads are started as requests need them, up to a bound, and let go after a while
//! without work; one (the first) stays for the life of the reactor. A request that would
//! leave no thread free to lead is refused at once rather than queued: a handler may wait on
//! another node, and a queue behind it could wait on this one (DESIGN.md section 4: nothing
//! may deadlock when every node is busy).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::super::THREAD_STACK;
use super::{Request, Shared, StreamHandle};

thread_local! {
    /// The crew this thread belongs to (its reactor's address, 0 for none) and its number:
    /// a thread of the crew that stops the reactor does not join itself. (Not the thread's
    /// handle, which would be made, and never freed, on a C program's main thread.)
    static MEMBER: Cell<(usize, u64)> = const { Cell::new((0, 0)) };

    /// The reactor whose lead this thread keeps while it serves a request, and the thread's
    /// number in its crew.
    static LEADING: Cell<Option<(Arc<Shared>, u64)>> = const { Cell::new(None) };
}

/// The calling thread is about to wait (for a peer, a frame, the disk): if it leads a
/// reactor's crew while serving a request, the lead passes to a follower first, so that the
/// reactor's other connections are read meanwhile.
pub(crate) fn may_block() {
    if let Some((shared, id)) = LEADING.with(Cell::take) {
        shared.crew.stop_serving_lead(id, None);
    }
}

/// Whether this thread serves a request while it leads `reactor`'s crew, and was not
/// relieved of the lead since.
pub(super) fn leads(reactor: &Arc<Shared>) -> bool {
    LEADING.with(|leading| {
        let held = leading.take();
        let leads = held.as_ref().is_some_and(|(shared, id)| {
            Arc::ptr_eq(shared, reactor) && shared.crew.serving_leader() == Some(*id)
        });
        leading.set(held);
        leads
    })
}

/// How long a thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The bookkeeping of a reactor's threads.
pub(super) struct Crew {
    /// Most threads, the leader included.
    max: usize,
    state: Mutex<State>,
    /// Wakes followers: the lead is free, a request is queued, or the reactor stops.
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Requests queued for the next free thread.
    jobs: VecDeque<Request>,
    /// Threads not serving a request: the leader and those waiting to lead.
    idle: usize,
    /// Whether a thread leads.
    led: bool,
    /// The leader serving a request while it keeps the lead, and since when.
    serving: Option<(u64, Instant)>,
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
            wake: Condvar::new(),
        }
    }

    /// What idle thread `id` does next: lead if no one does, else serve a queued request,
    /// else wait for either; `None` when it ends (the reactor stops, or it retires after
    /// [`IDLE_EXIT`] without work, unless `permanent`).
    fn next(&self, id: u64, permanent: bool, stop: &AtomicBool) -> Option<Next> {
        let mut state = self.state.lock();
        let since = Instant::now();
        // Bounded: each pass takes the lead or a request, ends the thread, or waits at most
        // IDLE_EXIT; a thread that is not permanent ends after one such wait without work
        // unless it is needed.
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            if !state.led {
                state.led = true;
                return Some(Next::Lead);
            }
            if let Some(job) = state.jobs.pop_front() {
                state.idle -= 1;
                return Some(Next::Serve(job));
            }
            if !permanent && since.elapsed() >= IDLE_EXIT && Crew::retire(&mut state, id) {
                return None;
            }
            self.wake.wait_for(&mut state, IDLE_EXIT);
        }
    }

    /// The leader `id` takes the next queued request to serve, keeping the lead. The others
    /// wait for it, or for followers woken when it is about to wait: most requests are
    /// answered in microseconds, less than a follower takes to wake.
    fn take_next(&self, id: u64) -> Option<Request> {
        let mut state = self.state.lock();
        let job = state.jobs.pop_front();
        if job.is_some() {
            state.idle -= 1;
            state.serving = Some((id, Instant::now()));
        }
        job
    }

    /// Wakes a follower for each queued request.
    pub(super) fn wake_for_jobs(&self) {
        let queued = self.state.lock().jobs.len();
        for _ in 0..queued {
            self.wake.notify_one();
        }
    }

    /// The leader serving a request while it keeps the lead, if one does.
    fn serving_leader(&self) -> Option<u64> {
        self.state.lock().serving.map(|(id, _)| id)
    }

    /// The leader lets go of the lead: a follower takes it.
    fn let_go(&self) {
        self.state.lock().led = false;
        self.wake.notify_one();
    }

    /// The leader `id`, serving a request with the lead, lets go of it (when `late` is
    /// `None`), or is relieved of it if it has served longer than `late` allows (the
    /// watch's `(now, grace)`): a follower takes the lead.
    pub(super) fn stop_serving_lead(&self, id: u64, late: Option<(Instant, Duration)>) {
        let mut state = self.state.lock();
        let due = match (state.serving, late) {
            (Some((leader, _)), None) => leader == id,
            (Some((_, since)), Some((now, grace))) => now.saturating_duration_since(since) >= grace,
            (None, _) => false,
        };
        if due {
            state.serving = None;
            state.led = false;
            // One to lead, and one for each request still queued: the leader served them
            // in turn while each was quick, and this one was not; those may not be either.
            let wanted = state.jobs.len() + 1;
            drop(state);
            for _ in 0..wanted {
                self.wake.notify_one();
            }
        }
    }

    /// The leader `id` is done serving a request: whether it still leads.
    fn served_leading(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        state.idle += 1;
        match state.serving {
            Some((leader, _)) if leader == id => {
                state.serving = None;
                true
            }
            _ => false,
        }
    }

    /// The leader `id` ends, idle a while, unless it is needed; then a follower leads.
    fn retire_leader(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        if !Crew::retire(&mut state, id) {
            return false;
        }
        state.led = false;
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Thread `id`, idle, ends unless it is needed: another thread must stay to lead and
    /// every queued request must have a thread.
    fn retire(state: &mut MutexGuard<'_, State>, id: u64) -> bool {
        if state.idle < state.jobs.len() + 2 {
            return false;
        }
        state.idle -= 1;
        if let Some(handle) = state.threads.remove(&id) {
            state.ended.push(handle);
        }
        true
    }

    /// Wakes every follower: the reactor stops. (Under the lock, so that none waits on
    /// after checking the stop flag.)
    pub(super) fn wake_all(&self) {
        let _state = self.state.lock();
        self.wake.notify_all();
    }
}

/// What an idle thread does next.
enum Next {
    Lead,
    Serve(Request),
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
        // Bounded: each pass serves a request or leads until requests come; `next` ends the
        // thread once the reactor stops or it has waited long without work.
        while let Some(next) = self.crew.next(id, permanent, &self.stop) {
            match next {
                Next::Serve(request) => self.serve_request(request),
                Next::Lead => {
                    if self.lead_and_serve(id, permanent, &mut opened) {
                        return;
                    }
                }
            }
        }
    }

    /// Leads, serving the first of the requests each turn brings, until the lead passes on
    /// (a request was about to wait, or the reactor stops); `true` when the leader retired
    /// instead, idle a while.
    fn lead_and_serve(
        self: &Arc<Self>,
        id: u64,
        permanent: bool,
        opened: &mut Vec<Request>,
    ) -> bool {
        // Bounded: each pass serves a queued request or leads until requests come; it ends
        // when the lead passed on while serving, or the reactor stops (`lead` returns at
        // once then). The queue holds what one turn read, so the reading resumes after it.
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.crew.let_go();
                return false;
            }
            let Some(request) = self.crew.take_next(id) else {
                if self.lead(id, permanent, opened) {
                    return true;
                }
                self.take_requests(opened);
                continue;
            };
            LEADING.with(|l| l.set(Some((Arc::clone(self), id))));
            self.run_request(request);
            LEADING.with(Cell::take);
            if !self.crew.served_leading(id) {
                return false; // handed on while serving: this thread follows now
            }
        }
    }

    /// Leads until requests come (in `opened`) or the reactor stops; `true` when the leader
    /// retired instead, idle a while.
    fn lead(self: &Arc<Self>, id: u64, permanent: bool, opened: &mut Vec<Request>) -> bool {
        // Uncontended: only the leader takes it (and a shutdown, once the crew has ended).
        let mut poller = self.poller.lock();
        let since = Instant::now();
        // Bounded: each turn waits at most the sweep's interval; the loop ends when requests
        // come, the reactor stops, or a leader that is not permanent retires.
        while opened.is_empty() && !self.stop.load(Ordering::SeqCst) {
            self.turn(&mut poller, opened, super::SWEEP);
            // Not with requests just read: they are this thread's to hand on.
            if !permanent
                && opened.is_empty()
                && since.elapsed() >= IDLE_EXIT
                && self.crew.retire_leader(id)
            {
                return true;
            }
        }
        false
    }

    /// What tells this reactor's crew from another's.
    fn address(&self) -> usize {
        self as *const Shared as usize
    }

    /// Serves one request on this thread, a follower's: it is idle again after.
    fn serve_request(&self, request: Request) {
        self.run_request(request);
        self.crew.state.lock().idle += 1;
    }

    /// Runs the handler on one request.
    fn run_request(&self, (conn, stream): Request) {
        if let Some(serve) = &self.serve {
            let handle = StreamHandle::new(conn, stream, self.config.io_timeout);
            // A handler that panics loses its request, not the thread or the server.
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(handle)));
            if served.is_err() {
                log::error!("{}: a request handler panicked", self.name);
            }
        }
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
