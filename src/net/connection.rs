//! One connection to a member, message by message: for tools and tests that must send
//! exactly what they choose.

use super::frames::Frames;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use super::frame_io::{Framed, ReadError, Side};
use super::pool::open;
use super::{Counters, NetConfig};
use crate::error::{Error, Result};
use crate::wire::Message;
use parking_lot::Mutex;

/// A connection to a node or discovery node, after the handshake `net.security` asks for,
/// carrying whatever its owner sends: whole messages, or any bytes at all inside the
/// channel. The library's own calls do not use it (they share pooled connections); it is
/// for diagnostics, and for tests of what a member holding the key can and cannot do.
pub struct Connection {
    framed: Framed,
}

impl Connection {
    /// Connects to `addr` and runs the handshake, with `net`'s timeouts and security.
    pub fn open(addr: SocketAddr, net: &NetConfig) -> Result<Connection> {
        let mut framed = open(addr, net, &Arc::new(Counters::default()), net.io_timeout)?;
        // Ready for a first request: `send` alone will do for one.
        framed
            .open_stream()
            .map_err(|e| framed.error(ReadError::Io(e)))?;
        Ok(Connection { framed })
    }

    /// Takes a connection accepted by the caller's own listener and runs the responder's side
    /// of the handshake: for a test double standing in for a node. Unlike a node's listener
    /// it remembers no earlier handshake, so it does not refuse a replayed one.
    pub fn accept(stream: TcpStream, net: &NetConfig) -> Result<Connection> {
        let peer = stream.peer_addr().map_err(|source| Error::Local {
            what: "reading an accepted connection's address".into(),
            source,
        })?;
        stream
            .set_read_timeout(Some(net.io_timeout))
            .and_then(|()| stream.set_write_timeout(Some(net.io_timeout)))
            .map_err(|source| Error::Unreachable { addr: peer, source })?;
        let counters = Arc::new(Counters::default());
        let mut framed = Framed::new(
            stream,
            false,
            net.io_timeout,
            net.io_timeout,
            net.max_payload,
            counters,
        )
        .map_err(|source| Error::Unreachable { addr: peer, source })?;
        framed
            .secure(
                &net.security,
                Side::Responder(&Mutex::default()),
                net.io_timeout,
            )
            .map_err(|e| framed.error(e))?;
        Ok(Connection { framed })
    }

    /// Starts a new request with `msg`, on a stream of its own: what [`send`](Self::send)s
    /// and [`recv`](Self::recv)s follow belongs to it. A new connection starts on its first
    /// stream, so its first request needs only `send`.
    pub fn request(&mut self, msg: &Message) -> Result<()> {
        self.framed
            .open_stream()
            .map_err(|e| self.framed.error(ReadError::Io(e)))?;
        self.send(msg)
    }

    /// Sends one message on the current stream: the request's, or the one the peer opened
    /// last.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        self.framed.queue(msg);
        self.framed.flush_or_fail()
    }

    /// Sends `bytes` as they are (sealed, on a secure connection): a hand-made or malformed
    /// frame, or part of one.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.framed
            .send_bytes(bytes)
            .map_err(|e| self.framed.error(ReadError::Io(e)))
    }

    /// The next message received, an error reply included (as a [`Message::Error`]): of the
    /// current stream, the connection's, or a new one the peer opens (a request to a test
    /// double), which becomes the current stream.
    /// Credit the peer grants for what it has taken is not shown: a connection of one
    /// request at a time never waits for it.
    pub fn recv(&mut self) -> Result<Message> {
        // Bounded: credit follows only what this end sent.
        loop {
            match self.framed.recv_any() {
                Ok(Message::Credit { .. }) => continue,
                other => return other.map_err(|e| self.framed.error(e)),
            }
        }
    }

    /// The address at the other end.
    pub fn peer(&self) -> SocketAddr {
        self.framed.peer()
    }
}
