//! One connection carrying many requests at once, in both directions: its rules, free of
//! sockets, threads and clocks, so that they are tested exhaustively and whatever drives the
//! sockets only moves bytes.
//!
//! Each request is a stream, numbered as [`stream_ids`](super::stream_ids) says. Frames of
//! every stream share the connection. A sender takes its streams' queued frames in turn,
//! one frame each, so a large transfer (a chunk per frame) delays a small request by at most
//! one frame. A stream's sender starts with [`INITIAL_CREDIT`], its receiver grants credit
//! ([`Message::Credit`]) as it takes frames, up to its own window, and a sender sends nothing
//! more on a stream whose credit is spent: a slow taker holds at most its window (or the
//! initial credit, if more) and one frame of its stream, and never stalls the others.
//! [`Message::Credit`] and [`Message::Cancel`] themselves need no credit.

mod assemble;
mod queue;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};

use super::stream_ids::{Standing, StreamIds};
use crate::fast_hash::FastMap;
use crate::wire::{self, Body, Message, RemoteCode, WireError, HEADER_LEN, TRAILER_LEN};
use assemble::Assembler;
use stream::Stream;

/// Bytes a sender may send on a new stream before the receiver grants more: the same at
/// every end, a rule of the protocol and not a setting, so that ends configured with
/// different windows agree (each receiver's grants bring its sender up to its own window).
pub(crate) const INITIAL_CREDIT: u32 = 1 << 20;

/// The limits of one multiplexed connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkConfig {
    /// Bytes of frames a stream's sender may send ahead of this end's taking, once it has
    /// heard from this end (before: [`INITIAL_CREDIT`]).
    pub window: u32,
    /// Most streams the peer may have open at once; one more is refused as busy.
    pub max_peer_streams: usize,
    /// Largest frame payload accepted.
    pub max_payload: u32,
    /// The trailer of the frames, sent and received.
    pub trailer: wire::Trailer,
}

/// A frame received on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// The data of a [`Message::Chunk`], not copied out of the frame.
    Chunk(Bytes),
    /// Any other message.
    Message(Message),
}

/// What a batch of received bytes brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The peer opened a stream: a request to serve, its first frame waiting.
    Opened(u32),
    /// A frame arrived on a stream already open.
    Readable(u32),
    /// The peer gave a stream up.
    Cancelled(u32),
    /// The peer granted a stream credit: its sender may go on.
    Credited(u32),
}

/// Why the whole connection must close.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// Bytes that are not a valid frame.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A frame on a stream this end has not opened and the peer may not open.
    #[error("a frame on stream {0}, which is not open and may not be opened")]
    Stream(u32),
    /// A frame past the credit its stream was granted.
    #[error("a frame on stream {0} past the credit it was granted")]
    Overrun(u32),
    /// A message on the connection's own stream that has no place there.
    #[error("{0} on the connection's own stream")]
    Misplaced(&'static str),
    /// The peer ended the connection, saying why.
    #[error("the peer ends the connection ({code:?}): {message}")]
    Ended {
        /// What kind of failure.
        code: RemoteCode,
        /// The peer's reason.
        message: String,
    },
}

/// A stream this end no longer has: closed, or given up by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream was given up by the other end, or is closed")]
pub(crate) struct Gone;

/// The state of one end of a multiplexed connection.
#[derive(Debug)]
pub(crate) struct Link {
    config: LinkConfig,
    ids: StreamIds,
    /// What a link holds only while in use, made when it is needed and dropped once it is
    /// empty again: a process of many nodes holds thousands of idle links.
    busy: Option<Box<Busy>>,
    /// Streams the peer opened that are open here.
    peer_open: usize,
    /// Whole frames received.
    received: u64,
}

/// A link's streams and what waits to be sent or completed.
#[derive(Debug, Default)]
struct Busy {
    streams: FastMap<u32, Stream>,
    /// Streams with a frame they may send, each once, in the order they take turns.
    ready: VecDeque<u32>,
    /// Frames about the streams themselves (credit, cancels, refusals): sent first.
    control: VecDeque<Bytes>,
    assembler: Assembler,
}

impl Busy {
    fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.ready.is_empty()
            && self.control.is_empty()
            && !self.assembler.is_mid_frame()
    }

    /// `stream`'s state while this end may still use it.
    fn open_stream(&mut self, stream: u32) -> Result<&mut Stream, Gone> {
        match self.streams.get_mut(&stream) {
            Some(s) if !s.closed && !s.cancelled => Ok(s),
            _ => Err(Gone),
        }
    }

    /// Puts `stream` in the rotation of senders if it may send and is not in it.
    fn schedule(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            if s.can_send() && !s.scheduled {
                s.scheduled = true;
                self.ready.push_back(stream);
            }
        }
    }
}

impl Link {
    /// The end that opened the connection (`opened_here`) or accepted it.
    pub fn new(opened_here: bool, config: LinkConfig) -> Link {
        Link {
            config,
            ids: StreamIds::new(opened_here),
            busy: None,
            peer_open: 0,
            received: 0,
        }
    }

    /// The link's streams and queues, made if it has none.
    fn busy(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    /// Drops the streams and queues of a link that holds nothing in them.
    fn settle(&mut self) {
        if self.busy.as_ref().is_some_and(|b| b.is_empty()) {
            self.busy = None;
        }
    }

    /// Opens a stream of this end's, for a request.
    pub fn open(&mut self) -> io::Result<u32> {
        let stream = self.ids.open()?;
        self.busy().streams.insert(stream, Stream::new(false));
        Ok(stream)
    }

    /// Whether the connection is close to running out of stream numbers.
    pub fn is_spent(&self) -> bool {
        self.ids.is_spent()
    }

    /// Queues `frame` (encoded on `stream`) to be sent on `stream`.
    pub fn send(&mut self, stream: u32, frame: Bytes) -> Result<(), Gone> {
        debug_assert_eq!(frame.get(3..7), Some(&stream.to_be_bytes()[..]));
        let busy = self.busy.as_mut().ok_or(Gone)?;
        busy.open_stream(stream)?.queue(frame);
        busy.schedule(stream);
        Ok(())
    }

    /// Whether `stream` has nothing queued and credit left (or is gone, which its sender
    /// then learns): a frame of it would go at once.
    pub fn may_send_now(&self, stream: u32) -> bool {
        let busy = self.busy.as_ref();
        match busy.and_then(|b| b.streams.get(&stream)) {
            Some(s) if !s.closed && !s.cancelled => s.may_send_now(),
            _ => true,
        }
    }

    /// Charges a frame of `len` bytes that `stream`'s sender sends at once, past the queues:
    /// only when no frame nor control frame may go before it and the stream has credit left
    /// (as a queued frame would go at once). `Ok(true)` when charged; otherwise the frame is
    /// to be queued ([`Link::send`]).
    pub fn send_now(&mut self, stream: u32, len: usize) -> Result<bool, Gone> {
        if self.has_output() {
            return Ok(false);
        }
        let busy = self.busy.as_mut().ok_or(Gone)?;
        Ok(busy.open_stream(stream)?.charge(len))
    }

    /// `stream`'s state, if it is known.
    fn stream(&mut self, stream: u32) -> Option<&mut Stream> {
        self.busy.as_mut()?.streams.get_mut(&stream)
    }

    /// Bytes queued on `stream` and not yet sent: a sender waits while this is a window or
    /// more, so that what it queues is bounded too.
    pub fn queued(&self, stream: u32) -> usize {
        let busy = self.busy.as_ref();
        busy.and_then(|b| b.streams.get(&stream))
            .map_or(0, Stream::queued)
    }

    /// The next frame received on `stream`, if one has arrived.
    pub fn take(&mut self, stream: u32) -> Result<Option<Inbound>, Gone> {
        let window = self.config.window;
        let busy = self.busy.as_mut().ok_or(Gone)?;
        let (frame, grant) = busy.open_stream(stream)?.take(window);
        if let Some(bytes) = grant {
            self.control_frame(stream, &Message::Credit { bytes });
        }
        Ok(frame)
    }

    /// This end is done with `stream`: what it queued is still sent, what arrives for it is
    /// dropped.
    pub fn close(&mut self, stream: u32) {
        let Some(s) = self.stream(stream) else {
            return;
        };
        if s.closed {
            return;
        }
        s.closed = true;
        let (by_peer, drained) = (s.opened_by_peer, s.drained());
        if by_peer {
            self.peer_open -= 1;
        }
        if drained {
            self.forget(stream);
        }
    }

    /// Drops a finished stream, and the link's streams and queues once they are empty.
    fn forget(&mut self, stream: u32) {
        if let Some(busy) = self.busy.as_mut() {
            busy.streams.remove(&stream);
            if busy.streams.is_empty() {
                busy.ready.clear(); // only streams are in it
            }
        }
        self.settle();
    }

    /// Gives `stream` up: nothing more is sent on it, and the peer is told to stop.
    pub fn cancel(&mut self, stream: u32) {
        let Some(s) = self.stream(stream) else {
            return;
        };
        let told = s.cancelled;
        s.drop_all();
        if !told {
            // Queued before the close, which may let go of the link's queues otherwise.
            self.control_frame(stream, &Message::Cancel);
        }
        self.close(stream);
    }

    /// Streams open at this end.
    pub fn open_streams(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.streams.len())
    }

    /// Bytes received and not yet taken, frames not yet whole included: what the peer makes
    /// this end hold.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| {
            b.assembler.held() + b.streams.values().map(Stream::held).sum::<usize>()
        })
    }

    /// Whether the link holds nothing but its numbering: no stream, nothing queued.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.busy.is_none()
    }

    /// Whether part of a frame has arrived and the rest has not: it is due within the frame
    /// deadline.
    pub fn is_mid_frame(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|b| b.assembler.is_mid_frame())
    }

    /// Whole frames received so far: a frame that is late is one that has not followed the
    /// last in time.
    pub fn frames_received(&self) -> u64 {
        self.received
    }

    /// Whether a frame may be sent now.
    pub fn has_output(&self) -> bool {
        self.busy
            .as_ref()
            .is_some_and(|b| !b.control.is_empty() || !b.ready.is_empty())
    }

    /// Appends frames to send to `out` until it holds `limit` bytes or none may go, in the
    /// order of [`Link::next_frame`].
    pub fn output(&mut self, out: &mut Vec<u8>, limit: usize) {
        // Bounded: each pass takes a frame, or ends.
        while out.len() < limit {
            let Some(frame) = self.next_frame() else {
                break;
            };
            crate::net::buffers::reserve(out, frame.len());
            out.extend_from_slice(&frame);
        }
    }

    /// The next frame (or frames of one stream queued together) to send, if one may go:
    /// frames about streams first, then one of each stream with credit in turn.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        // Bounded: each pass takes a frame from a queue or a stream from the rotation.
        loop {
            let busy = self.busy.as_mut()?;
            if let Some(frame) = busy.control.pop_front() {
                self.settle();
                return Some(frame);
            }
            let Some(id) = busy.ready.pop_front() else {
                self.settle();
                return None;
            };
            let Some(s) = busy.streams.get_mut(&id) else {
                continue;
            };
            s.scheduled = false;
            let frame = s.next_to_send();
            if s.can_send() {
                s.scheduled = true;
                busy.ready.push_back(id);
            } else if s.closed && s.drained() {
                self.forget(id);
            }
            if frame.is_some() {
                return frame;
            }
        }
    }

    /// Takes bytes received, noting in `events` what they brought. An error means the
    /// connection must close: the peer broke the rules, or ended it.
    pub fn receive(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), LinkError> {
        let max_payload = self.config.max_payload;
        let mut rest = bytes;
        // Bounded: each pass takes at least a byte (the frames it completed are taken before
        // the next), until none are left.
        while !rest.is_empty() {
            // A small frame that came whole, with nothing held before it (a request, an
            // answer), is copied once into a buffer of its own, not gathered first.
            if let Some((header, len)) = self.whole_small_frame(rest)? {
                let (frame, after) = rest.split_at(len);
                rest = after;
                self.received += 1;
                self.route(header.stream, Bytes::copy_from_slice(frame), events)?;
                continue;
            }
            let taken = self.busy().assembler.push(rest, max_payload);
            rest = &rest[taken..];
            // Bounded: each pass takes a whole frame out of the bytes held.
            while let Some((header, frame)) = self.busy().assembler.next(max_payload)? {
                self.received += 1;
                self.route(header.stream, frame, events)?;
            }
        }
        self.settle();
        Ok(())
    }

    /// The header and length of the whole frame `bytes` begin with, if it is small and no
    /// frame is part way in; an error for a header that is not valid.
    fn whole_small_frame(
        &self,
        bytes: &[u8],
    ) -> Result<Option<(wire::FrameHeader, usize)>, LinkError> {
        if self.is_mid_frame() {
            return Ok(None);
        }
        let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = wire::decode_header(header, self.config.max_payload)?;
        let len = HEADER_LEN + header.len as usize + TRAILER_LEN;
        let small = len < crate::net::buffers::SMALLEST;
        Ok((small && len <= bytes.len()).then_some((header, len)))
    }

    /// Hands one whole frame to its stream.
    fn route(&mut self, id: u32, frame: Bytes, events: &mut Vec<Event>) -> Result<(), LinkError> {
        let len = frame.len() as u32;
        let inbound = decode(&frame, self.config.max_payload, self.config.trailer)?;
        let standing = self.ids.standing(id);
        match (standing, inbound) {
            (Standing::Connection, Inbound::Message(Message::Error { code, message })) => {
                Err(LinkError::Ended { code, message })
            }
            (Standing::Connection, other) => Err(LinkError::Misplaced(name(&other))),
            (Standing::Invalid, _) => Err(LinkError::Stream(id)),
            (_, Inbound::Message(Message::Credit { bytes })) => {
                if let Some(s) = self.stream(id) {
                    s.grant(bytes);
                    self.busy().schedule(id);
                    events.push(Event::Credited(id));
                }
                Ok(())
            }
            (_, Inbound::Message(Message::Cancel)) => {
                if let Some(s) = self.stream(id) {
                    s.drop_all();
                    s.cancelled = true;
                    if s.closed {
                        self.forget(id);
                    } else {
                        events.push(Event::Cancelled(id));
                    }
                }
                Ok(())
            }
            (Standing::NewFromPeer, inbound) => {
                self.ids.peer_opened(id);
                if self.peer_open >= self.config.max_peer_streams {
                    // Refused at once; what else comes on it is dropped as on a closed stream.
                    let message = format!(
                        "{} requests in flight on this connection already",
                        self.peer_open
                    );
                    let busy = Message::Error {
                        code: RemoteCode::Busy,
                        message,
                    };
                    self.control_frame(id, &busy);
                    return Ok(());
                }
                let mut s = Stream::new(true);
                s.receive(inbound, len);
                self.busy().streams.insert(id, s);
                self.peer_open += 1;
                events.push(Event::Opened(id));
                Ok(())
            }
            (Standing::Known, inbound) => {
                match self.stream(id) {
                    Some(s) if !s.closed && !s.cancelled => {
                        if !s.receive(inbound, len) {
                            return Err(LinkError::Overrun(id));
                        }
                        events.push(Event::Readable(id));
                    }
                    // Late frames of a stream this end is done with.
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// Queues a frame about `stream` ahead of the streams' own.
    fn control_frame(&mut self, stream: u32, msg: &Message) {
        // Credit, cancels and refusals are a few bytes; they may wait in the queue a while.
        let mut buf = BytesMut::with_capacity(HEADER_LEN + CONTROL_PAYLOAD + TRAILER_LEN);
        wire::encode(msg, stream, self.config.trailer, &mut buf);
        self.busy().control.push_back(buf.freeze());
    }
}

/// Room made for a control frame's payload: a credit or a cancel fits, a refusal's text
/// grows it.
const CONTROL_PAYLOAD: usize = 16;

/// Decodes a whole frame; a chunk's data stays where it lies.
fn decode(frame: &Bytes, max_payload: u32, trailer: wire::Trailer) -> Result<Inbound, WireError> {
    let Some((header, rest)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Truncated {
            needed: HEADER_LEN,
            have: frame.len(),
        });
    };
    let body = wire::decode_frame_body(header, rest, max_payload, trailer)?;
    Ok(match body {
        Body::Chunk(_) => Inbound::Chunk(frame.slice(HEADER_LEN..frame.len() - TRAILER_LEN)),
        Body::Message(msg) => Inbound::Message(msg),
    })
}

/// The message name of a frame, for errors.
fn name(inbound: &Inbound) -> &'static str {
    match inbound {
        Inbound::Chunk(_) => "Chunk",
        Inbound::Message(msg) => msg.name(),
    }
}
