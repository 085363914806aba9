//! Outbound connections, kept open and reused: on loopback a TCP handshake costs more than the
//! request it carries.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpStream};

use bytes::BytesMut;
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame_io::{read_message, write_message, ReadError};
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

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    out: BytesMut,
    body: Vec<u8>,
}

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
        let reply = self.exchange(addr, request)?;
        match reply {
            Message::Error { code, message } => Err(Error::Refused {
                addr,
                code,
                message,
            }),
            other => Ok(other),
        }
    }

    /// Drops every idle connection to `addr` (after it failed or left).
    pub fn forget(&self, addr: SocketAddr) {
        self.idle.lock().remove(&addr);
    }

    fn exchange(&self, addr: SocketAddr, request: &Message) -> Result<Message> {
        let reused = self.idle.lock().get_mut(&addr).and_then(Vec::pop);
        if let Some(mut conn) = reused {
            match conn.exchange(request, self.config.max_payload) {
                Ok(reply) => {
                    self.put_back(addr, conn);
                    return Ok(reply);
                }
                // The peer closed it while it sat idle: the request was never read.
                Err(ReadError::Io(e)) if is_stale(&e) => self.forget(addr),
                Err(e) => return Err(self.error(addr, e)),
            }
        }
        let mut conn = self.connect(addr)?;
        let reply = conn
            .exchange(request, self.config.max_payload)
            .map_err(|e| self.error(addr, e))?;
        self.put_back(addr, conn);
        Ok(reply)
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
        let writer: TcpStream = socket.into();
        let reader = BufReader::with_capacity(64 * 1024, writer.try_clone().map_err(unreachable)?);
        Ok(Conn {
            reader,
            writer,
            out: BytesMut::with_capacity(4096),
            body: Vec::new(),
        })
    }

    fn error(&self, addr: SocketAddr, e: ReadError) -> Error {
        match e {
            ReadError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Error::Timeout {
                    addr,
                    after: self.config.io_timeout,
                }
            }
            ReadError::Io(source) => Error::Unreachable { addr, source },
            ReadError::Wire(source) => Error::Wire { addr, source },
        }
    }
}

impl Conn {
    fn exchange(
        &mut self,
        request: &Message,
        max_payload: u32,
    ) -> std::result::Result<Message, ReadError> {
        write_message(&mut self.writer, request, &mut self.out).map_err(ReadError::Io)?;
        read_message(&mut self.reader, max_payload, &mut self.body)
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
