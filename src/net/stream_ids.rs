//! How the two ends of a connection number their requests (streams), so that neither ever
//! takes the other's number or reuses one: the end that opened the connection uses odd
//! numbers, the other even ones, each in increasing order. Stream 0 is the connection's own:
//! a frame on it is about the whole connection (an error that ends it).
//!
//! Requests opened at once by several threads may reach the wire out of order: as in QUIC, a
//! stream's first frame opens it and leaves the peer's lower numbers not yet seen open to a
//! first frame later. The most remembered is bounded: a number passed over by that many
//! later ones counts as used.

use std::collections::BTreeSet;
use std::io;

/// The stream of frames about the whole connection rather than one request.
pub(crate) const CONNECTION_STREAM: u32 = 0;

/// The most numbers of the peer's remembered as passed over and not yet seen.
const MAX_PASSED: usize = 1024;

/// Past this many numbers used, a connection is spent: a pool lets it go and opens another
/// long before the numbers run out.
const SPENT_AT: u32 = u32::MAX - (1 << 20);

/// The numbering state of one end of a connection.
#[derive(Debug)]
pub(crate) struct StreamIds {
    /// The stream this end opens next.
    next_own: u32,
    /// The greatest stream the peer opened.
    last_peer: u32,
    /// The peer's numbers below `last_peer` not yet seen: they may still be opened.
    passed: BTreeSet<u32>,
}

/// Where a stream number stands, seen from this end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The connection's own stream.
    Connection,
    /// A stream this end opened, or the peer opened before.
    Known,
    /// A number the peer may open now.
    NewFromPeer,
    /// A number of this end's that it has not opened, or a peer's number below its last:
    /// the peer is out of step.
    Invalid,
}

impl StreamIds {
    /// The numbering of the end that opened the connection (`opened_here`) or accepted it.
    pub fn new(opened_here: bool) -> StreamIds {
        StreamIds {
            next_own: if opened_here { 1 } else { 2 },
            last_peer: CONNECTION_STREAM,
            passed: BTreeSet::new(),
        }
    }

    /// Takes the next number of this end's. Fails once every number has been used: a fresh
    /// connection must take over.
    pub fn open(&mut self) -> io::Result<u32> {
        let next = self.next_own.checked_add(2).ok_or_else(|| {
            io::Error::other("every stream number of this connection is used: open another")
        })?;
        Ok(std::mem::replace(&mut self.next_own, next))
    }

    /// Whether the connection is close to running out of numbers.
    pub fn is_spent(&self) -> bool {
        self.next_own > SPENT_AT
    }

    fn is_own(&self, stream: u32) -> bool {
        stream % 2 == self.next_own % 2
    }

    /// Where `stream` stands.
    pub fn standing(&self, stream: u32) -> Standing {
        if stream == CONNECTION_STREAM {
            Standing::Connection
        } else if self.is_own(stream) {
            if stream < self.next_own {
                Standing::Known
            } else {
                Standing::Invalid
            }
        } else if stream > self.last_peer || self.passed.contains(&stream) {
            Standing::NewFromPeer
        } else {
            Standing::Known
        }
    }

    /// Records that the peer opened `stream` (whose standing is [`Standing::NewFromPeer`]).
    pub fn peer_opened(&mut self, stream: u32) {
        if stream <= self.last_peer {
            self.passed.remove(&stream);
            return;
        }
        // The peer's lowest number not yet passed: its first (1 or 2), or the one after its
        // last. Only the last MAX_PASSED numbers passed over are remembered: a jump costs no
        // more.
        let lowest = if self.last_peer == CONNECTION_STREAM {
            2 - stream % 2
        } else {
            self.last_peer + 2
        };
        let skipped = (stream - lowest) / 2;
        let from = stream - 2 * skipped.min(MAX_PASSED as u32);
        self.passed.extend((from..stream).step_by(2));
        while self.passed.len() > MAX_PASSED {
            self.passed.pop_first();
        }
        self.last_peer = stream;
    }

    /// Sets the next number of this end's, for tests of running out.
    #[cfg(test)]
    pub fn set_next_own(&mut self, next: u32) {
        self.next_own = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_ends_never_take_each_others_numbers_or_reuse_one() {
        let (mut opener, mut acceptor) = (StreamIds::new(true), StreamIds::new(false));
        let a: Vec<u32> = (0..3).map(|_| opener.open().unwrap()).collect();
        let b: Vec<u32> = (0..3).map(|_| acceptor.open().unwrap()).collect();
        assert_eq!((a, b), (vec![1, 3, 5], vec![2, 4, 6]));
        assert_eq!(acceptor.standing(0), Standing::Connection);
        assert_eq!(acceptor.standing(1), Standing::NewFromPeer);
        acceptor.peer_opened(1);
        acceptor.peer_opened(3);
        assert_eq!(acceptor.standing(1), Standing::Known, "seen before");
        assert_eq!(acceptor.standing(3), Standing::Known);
        assert_eq!(acceptor.standing(5), Standing::NewFromPeer);
        assert_eq!(acceptor.standing(6), Standing::Known, "its own, opened");
        assert_eq!(
            acceptor.standing(8),
            Standing::Invalid,
            "its own, not opened"
        );
    }

    #[test]
    fn numbers_opened_out_of_order_are_each_new_once() {
        let mut ids = StreamIds::new(false);
        ids.peer_opened(7);
        for s in [1, 3, 5] {
            assert_eq!(ids.standing(s), Standing::NewFromPeer, "{s} not yet seen");
        }
        ids.peer_opened(3);
        assert_eq!(ids.standing(3), Standing::Known, "seen once");
        assert_eq!(ids.standing(1), Standing::NewFromPeer);
        // A jump remembers a bounded number of the numbers passed over.
        ids.peer_opened(u32::MAX);
        assert!(ids.passed.len() <= MAX_PASSED);
        assert_eq!(ids.standing(u32::MAX - 2), Standing::NewFromPeer);
        assert_eq!(
            ids.standing(1),
            Standing::Known,
            "forgotten: counts as used"
        );
    }

    #[test]
    fn numbers_run_out_without_wrapping() {
        let mut ids = StreamIds::new(true);
        assert!(!ids.is_spent());
        ids.set_next_own(u32::MAX - 4);
        assert!(ids.is_spent());
        assert_eq!(ids.open().unwrap(), u32::MAX - 4);
        assert_eq!(ids.open().unwrap(), u32::MAX - 2);
        assert!(ids.open().is_err(), "a number is never used twice");
    }
}
