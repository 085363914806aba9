//! The threads that serve the reactors of the process, as leader and followers: a crew. One
//! thread of a crew at a time leads: it holds the crew's poller, which watches the sockets
//! of every reactor in the crew's care (one epoll, each socket's token naming its reactor),
//! waits on all of them at once, and takes a turn at each reactor whose sockets have
//! something. When requests come, it queues them and serves them itself, one after
//! another: the thread that read a request runs it, with no hand-off on the way. It keeps
//! the lead meanwhile, since most requests are answered from memory in microseconds, less
//! than a sleeping thread takes to wake; a request that is about to wait (on a peer, on the
//! disk) calls [`may_block`], and the lead passes to a follower first, with a follower
//! woken for each request still queued. One that waits on something no such call
//! announces is relieved after a grace period (`watch.rs`). Followers wait on a condition
//! variable each, the one that waited least woken first (`sleepers.rs`); the leader polls
//! its poller briefly before it sleeps on it (`NetConfig::spin`, `turns.rs`).
//!
//! A few crews for the process (two a processor, `joining.rs`), not one per reactor: a
//! process running hundreds of nodes runs the threads its requests need at once, not a few
//! for each node, and their stacks and allocator caches with them. (One crew alone left
//! processors idle under load: gets with 32 in flight at 64 nodes ran at half the rate.)

//! Threads are started when a request is about to wait and no follower is free to take the
//! lead, up to a bound, and let go after a while without work; one (the first) stays while
//! the crew has a reactor. A request that would leave no thread free to lead, or that its reactor
//! has no room for (`max_workers` requests in service), is refused at once rather than
//! queued: a handler may wait on another node, and a queue behind it could wait on this one
//! (DESIGN.md section 4: nothing may deadlock when every node is busy).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token, Waker};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::super::THREAD_STACK;
use super::{Answered, Request, Shared, StreamHandle, SWEEP};
use crate::fast_hash::FastMap;

mod joining;
mod sleepers;
mod turns;

use sleepers::Sleepers;

thread_local! {
    /// The crew this thread belongs to (its address, 0 for none) and its number: a thread
    /// of the crew that stops it does not join itself. (Not the thread's handle, which would
    /// be made, and never freed, on a C program's main thread.)
    static MEMBER: Cell<(usize, u64)> = const { Cell::new((0, 0)) };

    /// The crew whose lead this thread keeps while it serves a request, and the thread's
    /// number in it.
    static LEADING: Cell<Option<(Arc<Crew>, u64)>> = const { Cell::new(None) };

    /// The reactor whose request this thread serves (its address, 0 for none): that
    /// reactor's shutdown, if the request brings it about, does not wait for this thread.
    static SERVING: Cell<usize> = const { Cell::new(0) };
}

/// The process poller's own waker; the reactors' tokens count up from zero.
const WAKER: Token = Token(usize::MAX);

/// The calling thread is about to wait (for a peer, a frame, the disk): if it leads a crew
/// while serving a request, the lead passes to a follower first, so that the crew's
/// connections are read meanwhile.
pub(crate) fn may_block() {
    if let Some((crew, id)) = LEADING.with(Cell::take) {
        crew.stop_serving_lead(id, None);
    }
}

/// The crew this thread leads while it serves a request, if it was not relieved of the
/// lead since.
pub(super) fn leads() -> Option<Arc<Crew>> {
    LEADING.with(|leading| {
        let held = leading.take();
        let crew = held
            .as_ref()
            .filter(|(crew, id)| crew.serving_leader() == Some(*id))
            .map(|(crew, _)| Arc::clone(crew));
        leading.set(held);
        crew
    })
}

/// How long a thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// What a thread of the crew does for a reactor.
pub(super) enum Job {
    /// A request the reactor read.
    Request(Arc<Shared>, Request),
    /// An answer no thread waits for, to hand to what it is for.
    Answer(Arc<Shared>, Answered),
    /// A chore of its owner's, due.
    Chore(Arc<Shared>, Arc<dyn Chore>),
}

impl Job {
    fn reactor(&self) -> &Arc<Shared> {
        match self {
            Job::Request(shared, _) | Job::Chore(shared, _) | Job::Answer(shared, _) => shared,
        }
    }
}

/// Work a reactor's owner has the crew do now and then (a node's maintenance): the watch
/// asks every few milliseconds whether it is due, and a thread of the crew does it, as it
/// serves a request. A reactor's shutdown waits for its chores under way.
pub(crate) trait Chore: Send + Sync {
    /// Whether it is due at `now`; `true` also marks it under way, so that it is not
    /// started again before it ends.
    fn start_if_due(&self, now: Instant) -> bool;
    /// Does it, on a thread of the crew; it is no longer under way once this returns.
    fn run(&self);
}

/// A crew: its threads, and its poller over the sockets of the reactors in its care.
pub(super) struct Crew {
    state: Mutex<State>,
    stop: AtomicBool,
    /// What the leader works with: whoever holds it leads.
    master: Mutex<Master>,
    /// Where the sockets of every reactor in the crew's care are watched, each under a
    /// token whose high bits are its reactor's ([`super::reactor_of`]): one wait, and one
    /// wake-up, for all of them.
    registry: Arc<Registry>,
    waker: Waker,
    reactors: Mutex<FastMap<Token, Weak<Shared>>>,
    /// Reactors that asked for a turn (read a connection later, or stop).
    poked: Mutex<Vec<Token>>,
    next_token: AtomicUsize,
    /// How long the leader polls before it sleeps, in nanoseconds: the longest
    /// `NetConfig::spin` of the reactors that joined.
    spin: AtomicU64,
}

/// The leader's tools and its memory between turns.
struct Master {
    poll: Poll,
    events: Events,
    /// A turn's readiness, sorted by token, so grouped by reactor.
    ready: Vec<super::Ready>,
    /// Reactors that may hold more than their last turn took.
    again: Vec<Token>,
    swept: Instant,
    /// How long the leader polls before it sleeps now.
    polling: crate::net::spin::Window,
}

#[derive(Default)]
struct State {
    /// Requests queued for the next free thread.
    jobs: VecDeque<Job>,
    /// Threads not serving a request: the leader and those waiting to lead.
    idle: usize,
    /// Whether a thread leads.
    led: bool,
    /// Threads waiting for the lead or a request, woken when the lead is free, a request
    /// is queued, or the crew stops.
    sleepers: Sleepers,
    /// The leader serving a request while it keeps the lead, and since when.
    serving: Option<(u64, Instant)>,
    threads: HashMap<u64, JoinHandle<()>>,
    /// Threads that have ended and can be joined.
    ended: Vec<JoinHandle<()>>,
    next: u64,
    /// Most threads, the leader included: one, and each reactor's `max_workers`.
    max: usize,
    /// Reactors in the crew's care.
    members: usize,
}

impl Crew {
    /// What idle thread `id` does next: lead if no one does, else serve a queued request,
    /// else wait for either; `None` when it ends (the crew stops, or it retires after
    /// [`IDLE_EXIT`] without work, unless `permanent`).
    fn next(&self, id: u64, permanent: bool, signal: &Arc<Condvar>) -> Option<Next> {
        let mut state = self.state.lock();
        let since = Instant::now();
        // Bounded: each pass takes the lead or a request, ends the thread, or waits at most
        // IDLE_EXIT; a thread that is not permanent ends after one such wait without work
        // unless it is needed.
        loop {
            if self.stop.load(Ordering::SeqCst) {
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
            Sleepers::wait(&mut state, |s| &mut s.sleepers, id, signal, IDLE_EXIT);
        }
    }

    /// The leader `id` takes the next queued request to serve, keeping the lead. The others
    /// wait for it, or for followers woken when it is about to wait: most requests are
    /// answered in microseconds, less than a follower takes to wake.
    fn take_next(&self, id: u64) -> Option<Job> {
        let mut state = self.state.lock();
        let job = state.jobs.pop_front();
        if job.is_some() {
            state.idle -= 1;
            state.serving = Some((id, Instant::now()));
        }
        job
    }

    /// The leader serving a request while it keeps the lead, if one does.
    fn serving_leader(&self) -> Option<u64> {
        self.state.lock().serving.map(|(id, _)| id)
    }

    /// The leader lets go of the lead: a follower takes it.
    fn let_go(&self) {
        let mut state = self.state.lock();
        state.led = false;
        state.sleepers.wake(1);
    }

    /// Wakes a follower for each queued request, starting those missing: the leader may
    /// be waiting on its sockets, and would see them only on its next turn.
    pub(super) fn wake_for_jobs(self: &Arc<Self>) {
        let mut state = self.state.lock();
        // Idle threads wanted: one for each request, and the leader when it is not serving
        // one (it counts as idle then). Only the followers are woken: the leader is not
        // waiting among them.
        let jobs = state.jobs.len();
        let leader = usize::from(state.serving.is_none());
        self.hire(&mut state, jobs + leader);
        state.sleepers.wake(jobs);
    }

    /// With more than one request queued, a follower (started if none waits) serves them
    /// beside the leader, while the process runs fewer crews than it has processors: one
    /// leader serving every reactor of the process would leave the other processors idle
    /// under load. The follower takes queued requests until none is left, and waits again.
    /// With a crew for each processor, each processor has a leader already, and a follower
    /// woken beside one mostly takes turns with it at its queue: its wake-up, the two
    /// contending for the queue's lock and its going back to sleep cost more than requests
    /// answered in microseconds.
    fn share_queue(self: &Arc<Self>) {
        if joining::running() >= crate::net::spin::processors() {
            return;
        }
        let mut state = self.state.lock();
        if state.jobs.len() < 2 {
            return;
        }
        // The leader, counted idle until it takes its first request, and one follower.
        self.hire(&mut state, 2);
        state.sleepers.wake(1);
    }

    /// The leader `id`, serving a request with the lead, lets go of it (when `late` is
    /// `None`), or is relieved of it if it has served longer than `late` allows (the
    /// watch's `(now, grace)`): a follower takes the lead, started now if none waits.
    pub(super) fn stop_serving_lead(self: &Arc<Self>, id: u64, late: Option<(Instant, Duration)>) {
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
            self.hire(&mut state, wanted);
            state.sleepers.wake(wanted);
        }
    }

    /// Starts threads until `wanted` are idle (the leader's own counted while it leads
    /// without serving), as far as the bound allows. Threads are started when needed this
    /// way, not for each request read: the leader serves most requests itself.
    fn hire(self: &Arc<Self>, state: &mut State, wanted: usize) {
        while state.idle < wanted && state.threads.len() < state.max {
            if let Err(e) = self.spawn_member(state, false) {
                log::warn!("cannot start a thread: {e}");
                return;
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
        state.sleepers.wake(1);
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

    /// Wakes every follower: the crew stops. (Under the lock, so that none waits on after
    /// checking the stop flag.)
    fn wake_all(&self) {
        self.state.lock().sleepers.wake_all();
    }

    fn spawn_member(self: &Arc<Self>, state: &mut State, permanent: bool) -> io::Result<()> {
        let id = state.next;
        state.next += 1;
        let crew = Arc::clone(self);
        let name = if permanent {
            "pastry-reactor"
        } else {
            "pastry-work"
        };
        let handle = thread::Builder::new()
            .name(name.into())
            .stack_size(THREAD_STACK)
            .spawn(move || crew.member(id, permanent))?;
        state.idle += 1;
        state.threads.insert(id, handle);
        Ok(())
    }

    /// Takes the requests in `opened`: each is queued for a thread of the crew, or refused
    /// at once when its reactor has no room for it or serving it would leave no thread to
    /// lead.
    pub(super) fn take_requests(&self, opened: &mut Vec<Job>) {
        if opened.is_empty() {
            return;
        }
        let mut refused = Vec::new();
        let ended = {
            let mut state = self.state.lock();
            let stopping = self.stop.load(Ordering::SeqCst);
            for job in opened.drain(..) {
                let (shared, request) = match job {
                    Job::Request(shared, request) => (shared, request),
                    // Never refused: it holds no thread until it is run, and runs briefly.
                    answer @ Job::Answer(..) => {
                        state.jobs.push_back(answer);
                        continue;
                    }
                    Job::Chore(..) => continue, // not read from a socket
                };
                if shared.serve.is_none() {
                    refused.push((request, "this end serves no requests"));
                    continue;
                }
                let startable = state.max.saturating_sub(state.threads.len());
                // Threads free once the queued requests have theirs: one to serve this
                // request, one to lead.
                let free = (state.idle + startable).saturating_sub(state.jobs.len());
                if free >= 2 && !stopping && shared.take_one() {
                    state.jobs.push_back(Job::Request(shared, request));
                } else {
                    refused.push((request, "every handler thread of the server is busy"));
                }
            }
            // No thread is started here: the leader serves the queue itself, and threads
            // are started when one of its requests waits (`stop_serving_lead`), or when the
            // requests were read by a thread that will not serve them (`wake_for_jobs`).
            std::mem::take(&mut state.ended)
        };
        for ((conn, stream), why) in refused {
            conn.refuse(stream, why);
        }
        for handle in ended {
            let _ = handle.join();
        }
    }

    /// A thread's life: serving queued requests, waiting to lead, and leading until requests
    /// come; until it retires, or the crew stops.
    fn member(self: &Arc<Self>, id: u64, permanent: bool) {
        MEMBER.with(|m| m.set((self.address(), id)));
        let mut opened = Vec::new();
        let signal = Arc::new(Condvar::new());
        // Bounded: each pass serves a request or leads until requests come; `next` ends the
        // thread once the crew stops or it has waited long without work.
        while let Some(next) = self.next(id, permanent, &signal) {
            match next {
                Next::Serve(job) => {
                    run(job);
                    self.state.lock().idle += 1;
                }
                Next::Lead => {
                    if self.lead_and_serve(id, permanent, &mut opened) {
                        return;
                    }
                }
            }
        }
    }

    /// Leads, serving the requests each turn brings, until the lead passes on (a request
    /// was about to wait, or the crew stops); `true` when the leader retired instead, idle a
    /// while.
    fn lead_and_serve(self: &Arc<Self>, id: u64, permanent: bool, opened: &mut Vec<Job>) -> bool {
        // Bounded: each pass serves a queued request or leads until requests come; it ends
        // when the lead passed on while serving, or the crew stops (`lead` returns at once
        // then). The queue holds what one turn read, so the reading resumes after it.
        loop {
            if self.stop.load(Ordering::SeqCst) {
                self.let_go();
                return false;
            }
            let Some(job) = self.take_next(id) else {
                if self.lead(id, permanent, opened) {
                    return true;
                }
                self.take_requests(opened);
                self.share_queue();
                continue;
            };
            LEADING.with(|l| l.set(Some((Arc::clone(self), id))));
            run(job);
            LEADING.with(Cell::take);
            if !self.served_leading(id) {
                return false; // handed on while serving: this thread follows now
            }
        }
    }

    /// Leads until requests come (in `opened`) or the crew stops; `true` when the leader
    /// retired instead, idle a while.
    fn lead(&self, id: u64, permanent: bool, opened: &mut Vec<Job>) -> bool {
        // Uncontended but for a serving leader's `lead_meanwhile`, which only tries it.
        let mut master = self.master.lock();
        let since = Instant::now();
        // Bounded: each turn waits at most the sweep's interval; the loop ends when requests
        // come, the crew stops, or a leader that is not permanent retires.
        while opened.is_empty() && !self.stop.load(Ordering::SeqCst) {
            self.turn(&mut master, opened, SWEEP);
            // Not with requests just read: they are this thread's to hand on.
            if !permanent
                && opened.is_empty()
                && since.elapsed() >= IDLE_EXIT
                && self.retire_leader(id)
            {
                return true;
            }
        }
        false
    }
}

/// What an idle thread does next.
enum Next {
    Lead,
    Serve(Job),
}

/// Runs the handler on one request, or a chore; its reactor counts it served after.
fn run(job: Job) {
    let shared = Arc::clone(job.reactor());
    let outer = SERVING.with(|s| s.replace(Arc::as_ptr(&shared) as usize));
    let mut answered = false;
    // A handler that panics loses its request, not the thread or the server.
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
        Job::Request(shared, (conn, stream)) => {
            if let Some(serve) = &shared.serve {
                serve(StreamHandle::new(conn, stream, shared.config.io_timeout));
            }
        }
        Job::Chore(_, chore) => chore.run(),
        Job::Answer(_, answer) => {
            answer.run();
            answered = true;
        }
    }));
    SERVING.with(|s| s.set(outer));
    if done.is_err() {
        log::error!("{}: a request handler or chore panicked", shared.name);
    }
    // An answer was not counted in service: it held no thread while it was awaited.
    if !answered {
        shared.served();
    }
}

#[cfg(test)]
mod tests;
