//! The reactor: every socket of a server waited on at once (epoll, through `mio`). Its
//! poller is itself watched by one of the process's crews (`crew/`), whose leader takes a
//! turn at each reactor whose sockets have something and reads what came; a request it
//! reads is served by a thread of the crew, most often the leader itself. The threads a
//! process runs grow neither with its connections nor with its reactors: a leader a crew,
//! and threads only for the requests that wait.

mod accepting;
mod conn;
mod crew;
mod handle;
mod handshaking;
mod introduced;
mod service;
mod watch;

pub(crate) use conn::{Common, Conn, ConnLimits};
pub(crate) use crew::{may_block, Chore};
pub(crate) use handle::StreamHandle;
pub(crate) use handshaking::Handshaking;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use super::secure::{Handshake, ReplayGuard};
use super::{Counters, NetConfig, Security};
use crate::fast_hash::FastMap;
use conn::{Answered, Brought, Start};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// The first token of a connection; each connection's is new, never reused.
const FIRST_CONN: usize = 2;
/// Readiness a turn takes at once: a full batch has the turn go again, so a small one costs
/// a few more calls under load, and an idle node (hundreds to a process) little memory.
const EVENTS: usize = 64;

/// How often deadlines are checked: a late frame or handshake is closed this much after its
/// deadline at most.
const SWEEP: Duration = Duration::from_millis(500);

/// Bytes read from one connection before the others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// Bytes the reactor takes from a socket per read.
const READ_SCRATCH: usize = 64 * 1024;

/// Serves a request: the stream the peer opened on a connection, its first frame waiting.
/// Runs on a thread of the crew.
pub(crate) type Serve = Arc<dyn Fn(StreamHandle) + Send + Sync>;

/// A running reactor and its crew. Dropping it closes every connection and joins every
/// thread.
pub(crate) struct Reactor {
    shared: Arc<Shared>,
    stopped: bool,
}

struct Shared {
    name: String,
    config: NetConfig,
    /// What its connections share: held once, not by each.
    common: Arc<Common>,
    waker: Waker,
    stop: AtomicBool,
    conns: Mutex<FastMap<Token, Arc<Conn>>>,
    next_token: AtomicUsize,
    /// The first handshake messages taken lately: a replayed one is refused.
    replays: Mutex<ReplayGuard>,
    /// The crew whose threads serve this reactor, with the others in its care.
    crew: Arc<crew::Crew>,
    /// This reactor's poller, as the crew watches it.
    crew_token: Token,
    poll_fd: RawFd,
    /// Its owner's chores.
    chores: Mutex<Vec<std::sync::Weak<dyn Chore>>>,
    /// Requests queued or in service, at most `config.max_workers`, and chores.
    busy: Mutex<usize>,
    /// Signalled when a request is served: a shutdown waits for those in service.
    served: parking_lot::Condvar,
    /// What the crew's leader works with on its turn at this reactor.
    poller: Mutex<Poller>,
    /// Connections a thread reading for itself left with more to read: the leader's next.
    later: Mutex<Vec<Token>>,
    introduced: introduced::Introduced,
    /// Who serves requests; `None` on a reactor of outbound connections only, which refuses
    /// any.
    serve: Option<Serve>,
}

/// The tools of a turn at the reactor, and its memory between turns.
struct Poller {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    handshaking: Handshaking,
    /// Connections that may hold more to read than their last turn took.
    again: Vec<Token>,
    swept: Instant,
}

/// A share of a running reactor: connections adopted through it are read by that reactor,
/// and requests peers open on them are served like those on its listener's. Adopting
/// fails once the reactor has stopped. (Weak: the reactor's handler may own the pool that
/// holds this.)
#[derive(Clone)]
pub(crate) struct ReactorHandle(std::sync::Weak<Shared>);

impl ReactorHandle {
    /// As [`Reactor::adopt`].
    pub fn adopt(
        &self,
        stream: std::net::TcpStream,
        channel: Option<super::secure::Channel>,
    ) -> io::Result<Arc<Conn>> {
        let Some(shared) = self.0.upgrade() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the reactor has stopped",
            ));
        };
        shared.adopt(stream, channel)
    }

    /// Has the crew do `chore` whenever it is due, while the reactor runs and `chore` lives.
    pub fn add_chore(&self, chore: std::sync::Weak<dyn Chore>) {
        if let Some(shared) = self.0.upgrade() {
            shared.chores.lock().push(chore);
        }
    }

    /// Connections peers introduced that the reactor still refers to.
    #[cfg(test)]
    pub fn introduced_held(&self) -> usize {
        self.0.upgrade().map_or(0, |s| s.introduced.len())
    }

    /// The open connection the peer listening at `addr` opened to this reactor and
    /// introduced, if any.
    pub fn introduced(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        self.0.upgrade()?.introduced.get(addr)
    }
}

/// A request the peer opened: the connection and the stream.
type Request = (Arc<Conn>, u32);

impl Reactor {
    /// Starts serving `listener`: each request goes to `serve` on a thread of one of the
    /// process's crews, at most `config.max_workers` at once. `name` labels logs.
    pub fn serve(
        name: &str,
        listener: std::net::TcpListener,
        config: NetConfig,
        counters: Arc<Counters>,
        serve: Serve,
    ) -> io::Result<Reactor> {
        Reactor::start(name, Some(listener), config, counters, Some(serve))
    }

    /// Starts a reactor for outbound connections only, handed over by [`Reactor::adopt`].
    pub fn outbound(name: &str, config: NetConfig, counters: Arc<Counters>) -> io::Result<Reactor> {
        Reactor::start(name, None, config, counters, None)
    }

    fn start(
        name: &str,
        listener: Option<std::net::TcpListener>,
        config: NetConfig,
        counters: Arc<Counters>,
        serve: Option<Serve>,
    ) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let listener = match listener {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                let mut listener = TcpListener::from_std(listener);
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)?;
                Some(listener)
            }
            None => None,
        };
        let waker = Waker::new(poll.registry(), WAKER)?;
        let accepted = ConnLimits {
            link: super::mux::LinkConfig {
                // At least a byte: with none, nothing could ever be sent.
                window: config.stream_window.max(1),
                max_peer_streams: config.max_streams,
                max_payload: config.max_payload,
                trailer: config.security.trailer(),
            },
            frame_timeout: config.io_timeout,
            idle_timeout: config.idle_timeout,
        };
        let common = Arc::new(Common {
            registry: poll.registry().try_clone()?,
            counters,
            accepted,
            opened: ConnLimits {
                idle_timeout: config.pool_idle_timeout,
                ..accepted
            },
        });
        // Undone by `shutdown`, which the reactor's drop runs: nothing may fail between.
        let crew = crew::Crew::join(config.max_workers, config.spin)?;
        let crew_token = crew.token();
        let poll_fd = poll.as_raw_fd();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            crew,
            crew_token,
            poll_fd,
            chores: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            served: parking_lot::Condvar::new(),
            common,
            waker,
            stop: AtomicBool::new(false),
            conns: Mutex::new(FastMap::default()),
            next_token: AtomicUsize::new(FIRST_CONN),
            replays: Mutex::new(ReplayGuard::default()),
            poller: Mutex::new(Poller {
                poll,
                events: Events::with_capacity(EVENTS),
                listener,
                handshaking: Handshaking::default(),
                again: Vec::new(),
                swept: Instant::now(),
            }),
            later: Mutex::new(Vec::new()),
            introduced: introduced::Introduced::default(),
            config,
            serve,
        });
        if let Err(e) = shared.crew.register(&shared) {
            let mut reactor = Reactor {
                shared,
                stopped: false,
            };
            reactor.shutdown();
            return Err(e);
        }
        Ok(Reactor {
            shared,
            stopped: false,
        })
    }

    /// Takes over an outbound connection whose handshake is done (`channel` its cipher,
    /// `None` when insecure): from now on the reactor reads it. It is closed once it has
    /// carried no request for `pool_idle_timeout`.
    pub fn adopt(
        &self,
        stream: std::net::TcpStream,
        channel: Option<super::secure::Channel>,
    ) -> io::Result<Arc<Conn>> {
        self.shared.adopt(stream, channel)
    }

    /// A handle through which others (a pool of outbound connections) hand connections to
    /// this reactor, so that one reactor serves a node's listener and its pool.
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle(Arc::downgrade(&self.shared))
    }

    /// Stops, closes every connection and joins every thread. Idempotent.
    pub fn shutdown(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let shared = &self.shared;
        shared.stop.store(true, Ordering::SeqCst);
        let _ = shared.waker.wake();
        // Handlers still running find their connections closed and end.
        let conns: Vec<Arc<Conn>> = shared.conns.lock().drain().map(|(_, c)| c).collect();
        for conn in conns {
            conn.close("the server is shutting down");
            shared.forget(&conn);
            // Failed here: the crew takes no more of this reactor's work.
            for answer in conn.failed_answers(Instant::now()) {
                answer.run();
            }
        }
        shared.crew.leave(shared);
        // The port is free once `shutdown` returns.
        shared.poller.lock().listener = None;
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    /// The crew leader's turn at this reactor: reads what its sockets hold, and notes in
    /// `opened` the requests peers opened. `true` when it may hold more than one turn takes.
    fn take_turn(self: &Arc<Self>, opened: &mut Vec<crew::Job>) -> bool {
        // Only the leader turns a reactor (and a shutdown, at its end): busy means later.
        let Some(mut poller) = self.poller.try_lock() else {
            return true;
        };
        self.turn(&mut poller, opened)
    }

    /// A turn: takes the readiness there is, reads what came, and notes in `opened` the
    /// requests peers opened and the answers due. `true` when there may be more.
    fn turn(self: &Arc<Self>, p: &mut Poller, opened: &mut Vec<crew::Job>) -> bool {
        if let Err(e) = p.poll.poll(&mut p.events, Some(Duration::ZERO)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("{}: waiting on sockets failed: {e}", self.name);
            }
            return true;
        }
        // A full batch may have left readiness behind, which is not announced again.
        let full = p.events.iter().count() == p.events.capacity();
        for event in p.events.iter() {
            match event.token() {
                LISTENER => {
                    if let Some(listener) = &p.listener {
                        self.accept_all(listener, &mut p.handshaking);
                    }
                }
                WAKER => {}
                token => {
                    let Some(conn) = self.conn(token) else {
                        continue;
                    };
                    if event.is_writable() {
                        conn.write();
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        p.again.push(token);
                    }
                }
            }
        }
        p.again.append(&mut self.later.lock());
        p.again.sort_unstable();
        p.again.dedup();
        let tokens = std::mem::take(&mut p.again);
        if !tokens.is_empty() {
            crate::net::buffers::with(READ_SCRATCH, |scratch| {
                for token in tokens {
                    if self.read(token, scratch, opened) {
                        p.again.push(token);
                    }
                    self.settle(token, &mut p.handshaking, opened);
                }
            });
        }
        if p.swept.elapsed() >= SWEEP {
            p.swept = Instant::now();
            self.sweep(p.swept, &mut p.handshaking, opened);
        }
        full || !p.again.is_empty()
    }

    fn adopt(
        self: &Arc<Self>,
        stream: std::net::TcpStream,
        channel: Option<super::secure::Channel>,
    ) -> io::Result<Arc<Conn>> {
        let stopped = || io::Error::new(io::ErrorKind::NotConnected, "the reactor has stopped");
        if self.stop.load(Ordering::SeqCst) {
            return Err(stopped());
        }
        stream.set_nonblocking(true)?;
        let peer = stream.peer_addr()?;
        let socket = mio::net::TcpStream::from_std(stream);
        let token = Token(self.next_token.fetch_add(1, Ordering::Relaxed));
        let start = Start::Opened(channel.map(Box::new));
        let conn = Arc::new(Conn::new(token, socket, peer, start, self));
        // Watched once the reactor can find it: no readiness is missed.
        self.conns.lock().insert(token, Arc::clone(&conn));
        // A shutdown that began meanwhile closed what it found; this one it did not.
        if self.stop.load(Ordering::SeqCst) {
            self.conns.lock().remove(&token);
            return Err(stopped());
        }
        let fd = conn.socket().as_raw_fd();
        // Writability is watched only while bytes wait for room (`Conn::write`).
        if let Err(e) = self
            .common
            .registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            self.conns.lock().remove(&token);
            return Err(e);
        }
        Ok(conn)
    }

    /// Notes that the peer at the other end of `conn` (which it opened) listens at `addr`.
    fn introduce(&self, addr: SocketAddr, conn: &Arc<Conn>) {
        self.introduced
            .note(addr, conn, self.config.max_connections);
    }

    fn conn(&self, token: Token) -> Option<Arc<Conn>> {
        self.conns.lock().get(&token).cloned()
    }

    /// Reads a connection's turn, noting in `opened` the requests and answers it brought.
    /// `true` when it may hold more.
    fn read(
        self: &Arc<Self>,
        token: Token,
        scratch: &mut [u8],
        opened: &mut Vec<crew::Job>,
    ) -> bool {
        let Some(conn) = self.conn(token) else {
            return false;
        };
        let mut brought = Brought::default();
        let more = conn.read(scratch, READ_BUDGET, &self.replays, &mut brought);
        self.jobs(&conn, brought, opened);
        more
    }

    /// What a read of `conn` brought, as work for the crew.
    fn jobs(self: &Arc<Self>, conn: &Arc<Conn>, brought: Brought, jobs: &mut Vec<crew::Job>) {
        let requests = brought.opened.into_iter();
        jobs.extend(requests.map(|s| crew::Job::Request(Arc::clone(self), (Arc::clone(conn), s))));
        self.answers(brought.answered, jobs);
    }

    fn answers(self: &Arc<Self>, answered: Vec<Answered>, jobs: &mut Vec<crew::Job>) {
        jobs.extend(
            answered
                .into_iter()
                .map(|a| crew::Job::Answer(Arc::clone(self), a)),
        );
    }

    /// A turn at reading `conn` by a thread reading for itself, `scratch` its buffer, until a
    /// frame of its `stream` came (or `budget` bytes, or the socket ran dry): the requests it
    /// brought go to handlers.
    fn read_for(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        scratch: &mut [u8],
        budget: usize,
        stream: u32,
    ) -> conn::Turn {
        let mut brought = Brought::default();
        let turn = conn.read_turn(scratch, budget, Some(stream), &self.replays, &mut brought);
        let mut opened = Vec::new();
        self.jobs(conn, brought, &mut opened);
        if !opened.is_empty() {
            // Followers wake to serve them.
            self.crew.take_requests(&mut opened);
            self.crew.wake_for_jobs();
        }
        if conn.is_closed() {
            // Its place is freed on the reactor's turn.
            self.read_later(conn.token);
        }
        turn
    }

    /// Has the reactor read `token` on its next turn.
    fn read_later(&self, token: Token) {
        self.later.lock().push(token);
        let _ = self.waker.wake();
    }

    /// After a connection's turn: its handshake's end frees its count, its close its place
    /// (and fails the answers still expected on it, as work in `jobs`).
    fn settle(
        self: &Arc<Self>,
        token: Token,
        handshaking: &mut Handshaking,
        jobs: &mut Vec<crew::Job>,
    ) {
        let Some(conn) = self.conn(token) else {
            handshaking.leave(token);
            return;
        };
        if !conn.is_handshaking() {
            handshaking.leave(token);
        }
        if conn.is_closed() {
            self.remove(&conn, handshaking, jobs);
        }
    }

    fn remove(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        handshaking: &mut Handshaking,
        jobs: &mut Vec<crew::Job>,
    ) {
        self.answers(conn.failed_answers(Instant::now()), jobs);
        handshaking.leave(conn.token);
        if self.conns.lock().remove(&conn.token).is_some() && conn.inbound {
            self.common.counters.open.fetch_sub(1, Ordering::Relaxed);
            self.introduced.forget(conn);
        }
        self.forget(conn);
    }

    /// Stops watching a connection's socket.
    fn forget(&self, conn: &Conn) {
        let fd = conn.socket().as_raw_fd();
        let _ = self.common.registry.deregister(&mut SourceFd(&fd));
    }

    /// Closes what is past a deadline, and fails the answers expected past theirs (as work
    /// in `jobs`).
    fn sweep(
        self: &Arc<Self>,
        now: Instant,
        handshaking: &mut Handshaking,
        jobs: &mut Vec<crew::Job>,
    ) {
        let conns: Vec<Arc<Conn>> = self.conns.lock().values().cloned().collect();
        for conn in conns {
            if conn.check_deadlines(now) {
                self.remove(&conn, handshaking, jobs);
                continue;
            }
            self.answers(conn.failed_answers(now), jobs);
            if !conn.is_handshaking() {
                handshaking.leave(conn.token);
            }
        }
    }
}
