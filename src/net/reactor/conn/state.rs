//! A connection's state behind its lock: the handshake's first message, records opened into
//! frames, frames sealed into records, and who waits for what.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use parking_lot::{Condvar, Mutex};

use crate::net::mux::{Event, Link, LinkError};
use crate::net::secure::{Channel, Handshake, ReplayGuard, HELLO_LEN, MAX_PLAIN, RECORD_OVERHEAD};
use crate::net::stream_ids::CONNECTION_STREAM;
use crate::net::{buffers, room_for_whole};
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

/// The threads waiting on a connection's streams, each with what signals it and what it
/// waits for: a few at a time, so a vector (a hash table would be half again as large in
/// every connection, in use or not).
#[derive(Default)]
pub(super) struct Waiters(Vec<(u32, Arc<Condvar>, Want)>);

impl Waiters {
    fn get(&self, stream: u32) -> Option<(&Arc<Condvar>, &Want)> {
        let (_, signal, want) = self.0.iter().find(|(s, ..)| *s == stream)?;
        Some((signal, want))
    }

    /// Notes that the thread `signal` wakes waits on `stream`, for `want`.
    pub(super) fn insert(&mut self, stream: u32, signal: Arc<Condvar>, want: Want) {
        match self.0.iter_mut().find(|(s, ..)| *s == stream) {
            Some(waiter) => *waiter = (stream, signal, want),
            None => self.0.push((stream, signal, want)),
        }
    }

    /// Whether no thread but the one of `stream` waits.
    pub(super) fn only(&self, stream: u32) -> bool {
        self.0.iter().all(|(s, ..)| *s == stream)
    }

    /// The thread waiting on `stream` waits no more.
    pub(super) fn remove(&mut self, stream: u32) {
        self.0.retain(|(s, ..)| *s != stream);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
    }
}

/// A moment, in milliseconds since the process's first connection (4 bytes where an
/// `Instant` takes 16: a connection notes four, and a process holds thousands). Told apart
/// correctly within 24 days, far beyond any deadline a connection keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tick(u32);

impl Tick {
    pub fn now() -> Tick {
        Tick::at(Instant::now())
    }

    pub fn at(when: Instant) -> Tick {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let since = when.saturating_duration_since(*EPOCH.get_or_init(Instant::now));
        Tick(since.as_millis() as u32) // wraps after 49 days: see `since`
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Tick) -> Duration {
        let ms = i32::try_from(self.0.wrapping_sub(earlier.0))
            .unwrap_or(0)
            .max(0);
        Duration::from_millis(ms as u64)
    }
}

/// Where a connection stands.
pub(super) enum Phase {
    /// Waiting for the first handshake message of a peer that must prove the key.
    Hello(Box<Handshake>),
    /// Carrying frames.
    Open,
    /// Over, for the reason given: every stream on it fails with it.
    Closed(Arc<str>),
}

pub(super) struct State {
    pub(super) phase: Phase,
    pub(super) link: Link,
    pub(super) channel: Option<Channel>,
    /// Bytes read and not yet used: part of the handshake, or of a record.
    pub(super) input: Vec<u8>,
    /// Bytes to write, from `written` on.
    pub(super) output: Vec<u8>,
    pub(super) written: usize,
    /// Whether the socket is watched for room to write.
    pub(super) watching_writes: bool,
    /// Whether a thread reads the socket now: the reactor, or a thread waiting on a stream
    /// that reads for itself. One at a time, so that frames stay in order.
    pub(super) reading: bool,
    /// Whether the reactor's watch of the socket is lifted while a thread reads it for
    /// itself.
    pub(super) detached: bool,
    /// The stream whose thread, reading for itself, keeps the reading between its frames
    /// (`reading` stays taken and the socket detached): the next thread to wait takes it.
    pub(super) kept: Option<u32>,
    /// Readiness the reactor found while another thread was reading (the watch was back
    /// on meanwhile): the reactor reads again once that thread lets go.
    pub(super) missed: bool,
    /// Answers expected with no thread waiting for them.
    pub(super) expected: super::expected::Expected,
    /// Threads waiting on a stream: what signals them, and what for. (A condition variable
    /// rather than parking: a thread's handle, made on first use, is never freed on a C
    /// program's main thread.)
    pub(super) waiters: Waiters,
    /// When bytes last came in, when the frame (or record) now arriving began, and when
    /// the bytes waiting to be written last moved.
    pub(super) last_input: Tick,
    pub(super) partial_since: Option<Tick>,
    pub(super) stalled_since: Option<Tick>,
    pub(super) started: Tick,
    /// The peer closed the connection saying it had nothing of this end's in hand
    /// ([`RemoteCode::Closing`]): no request left unanswered on it was seen.
    pub(super) unseen: bool,
}

impl State {
    /// A connection's state as it begins, in `phase`, carrying `link` through `channel`.
    pub(super) fn new(phase: Phase, link: Link, channel: Option<Channel>) -> State {
        let now = Tick::now();
        State {
            phase,
            link,
            channel,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            watching_writes: false,
            reading: false,
            detached: false,
            kept: None,
            missed: false,
            expected: Default::default(),
            waiters: Waiters::default(),
            last_input: now,
            partial_since: None,
            stalled_since: None,
            started: now,
            unseen: false,
        }
    }

    /// Fails when the connection is closed.
    pub(super) fn usable(&self) -> io::Result<()> {
        match &self.phase {
            Phase::Closed(why) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                why.to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// Uses bytes read: the handshake's first message, or records, or plain frames. Records
    /// are opened where they lie, so `bytes` is left changed.
    pub(super) fn take_input(
        &mut self,
        bytes: &mut [u8],
        replays: &Mutex<ReplayGuard>,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        if let Phase::Hello(_) = self.phase {
            self.input.extend_from_slice(bytes);
            if self.input.len() < HELLO_LEN {
                return Ok(());
            }
            self.answer_hello(replays).map_err(Failure::silent)?;
            let mut rest = self.input.split_off(HELLO_LEN);
            self.input = Vec::new();
            return self.take_records(&mut rest, events);
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
    pub(super) fn answer_hello(&mut self, replays: &Mutex<ReplayGuard>) -> Result<(), String> {
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
            .admit(got.ephemeral, got.sent_ms, crate::net::secure::unix_ms())
        {
            return Err("a first handshake message replayed, or from a clock off".into());
        }
        let reply = handshake.reply().map_err(fail)?;
        self.output.extend_from_slice(&reply);
        self.channel = Some(handshake.finish().map_err(fail)?);
        Ok(())
    }

    /// Opens the whole records among the bytes read and hands their frames to the link. On
    /// an error the bytes are dropped: the caller ends the connection.
    pub(super) fn take_records(
        &mut self,
        bytes: &mut [u8],
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        let before = self.link.frames_received();
        // A record begun in an earlier read is completed with as few of these bytes as it
        // needs: only they are copied (a read rarely ends on a record's end, so copying the
        // whole read after it moved every byte of a large transfer once more).
        let mut at = 0;
        // Bounded: each pass opens the waiting record, or takes bytes, or ends.
        while !self.input.is_empty() {
            let want = record_len(&self.input).unwrap_or(2);
            if self.input.len() >= want {
                let mut record = std::mem::take(&mut self.input);
                self.open_records(&mut record, events)?;
                continue;
            }
            if at == bytes.len() {
                break;
            }
            let take = (want - self.input.len()).min(bytes.len() - at);
            self.input.extend_from_slice(&bytes[at..at + take]);
            at += take;
        }
        if self.input.is_empty() {
            // The rest are opened where they lie; only an unfinished record is kept, with
            // room for all of it once enough of it has come.
            let rest = &mut bytes[at..];
            let used = self.open_records(rest, events)?;
            let left = &rest[used..];
            if !left.is_empty() {
                let whole = record_len(left).filter(|&n| room_for_whole(left.len(), n));
                self.input = Vec::with_capacity(whole.unwrap_or(0).max(left.len()));
                self.input.extend_from_slice(left);
            }
        }
        self.note_partial(before);
        Ok(())
    }

    /// Opens the whole records at the start of `data`, in place, and hands what they carry to
    /// the link; returns the bytes they took.
    fn open_records(&mut self, data: &mut [u8], events: &mut Vec<Event>) -> Result<usize, Failure> {
        let mut used = 0;
        // Bounded: each pass uses a whole record of the input or ends.
        while let Some(len) = data.get(used..used + 2) {
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let Some(sealed) = data.get_mut(used + 2..used + 2 + len) else {
                break;
            };
            used += 2 + len;
            let Some(channel) = &mut self.channel else {
                return Err(Failure::silent("records without a cipher".into()));
            };
            // A record that does not open is not from the peer: nothing is said to it.
            let plain = channel
                .open_in_place(sealed)
                .map_err(|e| Failure::silent(e.to_string()))?;
            self.link.receive(plain, events).map_err(Failure::told)?;
        }
        Ok(used)
    }

    /// Notes when the frame now arriving began: its deadline runs from the end of the last
    /// whole frame (`before` frames had been received), however slowly its bytes trickle.
    pub(super) fn note_partial(&mut self, before: u64) {
        let partial = !self.input.is_empty() || self.link.is_mid_frame();
        let completed = self.link.frames_received() != before;
        self.partial_since = match (partial, self.partial_since) {
            (false, _) => None,
            (true, Some(t)) if !completed => Some(t),
            (true, _) => Some(Tick::now()),
        };
    }

    /// Writes what is waiting and whatever the streams may send, sealed, until the socket
    /// would block.
    pub(super) fn write_out(&mut self, socket: &TcpStream) -> io::Result<()> {
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
            (true, _) => Some(Tick::now()),
        };
        if !waiting {
            // An idle connection holds no buffer; a large one is kept warm for the next.
            buffers::give(std::mem::take(&mut self.output));
        }
        if moved {
            self.wake_all(Want::Room);
        }
        Ok(())
    }

    /// Moves frames the streams may send into the output, sealed. `false` when none may.
    pub(super) fn refill(&mut self) -> io::Result<bool> {
        let before = self.output.len();
        let Some(channel) = &mut self.channel else {
            self.link.output(&mut self.output, WRITE_BATCH);
            return Ok(self.output.len() > before);
        };
        // Small frames are gathered into full records; a large one (a chunk) is sealed from
        // where it lies, not copied into the gathering buffer first.
        let plain = &mut Vec::new();
        // Bounded: each pass takes a frame, or ends.
        while self.output.len() + plain.len() < WRITE_BATCH {
            let Some(frame) = self.link.next_frame() else {
                break;
            };
            if plain.len() + frame.len() <= MAX_PLAIN {
                plain.extend_from_slice(&frame);
                continue;
            }
            seal_all(channel, plain, &mut self.output)?;
            plain.clear();
            if frame.len() >= MAX_PLAIN / 4 {
                seal_all(channel, &frame, &mut self.output)?;
            } else {
                plain.extend_from_slice(&frame);
            }
        }
        seal_all(channel, plain, &mut self.output)?;
        plain.clear();
        Ok(self.output.len() > before)
    }

    /// Puts a frame given in `parts` after the bytes for the socket, as the link let it go
    /// ([`Link::send_now`]): sealed into records straight from the parts on a sealed
    /// connection, copied on a plain one. Never while the handshake is under way.
    pub(super) fn put_out(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let Some(channel) = &mut self.channel else {
            buffers::reserve(&mut self.output, len);
            for part in parts {
                self.output.extend_from_slice(part);
            }
            return Ok(());
        };
        let room = len + len.div_ceil(MAX_PLAIN) * RECORD_OVERHEAD;
        buffers::reserve(&mut self.output, room);
        if len <= MAX_PLAIN {
            // One record (a request, an answer): the parts as they are.
            return channel.seal_pieces(parts, &mut self.output);
        }
        // Each record takes the next MAX_PLAIN bytes of the parts, across their bounds.
        let mut rest: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        rest.reverse();
        // Bounded: each pass seals at least a byte of the parts, or ends.
        while !rest.is_empty() {
            let mut pieces: Vec<&[u8]> = Vec::with_capacity(3);
            let mut room = MAX_PLAIN;
            while let Some(part) = rest.pop() {
                let (now, later) = part.split_at(part.len().min(room));
                pieces.push(now);
                room -= now.len();
                if !later.is_empty() {
                    rest.push(later);
                }
                if room == 0 {
                    break;
                }
            }
            channel.seal_pieces(&pieces, &mut self.output)?;
        }
        Ok(())
    }

    /// Wakes the thread waiting on `stream`, if it waits for `want` (or for anything).
    pub(super) fn wake(&mut self, stream: u32, want: Option<Want>) {
        if let Some((signal, w)) = self.waiters.get(stream) {
            if want.is_none_or(|want| *w == want) {
                signal.notify_one();
            }
        }
    }

    /// Wakes the thread that last began waiting for `want`, if any.
    pub(super) fn wake_one(&mut self, want: Want) {
        if let Some((_, signal, _)) = self.waiters.0.iter().rev().find(|(_, _, w)| *w == want) {
            signal.notify_one();
        }
    }

    pub(super) fn wake_all(&mut self, want: Want) {
        for (_, signal, w) in &self.waiters.0 {
            if *w == want {
                signal.notify_one();
            }
        }
    }

    /// Tells the peer, best effort and without waiting, why the connection ends.
    pub(super) fn tell(&mut self, socket: &TcpStream, code: RemoteCode, why: &str) {
        let mut frame = bytes::BytesMut::new();
        let error = Message::Error {
            code,
            message: why.to_string(),
        };
        // Sent as it is only where there is no cipher (yet): checksummed then.
        let trailer = wire::Trailer::on(self.channel.is_some());
        wire::encode(&error, CONNECTION_STREAM, trailer, &mut frame);
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
    pub(super) fn end(&mut self, socket: &TcpStream, why: Arc<str>) {
        if matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        self.phase = Phase::Closed(why);
        let _ = socket.shutdown(std::net::Shutdown::Both);
        for (_, signal, _) in &self.waiters.0 {
            signal.notify_one();
        }
        self.input = Vec::new();
        self.output = Vec::new();
        self.written = 0;
    }
}

/// The length of the record `bytes` begin with, its own two included, once they have come.
fn record_len(bytes: &[u8]) -> Option<usize> {
    let len = bytes.first_chunk::<2>()?;
    Some(2 + usize::from(u16::from_be_bytes(*len)))
}

/// Seals `plain` into as few records as fit, appended to `out`.
fn seal_all(channel: &mut Channel, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    // Room for every record at once: grown by doubling, a chunk would be copied again.
    buffers::reserve(
        out,
        plain.len() + plain.len().div_ceil(MAX_PLAIN) * RECORD_OVERHEAD,
    );
    for piece in plain.chunks(MAX_PLAIN) {
        channel.seal(piece, out)?;
    }
    Ok(())
}

/// Why input ends a connection, and whether the peer is told.
pub(super) struct Failure {
    pub(super) why: String,
    /// Told to a member that broke the rules; never to one that has not proven the key.
    pub(super) tell: bool,
    /// The peer ended the connection as idle: see [`State::unseen`].
    pub(super) unseen: bool,
}

impl Failure {
    pub(super) fn told(e: LinkError) -> Failure {
        let unseen = matches!(
            e,
            LinkError::Ended {
                code: RemoteCode::Closing,
                ..
            }
        );
        Failure {
            why: e.to_string(),
            // A peer that closed as idle needs no answer; one that broke the rules is told.
            tell: !unseen,
            unseen,
        }
    }

    pub(super) fn silent(why: String) -> Failure {
        Failure {
            why,
            tell: false,
            unseen: false,
        }
    }
}

/// A stream gone (given up by the peer, or closed) as an I/O error of its request.
pub(super) fn gone(e: crate::net::mux::Gone) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, e.to_string())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
