//! Identifiers on the 16-bit ring: node ids and keys, their hex digits, shared prefixes, ring
//! distance, the responsibility rule and the digest of a name.

use std::cmp::Ordering;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::error::Error;

/// Number of hex digits in an identifier (and rows in the routing table).
pub const DIGITS: usize = 4;
/// Number of values a digit can take (and columns in the routing table).
pub const BASE: usize = 16;

/// A point on the ring `0..2^16`: a node's identifier or an object's key.
///
/// Shown as four lowercase hex digits (`0x3a7f` is `3a7f`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub u16);

/// A node's identifier.
pub type NodeId = Id;
/// An object's key: the digest of its name.
pub type Key = Id;

/// A node as others know it: its identifier and the address its server listens on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeInfo {
    /// The node's identifier.
    pub id: NodeId,
    /// Where the node's server accepts connections.
    pub addr: SocketAddr,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

/// The CRC-16/XMODEM algorithm that maps names to keys.
const DIGEST: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The key of a name: CRC-16/XMODEM of its bytes (`key_of(b"123456789") == Id(0x31c3)`).
///
/// The same as Python's `binascii.crc_hqx(name, 0)`, so any language can compute it.
pub fn key_of(name: &[u8]) -> Key {
    Id(DIGEST.checksum(name))
}

impl Id {
    /// Digit `i` (0 = most significant) of this id.
    ///
    /// # Panics
    /// If `i >= DIGITS`.
    pub fn digit(self, i: usize) -> usize {
        assert!(i < DIGITS, "digit index {i} out of range");
        ((self.0 >> (12 - 4 * i)) & 0xf) as usize
    }

    /// How many leading hex digits `self` and `other` share (`0..=4`).
    pub fn shared_prefix(self, other: Id) -> usize {
        let diff = self.0 ^ other.0;
        (diff.leading_zeros() / 4) as usize
    }

    /// Ring distance: the shorter way round from `self` to `other`.
    pub fn distance(self, other: Id) -> u16 {
        let cw = other.0.wrapping_sub(self.0);
        let ccw = self.0.wrapping_sub(other.0);
        cw.min(ccw)
    }

    /// Clockwise distance from `self` to `other` (`0..2^16`).
    pub fn cw_distance(self, other: Id) -> u16 {
        other.0.wrapping_sub(self.0)
    }

    /// Orders candidates for responsibility for `key`: `Less` means `self` is the better holder.
    ///
    /// The nearer one wins; of two equally near, the larger id (the rule every node, the discovery
    /// node and every client applies, so that all agree on one holder).
    pub fn cmp_for_key(self, other: Id, key: Key) -> Ordering {
        self.distance(key)
            .cmp(&other.distance(key))
            .then_with(|| other.0.cmp(&self.0))
    }

    /// True when `self` is strictly better placed than `other` to hold `key`.
    pub fn closer_to(self, key: Key, other: Id) -> bool {
        self.cmp_for_key(other, key) == Ordering::Less
    }
}

/// A node for tests: id `id`, listening on 127.0.0.1 at port `id`.
#[cfg(test)]
pub(crate) fn loopback_node(id: u16) -> NodeInfo {
    NodeInfo {
        id: Id(id),
        addr: ([127, 0, 0, 1], id).into(),
    }
}

/// The responsible node for `key` among `ids`: least ring distance, ties to the larger id.
///
/// `None` when `ids` is empty.
pub fn responsible<I: IntoIterator<Item = Id>>(key: Key, ids: I) -> Option<Id> {
    ids.into_iter().min_by(|a, b| a.cmp_for_key(*b, key))
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({:04x})", self.0)
    }
}

impl FromStr for Id {
    type Err = Error;

    /// Parses 1 to 4 hex digits, with an optional `0x` prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if digits.is_empty() || digits.len() > DIGITS {
            return Err(Error::InvalidId(s.to_string()));
        }
        u16::from_str_radix(digits, 16)
            .map(Id)
            .map_err(|_| Error::InvalidId(s.to_string()))
    }
}

impl From<u16> for Id {
    fn from(v: u16) -> Self {
        Id(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_check_value_and_vectors() {
        assert_eq!(key_of(b"123456789"), Id(0x31c3));
        assert_eq!(key_of(b""), Id(0x0000));
        // binascii.crc_hqx(b"a", 0) == 0x7c87, crc_hqx(b"hello.txt", 0) == 0xf34c
        assert_eq!(key_of(b"a"), Id(0x7c87));
        assert_eq!(key_of(b"hello.txt"), Id(0xf34c));
    }

    #[test]
    fn digits_and_prefix() {
        let a = Id(0x3a7f);
        assert_eq!(
            (a.digit(0), a.digit(1), a.digit(2), a.digit(3)),
            (3, 10, 7, 15)
        );
        assert_eq!(a.shared_prefix(a), 4);
        assert_eq!(a.shared_prefix(Id(0x3a70)), 3);
        assert_eq!(a.shared_prefix(Id(0x3b7f)), 1);
        assert_eq!(a.shared_prefix(Id(0x4a7f)), 0);
        assert_eq!(a.to_string(), "3a7f");
        assert_eq!("3a7f".parse::<Id>().unwrap(), a);
        assert_eq!("0x7".parse::<Id>().unwrap(), Id(7));
        assert!("12345".parse::<Id>().is_err());
        assert!("".parse::<Id>().is_err());
        assert!("xyz".parse::<Id>().is_err());
    }

    #[test]
    fn distance_wraps() {
        assert_eq!(Id(0).distance(Id(0xffff)), 1);
        assert_eq!(Id(0xffff).distance(Id(0)), 1);
        assert_eq!(Id(0).distance(Id(0x8000)), 0x8000);
        assert_eq!(Id(10).distance(Id(4)), 6);
    }

    #[test]
    fn ties_go_to_the_larger_id() {
        assert_eq!(responsible(Id(15), [Id(10), Id(20)]), Some(Id(20)));
        assert_eq!(responsible(Id(0), [Id(0xffff), Id(1)]), Some(Id(0xffff)));
        assert_eq!(responsible(Id(5), [Id(5), Id(6)]), Some(Id(5)));
        assert_eq!(responsible(Id(5), []), None);
    }
}
