//! Whole frames on a TCP stream: the one framing used by servers and outbound connections.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use bytes::BytesMut;

use super::Counters;
use crate::wire::{self, Message, WireError, HEADER_LEN, TRAILER_LEN};

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
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Frames queued and not yet written.
    out: BytesMut,
    /// The body of the frame last read.
    body: Vec<u8>,
    max_payload: u32,
    counters: Arc<Counters>,
}

impl Framed {
    /// Wraps a connected stream (its timeouts already set).
    pub fn new(stream: TcpStream, max_payload: u32, counters: Arc<Counters>) -> io::Result<Self> {
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Framed {
            reader,
            writer: stream,
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

    /// Writes every queued frame.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = self.writer.write_all(&self.out);
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
        let mut header = [0u8; HEADER_LEN];
        self.reader.read_exact(&mut header).map_err(ReadError::Io)?;
        let h = wire::decode_header(&header, self.max_payload).map_err(ReadError::Wire)?;
        self.counters.note_frame(u64::from(h.len));
        self.body.clear();
        self.body.resize(h.len as usize + TRAILER_LEN, 0);
        self.reader
            .read_exact(&mut self.body)
            .map_err(ReadError::Io)?;
        wire::decode_payload(&header, &self.body, self.max_payload).map_err(ReadError::Wire)
    }

    /// Whether the peer has closed the connection (or sent something unasked), judged without
    /// blocking: a pooled connection is checked before a stream is started on it.
    pub fn is_closed(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true; // bytes nobody asked for: the stream is out of step
        }
        let stream = self.reader.get_ref();
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

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}
