//! Calls whose answers no thread waits for: the request is sent, and what to do with its
//! answer is handed to a thread of the reactor's crew when the answer comes. A node that
//! forwards a route so holds no thread while the next hop works on it, and the crew's
//! leader that read the route keeps leading.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Counters, Pool};
use crate::error::{Error, Result};
use crate::net::frame_io::{read_error, refusal_to_error, ReadError};
use crate::net::reactor::Conn;
use crate::store::CHUNK_SIZE;
use crate::wire::{self, Message, RecordHead};

/// What to do with a call's answer, or with why there is none (as [`Pool::call`] returns
/// it). Called once: on a thread of the crew, which may wait, or on the calling thread when
/// the request could not be sent.
pub(crate) type Then = Box<dyn FnOnce(Result<Message>) + Send>;

/// A request as it is sent: a message, or a record (its head, data and end).
enum Request {
    Message(Message),
    Record(RecordHead, Bytes),
}

impl Request {
    /// The request's frames on `stream` of `conn`.
    fn encode(&self, conn: &Conn, stream: u32) -> Bytes {
        let mut frames = BytesMut::new();
        let trailer = conn.trailer();
        match self {
            Request::Message(message) => {
                wire::encode(&conn.strip_certs(message), stream, trailer, &mut frames);
            }
            Request::Record(head, data) => {
                wire::encode(&Message::Record(head.clone()), stream, trailer, &mut frames);
                for chunk in data.chunks(CHUNK_SIZE) {
                    wire::encode_chunk(chunk, stream, trailer, &mut frames);
                }
                let end = Message::RecordEnd {
                    crc: crate::checksum::crc32(data),
                };
                wire::encode(&end, stream, trailer, &mut frames);
            }
        }
        frames.freeze()
    }
}

impl Pool {
    /// Sends `request` to `addr` and returns; `then` is handed the answer, or the failure,
    /// within about `timeout` (deadlines are checked a few times a second). A request sent
    /// just as the peer closed the connection as idle is sent again once, as [`Pool::call`]
    /// does. Connecting, when there is no connection to `addr`, waits here.
    pub(crate) fn call_then(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: Message,
        timeout: Duration,
        then: Then,
    ) {
        self.send_then(addr, Request::Message(request), timeout, then, true);
    }

    /// [`Pool::call_then`] for the record `head` holding `data`, sent whole (its data is in
    /// memory, so at most a small object's).
    pub(crate) fn send_record_then(
        self: &Arc<Self>,
        addr: SocketAddr,
        head: RecordHead,
        data: Bytes,
        timeout: Duration,
        then: Then,
    ) {
        self.send_then(addr, Request::Record(head, data), timeout, then, true);
    }

    fn send_then(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: Request,
        timeout: Duration,
        then: Then,
        may_retry: bool,
    ) {
        Counters::bump(&self.counters.sent);
        let (conn, stream, kept) = match self.stream_to(addr, timeout) {
            Ok(opened) => opened,
            Err(e) => return then(Err(e)),
        };
        let frames = request.encode(&conn, stream);
        let pool: Weak<Pool> = Arc::downgrade(self);
        let on_answer_conn = Arc::clone(&conn);
        let on_answer = Box::new(move |answer: std::io::Result<Message>| {
            let conn = on_answer_conn;
            if !kept {
                conn.close("done");
            }
            let result = match answer {
                Ok(reply) => refusal_to_error(addr, reply),
                Err(e) => Err(read_error(addr, timeout, ReadError::Io(e))),
            };
            // Without this, a peer would take the other for gone whenever their requests
            // crossed an idle close; the connection is new, so it happens once at most.
            let unseen = matches!(result, Err(Error::Unreachable { .. })) && conn.closed_unseen();
            match pool.upgrade() {
                Some(pool) if unseen && may_retry => {
                    pool.send_then(addr, request, timeout, then, false);
                }
                _ => then(result),
            }
        });
        let deadline = Instant::now() + timeout;
        if let Err((on_answer, e)) = conn.send_expecting(stream, frames, deadline, on_answer) {
            on_answer(Err(e));
        }
    }
}

#[cfg(test)]
mod tests;
