//! Whole frames on a TCP stream: the one framing used by servers and outbound connections.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::frames::Frames;
use super::secure::{unix_ms, Channel, Handshake, ReplayGuard, Security, HELLO_LEN, REPLY_LEN};
use super::stream_ids::{Standing, StreamIds, CONNECTION_STREAM};
use super::Counters;
use crate::error::Error;
use crate::wire::{self, Body, Message, WireError, HEADER_LEN, TRAILER_LEN};
use sealed::{write_all_parts, Sealed};

/// Bytes read ahead per connection: several small frames per read; larger bodies (chunks) are
/// read straight into their buffer. One page, because the buffer is zeroed when first filled
/// (`SharedStream` cannot read into uninitialised memory) and a process running hundreds of
/// nodes holds thousands of connections: 64 KiB made an idle node four times larger.
const READ_BUFFER: usize = 4 * 1024;

/// A frame's body buffer grows by at most this much ahead of the bytes received: a header
/// claiming a large payload pins no memory until the payload arrives.
const GROW_STEP: usize = 64 * 1024;

/// A body buffer larger than this is let go once a smaller frame follows: a connection holds
/// the memory of its largest frame only while such frames keep coming.
const KEEP_BUFFER: usize = 512 * 1024;

/// Sealed bytes gathered before they are written: a large chunk goes out in a few writes, and
/// a connection never holds much more than this of it.
const SEAL_BATCH: usize = 256 * 1024;

/// Which end of a connection runs a handshake.
pub(crate) enum Side<'a> {
    /// The end that opened it.
    Initiator,
    /// The end that accepted it, refusing first messages its guard has seen or finds stale.
    Responder(&'a parking_lot::Mutex<ReplayGuard>),
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream failed, timed out, or ended (`UnexpectedEof`).
    Io(io::Error),
    /// The bytes are not a valid frame.
    Wire(WireError),
    /// A valid frame of a stream other than the one being served or asked: the peer is out
    /// of step, or numbers its requests wrongly.
    Stream {
        /// The stream expected.
        want: u32,
        /// The stream of the frame.
        got: u32,
    },
}

/// The streams of a connection's end, and the one it is on.
#[derive(Debug)]
struct Streams {
    /// The stream frames are queued on and expected from now.
    current: u32,
    ids: StreamIds,
}

/// A TCP stream read and written in frames, with reused buffers.
pub(crate) struct Framed {
    peer: SocketAddr,
    /// The stream, read through a buffer and written directly (`&TcpStream` writes): one
    /// descriptor per connection, not a clone for each direction.
    reader: BufReader<SharedStream>,
    /// How long a frame's first byte may be waited for (set by [`Framed::set_read_timeout`]).
    read_timeout: Duration,
    /// How long a frame may take from its first byte to its last, however slowly it
    /// trickles: a peer cannot hold a connection's reader with a byte now and then.
    frame_timeout: Duration,
    /// The timeout set on the socket now (a system call only when it changes).
    socket_timeout: Duration,
    /// Frames queued and not yet written.
    out: BytesMut,
    /// The body of the frame last read.
    body: Vec<u8>,
    max_payload: u32,
    counters: Arc<Counters>,
    /// The connection's cipher once a handshake has passed; `None` on an insecure one.
    secure: Option<Sealed>,
    streams: Streams,
}

impl Framed {
    /// Wraps a connected stream (its timeouts already set, the read timeout being
    /// `first_byte`: how long a frame may be waited for), opened by this end or the peer. A
    /// frame, once begun, must end within `frame_timeout`.
    pub fn new(
        stream: TcpStream,
        opened_here: bool,
        first_byte: Duration,
        frame_timeout: Duration,
        max_payload: u32,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let peer = stream.peer_addr()?;
        let reader = BufReader::with_capacity(READ_BUFFER, SharedStream(Arc::new(stream)));
        Ok(Framed {
            peer,
            reader,
            read_timeout: first_byte,
            frame_timeout,
            socket_timeout: first_byte,
            out: BytesMut::with_capacity(4096),
            body: Vec::new(),
            max_payload,
            counters,
            secure: None,
            streams: Streams {
                current: CONNECTION_STREAM,
                ids: StreamIds::new(opened_here),
            },
        })
    }

    /// The trailer of the frames: none is checksummed once the connection is sealed.
    fn trailer(&self) -> wire::Trailer {
        wire::Trailer::on(self.secure.is_some())
    }

    /// Runs the handshake `security` asks for, as `side`; the whole handshake must end
    /// `within` this long. From then on every byte is sealed. Fails unless the peer proves
    /// the same key (and, to a responder, that its first message is fresh).
    pub fn secure(
        &mut self,
        security: &Security,
        side: Side<'_>,
        within: Duration,
    ) -> Result<(), ReadError> {
        let key = match security.chosen() {
            Ok(Some(key)) => key,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ReadError::Io(io::Error::other(e.to_string()))),
        };
        let deadline = Some(Instant::now() + within);
        let result = (|| {
            let channel = match side {
                Side::Initiator => {
                    let mut handshake = Handshake::initiator(key)?;
                    self.write_raw(&handshake.hello(unix_ms())?)?;
                    let mut reply = [0u8; REPLY_LEN];
                    self.fill_raw(&mut reply, deadline)?;
                    handshake.read_reply(&reply)?;
                    handshake.finish()?
                }
                Side::Responder(guard) => {
                    let mut handshake = Handshake::responder(key)?;
                    let mut hello = [0u8; HELLO_LEN];
                    self.fill_raw(&mut hello, deadline)?;
                    let hello = handshake.read_hello(&hello)?;
                    if !guard
                        .lock()
                        .admit(hello.ephemeral, hello.sent_ms, unix_ms())
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a first handshake message replayed, or from a clock more than \
                             5 minutes off",
                        ));
                    }
                    self.write_raw(&handshake.reply()?)?;
                    handshake.finish()?
                }
            };
            self.secure = Some(Sealed {
                channel,
                record: Vec::new(),
                taken: 0,
                staged: Vec::new(),
                sealed: Vec::new(),
            });
            Ok(())
        })();
        let restored = self.apply_timeout(self.read_timeout);
        result.map_err(ReadError::Io)?;
        restored.map_err(ReadError::Io)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut stream: &TcpStream = &self.reader.get_ref().0;
        stream.write_all(bytes)
    }

    /// Writes `parts` in order: as they are, or sealed into records.
    fn write_parts(&mut self, parts: [&[u8]; 4]) -> io::Result<()> {
        let stream: &TcpStream = &self.reader.get_ref().0;
        match &mut self.secure {
            None => write_all_parts(stream, parts),
            Some(sealed) => sealed.write_parts(stream, parts),
        }
    }

    /// Starts a request of this end's: the frames queued from now on travel on a new
    /// stream, and only its frames (and the connection's) are read. Fails once the
    /// connection has opened 2^31 streams: a fresh connection must take over.
    pub fn open_stream(&mut self) -> io::Result<()> {
        self.streams.current = self.streams.ids.open()?;
        Ok(())
    }

    /// Adds a frame to those written by the next [`Framed::flush`], so that a request made of
    /// several frames costs one write.
    pub fn queue(&mut self, msg: &Message) {
        self.queue_on(self.streams.current, msg);
    }

    fn queue_on(&mut self, stream: u32, msg: &Message) {
        let before = self.out.len();
        wire::encode(msg, stream, self.trailer(), &mut self.out);
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
        wire::encode_chunk(data, self.streams.current, self.trailer(), &mut self.out);
        self.counters.note_frame(data.len() as u64);
    }

    /// Writes every queued frame, then a chunk frame carrying `data`, in one vectored write:
    /// a large chunk is sent from where it lies, not copied into the queue first.
    pub fn send_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let (header, trailer) = wire::chunk_frame_parts(data, self.streams.current, self.trailer());
        self.counters.note_frame(data.len() as u64);
        self.write_queued_then([&header, data, &trailer])
    }

    /// Writes every queued frame, then `bytes` as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_queued_then([bytes, &[], &[]])
    }

    /// Writes every queued frame, then `rest`, and empties the queue.
    fn write_queued_then(&mut self, rest: [&[u8]; 3]) -> io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let result = self.write_parts([&out, rest[0], rest[1], rest[2]]);
        self.out = out;
        self.out.clear();
        result
    }

    /// Writes every queued frame.
    pub fn flush(&mut self) -> io::Result<()> {
        self.send_bytes(&[])
    }

    /// Reads one frame of the current stream, the connection's, or a new one the peer opens
    /// (which becomes the current one): for a tool that follows whatever the peer does.
    pub fn recv_any(&mut self) -> Result<Message, ReadError> {
        let body = self.recv_on(true)?;
        Ok(owned(body))
    }

    /// Reads one frame of the current stream (or the connection's); a chunk's data is lent
    /// from the frame buffer rather than copied. The first byte may take the read timeout;
    /// the rest of the frame must follow within the frame timeout, and the body buffer grows
    /// only as the body arrives.
    pub fn recv_body(&mut self) -> Result<Body<'_>, ReadError> {
        self.recv_on(false)
    }

    /// Reads one frame of the current stream, or the connection's, or, when `accept_new`,
    /// a new one the peer opens, which becomes the current one.
    fn recv_on(&mut self, accept_new: bool) -> Result<Body<'_>, ReadError> {
        let mut header = [0u8; HEADER_LEN];
        let read = self.recv_frame(&mut header);
        // Back to the wait for a frame, should the frame have needed a shorter one.
        let restored = self.apply_timeout(self.read_timeout);
        let h = read?;
        restored.map_err(ReadError::Io)?;
        // Checked before the stream is looked at: a damaged stream number is a damaged frame.
        let body = wire::decode_frame_body(&header, &self.body, self.max_payload, self.trailer())
            .map_err(ReadError::Wire)?;
        let s = &mut self.streams;
        let new = accept_new && s.ids.standing(h.stream) == Standing::NewFromPeer;
        if new {
            s.current = h.stream;
            s.ids.peer_opened(h.stream);
        } else if h.stream != s.current && h.stream != CONNECTION_STREAM {
            return Err(ReadError::Stream {
                want: s.current,
                got: h.stream,
            });
        }
        Ok(body)
    }

    /// Reads a frame's header into `header` and its body and trailer into `self.body`.
    fn recv_frame(
        &mut self,
        header: &mut [u8; HEADER_LEN],
    ) -> Result<wire::FrameHeader, ReadError> {
        self.shrink_idle();
        self.fill(&mut header[..1], None).map_err(ReadError::Io)?;
        let deadline = Instant::now() + self.frame_timeout;
        self.fill(&mut header[1..], Some(deadline))
            .map_err(ReadError::Io)?;
        let h = wire::decode_header(header, self.max_payload).map_err(ReadError::Wire)?;
        self.counters.note_frame(u64::from(h.len));
        let want = h.len as usize + TRAILER_LEN;
        if self.body.capacity() > KEEP_BUFFER && want <= KEEP_BUFFER {
            self.body = Vec::new();
        }
        self.body.clear();
        let mut body = std::mem::take(&mut self.body);
        let mut result = Ok(());
        while body.len() < want && result.is_ok() {
            let start = body.len();
            body.resize(start + (want - start).min(GROW_STEP), 0);
            result = self.fill(&mut body[start..], Some(deadline));
        }
        self.body = body;
        result.map_err(ReadError::Io).map(|()| h)
    }

    /// Fills `buf` with the connection's plaintext: from the stream, or from the records
    /// opened from it. Past `deadline` it fails as timed out.
    fn fill(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<()> {
        if self.secure.is_none() {
            return self.fill_raw(buf, deadline);
        }
        let mut filled = 0;
        // Bounded: each pass fills at least one byte, or opens a record, or fails.
        while filled < buf.len() {
            let Some(sealed) = &mut self.secure else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            let ready = &sealed.record[sealed.taken..];
            if ready.is_empty() {
                self.next_record(deadline)?;
                continue;
            }
            let n = ready.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&ready[..n]);
            sealed.taken += n;
            filled += n;
        }
        Ok(())
    }

    /// Reads and opens the next record. Its first byte may wait as long as the frame's
    /// first; the rest must arrive within the frame timeout, and its buffer grows only as
    /// its bytes arrive.
    fn next_record(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let mut len = [0u8; 2];
        self.fill_raw(&mut len[..1], deadline)?;
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.frame_timeout);
        self.fill_raw(&mut len[1..], Some(deadline))?;
        let want = usize::from(u16::from_be_bytes(len));
        let Some(sealed) = &mut self.secure else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        // A record is at most 64 KiB whatever its length claims: read it whole.
        let mut record = std::mem::take(&mut sealed.record);
        record.resize(want, 0);
        let result = self.fill_raw(&mut record, Some(deadline));
        let Some(sealed) = &mut self.secure else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if result.is_err() {
            record.clear();
        }
        let opened = result.and_then(|()| sealed.channel.open(&mut record));
        sealed.record = record;
        sealed.taken = 0;
        opened
    }

    /// Lets go of a large record's buffers once they are drained, as the connection waits for
    /// its next frame: an idle connection keeps only small ones.
    fn shrink_idle(&mut self) {
        if let Some(sealed) = &mut self.secure {
            if sealed.taken == sealed.record.len() {
                sealed.record.clear();
                sealed.taken = 0;
                if sealed.record.capacity() > READ_BUFFER {
                    sealed.record = Vec::new();
                }
            }
        }
    }

    /// Fills `buf` from the stream; past `deadline` it fails as timed out. A read that must
    /// wait is given no longer than the time left.
    fn fill_raw(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<()> {
        let mut filled = 0;
        // Bounded: each pass fills at least one byte, or fails.
        while filled < buf.len() {
            if self.reader.buffer().is_empty() {
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.bound_timeout(left.min(self.read_timeout))?;
                }
            }
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes the socket's read timeout no longer than `want` and a quarter: a read waits at
    /// most that, and the system call is made only as the deadline draws closer, not for
    /// every read of a frame.
    fn bound_timeout(&mut self, want: Duration) -> io::Result<()> {
        if self.socket_timeout > want + want / 4 {
            self.apply_timeout(want)?;
        }
        Ok(())
    }

    /// Sets the socket's read timeout (a system call only when it changes).
    fn apply_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        if timeout != self.socket_timeout {
            self.reader.get_ref().0.set_read_timeout(Some(timeout))?;
            self.socket_timeout = timeout;
        }
        Ok(())
    }

    /// The address at the other end.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket and the cipher, for a reactor to take the connection over once its
    /// handshake is done. Fails if bytes beyond the handshake were read: the peer spoke out
    /// of turn.
    pub fn into_parts(self) -> io::Result<(TcpStream, Option<Channel>)> {
        let unread = self
            .secure
            .as_ref()
            .is_some_and(|s| s.taken < s.record.len());
        if !self.reader.buffer().is_empty() || unread {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer sent bytes nobody asked for",
            ));
        }
        let channel = self.secure.map(|s| s.channel);
        let stream = Arc::try_unwrap(self.reader.into_inner().0)
            .map_err(|_| io::Error::other("the connection is still shared"))?;
        Ok((stream, channel))
    }

    /// The library error for a failure on this connection.
    pub fn error(&self, e: ReadError) -> Error {
        read_error(self.peer, self.read_timeout, e)
    }
}

impl Frames for Framed {
    fn queue(&mut self, msg: &Message) {
        Framed::queue(self, msg);
    }

    fn queue_chunk(&mut self, data: &[u8]) {
        Framed::queue_chunk(self, data);
    }

    fn queued(&self) -> usize {
        Framed::queued(self)
    }

    fn send_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        Framed::send_chunk(self, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Framed::flush(self)
    }

    fn recv_body(&mut self) -> Result<Body<'_>, ReadError> {
        Framed::recv_body(self)
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn error(&self, e: ReadError) -> Error {
        Framed::error(self, e)
    }
}

/// The library error for a failure talking to `addr`, a wait for a frame being `waited`.
pub(crate) fn read_error(addr: SocketAddr, waited: Duration, e: ReadError) -> Error {
    match e {
        ReadError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Error::Timeout {
                addr,
                after: waited,
            }
        }
        ReadError::Io(source) => Error::Unreachable { addr, source },
        ReadError::Wire(source) => Error::Wire { addr, source },
        ReadError::Stream { want, got } => Error::Protocol {
            addr,
            what: format!("sent a frame of stream {got} where stream {want} was due"),
        },
    }
}

/// A frame body as a message of its own, a chunk's data copied out of the frame buffer.
fn owned(body: Body<'_>) -> Message {
    match body {
        Body::Chunk(data) => Message::Chunk {
            data: bytes::Bytes::copy_from_slice(data),
        },
        Body::Message(msg) => msg,
    }
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

mod sealed;
#[cfg(test)]
mod tests;
