//! Calls whose answers no thread waits for: the request is sent, and what to do with its
//! answer is handed to a thread of the reactor's crew when the answer comes. A node that
//! forwards a route so holds no thread while the next hop works on it, and the crew's
//! leader that read the route keeps leading.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{Counters, Pool};
use crate::error::{Error, Result};
use crate::net::frame_io::{read_error, refusal_to_error, ReadError};
use crate::wire::{self, Message};

/// What to do with a call's answer, or with why there is none (as [`Pool::call`] returns
/// it). Called once: on a thread of the crew, which may wait, or on the calling thread when
/// the request could not be sent.
pub(crate) type Then = Box<dyn FnOnce(Result<Message>) + Send>;

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
        self.send_then(addr, request, timeout, then, true);
    }

    fn send_then(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: Message,
        timeout: Duration,
        then: Then,
        may_retry: bool,
    ) {
        Counters::bump(&self.counters.sent);
        let (conn, stream, kept) = match self.stream_to(addr, timeout) {
            Ok(opened) => opened,
            Err(e) => return then(Err(e)),
        };
        let mut frames = BytesMut::new();
        wire::encode(&conn.strip_certs(&request), stream, &mut frames);
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
        if let Err((on_answer, e)) =
            conn.send_expecting(stream, frames.freeze(), deadline, on_answer)
        {
            on_answer(Err(e));
        }
    }
}

#[cfg(test)]
mod tests;
