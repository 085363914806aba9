//! One connection the reactor serves: its socket, its handshake, its records, and the
//! multiplexed streams on it. Only the reactor reads the socket; whoever queues frames
//! writes what the socket takes at once, and the reactor writes the rest when it may.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use parking_lot::{Mutex, MutexGuard};
use std::os::fd::AsRawFd;

use crate::identity::BINDING_LEN;
use crate::net::mux::{Event, Link};
use crate::net::secure::{Channel, Handshake, ReplayGuard};
use crate::wire::{self, Message, RemoteCode};

use super::Shared;

mod certs_sent;
mod common;
mod expected;
mod introduction;
mod readable;
mod state;
mod waiting;

use certs_sent::CertsSent;
pub(crate) use common::{Common, ConnLimits};
pub(crate) use expected::{Answered, OnAnswer};
pub(crate) use introduction::Introduction;

/// What a turn at reading a socket found.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Turn {
    /// The socket may hold more than the turn took.
    pub more: bool,
    /// A frame of the reader's own stream came (or the peer gave the stream up).
    pub came: bool,
}

/// What a turn at reading a socket brought for others than the reader.
#[derive(Default)]
pub(super) struct Brought {
    /// The streams the peer opened: requests to serve.
    pub opened: Vec<u32>,
    /// Answers no thread waits for, due now.
    pub answered: Vec<Answered>,
}

use state::{Phase, State, Tick, Want};

/// How a connection began.
pub(super) enum Start {
    /// Accepted: the peer must still prove the key to this responder's handshake (`None`
    /// on an insecure server).
    Accepted(Option<Box<Handshake>>),
    /// Opened by this end, its handshake done: the cipher (`None` when insecure).
    Opened(Option<Box<Channel>>),
}

/// A connection and its state.
pub(crate) struct Conn {
    pub(super) token: Token,
    /// Whether the peer opened it (it counts against the listener's limits).
    pub(super) inbound: bool,
    peer: SocketAddr,
    socket: TcpStream,
    common: Arc<Common>,
    /// The reactor watching it: a thread that reads the socket for itself hands it what the
    /// peer opened, and what is left to read.
    reactor: Weak<Shared>,
    state: Mutex<State>,
    /// What the other end proved of itself.
    introduction: Introduction,
    /// The certificates this end sent on it.
    certs_sent: CertsSent,
}

impl Conn {
    /// A connection of `reactor`'s that began as `start` says.
    pub(super) fn new(
        token: Token,
        socket: TcpStream,
        peer: SocketAddr,
        start: Start,
        reactor: &Arc<Shared>,
    ) -> Conn {
        let common = Arc::clone(&reactor.common);
        let reactor = Arc::downgrade(reactor);
        let (opened_here, phase, channel) = match start {
            Start::Accepted(Some(h)) => (false, Phase::Hello(h), None),
            Start::Accepted(None) => (false, Phase::Open, None),
            Start::Opened(channel) => (true, Phase::Open, channel.map(|c| *c)),
        };
        let link = Link::new(opened_here, common.accepted.link);
        Conn {
            token,
            inbound: !opened_here,
            peer,
            socket,
            common,
            reactor,
            state: Mutex::new(State::new(phase, link, channel)),
            introduction: Introduction::default(),
            certs_sent: CertsSent::default(),
        }
    }

    /// The trailer of its frames.
    pub(crate) fn trailer(&self) -> crate::wire::Trailer {
        self.limits().link.trailer
    }

    /// The settings it runs with.
    fn limits(&self) -> &ConnLimits {
        if self.inbound {
            &self.common.accepted
        } else {
            &self.common.opened
        }
    }

    /// `msg` as it goes on this connection: without the certificates it carried before.
    pub(crate) fn strip_certs<'a>(&self, msg: &'a Message) -> std::borrow::Cow<'a, Message> {
        self.certs_sent.strip(msg, crate::net::unix_ms())
    }

    /// Who the other end proved to be, and its proof's bookkeeping.
    pub(crate) fn introduction(&self) -> &Introduction {
        &self.introduction
    }

    /// Whether the other end proved the cluster key itself, a member's credential, rather
    /// than the client key (always, on an insecure connection: anyone is anything there).
    pub(crate) fn member_credential(&self) -> bool {
        self.state
            .lock()
            .channel
            .as_ref()
            .is_none_or(|c| c.member())
    }

    /// The connection's binding (its handshake hash), which a proof of identity signs;
    /// zeros on an insecure connection, where a proof binds nothing.
    pub(crate) fn binding(&self) -> [u8; BINDING_LEN] {
        let state = self.state.lock();
        state
            .channel
            .as_ref()
            .map_or([0; BINDING_LEN], |c| *c.binding())
    }

    /// The address at the other end.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, for the reactor's registration.
    pub(super) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Whether the handshake is still to be finished.
    pub(super) fn is_handshaking(&self) -> bool {
        matches!(self.state.lock().phase, Phase::Hello(_))
    }

    /// Whether the connection is over.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state.lock().phase, Phase::Closed(_))
    }

    /// Whether the peer closed the connection as idle: none of this end's requests left
    /// unanswered on it reached the peer's handlers, so each may be sent again.
    pub(crate) fn closed_unseen(&self) -> bool {
        let state = self.state.lock();
        matches!(state.phase, Phase::Closed(_)) && state.unseen
    }

    /// The reactor's turn at reading: what the socket holds, at most `budget` bytes, through
    /// `scratch`; notes in `opened` the streams the peer opened. `true` when the socket may
    /// hold more. A thread reading for itself now is left to it.
    pub(super) fn read(
        &self,
        scratch: &mut [u8],
        budget: usize,
        replays: &Mutex<ReplayGuard>,
        brought: &mut Brought,
    ) -> bool {
        {
            // A thread reading for itself reads what this readiness announced; what comes
            // after it is read once it lets go.
            let mut state = self.state.lock();
            if state.reading {
                state.missed = true;
                return false;
            }
            state.reading = true;
        }
        let more = self.read_turn(scratch, budget, None, replays, brought).more;
        let mut state = self.state.lock();
        state.reading = false;
        // The thread that last began waiting for a frame looks again: if its frame has not
        // all come, it reads the rest itself as soon as it comes, rather than wait for this
        // reactor's next turn and then be woken with it. (One whose frame came was woken
        // above, and does not read.)
        state.wake_one(Want::Frame);
        more
    }

    /// Reads what the socket holds, at most `budget` bytes, through `scratch`, by whichever
    /// thread reads it now; notes in `brought` the streams the peer opened and the answers
    /// due (all those expected, if the connection fails). Stops early once a
    /// frame of stream `until` came, or the peer gave it up (the reader's own stream, whose
    /// thread has its answer). `true` when the socket may hold more.
    pub(super) fn read_turn(
        &self,
        scratch: &mut [u8],
        budget: usize,
        until: Option<u32>,
        replays: &Mutex<ReplayGuard>,
        brought: &mut Brought,
    ) -> Turn {
        let mut taken = 0;
        let mut events = Vec::new();
        let mut came = false;
        let ended = Turn::default();
        // Bounded by the budget: each pass reads at least one byte or ends.
        while taken < budget {
            let n = match (&self.socket).read(scratch) {
                Ok(0) => {
                    self.close("the peer closed the connection");
                    brought.answered.extend(self.failed_answers(Instant::now()));
                    return ended;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Turn { more: false, came }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(&format!("reading failed: {e}"));
                    brought.answered.extend(self.failed_answers(Instant::now()));
                    return ended;
                }
            };
            taken += n;
            let mut state = self.state.lock();
            state.last_input = Tick::now();
            let result = state.take_input(&mut scratch[..n], replays, &mut events);
            if let Err(failure) = result {
                log::debug!("closing connection with {}: {}", self.peer, failure.why);
                if failure.tell {
                    state.tell(&self.socket, RemoteCode::BadRequest, &failure.why);
                }
                state.unseen = failure.unseen;
                let why: Arc<str> = failure.why.into();
                state.end(&self.socket, Arc::clone(&why));
                let failed = state.answers_failed(Tick::now(), Some(&why));
                brought.answered.extend(failed);
                return ended;
            }
            for event in events.drain(..) {
                match event {
                    Event::Opened(stream) => brought.opened.push(stream),
                    Event::Readable(stream) | Event::Cancelled(stream)
                        if state.expected.has(stream) =>
                    {
                        brought.answered.extend(state.answer(stream));
                    }
                    Event::Readable(stream) => {
                        came |= until == Some(stream);
                        state.wake(stream, Some(Want::Frame));
                    }
                    Event::Cancelled(stream) => {
                        came |= until == Some(stream);
                        state.wake(stream, None);
                    }
                    Event::Credited(stream) => state.wake(stream, Some(Want::Room)),
                }
            }
            // Credit granted, a handshake reply, refusals: out at once.
            self.write_locked(&mut state);
            if n < scratch.len() {
                // The socket is drained (a read takes all there is up to the buffer's size);
                // what arrives later is announced anew. Spares a read that finds nothing.
                return Turn { more: false, came };
            }
            if came {
                return Turn { more: true, came };
            }
        }
        Turn { more: true, came }
    }

    /// Writes what is waiting, as far as the socket takes it.
    pub(super) fn write(&self) {
        let mut state = self.state.lock();
        self.write_locked(&mut state);
    }

    fn write_locked(&self, state: &mut MutexGuard<'_, State>) {
        if let Err(e) = state.write_out(&self.socket) {
            state.end(&self.socket, format!("writing failed: {e}").into());
            return;
        }
        let waiting = state.written < state.output.len();
        if waiting != state.watching_writes {
            state.watching_writes = waiting;
            if !state.detached {
                self.watch(state, false);
            } else if waiting {
                // The thread reading for itself waits for input only: the reactor watches
                // again, so that bytes queued meanwhile go out when room comes.
                self.watch(state, true);
            }
        }
    }

    /// Has the reactor watch the socket (`attach`: again, after a thread read it for itself)
    /// for reading, and for room to write while bytes wait for it. Readiness already there
    /// when asked for is reported at once: nothing is missed.
    fn watch(&self, state: &mut MutexGuard<'_, State>, attach: bool) {
        if attach && !std::mem::take(&mut state.detached) {
            return;
        }
        if matches!(state.phase, Phase::Closed(_)) {
            return;
        }
        let interest = if state.watching_writes {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let fd = self.socket.as_raw_fd();
        let watched = self
            .common
            .registry
            .reregister(&mut SourceFd(&fd), self.token, interest);
        if let Err(e) = watched {
            state.end(&self.socket, format!("watching failed: {e}").into());
        }
    }

    /// Stops the reactor watching the socket while this thread reads it. The socket stays
    /// registered, asking for nothing: taking it out and putting it back in would cost the
    /// kernel an allocation and a hook into the socket's wait queue each time. (A hang-up or
    /// error is reported regardless; the reactor finds the reading taken and leaves it.)
    fn detach(&self, state: &mut MutexGuard<'_, State>) {
        let mut nothing = libc::epoll_event {
            events: libc::EPOLLET as u32,
            u64: usize::from(self.token) as u64,
        };
        // SAFETY: an epoll descriptor the registry keeps open, a descriptor this connection's
        // socket keeps open, and a valid event, read by the call only.
        let lifted = unsafe {
            libc::epoll_ctl(
                self.common.registry.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                self.socket.as_raw_fd(),
                &mut nothing,
            )
        };
        if lifted == 0 {
            state.detached = true;
        }
    }

    /// The peer, which opened this connection, says it listens at `addr`: this end's pool
    /// may send it requests over this connection. Believed only for a connection the peer
    /// opened and an address on the host it came from. `true` when taken.
    pub(crate) fn introduce(self: &Arc<Self>, addr: SocketAddr) -> bool {
        if !self.inbound || addr.ip() != self.peer.ip() {
            return false;
        }
        let Some(reactor) = self.reactor.upgrade() else {
            return false;
        };
        reactor.introduce(addr, self);
        true
    }

    /// Whether no request is open on it.
    pub(crate) fn is_unused(&self) -> bool {
        self.state.lock().link.open_streams() == 0
    }

    /// Whether it is close to running out of stream numbers: a pool lets it go.
    pub(crate) fn is_spent(&self) -> bool {
        self.state.lock().link.is_spent()
    }

    /// Closes the connection for `why`: every stream on it fails.
    pub(crate) fn close(&self, why: &str) {
        self.state.lock().end(&self.socket, why.into());
    }

    /// Sends `frames`, a request's on the new stream `stream`, and expects its answer within
    /// `deadline`: `then` is handed the answer on a thread of the crew (or why none came).
    /// Gives `then` back, unused, with the error if the request cannot be sent.
    pub(crate) fn send_expecting(
        &self,
        stream: u32,
        frames: bytes::Bytes,
        deadline: Instant,
        then: OnAnswer,
    ) -> Result<(), (OnAnswer, io::Error)> {
        let mut state = self.state.lock();
        if let Err(e) = state.usable() {
            return Err((then, e));
        }
        if let Err(gone) = state.link.send(stream, frames) {
            return Err((then, state::gone(gone)));
        }
        state.expected.insert(stream, Tick::at(deadline), then);
        self.write_locked(&mut state);
        Ok(())
    }

    /// The answers expected on this connection that will not come: all, once it is closed,
    /// else those past their deadline at `now`.
    pub(super) fn failed_answers(&self, now: Instant) -> Vec<Answered> {
        let mut state = self.state.lock();
        let closed = match &state.phase {
            Phase::Closed(why) => Some(Arc::clone(why)),
            _ => None,
        };
        let failed = state.answers_failed(Tick::at(now), closed.as_deref());
        if !failed.is_empty() && closed.is_none() {
            // The streams given up: the peer is told.
            self.write_locked(&mut state);
        }
        failed
    }

    /// Closes the connection if a deadline has passed: a handshake, frame or write that
    /// took too long, or a silence with nothing open. `true` when it is (now) closed.
    pub(crate) fn check_deadlines(&self, now: Instant) -> bool {
        self.check_deadlines_idle(now, self.limits().idle_timeout)
    }

    /// [`Conn::check_deadlines`], with a silence of `idle_timeout` (if shorter than the
    /// connection's own) closing it.
    pub(crate) fn check_deadlines_idle(&self, now: Instant, idle_timeout: Duration) -> bool {
        let mut state = self.state.lock();
        let limits = self.limits();
        let idle_timeout = idle_timeout.min(limits.idle_timeout);
        let now = Tick::at(now);
        let late =
            |since: Option<Tick>, within: Duration| since.is_some_and(|t| now.since(t) > within);
        let why = match state.phase {
            Phase::Closed(_) => return true,
            Phase::Hello(_) if late(Some(state.started), limits.frame_timeout) => {
                "the handshake took too long"
            }
            _ if late(state.partial_since, limits.frame_timeout) => "a frame took too long",
            _ if late(state.stalled_since, limits.frame_timeout) => {
                "the peer does not take what is written to it"
            }
            _ if state.link.open_streams() == 0 && late(Some(state.last_input), idle_timeout) => {
                // With no stream open, a request of the peer's crossing this close was never
                // seen here: told so, the peer sends it again on another connection.
                if let Phase::Open = state.phase {
                    state.tell(&self.socket, RemoteCode::Closing, "idle");
                }
                "idle"
            }
            _ => {
                // No request open: the cipher's expanded keys go (`Channel::rest`), most
                // of an idle connection's memory. Deadlines are checked a few times a
                // second, and building both keys again costs about 0.4 µs: a connection in
                // use pays that a few times a second, and one used once a maintenance round
                // rests between rounds.
                if state.link.open_streams() == 0 {
                    if let Some(channel) = state.channel.as_mut() {
                        channel.rest();
                    }
                }
                return false;
            }
        };
        log::debug!("closing connection with {}: {why}", self.peer);
        state.end(&self.socket, why.into());
        true
    }

    /// Opens a stream of this end's, for a request.
    pub(crate) fn open_stream(&self) -> io::Result<u32> {
        let mut state = self.state.lock();
        state.usable()?;
        state.link.open()
    }

    /// Refuses a stream the peer opened, for `why`: busy.
    pub(super) fn refuse(&self, stream: u32, why: &str) {
        let mut frame = bytes::BytesMut::new();
        let busy = Message::Error {
            code: RemoteCode::Busy,
            message: why.to_string(),
        };
        wire::encode(&busy, stream, self.trailer(), &mut frame);
        let mut state = self.state.lock();
        let _ = state.link.send(stream, frame.freeze());
        state.link.close(stream);
        self.write_locked(&mut state);
    }

    /// Notes a frame's payload length in the counters.
    pub(super) fn note_frame(&self, len: u64) {
        self.common.counters.note_frame(len);
    }
}
