//! Whole frames on a TCP stream: the one framing used by servers and outbound connections.

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::Counters;
use crate::error::Error;
use crate::wire::{self, Body, Message, WireError, HEADER_LEN, TRAILER_LEN};

/// Bytes read ahead per connection: several small frames per read; larger bodies (chunks) are
/// read straight into their buffer. One page, because the buffer is zeroed when first filled
/// (`SharedStream` cannot read into uninitialised memory) and a process running hundreds of
/// nodes holds thousands of connections: 64 KiB made an idle node four times larger.
const READ_BUFFER: usize = 4 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream failed, timed out, or ended (`UnexpectedEof`).
    Io(io::Error),
    /// The bytes are not a valid frame.
    Wire(WireError),
}

/// A TCP stream read and written in frames, with reused buffers.
pub(crate) struct Framed {
    peer: SocketAddr,
    /// The stream, read through a buffer and written directly (`&TcpStream` writes): one
    /// descriptor per connection, not a clone for each direction.
    reader: BufReader<SharedStream>,
    /// The read timeout set on the stream now.
    read_timeout: Duration,
    /// Frames queued and not yet written.
    out: BytesMut,
    /// The body of the frame last read.
    body: Vec<u8>,
    max_payload: u32,
    counters: Arc<Counters>,
}

impl Framed {
    /// Wraps a connected stream (its timeouts already set, the read timeout being
    /// `io_timeout`, named in errors).
    pub fn new(
        stream: TcpStream,
        io_timeout: Duration,
        max_payload: u32,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let peer = stream.peer_addr()?;
        let reader = BufReader::with_capacity(READ_BUFFER, SharedStream(Arc::new(stream)));
        Ok(Framed {
            peer,
            reader,
            read_timeout: io_timeout,
            out: BytesMut::with_capacity(4096),
            body: Vec::new(),
            max_payload,
            counters,
        })
    }

    /// Adds a frame to those written by the next [`Framed::flush`], so that a request made of
    /// several frames costs one write.
    pub fn queue(&mut self, msg: &Message) {
        let before = self.out.len();
        wire::encode(msg, &mut self.out);
        let payload = self.out.len() - before - HEADER_LEN - TRAILER_LEN;
        self.counters.note_frame(payload as u64);
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Adds a chunk frame carrying `data` to those written by the next flush, copying `data`
    /// once, straight into the frame.
    pub fn queue_chunk(&mut self, data: &[u8]) {
        wire::encode_chunk(data, &mut self.out);
        self.counters.note_frame(data.len() as u64);
    }

    /// Writes every queued frame, then a chunk frame carrying `data`, in one vectored write:
    /// a large chunk is sent from where it lies, not copied into the queue first.
    pub fn send_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let (header, trailer) = wire::chunk_frame_parts(data);
        self.counters.note_frame(data.len() as u64);
        let stream: &TcpStream = &self.reader.get_ref().0;
        let result = write_all_parts(stream, [&self.out, &header, data, &trailer]);
        self.out.clear();
        result
    }

    /// Writes every queued frame.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut stream: &TcpStream = &self.reader.get_ref().0;
        let result = stream.write_all(&self.out);
        self.out.clear();
        result
    }

    /// Writes one frame (and any queued before it).
    pub fn send(&mut self, msg: &Message) -> io::Result<()> {
        self.queue(msg);
        self.flush()
    }

    /// Reads one frame. The payload length is checked against the maximum before the body is
    /// read or allocated.
    pub fn recv(&mut self) -> Result<Message, ReadError> {
        Ok(match self.recv_body()? {
            Body::Chunk(data) => Message::Chunk {
                data: bytes::Bytes::copy_from_slice(data),
            },
            Body::Message(msg) => msg,
        })
    }

    /// Reads one frame; a chunk's data is lent from the frame buffer rather than copied.
    pub fn recv_body(&mut self) -> Result<Body<'_>, ReadError> {
        let mut header = [0u8; HEADER_LEN];
        self.reader.read_exact(&mut header).map_err(ReadError::Io)?;
        let h = wire::decode_header(&header, self.max_payload).map_err(ReadError::Wire)?;
        self.counters.note_frame(u64::from(h.len));
        self.body.clear();
        self.body.resize(h.len as usize + TRAILER_LEN, 0);
        self.reader
            .read_exact(&mut self.body)
            .map_err(ReadError::Io)?;
        wire::decode_frame_body(&header, &self.body, self.max_payload).map_err(ReadError::Wire)
    }

    /// Whether the peer has closed the connection (or sent something unasked), judged without
    /// blocking: a pooled connection is checked before a stream is started on it.
    pub fn is_closed(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true; // bytes nobody asked for: the stream is out of step
        }
        let stream = &self.reader.get_ref().0;
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        // Nothing to read yet (WouldBlock) is the only sign of a healthy idle connection.
        let idle =
            matches!(stream.peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        let restored = stream.set_nonblocking(false).is_ok();
        !(idle && restored)
    }

    /// The address at the other end.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The stream itself, shared rather than duplicated: a server keeps it to shut the
    /// connection down from another thread without a second descriptor.
    pub fn stream(&self) -> Arc<TcpStream> {
        Arc::clone(&self.reader.get_ref().0)
    }

    /// Sets how long a read may wait (a system call only when it changes).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if timeout != self.read_timeout {
            self.reader.get_ref().0.set_read_timeout(Some(timeout))?;
            self.read_timeout = timeout;
        }
        Ok(())
    }

    /// The library error for a failure on this connection.
    pub fn error(&self, e: ReadError) -> Error {
        let addr = self.peer;
        match e {
            ReadError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Error::Timeout {
                    addr,
                    after: self.read_timeout,
                }
            }
            ReadError::Io(source) => Error::Unreachable { addr, source },
            ReadError::Wire(source) => Error::Wire { addr, source },
        }
    }

    /// Writes every queued frame, failing with the library's error.
    pub fn flush_or_fail(&mut self) -> crate::Result<()> {
        self.flush().map_err(|e| self.error(ReadError::Io(e)))
    }

    /// Reads one frame, failing with the library's error; an error reply becomes
    /// [`Error::Refused`].
    pub fn recv_or_fail(&mut self) -> crate::Result<Message> {
        let reply = self.recv().map_err(|e| self.error(e))?;
        refusal_to_error(self.peer, reply)
    }
}

/// Writes `parts` in order, with vectored writes.
fn write_all_parts(mut stream: &TcpStream, mut parts: [&[u8]; 4]) -> io::Result<()> {
    // Bounded: every pass writes at least one byte or ends the loop.
    while parts.iter().any(|p| !p.is_empty()) {
        match stream.write_vectored(&parts.map(IoSlice::new)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                for part in &mut parts {
                    let k = n.min(part.len());
                    *part = &part[k..];
                    n -= k;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A stream shared between the connection's reader and whoever may need to shut it down.
struct SharedStream(Arc<TcpStream>);

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// A reply of [`Message::Error`] from `addr` as [`Error::Refused`].
pub(crate) fn refusal_to_error(addr: SocketAddr, reply: Message) -> crate::Result<Message> {
    match reply {
        Message::Error { code, message } => Err(Error::Refused {
            addr,
            code,
            message,
        }),
        other => Ok(other),
    }
}
