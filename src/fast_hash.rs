//! A hasher for the maps consulted on every request (streams by id, connections by token,
//! calls by number, peers by address): a few multiplications where the standard library's
//! SipHash takes about a hundred instructions a key. Its output is fixed, not keyed, so it
//! is kept to keys this process chose or members chose after proving the cluster key (their
//! stream ids, at most `max_streams` open on a connection; their listening addresses); maps
//! keyed by what strangers choose (their source addresses, their handshake messages) keep the
//! standard keyed hasher, which they cannot aim collisions at.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Folds each word in with a multiplication, and mixes the whole once at the end (the
/// finaliser of MurmurHash3) so that both the low bits (the bucket) and the high bits (the
/// table's tag) of sequential keys differ.
#[derive(Clone, Copy, Default)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    fn hash(key: impl Hash) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(key)
    }

    #[test]
    fn sequential_keys_spread_over_low_and_high_bits() {
        // A table of 64 buckets indexes by the low 6 bits and tags by the top 7: 64
        // sequential keys should fill most buckets and use many tags, not a few.
        let low: HashSet<u64> = (0u32..64).map(|k| hash(k) & 63).collect();
        let high: HashSet<u64> = (0u32..64).map(|k| hash(k) >> 57).collect();
        assert!(low.len() >= 36, "{} buckets of 64", low.len());
        assert!(high.len() >= 36, "{} tags of 128", high.len());
    }

    #[test]
    fn keys_that_differ_hash_differently_and_equal_keys_alike() {
        let addr = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(hash(addr(4000)), hash(addr(4000)));
        assert_ne!(hash(addr(4000)), hash(addr(4001)));
        assert_ne!(hash(7u64), hash(8u64));
        let mut map = FastMap::default();
        for k in 0u32..1000 {
            map.insert(k, k * 2);
        }
        assert!((0u32..1000).all(|k| map.get(&k) == Some(&(k * 2))));
    }
}
