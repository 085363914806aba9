//! A stream's user side of a connection: sends that wait for room, takes that wait for a
//! frame, and the waiting thread that reads the socket itself (and, on a client's
//! connection, keeps the reading between its frames) rather than be handed its frames.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, MutexGuard};

use super::state::{gone, Phase, State, Want};
use super::{readable, Conn, Shared, Turn};
use crate::net::mux::Inbound;

/// Bytes a thread reading for itself takes from the socket per read.
const OWN_READ: usize = 64 * 1024;
/// Most bytes a thread reading for itself takes before it looks at its stream again, unless
/// its frame came or the socket ran dry first: more than a whole chunk's frame.
const OWN_BUDGET: usize = 1 << 20;
/// Longest a thread reading for itself waits on the socket before it looks again at its
/// stream and the connection.
const OWN_WAIT: Duration = Duration::from_millis(100);
/// How long a leader waiting on a connection its own crew reads waits on the crew's sockets
/// at a time: the watch may relieve it of the lead meanwhile, and its successor waits for
/// the sockets until then.
const LEAD_WAIT: Duration = Duration::from_millis(2);

impl Conn {
    /// A thread waiting on a stream of this connection, with nobody reading it, reads it
    /// itself (`state.reading` is taken and the socket detached from the reactor's watch, so
    /// that the leader is not woken for what this thread reads): waits at most until
    /// `deadline` for the socket to hold something (or take what waits to be written), reads
    /// it, and lets go, or keeps the reading for its next frame (below). What it read for
    /// others is theirs (new requests go to the crew); what it may have left is the
    /// leader's.
    fn read_here(
        self: &Arc<Self>,
        reactor: &Arc<Shared>,
        stream: u32,
        deadline: Instant,
        writes: bool,
    ) {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(OWN_WAIT);
        let ready = readable::wait(&self.socket, wait, reactor.config.spin, writes);
        if ready.writable {
            self.write();
        }
        let mut turn = Turn::default();
        if ready.readable {
            turn = crate::net::buffers::with(OWN_READ, |scratch| {
                reactor.read_for(self, scratch, OWN_BUDGET, stream)
            });
        }
        let mut state = self.state.lock();
        // Readiness the reactor saw meanwhile (the watch put back while bytes waited to be
        // written, or never lifted) is not reported again: the reactor reads on its own.
        let more = turn.more | std::mem::take(&mut state.missed);
        // On a connection the peer sends no requests over (a client's), what follows this
        // thread's frame is most likely its next one: it keeps the reading until it comes
        // back for it (or another thread waits, or it is done with the stream), sparing the
        // reactor's wake-up and a hand-off for each frame of a large transfer.
        let alone = state.waiters.only(stream);
        if turn.came && more && alone && reactor.serve.is_none() && state.usable().is_ok() {
            state.kept = Some(stream);
            return;
        }
        state.reading = false;
        self.watch(&mut state, true);
        drop(state);
        if more {
            reactor.read_later(self.token);
        }
    }

    /// Gives the reading a thread kept between its frames back to the reactor.
    fn give_back(&self, state: &mut MutexGuard<'_, State>) {
        if state.kept.take().is_none() {
            return;
        }
        state.reading = false;
        self.watch(state, true);
        if let Some(reactor) = self.reactor.upgrade() {
            reactor.read_later(self.token);
        }
    }

    /// Queues `frames` (encoded on `stream`) and writes what the socket takes. Waits, until
    /// `deadline`, while the stream already has a window's worth queued.
    pub(in crate::net::reactor) fn send(
        self: &Arc<Self>,
        stream: u32,
        frames: Bytes,
        deadline: Instant,
    ) -> io::Result<()> {
        let window = self.limits().link.window as usize;
        let mut state = self.wait(stream, Want::Room, deadline, |s| {
            s.link.queued(stream) < window
        })?;
        state.link.send(stream, frames).map_err(gone)?;
        self.write_locked(&mut state);
        state.usable()
    }

    /// Sends the frame made of `parts` on `stream` as soon as the stream has nothing queued
    /// and credit left (waiting until `deadline` for that), if no other stream's frame
    /// waits to go first: sealed straight from where its bytes lie, with no frame built to
    /// queue. `false` when it must be queued as a frame instead ([`Conn::send`]).
    pub(in crate::net::reactor) fn send_now(
        self: &Arc<Self>,
        stream: u32,
        parts: &[&[u8]],
        deadline: Instant,
    ) -> io::Result<bool> {
        let state = self.wait(stream, Want::Room, deadline, |s| {
            s.link.may_send_now(stream)
        })?;
        self.put_now(state, stream, parts)
    }

    /// [`Conn::send_now`] with no wait: `false` at once when the stream has frames queued or
    /// no credit left, and the frame is to be queued.
    pub(in crate::net::reactor) fn send_now_if_free(
        self: &Arc<Self>,
        stream: u32,
        parts: &[&[u8]],
    ) -> io::Result<bool> {
        self.put_now(self.state.lock(), stream, parts)
    }

    /// Seals the frame made of `parts` straight into the bytes for the socket and writes
    /// what the socket takes, if the link lets it go now; `false` if not.
    fn put_now(
        &self,
        mut state: MutexGuard<'_, State>,
        stream: u32,
        parts: &[&[u8]],
    ) -> io::Result<bool> {
        let len = parts.iter().map(|p| p.len()).sum();
        state.usable()?;
        if !matches!(state.phase, Phase::Open) || !state.link.send_now(stream, len).map_err(gone)? {
            return Ok(false);
        }
        if let Err(e) = state.put_out(parts) {
            state.end(&self.socket, format!("sealing failed: {e}").into());
            return Err(e);
        }
        self.write_locked(&mut state);
        state.usable().map(|()| true)
    }

    /// The next frame of `stream`, waiting for it until `deadline`.
    pub(in crate::net::reactor) fn take(
        self: &Arc<Self>,
        stream: u32,
        deadline: Instant,
    ) -> io::Result<Inbound> {
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
            return Err(gone(crate::net::mux::Gone));
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
        self: &Arc<Self>,
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
            let usable = state.usable();
            // A frame that came before the peer closed is still its stream's: a reply sent
            // just before a close is not lost. Room on a closed connection is no use.
            if (usable.is_ok() || want == Want::Frame) && ready(&mut state) {
                state.waiters.remove(stream);
                return Ok(state);
            }
            if let Err(e) = usable {
                state.waiters.remove(stream);
                return Err(e);
            }
            if Instant::now() >= deadline {
                state.waiters.remove(stream);
                return Err(io::ErrorKind::TimedOut.into());
            }
            // Only a turn of the crew that reads this connection brings its frame.
            let reads_it = |crew: &Arc<super::super::crew::Crew>| {
                (self.reactor.upgrade()).is_some_and(|r| Arc::ptr_eq(&r.crew, crew))
            };
            if let Some(crew) = super::super::crew::leads().filter(reads_it) {
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .min(LEAD_WAIT);
                if MutexGuard::unlocked(&mut state, || crew.lead_meanwhile(wait)) {
                    continue;
                }
            }
            super::super::crew::may_block();
            // Nobody reads the socket (or a thread that kept the reading between its frames,
            // this one or one busy with its frame, does not now): read it here, sparing the
            // reactor's wake-up and its hand-off to this thread.
            if !state.reading || state.kept.is_some() {
                if let Some(reactor) = self.reactor.upgrade() {
                    state.kept = None;
                    state.reading = true;
                    if !state.detached {
                        self.detach(&mut state);
                    }
                    let writes = state.written < state.output.len();
                    MutexGuard::unlocked(&mut state, || {
                        self.read_here(&reactor, stream, deadline, writes)
                    });
                    continue;
                }
            }
            let signal = signal.get_or_insert_with(|| Arc::new(Condvar::new()));
            state.waiters.insert(stream, Arc::clone(signal), want);
            let _ = signal.wait_until(&mut state, deadline);
        }
    }

    /// This end is done with `stream`; `cancel` tells the peer to stop working on it.
    pub(in crate::net::reactor) fn finish(&self, stream: u32, cancel: bool) {
        let mut state = self.state.lock();
        state.waiters.remove(stream);
        if state.kept == Some(stream) {
            self.give_back(&mut state);
        }
        if cancel {
            state.link.cancel(stream);
        } else {
            state.link.close(stream);
        }
        self.write_locked(&mut state);
    }
}
