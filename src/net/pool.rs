//! Outbound connections: one per peer, kept open and shared by every request to it, many in
//! flight at once. On loopback a TCP handshake costs more than the request it carries.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame_io::{Framed, ReadError, Side};
use super::frames::Frames;
use super::reactor::{Conn, Reactor, ReactorHandle, StreamHandle};
use super::{Counters, NetConfig};
use crate::error::{Error, Result};
use crate::id::NodeInfo;
use crate::wire::{Message, RemoteCode};

/// The connections to peers, one per address, each carrying every request to its peer at
/// once. Cheap to share: callers never wait for each other's replies.
pub struct Pool {
    config: NetConfig,
    counters: Arc<Counters>,
    /// Reads every connection of the pool.
    reactor: Mutex<Reading>,
    conns: Mutex<HashMap<SocketAddr, Kept>>,
    /// A lock per address being connected to: callers that find no connection wait for
    /// one opener rather than each open their own.
    connecting: Mutex<HashMap<SocketAddr, Arc<Mutex<()>>>>,
}

/// Who reads the pool's connections.
enum Reading {
    /// Nobody yet: a reactor of the pool's own starts with the first connection.
    Unset,
    /// The pool's own reactor.
    Own(Reactor),
    /// A server's (the node's own listener's), and the node it serves: introduced to each
    /// peer connected to, so that the peer sends its requests back over the connection.
    Server(ReactorHandle, Option<NodeInfo>),
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
            conns: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to `addr` and waits for its reply.
    ///
    /// A reply of [`Message::Error`] becomes [`Error::Refused`]. A kept connection found
    /// closed is replaced by a fresh one.
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
        self.exchange(addr, timeout, |frames| {
            frames
                .send(request)
                .map_err(|e| frames.error(ReadError::Io(e)))?;
            frames.recv_or_fail()
        })
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
        Counters::bump(&self.counters.sent);
        let (conn, stream) = self.stream_to(addr, timeout)?;
        let mut handle = StreamHandle::new(Arc::clone(&conn), stream, timeout);
        let result = f(&mut handle);
        if result.is_ok() {
            let _ = handle.finish();
        } else {
            drop(handle); // given up: the peer is told
        }
        if self.config.pool_per_peer == 0 {
            // Nothing kept: the connection served this request only.
            conn.close("done");
        }
        result
    }

    /// A new stream on the connection to `addr`, opened if there is none (or it closed).
    fn stream_to(&self, addr: SocketAddr, timeout: Duration) -> Result<(Arc<Conn>, u32)> {
        if let Some(stream) = self.stream_on_kept(addr) {
            return Ok(stream);
        }
        if let Some(conn) = self.introduced(addr) {
            if let Ok(stream) = conn.open_stream() {
                return Ok((conn, stream));
            }
        }
        let turn = Arc::clone(self.connecting.lock().entry(addr).or_default());
        let conn = {
            let _turn = turn.lock();
            // Opened by the caller whose turn came first.
            if let Some(stream) = self.stream_on_kept(addr) {
                return Ok(stream);
            }
            let conn = self.connect(addr, timeout);
            self.connecting.lock().remove(&addr);
            conn?
        };
        let stream = conn
            .open_stream()
            .map_err(|source| Error::Unreachable { addr, source })?;
        Ok((conn, stream))
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
    fn connect(&self, addr: SocketAddr, handshake_within: Duration) -> Result<Arc<Conn>> {
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
                Reading::Server(handle, me) => (handle.adopt(stream, channel), *me),
                Reading::Unset => (Err(io::ErrorKind::NotConnected.into()), None),
            }
        };
        let conn = conn.map_err(local)?;
        if self.config.pool_per_peer > 0 {
            self.keep(addr, &conn);
            if let Some(me) = me {
                self.introduce(&conn, me, handshake_within);
            }
        }
        Ok(conn)
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
    /// reactor does so too, as it checks deadlines), and forgets closed ones: an idle node
    /// lets its peers' connections go.
    pub fn close_idle(&self) {
        let now = Instant::now();
        self.conns
            .lock()
            .retain(|_, kept| !kept.conn.check_deadlines(now));
    }

    /// Has the server behind `handle` read the pool's connections, rather than a reactor of
    /// the pool's own; with `me`, the node that server serves, each connection the pool
    /// opens is introduced to its peer (one connection per pair of nodes, carrying both
    /// ways), and connections peers opened and introduced are used. Only before the first
    /// connection: later, nothing changes.
    pub(crate) fn read_through(&self, handle: ReactorHandle, me: Option<NodeInfo>) {
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
    fn introduce(&self, conn: &Arc<Conn>, me: NodeInfo, within: Duration) {
        let Ok(stream) = conn.open_stream() else {
            return;
        };
        let mut handle = StreamHandle::new(Arc::clone(conn), stream, within);
        let hello = Message::Hello { node: me };
        match handle.send(&hello).map(|()| handle.recv()) {
            Ok(Ok(Message::Ack)) => {
                let _ = handle.finish();
            }
            other => log::debug!("{}: introduction not taken: {other:?}", conn.peer()),
        }
    }

    /// Closes the connection to `addr` (after it failed or left).
    pub fn forget(&self, addr: SocketAddr) {
        if let Some(kept) = self.conns.lock().remove(&addr) {
            kept.conn.close("forgotten");
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
fn evict_beyond(conns: &mut HashMap<SocketAddr, Kept>, max: usize) {
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
mod tests {
    use super::*;
    use crate::net::Server;

    /// A key for this module's tests: their connections are encrypted, as members' are.
    fn test_key() -> crate::ClusterKey {
        crate::ClusterKey::from_bytes([7; 32])
    }

    fn servers(n: usize, counters: &Arc<Counters>) -> Vec<Server> {
        let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
        (0..n)
            .map(|i| {
                let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let config = NetConfig::with(test_key());
                let name = format!("test-{i}");
                let handler = Arc::clone(&handler);
                Server::start(&name, listener, config, handler, Arc::clone(counters)).unwrap()
            })
            .collect()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn one_connection_carries_every_request_to_a_peer_until_it_idles() {
        const THREADS: usize = 8;
        let counters = Arc::new(Counters::default());
        let server = servers(1, &counters).remove(0);
        let config = NetConfig {
            pool_idle_timeout: Duration::from_millis(300),
            ..NetConfig::with(test_key())
        };
        let client_counters = Arc::new(Counters::default());
        let pool = Arc::new(Pool::new(config, Arc::clone(&client_counters)));
        let addr = server.local_addr();
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                let pool = Arc::clone(&pool);
                scope.spawn(move || {
                    for _ in 0..20 {
                        assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
                    }
                });
            }
        });
        assert_eq!(
            client_counters.snapshot().opened,
            1,
            "one connection for all"
        );
        assert_eq!(counters.snapshot().open_connections, 1);
        assert_eq!(counters.snapshot().served, 160);
        // Closed once idle past the timeout, at both ends.
        wait_for("the idle connection stayed open", || {
            pool.close_idle();
            counters.snapshot().open_connections == 0
        });
        assert_eq!(pool.kept_count(), 0);
        pool.call(addr, &Message::Ping).unwrap();
        assert_eq!(client_counters.snapshot().opened, 2, "a new one after it");
    }

    #[test]
    fn a_stalled_transfer_does_not_hold_up_other_requests_on_its_connection() {
        // A server that takes a transfer's chunks only as the test lets it.
        let (gate, opened) = std::sync::mpsc::channel::<()>();
        let opened = Arc::new(parking_lot::Mutex::new(opened));
        let (arrived, first_chunk) = std::sync::mpsc::channel::<()>();
        let arrived = parking_lot::Mutex::new(arrived);
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handler: crate::net::Handler = {
            let (opened, taken) = (Arc::clone(&opened), Arc::clone(&taken));
            Arc::new(move |request, session| {
                if request != Message::Ack {
                    return Message::Pong {
                        node: crate::id::NodeInfo {
                            id: crate::id::Id(1),
                            addr: "127.0.0.1:1".parse().unwrap(),
                        },
                    };
                }
                // Bounded: the sender sends CHUNKS chunks and an end.
                loop {
                    match session.framed().recv() {
                        Ok(Message::Chunk { data }) => {
                            let _ = arrived.lock().send(());
                            let _ = opened.lock().recv_timeout(Duration::from_secs(10));
                            taken.fetch_add(data.len(), std::sync::atomic::Ordering::SeqCst);
                        }
                        _ => return Message::Ack,
                    }
                }
            })
        };
        let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let counters = Arc::new(Counters::default());
        let config = NetConfig::with(test_key());
        let server = Server::start("stall", listener, config, handler, counters).unwrap();
        let addr = server.local_addr();
        let client_counters = Arc::new(Counters::default());
        let pool = Pool::new(NetConfig::with(test_key()), Arc::clone(&client_counters));
        const CHUNKS: usize = 64;
        let chunk = vec![5u8; 256 * 1024];
        std::thread::scope(|scope| {
            let sender = scope.spawn(|| {
                pool.session(addr, |frames| {
                    frames.queue(&Message::Ack);
                    for _ in 0..CHUNKS {
                        frames
                            .send_chunk(&chunk)
                            .map_err(|e| frames.error(ReadError::Io(e)))?;
                    }
                    frames
                        .send(&Message::Ping)
                        .map_err(|e| frames.error(ReadError::Io(e)))?;
                    frames.recv_or_fail()
                })
            });
            // The transfer is stuck on its credit, the server taking none of it; a request
            // on the same connection is answered all the same, however long it stays stuck.
            first_chunk.recv_timeout(Duration::from_secs(10)).unwrap();
            for _ in 0..20 {
                let reply = pool.call(addr, &Message::Ping).unwrap();
                assert!(matches!(reply, Message::Pong { .. }), "{reply:?}");
            }
            assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 0);
            assert!(!sender.is_finished(), "the transfer is still stuck");
            assert_eq!(client_counters.snapshot().opened, 1, "on one connection");
            for _ in 0..CHUNKS {
                gate.send(()).unwrap();
            }
            assert_eq!(sender.join().unwrap().unwrap(), Message::Ack);
        });
        assert_eq!(
            taken.load(std::sync::atomic::Ordering::SeqCst),
            CHUNKS * chunk.len()
        );
    }

    #[test]
    fn connections_kept_are_capped_in_all() {
        let counters = Arc::new(Counters::default());
        let servers = servers(5, &counters);
        let config = NetConfig {
            pool_max_idle: 3,
            ..NetConfig::with(test_key())
        };
        let pool = Pool::new(config, Arc::new(Counters::default()));
        for server in &servers {
            pool.call(server.local_addr(), &Message::Ping).unwrap();
        }
        // Five peers called, three connections kept: the other two are closed.
        assert_eq!(pool.kept_count(), 3);
        wait_for("the evicted connections stayed open", || {
            counters.snapshot().open_connections == 3
        });
        // The most recently used peers kept theirs.
        let kept: Vec<SocketAddr> = pool.conns.lock().keys().copied().collect();
        for server in &servers[2..] {
            assert!(kept.contains(&server.local_addr()));
        }
    }

    #[test]
    fn two_nodes_calling_each_other_share_one_connection() {
        let ends: Vec<(Server, Pool, Arc<Counters>)> = (0..2u16)
            .map(|i| {
                let counters = Arc::new(Counters::default());
                let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
                let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let config = NetConfig::with(test_key());
                let server = Server::start(
                    "both",
                    listener,
                    config.clone(),
                    handler,
                    Arc::clone(&counters),
                )
                .unwrap();
                let pool = Pool::new(config, Arc::clone(&counters));
                let me = NodeInfo {
                    id: crate::Id(i),
                    addr: server.local_addr(),
                };
                pool.read_through(server.reactor(), Some(me));
                (server, pool, counters)
            })
            .collect();
        let (a, b) = (&ends[0], &ends[1]);
        assert_eq!(
            a.1.call(b.0.local_addr(), &Message::Ping).unwrap(),
            Message::Ack
        );
        // The connection a opened carries b's requests to a, both ways at once.
        assert_eq!(
            b.1.call(a.0.local_addr(), &Message::Ping).unwrap(),
            Message::Ack
        );
        assert_eq!(
            a.1.call(b.0.local_addr(), &Message::Ping).unwrap(),
            Message::Ack
        );
        let (sa, sb) = (a.2.snapshot(), b.2.snapshot());
        assert_eq!((sa.opened, sa.accepted), (1, 0), "{sa:?}");
        assert_eq!((sb.opened, sb.accepted), (0, 1), "{sb:?}");
    }

    #[test]
    fn a_connection_the_peer_closed_is_replaced() {
        let counters = Arc::new(Counters::default());
        let mut server = servers(1, &counters).remove(0);
        let addr = server.local_addr();
        let pool = Pool::new(NetConfig::with(test_key()), Arc::new(Counters::default()));
        pool.call(addr, &Message::Ping).unwrap();
        server.shutdown();
        assert!(
            pool.call(addr, &Message::Ping).is_err(),
            "the server is gone"
        );
        let listener = Server::bind(addr).unwrap();
        let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
        let config = NetConfig::with(test_key());
        let _again = Server::start("again", listener, config, handler, counters).unwrap();
        assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
    }
}
