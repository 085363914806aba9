//! One connection the reactor serves: its socket, its handshake, its records, and the
//! multiplexed streams on it. Only the reactor reads the socket; whoever queues frames
//! writes what the socket takes at once, and the reactor writes the rest when it may.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::os::fd::AsRawFd;

use super::super::mux::{Event, Inbound, Link, LinkConfig, LinkError};
use super::super::secure::{Channel, Handshake, ReplayGuard, HELLO_LEN, MAX_PLAIN};
use super::super::stream_ids::CONNECTION_STREAM;
use super::super::Counters;
use crate::wire::{self, Message, RemoteCode};

/// Sealed bytes produced ahead of the socket per write pass: a large transfer goes out in a
/// few writes, and a connection never holds much more than this of it.
const WRITE_BATCH: usize = 256 * 1024;

/// What a thread waiting on a stream waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    /// A frame.
    Frame,
    /// Room to queue more.
    Room,
}

/// Where a connection stands.
enum Phase {
    /// Waiting for the first handshake message of a peer that must prove the key.
    Hello(Box<Handshake>),
    /// Carrying frames.
    Open,
    /// Over, for the reason given: every stream on it fails with it.
    Closed(Arc<str>),
}

/// The settings a connection runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub link: LinkConfig,
    /// How long a frame (or the handshake) may take from its first byte to its last, and
    /// how long written bytes may wait for the peer to take them.
    pub frame_timeout: Duration,
    /// How long a connection with no request open may stay silent.
    pub idle_timeout: Duration,
}

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
    /// Where the socket is watched: writability is asked for only while bytes wait for it,
    /// or every acknowledgement of a written byte would wake the reactor.
    registry: Arc<Registry>,
    limits: ConnLimits,
    counters: Arc<Counters>,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    link: Link,
    channel: Option<Channel>,
    /// Bytes read and not yet used: part of the handshake, or of a record.
    input: Vec<u8>,
    /// A record being opened.
    record: Vec<u8>,
    /// Bytes to write, from `written` on.
    output: Vec<u8>,
    written: usize,
    /// Frames to seal.
    plain: Vec<u8>,
    /// Whether the socket is watched for room to write.
    watching_writes: bool,
    /// Threads waiting on a stream: what signals them, and what for. (A condition variable
    /// rather than parking: a thread's handle, made on first use, is never freed on a C
    /// program's main thread.)
    waiters: HashMap<u32, (Arc<Condvar>, Want)>,
    /// When bytes last came in, when the frame (or record) now arriving began, and when
    /// the bytes waiting to be written last moved.
    last_input: Instant,
    partial_since: Option<Instant>,
    stalled_since: Option<Instant>,
    started: Instant,
}

impl Conn {
    /// A connection that began as `start` says.
    pub(super) fn new(
        token: Token,
        socket: TcpStream,
        peer: SocketAddr,
        start: Start,
        registry: Arc<Registry>,
        limits: ConnLimits,
        counters: Arc<Counters>,
    ) -> Conn {
        let now = Instant::now();
        let (opened_here, phase, channel) = match start {
            Start::Accepted(Some(h)) => (false, Phase::Hello(h), None),
            Start::Accepted(None) => (false, Phase::Open, None),
            Start::Opened(channel) => (true, Phase::Open, channel.map(|c| *c)),
        };
        Conn {
            token,
            inbound: !opened_here,
            peer,
            socket,
            registry,
            limits,
            counters,
            state: Mutex::new(State {
                phase,
                link: Link::new(opened_here, limits.link),
                channel,
                input: Vec::new(),
                record: Vec::new(),
                output: Vec::new(),
                written: 0,
                plain: Vec::new(),
                watching_writes: false,
                waiters: HashMap::new(),
                last_input: now,
                partial_since: None,
                stalled_since: None,
                started: now,
            }),
        }
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

    /// Reads what the socket holds, at most `budget` bytes, through `scratch`; notes in
    /// `opened` the streams the peer opened. `true` when the socket may hold more.
    pub(super) fn read(
        &self,
        scratch: &mut [u8],
        budget: usize,
        replays: &Mutex<ReplayGuard>,
        opened: &mut Vec<u32>,
    ) -> bool {
        let mut taken = 0;
        let mut events = Vec::new();
        // Bounded by the budget: each pass reads at least one byte or ends.
        while taken < budget {
            let n = match (&self.socket).read(scratch) {
                Ok(0) => {
                    self.close("the peer closed the connection");
                    return false;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(&format!("reading failed: {e}"));
                    return false;
                }
            };
            taken += n;
            let mut state = self.state.lock();
            state.last_input = Instant::now();
            let result = state.take_input(&scratch[..n], replays, &mut events);
            if let Err(failure) = result {
                log::debug!("closing connection with {}: {}", self.peer, failure.why);
                if failure.tell {
                    state.tell(&self.socket, &failure.why);
                }
                state.end(&self.socket, failure.why.into());
                return false;
            }
            for event in events.drain(..) {
                match event {
                    Event::Opened(stream) => opened.push(stream),
                    Event::Readable(stream) => state.wake(stream, Some(Want::Frame)),
                    Event::Cancelled(stream) => state.wake(stream, None),
                }
            }
            // Credit granted, a handshake reply, refusals: out at once.
            self.write_locked(&mut state);
        }
        true
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
            let interest = if waiting {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let fd = self.socket.as_raw_fd();
            // Readiness already there when asked for is reported at once: no room is missed.
            match self
                .registry
                .reregister(&mut SourceFd(&fd), self.token, interest)
            {
                Ok(()) => state.watching_writes = waiting,
                Err(e) => state.end(&self.socket, format!("watching failed: {e}").into()),
            }
        }
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

    /// Closes the connection if a deadline has passed: a handshake, frame or write that
    /// took too long, or a silence with nothing open. `true` when it is (now) closed.
    pub(crate) fn check_deadlines(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        let limits = &self.limits;
        let late = |since: Option<Instant>, within: Duration| {
            since.is_some_and(|t| now.saturating_duration_since(t) > within)
        };
        let why = match state.phase {
            Phase::Closed(_) => return true,
            Phase::Hello(_) if late(Some(state.started), limits.frame_timeout) => {
                "the handshake took too long"
            }
            _ if late(state.partial_since, limits.frame_timeout) => "a frame took too long",
            _ if late(state.stalled_since, limits.frame_timeout) => {
                "the peer does not take what is written to it"
            }
            _ if state.link.open_streams() == 0
                && late(Some(state.last_input), limits.idle_timeout) =>
            {
                "idle"
            }
            _ => return false,
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

    /// Queues `frames` (encoded on `stream`) and writes what the socket takes. Waits, until
    /// `deadline`, while the stream already has a window's worth queued.
    pub(super) fn send(&self, stream: u32, frames: Bytes, deadline: Instant) -> io::Result<()> {
        let window = self.limits.link.window as usize;
        let mut state = self.wait(stream, Want::Room, deadline, |s| {
            s.link.queued(stream) < window
        })?;
        state.link.send(stream, frames).map_err(gone)?;
        self.write_locked(&mut state);
        state.usable()
    }

    /// The next frame of `stream`, waiting for it until `deadline`.
    pub(super) fn take(&self, stream: u32, deadline: Instant) -> io::Result<Inbound> {
        let mut frame = None;
        let mut state = self.wait(stream, Want::Frame, deadline, |s| {
            match s.link.take(stream) {
                Ok(None) => false,
                Ok(some) => {
                    frame = some;
                    true
                }
                Err(_) => true, // gone: said below
            }
        })?;
        let Some(frame) = frame else {
            return Err(gone(super::super::mux::Gone));
        };
        // Credit granted for what was taken goes out now.
        if state.link.has_output() {
            self.write_locked(&mut state);
        }
        Ok(frame)
    }

    /// Waits until `ready` holds (true at once, or after a wake-up for `want`), the
    /// connection closes, or `deadline` passes.
    fn wait(
        &self,
        stream: u32,
        want: Want,
        deadline: Instant,
        mut ready: impl FnMut(&mut State) -> bool,
    ) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.state.lock();
        // Made only when there is something to wait for.
        let mut signal: Option<Arc<Condvar>> = None;
        // Bounded by the deadline: each pass waits until signalled or the time runs out.
        loop {
            if let Err(e) = state.usable() {
                state.waiters.remove(&stream);
                return Err(e);
            }
            if ready(&mut state) {
                state.waiters.remove(&stream);
                return Ok(state);
            }
            if Instant::now() >= deadline {
                state.waiters.remove(&stream);
                return Err(io::ErrorKind::TimedOut.into());
            }
            let signal = signal.get_or_insert_with(|| Arc::new(Condvar::new()));
            state.waiters.insert(stream, (Arc::clone(signal), want));
            let _ = signal.wait_until(&mut state, deadline);
        }
    }

    /// This end is done with `stream`; `cancel` tells the peer to stop working on it.
    pub(super) fn finish(&self, stream: u32, cancel: bool) {
        let mut state = self.state.lock();
        state.waiters.remove(&stream);
        if cancel {
            state.link.cancel(stream);
        } else {
            state.link.close(stream);
        }
        self.write_locked(&mut state);
    }

    /// Refuses a stream the peer opened, for `why`: busy.
    pub(super) fn refuse(&self, stream: u32, why: &str) {
        let mut frame = bytes::BytesMut::new();
        let busy = Message::Error {
            code: RemoteCode::Busy,
            message: why.to_string(),
        };
        wire::encode(&busy, stream, &mut frame);
        let mut state = self.state.lock();
        let _ = state.link.send(stream, frame.freeze());
        state.link.close(stream);
        self.write_locked(&mut state);
    }

    /// Notes a frame's payload length in the counters.
    pub(super) fn note_frame(&self, len: u64) {
        self.counters.note_frame(len);
    }
}

impl State {
    /// Fails when the connection is closed.
    fn usable(&self) -> io::Result<()> {
        match &self.phase {
            Phase::Closed(why) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                why.to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// Uses bytes read: the handshake's first message, or records, or plain frames.
    fn take_input(
        &mut self,
        bytes: &[u8],
        replays: &Mutex<ReplayGuard>,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        if let Phase::Hello(_) = self.phase {
            self.input.extend_from_slice(bytes);
            if self.input.len() < HELLO_LEN {
                return Ok(());
            }
            self.answer_hello(replays).map_err(Failure::silent)?;
            let rest = self.input.split_off(HELLO_LEN);
            self.input.clear();
            return self.take_records(&rest, events);
        }
        if self.channel.is_some() {
            return self.take_records(bytes, events);
        }
        let before = self.link.frames_received();
        self.link.receive(bytes, events).map_err(Failure::told)?;
        self.note_partial(before);
        Ok(())
    }

    /// Checks the peer's first handshake message and queues the answer.
    fn answer_hello(&mut self, replays: &Mutex<ReplayGuard>) -> Result<(), String> {
        let Phase::Hello(handshake) = std::mem::replace(&mut self.phase, Phase::Open) else {
            return Ok(());
        };
        let mut handshake = *handshake;
        let mut hello = [0u8; HELLO_LEN];
        hello.copy_from_slice(&self.input[..HELLO_LEN]);
        let fail = |e: io::Error| format!("the handshake failed: {e}");
        let got = handshake.read_hello(&hello).map_err(fail)?;
        if !replays
            .lock()
            .admit(got.ephemeral, got.sent_ms, super::super::secure::unix_ms())
        {
            return Err("a first handshake message replayed, or from a clock off".into());
        }
        let reply = handshake.reply().map_err(fail)?;
        self.output.extend_from_slice(&reply);
        self.channel = Some(handshake.finish().map_err(fail)?);
        Ok(())
    }

    /// Opens the whole records among the bytes read and hands their frames to the link.
    fn take_records(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), Failure> {
        self.input.extend_from_slice(bytes);
        let before = self.link.frames_received();
        let mut used = 0;
        // Bounded: each pass uses a whole record of the input or ends.
        while let Some(len) = self.input.get(used..used + 2) {
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let Some(sealed) = self.input.get(used + 2..used + 2 + len) else {
                break;
            };
            self.record.clear();
            self.record.extend_from_slice(sealed);
            used += 2 + len;
            let Some(channel) = &mut self.channel else {
                return Err(Failure::silent("records without a cipher".into()));
            };
            // A record that does not open is not from the peer: nothing is said to it.
            channel
                .open(&mut self.record)
                .map_err(|e| Failure::silent(e.to_string()))?;
            self.link
                .receive(&self.record, events)
                .map_err(Failure::told)?;
        }
        self.input.drain(..used);
        if self.input.is_empty() {
            // Between frames a connection keeps no buffer of a record's size.
            shrink(&mut self.input);
            shrink(&mut self.record);
        }
        self.note_partial(before);
        Ok(())
    }

    /// Notes when the frame now arriving began: its deadline runs from the end of the last
    /// whole frame (`before` frames had been received), however slowly its bytes trickle.
    fn note_partial(&mut self, before: u64) {
        let partial = !self.input.is_empty() || self.link.is_mid_frame();
        let completed = self.link.frames_received() != before;
        self.partial_since = match (partial, self.partial_since) {
            (false, _) => None,
            (true, Some(t)) if !completed => Some(t),
            (true, _) => Some(Instant::now()),
        };
    }

    /// Writes what is waiting and whatever the streams may send, sealed, until the socket
    /// would block.
    fn write_out(&mut self, socket: &TcpStream) -> io::Result<()> {
        if matches!(self.phase, Phase::Closed(_)) {
            return Ok(());
        }
        let mut moved = false;
        // Bounded: each pass writes bytes, or refills the output from the link, or ends.
        loop {
            if self.written == self.output.len() {
                self.output.clear();
                self.written = 0;
                if matches!(self.phase, Phase::Hello(_)) || !self.refill()? {
                    break;
                }
            }
            match (&*socket).write(&self.output[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let waiting = self.written < self.output.len();
        self.stalled_since = match (waiting, self.stalled_since) {
            (false, _) => None,
            (true, Some(t)) if !moved => Some(t),
            (true, _) => Some(Instant::now()),
        };
        if !waiting {
            shrink(&mut self.output);
            shrink(&mut self.plain);
        }
        if moved {
            self.wake_all(Want::Room);
        }
        Ok(())
    }

    /// Moves frames the streams may send into the output, sealed. `false` when none may.
    fn refill(&mut self) -> io::Result<bool> {
        self.plain.clear();
        self.link.output(&mut self.plain, WRITE_BATCH);
        if self.plain.is_empty() {
            return Ok(false);
        }
        match &mut self.channel {
            None => self.output.extend_from_slice(&self.plain),
            Some(channel) => {
                for piece in self.plain.chunks(MAX_PLAIN) {
                    channel.seal(piece, &mut self.output)?;
                }
            }
        }
        self.plain.clear();
        Ok(true)
    }

    /// Wakes the thread waiting on `stream`, if it waits for `want` (or for anything).
    fn wake(&mut self, stream: u32, want: Option<Want>) {
        if let Some((signal, w)) = self.waiters.get(&stream) {
            if want.is_none_or(|want| *w == want) {
                signal.notify_one();
            }
        }
    }

    fn wake_all(&mut self, want: Want) {
        for (signal, w) in self.waiters.values() {
            if *w == want {
                signal.notify_one();
            }
        }
    }

    /// Tells the peer, best effort and without waiting, why the connection ends.
    fn tell(&mut self, socket: &TcpStream, why: &str) {
        let mut frame = bytes::BytesMut::new();
        let error = Message::Error {
            code: RemoteCode::BadRequest,
            message: why.to_string(),
        };
        wire::encode(&error, CONNECTION_STREAM, &mut frame);
        let mut out = Vec::new();
        match &mut self.channel {
            None => out.extend_from_slice(&frame),
            Some(channel) => {
                if channel.seal(&frame, &mut out).is_err() {
                    return;
                }
            }
        }
        if self.written == self.output.len() {
            let _ = (&*socket).write(&out);
        }
    }

    /// Ends the connection: the socket is shut, every waiting thread woken to fail.
    fn end(&mut self, socket: &TcpStream, why: Arc<str>) {
        if matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        self.phase = Phase::Closed(why);
        let _ = socket.shutdown(std::net::Shutdown::Both);
        for (signal, _) in self.waiters.values() {
            signal.notify_one();
        }
        self.input = Vec::new();
        self.output = Vec::new();
        self.written = 0;
    }
}

/// Lets go of a drained buffer larger than a page: an idle connection holds little, and a
/// busy one reallocates no more than once per batch of records.
fn shrink(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > 4096 {
        *buf = Vec::new();
    }
}

/// Why input ends a connection, and whether the peer is told.
struct Failure {
    why: String,
    /// Told to a member that broke the rules; never to one that has not proven the key.
    tell: bool,
}

impl Failure {
    fn told(e: LinkError) -> Failure {
        Failure {
            why: e.to_string(),
            tell: true,
        }
    }

    fn silent(why: String) -> Failure {
        Failure { why, tell: false }
    }
}

/// A stream gone (given up by the peer, or closed) as an I/O error of its request.
fn gone(e: super::super::mux::Gone) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, e.to_string())
}
