//! One stream's state at one end of a connection: what it has received and not yet taken,
//! what it has queued and not yet sent, and the credit each way.

use bytes::Bytes;

use super::queue::Queue;
use super::{Inbound, INITIAL_CREDIT};

/// A stream open at this end.
#[derive(Debug)]
pub(super) struct Stream {
    /// Whether the peer opened it (a request to serve) rather than this end.
    pub opened_by_peer: bool,
    /// Frames received and not yet taken, each with its length on the wire.
    inbox: Queue<(Inbound, u32)>,
    /// Bytes the peer may still send before it is granted more: a frame arriving when none
    /// are left overruns the window.
    allowed: i64,
    /// Bytes received and not yet taken.
    held: i64,
    /// Frames queued and not yet sent.
    outbox: Queue<Bytes>,
    queued: usize,
    /// Bytes this end may still send: a frame goes while some are left.
    credit: i64,
    /// Whether it is in the rotation of streams with a frame to send.
    pub scheduled: bool,
    /// This end is done with it: it is let go once its queue has drained.
    pub closed: bool,
    /// The peer gave it up.
    pub cancelled: bool,
}

impl Stream {
    /// A stream whose two ends each start with [`INITIAL_CREDIT`].
    pub fn new(opened_by_peer: bool) -> Stream {
        Stream {
            opened_by_peer,
            inbox: Queue::default(),
            allowed: i64::from(INITIAL_CREDIT),
            held: 0,
            outbox: Queue::default(),
            queued: 0,
            credit: i64::from(INITIAL_CREDIT),
            scheduled: false,
            closed: false,
            cancelled: false,
        }
    }

    /// Takes a frame the peer sent, `len` bytes on the wire. `false` when the peer had no
    /// credit left for it.
    pub fn receive(&mut self, frame: Inbound, len: u32) -> bool {
        if self.allowed <= 0 {
            return false;
        }
        self.allowed -= i64::from(len);
        self.held += i64::from(len);
        self.inbox.push_back((frame, len));
        true
    }

    /// The next frame received, and the credit to grant the peer if what it may still send
    /// ahead of this end's taking has fallen below half of `window` (or of the initial
    /// credit, if less): enough to bring it back to `window`. Grants stay few, the peer
    /// never waits while the taker keeps up, and ends configured with different windows
    /// agree, since each sender starts from the same [`INITIAL_CREDIT`] and learns the
    /// receiver's window from its grants.
    pub fn take(&mut self, window: u32) -> (Option<Inbound>, Option<u32>) {
        let Some((frame, len)) = self.inbox.pop_front() else {
            return (None, None);
        };
        self.held -= i64::from(len);
        let window = i64::from(window);
        let ahead = self.allowed + self.held;
        if ahead >= (window.min(i64::from(INITIAL_CREDIT)) / 2).max(1) {
            return (Some(frame), None);
        }
        let grant = u32::try_from(window - ahead).unwrap_or(u32::MAX);
        self.allowed += i64::from(grant);
        (Some(frame), Some(grant))
    }

    /// Bytes of frames received and not yet taken.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held as usize
    }

    /// Queues a frame to send.
    pub fn queue(&mut self, frame: Bytes) {
        self.queued += frame.len();
        self.outbox.push_back(frame);
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether a frame may go now: one is queued and credit is left.
    pub fn can_send(&self) -> bool {
        !self.outbox.is_empty() && self.credit > 0
    }

    /// The next frame to send, its length charged to the credit.
    pub fn next_to_send(&mut self) -> Option<Bytes> {
        let frame = self.outbox.pop_front()?;
        self.queued -= frame.len();
        self.credit -= frame.len() as i64;
        Some(frame)
    }

    /// Whether nothing is queued and credit is left.
    pub fn may_send_now(&self) -> bool {
        self.outbox.is_empty() && self.credit > 0
    }

    /// Charges `len` bytes sent at once, past the queue: only when nothing is queued (so
    /// the stream's frames keep their order) and credit is left. `true` when charged.
    pub fn charge(&mut self, len: usize) -> bool {
        if !self.may_send_now() {
            return false;
        }
        self.credit -= len as i64;
        true
    }

    /// Credit granted by the peer.
    pub fn grant(&mut self, bytes: u32) {
        self.credit = self.credit.saturating_add(i64::from(bytes));
    }

    /// Drops everything queued or held: the stream is given up.
    pub fn drop_all(&mut self) {
        self.inbox.clear();
        self.held = 0;
        self.outbox.clear();
        self.queued = 0;
    }

    /// Whether nothing remains to send.
    pub fn drained(&self) -> bool {
        self.outbox.is_empty()
    }
}
