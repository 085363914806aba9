//! Outbound connections: one per peer, kept open and shared by every request to it, many in
//! flight at once. On loopback a TCP handshake costs more than the request it carries.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame_io::{Framed, ReadError, Side};
use super::frames::Frames;
use super::reactor::{Conn, Reactor, ReactorHandle, StreamHandle};
use super::{introductions, Counters, NetConfig};
use crate::error::{Error, Result};
use crate::fast_hash::FastMap;
use crate::identity::Credentials;
use crate::wire::{Message, RemoteCode};

mod later;

/// How long a connection to a peer a node does not talk to all the time (see
/// [`Pool::close_idle`]) may carry no request before it is closed: long enough for the
/// burst of requests that opened it, short enough that the peers met while joining do not
/// hold twice the descriptors the node's tables need.
const LINGER: Duration = Duration::from_secs(5);

/// A request of its own on the connection to a peer; see [`Pool::stream`]. Ended by
/// [`PeerStream::end`]; dropped without it, the request is given up (the peer is told).
pub(crate) struct PeerStream {
    /// `None` once ended.
    handle: Option<StreamHandle>,
    conn: Arc<Conn>,
    /// The pool keeps no connection: this one served this request only.
    close_after: bool,
}

impl PeerStream {
    /// The request's frames.
    pub(crate) fn frames(&mut self) -> &mut dyn Frames {
        // Only `end`, which takes the stream, empties `handle`.
        self.handle
            .as_mut()
            .expect("a stream is not used after it ends")
    }

    /// Ends the request: done if `ok` (its last frames flushed), else given up.
    pub(crate) fn end(mut self, ok: bool) {
        if let Some(handle) = self.handle.take() {
            if ok {
                let _ = handle.finish();
            }
        }
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        drop(self.handle.take()); // unfinished: given up, the peer is told
        if self.close_after {
            self.conn.close("done");
        }
    }
}

/// Whether a failed request never reached the peer's handlers: the peer closed its
/// connection as idle as the request crossed the close ([`Conn::closed_unseen`]).
struct Unseen(bool);

/// The connections to peers, one per address, each carrying every request to its peer at
/// once. Cheap to share: callers never wait for each other's replies.
pub struct Pool {
    config: NetConfig,
    counters: Arc<Counters>,
    /// Reads every connection of the pool.
    reactor: Mutex<Reading>,
    conns: Mutex<FastMap<SocketAddr, Kept>>,
    /// A lock per address being connected to: callers that find no connection wait for
    /// one opener rather than each open their own.
    connecting: Mutex<FastMap<SocketAddr, Arc<Mutex<()>>>>,
}

/// Who reads the pool's connections.
enum Reading {
    /// Nobody yet: a reactor of the pool's own starts with the first connection.
    Unset,
    /// The pool's own reactor.
    Own(Reactor),
    /// A server's (the node's own listener's), and the credentials of the node it serves:
    /// introduced to each peer connected to, so that the peer believes what it says for
    /// itself and sends its requests back over the connection.
    Server(ReactorHandle, Option<Arc<Credentials>>),
}

/// A caller's turn to connect to an address, taken: the address leaves the table of turns
/// when it is dropped, however the caller leaves, and the table itself once empty (a join
/// connects to dozens of peers at once, and an idle node to none).
struct TurnTaken<'a>(&'a Pool, SocketAddr);

impl Drop for TurnTaken<'_> {
    fn drop(&mut self) {
        let mut connecting = self.0.connecting.lock();
        connecting.remove(&self.1);
        if connecting.is_empty() {
            *connecting = FastMap::default();
        }
    }
}

/// A connection and when it was last lent.
struct Kept {
    conn: Arc<Conn>,
    used: Instant,
}

impl Pool {
    /// An empty pool using `config`'s timeouts and limits, counting into `counters`.
    pub(crate) fn new(config: NetConfig, counters: Arc<Counters>) -> Pool {
        Pool {
            config,
            counters,
            reactor: Mutex::new(Reading::Unset),
            conns: Mutex::new(FastMap::default()),
            connecting: Mutex::new(FastMap::default()),
        }
    }

    /// Sends `request` to `addr` and waits for its reply.
    ///
    /// A reply of [`Message::Error`] becomes [`Error::Refused`]. A kept connection found
    /// closed is replaced by a fresh one, and so is one the peer closed as idle while the
    /// request was on its way: the request, which the peer never saw, is sent again once.
    pub fn call(&self, addr: SocketAddr, request: &Message) -> Result<Message> {
        self.call_within(addr, request, self.config.io_timeout)
    }

    /// Like [`Pool::call`], waiting at most `timeout` for the reply.
    pub fn call_within(
        &self,
        addr: SocketAddr,
        request: &Message,
        timeout: Duration,
    ) -> Result<Message> {
        let call = |frames: &mut dyn Frames| {
            frames
                .send(request)
                .map_err(|e| frames.error(ReadError::Io(e)))?;
            frames.recv_or_fail()
        };
        match self.attempt(addr, timeout, call) {
            // Without this, a peer would take the other for gone whenever their requests
            // crossed an idle close; the connection is new, so it happens once at most.
            (Err(_), Unseen(true)) => self.exchange(addr, timeout, call),
            (result, _) => result,
        }
    }

    /// Runs `f` on a request of its own to `addr`, for exchanges of several frames (streamed
    /// records). A failure of `f` gives the request up: the peer is told to stop.
    pub(crate) fn session<T>(
        &self,
        addr: SocketAddr,
        f: impl FnOnce(&mut dyn Frames) -> Result<T>,
    ) -> Result<T> {
        self.exchange(addr, self.config.io_timeout, f)
    }

    /// Runs `f` on a new stream to `addr`, waiting at most `timeout` for each frame.
    fn exchange<T>(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        f: impl FnOnce(&mut dyn Frames) -> Result<T>,
    ) -> Result<T> {
        self.attempt(addr, timeout, f).0
    }

    /// [`Pool::exchange`], and whether a failure left the request unseen by the peer.
    fn attempt<T>(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        f: impl FnOnce(&mut dyn Frames) -> Result<T>,
    ) -> (Result<T>, Unseen) {
        let mut stream = match self.stream_within(addr, timeout) {
            Ok(stream) => stream,
            Err(e) => return (Err(e), Unseen(false)),
        };
        let result = f(stream.frames());
        // Only a request that failed with its connection: one refused was seen.
        let failed = matches!(result, Err(Error::Unreachable { .. }));
        let unseen = Unseen(failed && stream.conn.closed_unseen());
        stream.end(result.is_ok());
        (result, unseen)
    }

    /// A new stream to `addr`, each of its frames waited for at most `timeout`.
    fn stream_within(&self, addr: SocketAddr, timeout: Duration) -> Result<PeerStream> {
        Counters::bump(&self.counters.sent);
        let (conn, stream, kept) = self.stream_to(addr, timeout)?;
        Ok(PeerStream {
            handle: Some(StreamHandle::new(Arc::clone(&conn), stream, timeout)),
            conn,
            close_after: !kept,
        })
    }

    /// A new stream on the connection to `addr`, opened if there is none (or it closed),
    /// and whether that connection is kept (else it is closed after this request).
    fn stream_to(&self, addr: SocketAddr, timeout: Duration) -> Result<(Arc<Conn>, u32, bool)> {
        if let Some((conn, stream)) = self.stream_on_kept(addr) {
            return Ok((conn, stream, true));
        }
        if let Some(conn) = self.introduced(addr) {
            if let Ok(stream) = conn.open_stream() {
                return Ok((conn, stream, true));
            }
        }
        // Connecting waits on the peer (or on another caller connecting).
        super::may_block();
        let turn = Arc::clone(self.connecting.lock().entry(addr).or_default());
        let conn = {
            let _turn = turn.lock();
            let _done = TurnTaken(self, addr);
            // Opened by the caller whose turn came first.
            if let Some((conn, stream)) = self.stream_on_kept(addr) {
                return Ok((conn, stream, true));
            }
            self.connect(addr, timeout)?
        };
        let (conn, kept) = conn;
        let stream = conn
            .open_stream()
            .map_err(|source| Error::Unreachable { addr, source })?;
        Ok((conn, stream, kept))
    }

    /// A new stream on the kept connection to `addr`, if there is one still open.
    fn stream_on_kept(&self, addr: SocketAddr) -> Option<(Arc<Conn>, u32)> {
        let conn = self.kept(addr)?;
        match conn.open_stream() {
            Ok(stream) => Some((conn, stream)),
            Err(_) => {
                self.forget(addr);
                None
            }
        }
    }

    /// The kept connection to `addr`, if it is still open and has numbers left.
    fn kept(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock();
        let kept = conns.get_mut(&addr)?;
        if kept.conn.is_closed() || kept.conn.is_spent() {
            return None;
        }
        kept.used = Instant::now();
        Some(Arc::clone(&kept.conn))
    }

    /// Opens a connection to `addr` and hands it to the reactor; keeps it unless the pool
    /// keeps none.
    /// `Ok((conn, kept))`: a connection whose introduction the peer did not believe is not
    /// kept, and serves only the request it was opened for (introduced later, it would
    /// still be believed as nobody's).
    fn connect(&self, addr: SocketAddr, handshake_within: Duration) -> Result<(Arc<Conn>, bool)> {
        let framed = open(addr, &self.config, &self.counters, handshake_within)?;
        let local = |source| Error::Local {
            what: format!("handing the connection to {addr} to the reactor"),
            source,
        };
        let (stream, channel) = framed.into_parts().map_err(|source| Error::Protocol {
            addr,
            what: format!("after the handshake: {source}"),
        })?;
        let (conn, me) = {
            let mut reading = self.reactor.lock();
            if let Reading::Unset = *reading {
                let counters = Arc::clone(&self.counters);
                let started = Reactor::outbound("pastry-out", self.config.clone(), counters);
                *reading = Reading::Own(started.map_err(local)?);
            }
            match &*reading {
                Reading::Own(reactor) => (reactor.adopt(stream, channel), None),
                Reading::Server(handle, me) => (handle.adopt(stream, channel), me.clone()),
                Reading::Unset => (Err(io::ErrorKind::NotConnected.into()), None),
            }
        };
        let conn = conn.map_err(local)?;
        // Introduced even when not kept: the peer believes what this node says for
        // itself only on a connection it proved its identity on.
        let believed = match me {
            Some(me) => introductions::introduce(&me, &conn, handshake_within),
            None => true,
        };
        let kept = believed && self.config.pool_per_peer > 0;
        if kept {
            self.keep(addr, &conn);
        }
        Ok((conn, kept))
    }

    /// Keeps `conn` as the connection to `addr`.
    fn keep(&self, addr: SocketAddr, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock();
        let kept = Kept {
            conn: Arc::clone(conn),
            used: Instant::now(),
        };
        // Another caller may have opened one at the same time: the later one wins, the
        // earlier serves its requests and idles out.
        conns.insert(addr, kept);
        evict_beyond(&mut conns, self.config.pool_max_idle);
    }

    /// Closes the connections that carried no request for the configured timeout (the
    /// reactor does so too, as it checks deadlines), or for [`LINGER`] if `regular` says
    /// their peer is not one this node talks to all the time, and forgets closed ones: an
    /// idle node lets its peers' connections go, and a node that met many peers once (a
    /// join, a repair) does not hold their connections for long.
    pub fn close_idle(&self, regular: impl Fn(SocketAddr) -> bool) {
        let now = Instant::now();
        let mut conns = self.conns.lock();
        conns.retain(|addr, kept| {
            let idle = if regular(*addr) {
                self.config.pool_idle_timeout
            } else {
                LINGER
            };
            !kept.conn.check_deadlines_idle(now, idle)
        });
        // The table a join's many connections grew is let go as they close.
        if conns.capacity() > 2 * conns.len() + 8 {
            conns.shrink_to_fit();
        }
    }

    /// Has the server behind `handle` read the pool's connections, rather than a reactor of
    /// the pool's own; with `me`, the credentials of the node that server serves, each
    /// connection the pool opens is introduced to its peer (one connection per pair of
    /// nodes, carrying both ways), and connections peers opened and introduced are used.
    /// Only before the first connection: later, nothing changes.
    pub(crate) fn read_through(&self, handle: ReactorHandle, me: Option<Arc<Credentials>>) {
        let mut reading = self.reactor.lock();
        if let Reading::Unset = *reading {
            *reading = Reading::Server(handle, me);
        }
    }

    /// A connection the peer at `addr` opened to this node and introduced, for this node's
    /// own requests to it. Not kept among the pool's own: the peer decides when it closes,
    /// and closing it here would only have the peer open another.
    fn introduced(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        if self.config.pool_per_peer == 0 {
            return None;
        }
        match &*self.reactor.lock() {
            Reading::Server(handle, Some(_)) => handle.introduced(addr),
            _ => None,
        }
    }

    /// Tells the peer of `conn`, just opened, which node opened it; waits for its answer
    /// within `within`. A peer that does not take it still serves requests on it.
    /// Closes the connection to `addr` (after it failed or left).
    pub fn forget(&self, addr: SocketAddr) {
        if let Some(kept) = self.conns.lock().remove(&addr) {
            kept.conn.close("forgotten");
        }
        // One the peer introduced failed the same way: the peer opens another.
        if let Some(conn) = self.introduced(addr) {
            conn.close("forgotten");
        }
    }

    /// Connections kept now, open or not yet found closed.
    #[cfg(test)]
    fn kept_count(&self) -> usize {
        self.conns.lock().len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        match std::mem::replace(&mut *self.reactor.lock(), Reading::Unset) {
            Reading::Own(mut reactor) => reactor.shutdown(),
            // The server's reactor lives on: the pool's connections end here.
            Reading::Server(..) => {
                for (_, kept) in self.conns.lock().drain() {
                    kept.conn.close("the pool is dropped");
                }
            }
            Reading::Unset => {}
        }
    }
}

/// Closes the least recently used connections carrying no request until at most `max` are
/// kept (a connection in use stays).
fn evict_beyond(conns: &mut FastMap<SocketAddr, Kept>, max: usize) {
    conns.retain(|_, kept| !kept.conn.is_closed());
    // Bounded: each pass closes one connection or ends.
    while conns.len() > max {
        let oldest = conns
            .iter()
            .filter(|(_, kept)| kept.conn.is_unused())
            .min_by_key(|(_, kept)| kept.used)
            .map(|(addr, _)| *addr);
        let Some(addr) = oldest else { return };
        if let Some(kept) = conns.remove(&addr) {
            kept.conn.close("more connections kept than allowed");
        }
    }
}

/// Opens a connection to `addr` and runs the handshake `config.security` asks for, which must
/// end within `handshake_within` (the caller's wait for a reply: a peer that accepts and
/// never answers costs no more than one that never replies).
pub(crate) fn open(
    addr: SocketAddr,
    config: &NetConfig,
    counters: &Arc<Counters>,
    handshake_within: Duration,
) -> Result<Framed> {
    config.security.chosen()?;
    // Only what the peer's side says counts against the peer: a failure here, such as
    // running out of descriptors or ports, must not make a live peer look dead.
    let local = |source| Error::Local {
        what: format!("opening a connection to {addr}"),
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(local)?;
    socket
        .connect_timeout(&addr.into(), config.connect_timeout)
        .map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout {
                addr,
                after: config.connect_timeout,
            },
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => Error::Unreachable { addr, source: e },
            _ => local(e),
        })?;
    Counters::bump(&counters.opened);
    socket.set_nodelay(true).map_err(local)?;
    socket
        .set_read_timeout(Some(config.io_timeout))
        .map_err(local)?;
    socket
        .set_write_timeout(Some(config.io_timeout))
        .map_err(local)?;
    let mut conn = Framed::new(
        socket.into(),
        true,
        config.io_timeout,
        config.io_timeout,
        config.max_payload,
        Arc::clone(counters),
    )
    .map_err(local)?;
    match conn.secure(&config.security, Side::Initiator, handshake_within) {
        Ok(()) => Ok(conn),
        Err(ReadError::Io(e)) if is_stale(&e) => Err(Error::Refused {
            addr,
            code: RemoteCode::Busy,
            message: "closed the connection during the handshake: busy, or not holding \
                          this cluster's key"
                .into(),
        }),
        Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Protocol {
            addr,
            what: "failed the handshake: it does not hold this cluster's key".into(),
        }),
        Err(ReadError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(Error::Timeout {
                addr,
                after: handshake_within,
            })
        }
        Err(e) => Err(conn.error(e)),
    }
}

/// Errors that mean a pooled connection had been closed by the peer before this request.
fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}
#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
