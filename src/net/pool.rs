//! Outbound connections, kept open and reused: on loopback a TCP handshake costs more than the
//! request it carries.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame_io::{refusal_to_error, Framed, ReadError, Side};
use super::{Counters, NetConfig};
use crate::error::{Error, Result};
use crate::wire::{Message, RemoteCode};
use std::sync::Arc;

/// A pool of idle connections per peer address. Cheap to share; each call takes a connection
/// for its own exclusive use, so concurrent callers never wait for each other's replies.
pub struct Pool {
    config: NetConfig,
    counters: Arc<Counters>,
    idle: Mutex<Idle>,
}

/// The connections not in use, with when each was put back.
#[derive(Default)]
struct Idle {
    by_peer: HashMap<SocketAddr, Vec<(Conn, Instant)>>,
    /// When connections idle too long were last closed.
    last_sweep: Option<Instant>,
}

impl Idle {
    /// The most recently used idle connection to `addr` that has not idled too long.
    fn take(&mut self, addr: SocketAddr, max_idle: Duration) -> Option<Conn> {
        let conns = self.by_peer.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((conn, since)) = conns.pop() {
            if now.duration_since(since) < max_idle {
                return Some(conn);
            }
        }
        None
    }

    /// Closes the least recently used connections until at most `max` are idle.
    fn evict_beyond(&mut self, max: usize) {
        let mut total: usize = self.by_peer.values().map(Vec::len).sum();
        while total > max {
            // Each peer's list is oldest first: the oldest overall heads one of them.
            let oldest = self
                .by_peer
                .iter()
                .filter_map(|(addr, conns)| conns.first().map(|(_, since)| (*since, *addr)))
                .min();
            let Some((_, addr)) = oldest else { return };
            if let Some(conns) = self.by_peer.get_mut(&addr) {
                conns.remove(0);
                if conns.is_empty() {
                    self.by_peer.remove(&addr);
                }
            }
            total -= 1;
        }
    }

    /// Closes the connections idle for longer than `max_idle`, at most once a second.
    fn sweep(&mut self, max_idle: Duration) {
        let now = Instant::now();
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.sweep_now(max_idle);
    }

    /// Closes the connections idle for longer than `max_idle`.
    fn sweep_now(&mut self, max_idle: Duration) {
        let now = Instant::now();
        self.last_sweep = Some(now);
        for conns in self.by_peer.values_mut() {
            conns.retain(|(_, since)| now.duration_since(*since) < max_idle);
        }
        self.by_peer.retain(|_, conns| !conns.is_empty());
    }
}

/// An outbound connection, lent to one caller at a time.
pub(crate) type Conn = Framed;

impl Pool {
    /// An empty pool using `config`'s timeouts and limits, counting into `counters`.
    pub(crate) fn new(config: NetConfig, counters: Arc<Counters>) -> Pool {
        Pool {
            config,
            counters,
            idle: Mutex::new(Idle::default()),
        }
    }

    /// Sends `request` to `addr` and waits for its reply.
    ///
    /// A reply of [`Message::Error`] becomes [`Error::Refused`]. A reused connection that the
    /// peer closed while idle is replaced by a fresh one once.
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
        Counters::bump(&self.counters.sent);
        let reused = self.take(addr);
        if let Some(mut conn) = reused {
            match exchange(&mut conn, request, timeout) {
                Ok(reply) => {
                    self.put_back(addr, conn);
                    return refusal_to_error(addr, reply);
                }
                // The peer closed it while it sat idle: the request was never read, so it is
                // safe to send again. Cheaper than checking every connection before use.
                Err(ReadError::Io(e)) if is_stale(&e) => self.forget(addr),
                Err(e) => return Err(conn.error(e)),
            }
        }
        let mut conn = self.connect(addr, timeout)?;
        let reply = exchange(&mut conn, request, timeout).map_err(|e| conn.error(e))?;
        self.put_back(addr, conn);
        refusal_to_error(addr, reply)
    }

    /// Runs `f` on a connection to `addr` of its own, for exchanges of several frames (streamed
    /// records). The connection goes back to the pool only if `f` succeeds: after a failure
    /// the stream may be out of step.
    pub(crate) fn session<T>(
        &self,
        addr: SocketAddr,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        Counters::bump(&self.counters.sent);
        let reused = self.take(addr);
        // A stream cannot be replayed, so a connection the peer closed while idle is found
        // before, not after, starting one.
        let mut conn = match reused {
            Some(conn) if !conn.is_closed() => conn,
            _ => self.connect(addr, self.config.io_timeout)?,
        };
        let result = conn
            .set_read_timeout(self.config.io_timeout)
            .and_then(|()| conn.open_stream())
            .map_err(|e| conn.error(ReadError::Io(e)))
            .and_then(|()| f(&mut conn));
        if result.is_ok() {
            self.put_back(addr, conn);
        }
        result
    }

    /// Closes the connections that idled longer than the configured timeout. Done on the
    /// side as connections are used, and by a node's maintenance, so that an idle node lets
    /// its peers' threads go too.
    pub fn close_idle(&self) {
        self.idle.lock().sweep_now(self.config.pool_idle_timeout);
    }

    /// Drops every idle connection to `addr` (after it failed or left).
    pub fn forget(&self, addr: SocketAddr) {
        self.idle.lock().by_peer.remove(&addr);
    }

    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        self.idle.lock().take(addr, self.config.pool_idle_timeout)
    }

    fn put_back(&self, addr: SocketAddr, conn: Conn) {
        if conn.is_spent() {
            return; // dropped: closed, and a fresh one opened when next needed
        }
        let mut idle = self.idle.lock();
        idle.sweep(self.config.pool_idle_timeout);
        let conns = idle.by_peer.entry(addr).or_default();
        if conns.len() >= self.config.pool_per_peer {
            return; // dropped: closed
        }
        conns.push((conn, Instant::now()));
        idle.evict_beyond(self.config.pool_max_idle);
    }

    fn connect(&self, addr: SocketAddr, handshake_within: Duration) -> Result<Conn> {
        open(addr, &self.config, &self.counters, handshake_within)
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
) -> Result<Conn> {
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

/// Sends one request and reads its reply, waiting at most `timeout`.
fn exchange(
    conn: &mut Conn,
    request: &Message,
    timeout: Duration,
) -> std::result::Result<Message, ReadError> {
    conn.set_read_timeout(timeout).map_err(ReadError::Io)?;
    conn.open_stream().map_err(ReadError::Io)?;
    conn.send(request).map_err(ReadError::Io)?;
    conn.recv()
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

    #[test]
    fn idle_connections_are_reused_then_closed() {
        let counters = Arc::new(Counters::default());
        let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
        let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = Server::start(
            "test",
            listener,
            NetConfig::with(test_key()),
            handler,
            Arc::clone(&counters),
        )
        .unwrap();
        let config = NetConfig {
            pool_idle_timeout: Duration::from_millis(50),
            ..NetConfig::with(test_key())
        };
        let client_counters = Arc::new(Counters::default());
        let pool = Pool::new(config, Arc::clone(&client_counters));
        let addr = server.local_addr();
        pool.call(addr, &Message::Ping).unwrap();
        pool.call(addr, &Message::Ping).unwrap();
        assert_eq!(client_counters.snapshot().opened, 1, "reused while fresh");
        assert_eq!(counters.snapshot().open_connections, 1);
        // Closed once idle past the timeout: the server's thread for it ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.snapshot().open_connections != 0 {
            assert!(Instant::now() < deadline, "the idle connection stayed open");
            pool.close_idle();
            std::thread::sleep(Duration::from_millis(10));
        }
        pool.call(addr, &Message::Ping).unwrap();
        assert_eq!(
            client_counters.snapshot().opened,
            2,
            "a new one after the timeout"
        );
    }

    #[test]
    fn idle_connections_are_capped_in_all() {
        let counters = Arc::new(Counters::default());
        let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
        let servers: Vec<Server> = (0..5)
            .map(|i| {
                let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let name = format!("test-{i}");
                let config = NetConfig::with(test_key());
                Server::start(
                    &name,
                    listener,
                    config,
                    Arc::clone(&handler),
                    Arc::clone(&counters),
                )
                .unwrap()
            })
            .collect();
        let config = NetConfig {
            pool_max_idle: 3,
            ..NetConfig::with(test_key())
        };
        let pool = Pool::new(config, Arc::new(Counters::default()));
        for server in &servers {
            pool.call(server.local_addr(), &Message::Ping).unwrap();
        }
        // Five peers called, three connections kept: the other two are closed.
        let idle: usize = pool.idle.lock().by_peer.values().map(Vec::len).sum();
        assert_eq!(idle, 3);
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.snapshot().open_connections != 3 {
            assert!(Instant::now() < deadline, "{:?}", counters.snapshot());
            std::thread::sleep(Duration::from_millis(10));
        }
        // The most recently used peers kept theirs.
        let kept: Vec<SocketAddr> = pool.idle.lock().by_peer.keys().copied().collect();
        for server in &servers[2..] {
            assert!(kept.contains(&server.local_addr()));
        }
    }
}
