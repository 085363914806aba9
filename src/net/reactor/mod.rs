//! The reactor: every socket of a server waited on at once (epoll, through `mio`), in the
//! poller of one of the process's crews (`crew/`), beside the sockets of the crew's other
//! reactors. The crew's leader takes a turn at each reactor whose sockets have something
//! and reads what came; a request it reads is served by a thread of the crew, most often
//! the leader itself. The threads a process runs grow neither with its connections nor with
//! its reactors: a leader a crew, and threads only for the requests that wait.

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
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use parking_lot::Mutex;

use super::secure::{Handshake, ReplayGuard};
use super::{Counters, NetConfig, Security};
use crate::fast_hash::FastMap;
use conn::{Answered, Brought, Start};

/// The low bits of a socket's token: which of its reactor's sockets it is. The high bits
/// are the reactor's token in its crew, so that one poller serves all of a crew's reactors.
const SOCKET_BITS: u32 = 40;
/// The listener's socket number.
const LISTENER: usize = 0;
/// The first socket number of a connection; each connection's is new, never reused.
const FIRST_CONN: usize = 1;

/// The reactor whose socket `token` is (its token in its crew).
pub(super) fn reactor_of(token: Token) -> Token {
    Token(token.0 >> SOCKET_BITS)
}

/// What one of a reactor's sockets is ready for, as the crew's poller said.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ready {
    token: Token,
    /// Something to read, or the connection closed or failed.
    readable: bool,
    writable: bool,
}

impl Ready {
    fn of(event: &mio::event::Event) -> Ready {
        Ready {
            token: event.token(),
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable(),
        }
    }
}

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
    stop: AtomicBool,
    conns: Mutex<FastMap<Token, Arc<Conn>>>,
    next_token: AtomicUsize,
    /// The first handshake messages taken lately: a replayed one is refused.
    replays: Mutex<ReplayGuard>,
    /// The crew whose threads serve this reactor, with the others in its care.
    crew: Arc<crew::Crew>,
    /// This reactor in its crew: the high bits of its sockets' tokens.
    crew_token: Token,
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

/// The token of socket `number` of the reactor `reactor`.
fn socket_token(reactor: Token, number: usize) -> Token {
    Token(reactor.0 << SOCKET_BITS | number)
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
        let listener = match listener {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                Some(TcpListener::from_std(listener))
            }
            None => None,
        };
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
        // Undone by `shutdown`, which the reactor's drop runs: nothing may fail between.
        let (crew, crew_token) = crew::Crew::join(config.max_workers, config.spin)?;
        let common = Arc::new(Common {
            registry: crew.registry(),
            counters,
            accepted,
            opened: ConnLimits {
                idle_timeout: config.pool_idle_timeout,
                ..accepted
            },
        });
        let shared = Arc::new(Shared {
            name: name.to_string(),
            crew,
            crew_token,
            chores: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            served: parking_lot::Condvar::new(),
            common,
            stop: AtomicBool::new(false),
            conns: Mutex::new(FastMap::default()),
            next_token: AtomicUsize::new(socket_token(crew_token, FIRST_CONN).0),
            replays: Mutex::new(ReplayGuard::default()),
            poller: Mutex::new(Poller {
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
        // Known to the crew before its listener is watched: no readiness is missed.
        shared.crew.register(&shared);
        let mut reactor = Reactor {
            shared,
            stopped: false,
        };
        if let Err(e) = reactor.shared.watch_listener() {
            reactor.shutdown();
            return Err(e);
        }
        Ok(reactor)
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
        shared.crew.poke(shared.crew_token);
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
    /// The crew leader's turn at this reactor, its sockets `ready` as given: reads what
    /// they hold, and notes in `opened` the requests peers opened. `true` when it may hold
    /// more than one turn takes.
    fn take_turn(self: &Arc<Self>, ready: &[Ready], opened: &mut Vec<crew::Job>) -> bool {
        // Only the leader turns a reactor (and a shutdown, at its end): busy means later,
        // and what its sockets are ready for is not announced again.
        let Some(mut poller) = self.poller.try_lock() else {
            self.later.lock().extend(ready.iter().map(|r| r.token));
            return true;
        };
        self.turn(&mut poller, ready, opened)
    }

    /// A turn: reads what came to the sockets `ready`, and to those that may hold more
    /// than their last turn took, and notes in `opened` the requests peers opened and the
    /// answers due. `true` when there may be more.
    fn turn(
        self: &Arc<Self>,
        p: &mut Poller,
        ready: &[Ready],
        opened: &mut Vec<crew::Job>,
    ) -> bool {
        let listener = socket_token(self.crew_token, LISTENER);
        for r in ready {
            if r.token == listener {
                if let Some(listener) = &p.listener {
                    self.accept_all(listener, &mut p.handshaking);
                }
                continue;
            }
            if r.writable {
                if let Some(conn) = self.conn(r.token) {
                    conn.write();
                }
            }
            if r.readable {
                p.again.push(r.token);
            }
        }
        p.again.append(&mut self.later.lock());
        p.again.sort_unstable();
        p.again.dedup();
        let tokens = std::mem::take(&mut p.again);
        if !tokens.is_empty() {
            crate::net::buffers::with(READ_SCRATCH, |scratch| {
                for token in tokens {
                    // Gone since: closed, and its place freed.
                    let Some(conn) = self.conn(token) else {
                        p.handshaking.leave(token);
                        continue;
                    };
                    if self.read(&conn, scratch, opened) {
                        p.again.push(token);
                    }
                    self.settle(&conn, &mut p.handshaking, opened);
                }
            });
        }
        if p.swept.elapsed() >= SWEEP {
            p.swept = Instant::now();
            self.sweep(p.swept, &mut p.handshaking, opened);
        }
        !p.again.is_empty()
    }

    /// Has the crew's poller watch the listener, if this reactor has one.
    fn watch_listener(&self) -> io::Result<()> {
        let mut poller = self.poller.lock();
        let Some(listener) = &mut poller.listener else {
            return Ok(());
        };
        let token = socket_token(self.crew_token, LISTENER);
        self.common
            .registry
            .register(listener, token, Interest::READABLE)
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
        conn: &Arc<Conn>,
        scratch: &mut [u8],
        opened: &mut Vec<crew::Job>,
    ) -> bool {
        let mut brought = Brought::default();
        let more = conn.read(scratch, READ_BUDGET, &self.replays, &mut brought);
        self.jobs(conn, brought, opened);
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
        self.crew.poke(self.crew_token);
    }

    /// After a connection's turn: its handshake's end frees its count, its close its place
    /// (and fails the answers still expected on it, as work in `jobs`).
    fn settle(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        handshaking: &mut Handshaking,
        jobs: &mut Vec<crew::Job>,
    ) {
        if !conn.is_handshaking() {
            handshaking.leave(conn.token);
        }
        if conn.is_closed() {
            self.remove(conn, handshaking, jobs);
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
