//! One stream of a multiplexed connection as its user sees it: blocking sends and receives
//! with deadlines, over the reactor's non-blocking connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::conn::Conn;
use crate::error::Error;
use crate::net::buffers;
use crate::net::frame_io::ReadError;
use crate::net::frames::Frames;
use crate::net::mux::Inbound;
use crate::wire::{self, Body, HEADER_LEN, TRAILER_LEN};

/// Most bytes of queued frames [`Frames::flush`] sends past the link's queue: a record's
/// worth, which the connection seals at once.
const SEND_NOW_MOST: usize = crate::net::secure::MAX_PLAIN;

/// A stream of a connection, used by one thread at a time. Dropping it ends the stream: as
/// finished after [`StreamHandle::finish`], else as given up (the peer is told).
pub(crate) struct StreamHandle {
    conn: Arc<Conn>,
    stream: u32,
    /// How long a frame may be waited for, and queued frames may wait for room.
    timeout: Duration,
    /// Frames queued and not yet handed to the connection.
    out: BytesMut,
    /// The chunk last received, lent out by [`Frames::recv_body`].
    chunk: Bytes,
    finished: bool,
}

impl StreamHandle {
    /// The stream `stream` of `conn`, waited on at most `timeout` at a time.
    pub(crate) fn new(conn: Arc<Conn>, stream: u32, timeout: Duration) -> StreamHandle {
        StreamHandle {
            conn,
            stream,
            timeout,
            out: BytesMut::new(),
            chunk: Bytes::new(),
            finished: false,
        }
    }

    /// The stream's connection.
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Ends the stream as done: what is queued is sent, what arrives later is dropped.
    pub fn finish(mut self) -> io::Result<()> {
        let flushed = self.flush();
        self.finished = flushed.is_ok();
        flushed
    }

    /// How long a frame is waited for.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
}

impl Frames for StreamHandle {
    fn queue(&mut self, msg: &wire::Message) {
        let before = self.out.len();
        let trailer = self.conn.trailer();
        wire::encode(
            &self.conn.strip_certs(msg),
            self.stream,
            trailer,
            &mut self.out,
        );
        let payload = self.out.len() - before - HEADER_LEN - TRAILER_LEN;
        self.conn.note_frame(payload as u64);
    }

    fn queue_chunk(&mut self, data: &[u8]) {
        let trailer = self.conn.trailer();
        wire::encode_chunk(data, self.stream, trailer, &mut self.out);
        self.conn.note_frame(data.len() as u64);
    }

    fn queued(&self) -> usize {
        self.out.len()
    }

    fn send_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        // What is queued goes first. Once the stream has credit for it, the chunk goes out
        // from where it lies (sealed straight into the bytes for the socket) unless another
        // stream's frame waits to go first; then it is copied once, into a frame of the
        // shared pool, and takes its turn (a large transfer's frames reuse warm buffers
        // rather than pages new from the kernel).
        self.flush()?;
        let trailer = self.conn.trailer();
        let (header, trailer) = wire::chunk_frame_parts(data, self.stream, trailer);
        let parts = [&header[..], data, &trailer[..]];
        if self.conn.send_now(self.stream, &parts, self.deadline())? {
            self.conn.note_frame(data.len() as u64);
            return Ok(());
        }
        let mut frame = buffers::take(HEADER_LEN + data.len() + TRAILER_LEN);
        frame.clear();
        frame.extend_from_slice(&header);
        frame.extend_from_slice(data);
        frame.extend_from_slice(&trailer);
        self.conn.note_frame(data.len() as u64);
        let frame = buffers::into_bytes(frame);
        self.conn.send(self.stream, frame, self.deadline())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Small frames (a request, an answer) go out from where they were encoded when
        // nothing is queued before them and the stream has credit, as a chunk does: not
        // handed over as a frame to queue, nor copied once more to gather, and the buffer
        // is kept for the next. Otherwise they are queued, as before.
        if self.out.len() <= SEND_NOW_MOST
            && self.conn.send_now_if_free(self.stream, &[&self.out[..]])?
        {
            self.out.clear();
            return Ok(());
        }
        let frames = self.out.split().freeze();
        self.conn.send(self.stream, frames, self.deadline())
    }

    fn recv_body(&mut self) -> Result<Body<'_>, ReadError> {
        self.flush().map_err(ReadError::Io)?;
        match self.conn.take(self.stream, self.deadline()) {
            Ok(Inbound::Chunk(data)) => {
                self.chunk = data;
                Ok(Body::Chunk(&self.chunk))
            }
            Ok(Inbound::Message(msg)) => Ok(Body::Message(msg)),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    fn peer(&self) -> SocketAddr {
        self.conn.peer()
    }

    fn error(&self, e: ReadError) -> Error {
        crate::net::frame_io::read_error(self.peer(), self.timeout, e)
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.conn.finish(self.stream, !self.finished);
    }
}
