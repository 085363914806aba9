//! The crews' life: a reactor joins the crew of the process with the fewest reactors, the
//! first one in starts it, and the last one out stops it and joins its threads.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token, Waker};
use parking_lot::Mutex;

use super::{Crew, Job, Master, State, MEMBER, SERVING, WAKER};
use crate::net::reactor::{reactor_of, watch, Shared};

/// The crews of the process, two a processor (up to [`MAX_CREWS`]), each while a reactor
/// is in its care. A crew has one leader reading at a time, which may be waiting on a peer
/// meanwhile: with reactors shared among two crews a processor, every processor reads and
/// serves under load. (Gets with 32 in flight at 64 nodes, a probe: one crew a processor
/// 27,600–29,800/s; two 37,200–39,400/s; four 32,700–32,900/s.)
static CREWS: Mutex<Vec<Option<Arc<Crew>>>> = Mutex::new(Vec::new());

/// Most crews a process runs.
const MAX_CREWS: usize = 8;

/// Crews running now: the slots of [`CREWS`] taken.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// How many crews the process runs now.
pub(super) fn running() -> usize {
    RUNNING.load(Ordering::Relaxed)
}

impl Crew {
    /// The crew of the process with the fewest reactors in its care, started if none runs
    /// in its place, with `workers` more threads allowed for the reactor that joins it, and
    /// its leader polling at least `spin` before it sleeps. Each join is undone by
    /// [`Crew::leave`]. With the crew, the token the reactor has in it.
    pub(in crate::net::reactor) fn join(
        workers: usize,
        spin: Duration,
    ) -> io::Result<(Arc<Crew>, Token)> {
        let mut crews = CREWS.lock();
        if crews.is_empty() {
            let processors = crate::net::spin::processors();
            crews.resize((processors * 2).clamp(1, MAX_CREWS), None);
        }
        let members =
            |slot: &Option<Arc<Crew>>| slot.as_ref().map_or(0, |c| c.state.lock().members);
        let place = (0..crews.len())
            .min_by_key(|&i| members(&crews[i]))
            .unwrap_or(0);
        let crew = match &crews[place] {
            Some(crew) => Arc::clone(crew),
            None => {
                let crew = Crew::start()?;
                crews[place] = Some(Arc::clone(&crew));
                RUNNING.fetch_add(1, Ordering::Relaxed);
                crew
            }
        };
        // Fails only in a crew that has numbered many reactors, which has members then.
        let token = crew.token()?;
        let spin = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
        crew.spin.fetch_max(spin, Ordering::Relaxed);
        let mut state = crew.state.lock();
        state.max += workers;
        state.members += 1;
        drop(state);
        Ok((crew, token))
    }

    pub(super) fn start() -> io::Result<Arc<Crew>> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let registry = Arc::new(poll.registry().try_clone()?);
        let crew = Arc::new(Crew {
            state: Mutex::new(State {
                max: 1,
                ..State::default()
            }),
            stop: AtomicBool::new(false),
            master: Mutex::new(Master {
                poll,
                events: Events::with_capacity(256),
                ready: Vec::new(),
                again: Vec::new(),
                swept: Instant::now(),
                polling: crate::net::spin::Window::default(),
            }),
            registry,
            waker,
            reactors: Mutex::new(Default::default()),
            poked: Mutex::new(Vec::new()),
            next_token: AtomicUsize::new(0),
            spin: AtomicU64::new(0),
        });
        let spawned = crew.spawn_member(&mut crew.state.lock(), true);
        if let Err(e) = spawned.and_then(|()| watch::watch(&crew)) {
            crew.stop();
            return Err(e);
        }
        Ok(crew)
    }

    /// A token for a reactor about to join the crew: the high bits of its sockets' tokens.
    /// Fails once the crew has numbered as many reactors as those bits hold (it numbers
    /// them anew once it stops, with its last reactor).
    fn token(&self) -> io::Result<Token> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        if token >= reactor_of(WAKER).0 {
            return Err(io::Error::other("too many reactors started in one crew"));
        }
        Ok(Token(token))
    }

    /// Where the reactors of the crew watch their sockets.
    pub(in crate::net::reactor) fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Takes `reactor` into the crew's care, as the token it was given: the leader takes a
    /// turn at the reactor whenever its sockets have something.
    pub(in crate::net::reactor) fn register(&self, reactor: &Arc<Shared>) {
        let token = reactor.crew_token;
        self.reactors.lock().insert(token, Arc::downgrade(reactor));
    }

    /// Has the leader take a turn at the reactor `token` soon, whether or not its sockets
    /// have something.
    pub(in crate::net::reactor) fn poke(&self, token: Token) {
        self.poked.lock().push(token);
        let _ = self.waker.wake();
    }

    /// `reactor` leaves, allowing its `max_workers` fewer threads: its queued requests are
    /// refused, those in service are waited for (but the one this thread serves), and the
    /// last reactor out stops the crew and joins its threads.
    pub(in crate::net::reactor) fn leave(&self, reactor: &Shared) {
        let (token, workers) = (reactor.crew_token, reactor.config.max_workers);
        self.reactors.lock().remove(&token);
        let queued: VecDeque<Job> = {
            let mut state = self.state.lock();
            let (theirs, others): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut state.jobs)
                .into_iter()
                .partition(|job| std::ptr::eq(Arc::as_ptr(job.reactor()), reactor));
            state.jobs = others;
            theirs
        };
        for job in queued {
            match job {
                Job::Request(shared, (conn, stream)) => {
                    conn.refuse(stream, "the server is shutting down");
                    shared.served();
                }
                Job::Chore(shared, _) => shared.served(),
                // Not counted in service; what it is for learns of it now.
                Job::Answer(_, answer) => answer.run(),
            }
        }
        reactor.wait_served(SERVING.with(Cell::get) == reactor as *const Shared as usize);
        let last = {
            let mut crews = CREWS.lock();
            let mut state = self.state.lock();
            state.max = state.max.saturating_sub(workers);
            state.members = state.members.saturating_sub(1);
            let last = state.members == 0;
            if last {
                let mine = crews
                    .iter_mut()
                    .find(|slot| slot.as_ref().is_some_and(|c| std::ptr::eq(&**c, self)));
                if let Some(slot) = mine {
                    *slot = None;
                    RUNNING.fetch_sub(1, Ordering::Relaxed);
                }
            }
            last
        };
        if last {
            self.stop();
        }
    }

    /// Stops every thread and joins them (but this one, if it is the crew's).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        self.wake_all();
        self.join_all();
        watch::unwatch(self);
    }

    /// What tells this crew from another.
    pub(super) fn address(&self) -> usize {
        self as *const Crew as usize
    }

    /// Joins every thread once the crew is stopping.
    pub(super) fn join_all(&self) {
        // Bounded: each pass joins the threads there are; none starts once stopping.
        for _ in 0..1024 {
            // A handler that stops the last reactor runs this on a thread of the crew: it
            // cannot join itself.
            let (crew, me) = MEMBER.with(Cell::get);
            let me = (crew == self.address()).then_some(me);
            let handles: Vec<JoinHandle<()>> = {
                let mut state = self.state.lock();
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
