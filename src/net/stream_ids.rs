//! How the two ends of a connection number their requests (streams), so that neither ever
//! takes the other's number or reuses one: the end that opened the connection uses odd
//! numbers, the other even ones, each in increasing order. Stream 0 is the connection's own:
//! a frame on it is about the whole connection (an error that ends it).

use std::io;

/// The stream of frames about the whole connection rather than one request.
pub(crate) const CONNECTION_STREAM: u32 = 0;

/// Past this many numbers used, a connection is spent: a pool lets it go and opens another
/// long before the numbers run out.
const SPENT_AT: u32 = u32::MAX - (1 << 20);

/// The numbering state of one end of a connection.
#[derive(Debug)]
pub(crate) struct StreamIds {
    /// The stream this end opens next.
    next_own: u32,
    /// The last stream the peer opened: a new one must be greater.
    last_peer: u32,
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
        } else if stream > self.last_peer {
            Standing::NewFromPeer
        } else {
            Standing::Known
        }
    }

    /// Records that the peer opened `stream` (whose standing is [`Standing::NewFromPeer`]).
    pub fn peer_opened(&mut self, stream: u32) {
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
        acceptor.peer_opened(3);
        assert_eq!(
            acceptor.standing(1),
            Standing::Known,
            "below the peer's last"
        );
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
