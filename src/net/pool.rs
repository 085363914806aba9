//! Outbound connections, kept open and reused: on loopback a TCP handshake costs more than the
//! request it carries.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame_io::{refusal_to_error, Framed, ReadError};
use super::{Counters, NetConfig};
use crate::error::{Error, Result};
use crate::wire::Message;
use std::sync::Arc;

/// A pool of idle connections per peer address. Cheap to share; each call takes a connection
/// for its own exclusive use, so concurrent callers never wait for each other's replies.
pub struct Pool {
    config: NetConfig,
    counters: Arc<Counters>,
    idle: Mutex<HashMap<SocketAddr, Vec<Conn>>>,
}

/// An outbound connection, lent to one caller at a time.
pub(crate) type Conn = Framed;

impl Pool {
    /// An empty pool using `config`'s timeouts and limits, counting into `counters`.
    pub(crate) fn new(config: NetConfig, counters: Arc<Counters>) -> Pool {
        Pool {
            config,
            counters,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to `addr` and waits for its reply.
    ///
    /// A reply of [`Message::Error`] becomes [`Error::Refused`]. A reused connection that the
    /// peer closed while idle is replaced by a fresh one once.
    pub fn call(&self, addr: SocketAddr, request: &Message) -> Result<Message> {
        Counters::bump(&self.counters.sent);
        let reused = self.idle.lock().get_mut(&addr).and_then(Vec::pop);
        if let Some(mut conn) = reused {
            match exchange(&mut conn, request) {
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
        let mut conn = self.connect(addr)?;
        let reply = exchange(&mut conn, request).map_err(|e| conn.error(e))?;
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
        let reused = self.idle.lock().get_mut(&addr).and_then(Vec::pop);
        // A stream cannot be replayed, so a connection the peer closed while idle is found
        // before, not after, starting one.
        let mut conn = match reused {
            Some(conn) if !conn.is_closed() => conn,
            _ => self.connect(addr)?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            self.put_back(addr, conn);
        }
        result
    }

    /// Drops every idle connection to `addr` (after it failed or left).
    pub fn forget(&self, addr: SocketAddr) {
        self.idle.lock().remove(&addr);
    }

    fn put_back(&self, addr: SocketAddr, conn: Conn) {
        let mut idle = self.idle.lock();
        let conns = idle.entry(addr).or_default();
        if conns.len() < self.config.pool_per_peer {
            conns.push(conn);
        }
    }

    fn connect(&self, addr: SocketAddr) -> Result<Conn> {
        let unreachable = |source| Error::Unreachable { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(unreachable)?;
        socket
            .connect_timeout(&addr.into(), self.config.connect_timeout)
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout {
                    addr,
                    after: self.config.connect_timeout,
                },
                _ => unreachable(e),
            })?;
        Counters::bump(&self.counters.opened);
        socket.set_nodelay(true).map_err(unreachable)?;
        socket
            .set_read_timeout(Some(self.config.io_timeout))
            .map_err(unreachable)?;
        socket
            .set_write_timeout(Some(self.config.io_timeout))
            .map_err(unreachable)?;
        Framed::new(
            socket.into(),
            self.config.io_timeout,
            self.config.max_payload,
            Arc::clone(&self.counters),
        )
        .map_err(unreachable)
    }
}

/// Sends one request and reads its reply.
fn exchange(conn: &mut Conn, request: &Message) -> std::result::Result<Message, ReadError> {
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
