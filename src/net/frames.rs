//! The frames of one request, as its two ends exchange them: what record streaming and the
//! handlers need, whether the request has a connection of its own (an outbound one today)
//! or is one stream of a multiplexed connection (an inbound one).

use std::io;
use std::net::SocketAddr;

use super::frame_io::{refusal_to_error, ReadError};
use crate::error::Error;
use crate::wire::{Body, Message};

/// One request's frames: queued and flushed together, read one at a time.
pub(crate) trait Frames {
    /// Adds a frame to those written by the next flush, so that a request made of several
    /// frames costs one write.
    fn queue(&mut self, msg: &Message);

    /// Adds a chunk frame carrying `data` to those written by the next flush.
    fn queue_chunk(&mut self, data: &[u8]);

    /// Bytes queued and not yet flushed.
    fn queued(&self) -> usize;

    /// Flushes what is queued, then a chunk frame carrying `data`.
    fn send_chunk(&mut self, data: &[u8]) -> io::Result<()>;

    /// Writes (or hands on to be written) every queued frame.
    fn flush(&mut self) -> io::Result<()>;

    /// Reads the request's next frame; a chunk's data is lent rather than copied.
    fn recv_body(&mut self) -> Result<Body<'_>, ReadError>;

    /// The address at the other end.
    fn peer(&self) -> SocketAddr;

    /// The library error for a failure of this request's exchange.
    fn error(&self, e: ReadError) -> Error;

    /// Queues `msg` and flushes.
    fn send(&mut self, msg: &Message) -> io::Result<()> {
        self.queue(msg);
        self.flush()
    }

    /// Reads the next frame as a message of its own.
    fn recv(&mut self) -> Result<Message, ReadError> {
        Ok(match self.recv_body()? {
            Body::Chunk(data) => Message::Chunk {
                data: bytes::Bytes::copy_from_slice(data),
            },
            Body::Message(msg) => msg,
        })
    }

    /// Flushes, failing with the library's error.
    fn flush_or_fail(&mut self) -> crate::Result<()> {
        self.flush().map_err(|e| self.error(ReadError::Io(e)))
    }

    /// Reads the next frame, failing with the library's error; an error reply becomes
    /// [`Error::Refused`].
    fn recv_or_fail(&mut self) -> crate::Result<Message> {
        let reply = self.recv().map_err(|e| self.error(e))?;
        refusal_to_error(self.peer(), reply)
    }
}
