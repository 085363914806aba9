//! Freshness of first handshake messages: a recorded one replayed later is refused, so a
//! stranger replaying a member's connection gets nothing back, not even the second message.
//!
//! Each first message carries its sender's clock, sealed under the cluster key. A listener
//! takes one only if that clock is within [`WINDOW`] of its own and its ephemeral key has not
//! been seen within the window. Members' clocks must therefore agree within the window, as
//! for any protocol with expiring credentials.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How far a first message's clock may be from the listener's.
pub(crate) const WINDOW: Duration = Duration::from_secs(300);

/// Most first messages remembered. Only holders of the key can make one that reaches the
/// guard, so this bounds what members' own connections cost; past it the oldest is
/// forgotten and nothing sent at or before it is taken any more.
const MAX_REMEMBERED: usize = 1 << 16;

/// The first messages taken within the window, by a digest of their ephemeral key (keyed
/// by a secret of the guard's own, 64 bits: a key taken for another is as likely as a
/// random guess, and costs only a refused handshake), a quarter of the key's size: a
/// listener remembers every connection it accepted for the whole window.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    seen: HashSet<u64>,
    /// In the order taken, with their clocks, to forget them as the window passes.
    order: VecDeque<(u64, u64)>,
    /// Nothing sent at or before this (milliseconds) is taken: what was forgotten early.
    floor_ms: u64,
    digests: RandomState,
}

impl ReplayGuard {
    /// Whether to take a first message with `ephemeral` sent at `sent_ms` (milliseconds
    /// since the Unix epoch) at `now_ms`; remembers it if so.
    pub fn admit(&mut self, ephemeral: [u8; 32], sent_ms: u64, now_ms: u64) -> bool {
        let window = WINDOW.as_millis() as u64;
        self.forget_before(now_ms.saturating_sub(window));
        let fresh = sent_ms.abs_diff(now_ms) <= window && sent_ms > self.floor_ms;
        let digest = self.digests.hash_one(ephemeral);
        if !fresh || !self.seen.insert(digest) {
            return false;
        }
        self.order.push_back((sent_ms, digest));
        if self.order.len() > MAX_REMEMBERED {
            if let Some((sent, key)) = self.order.pop_front() {
                self.seen.remove(&key);
                self.floor_ms = self.floor_ms.max(sent);
            }
        }
        true
    }

    /// Forgets what was taken before `oldest_ms`: the clock check refuses it by itself.
    fn forget_before(&mut self, oldest_ms: u64) {
        self.floor_ms = self.floor_ms.max(oldest_ms.saturating_sub(1));
        // Bounded: each pass removes one entry.
        while let Some(&(sent, key)) = self.order.front() {
            if sent >= oldest_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_first_message_is_taken_once_and_only_while_fresh() {
        let window = WINDOW.as_millis() as u64;
        let mut guard = ReplayGuard::default();
        assert!(guard.admit([1; 32], NOW, NOW));
        assert!(!guard.admit([1; 32], NOW, NOW + 10), "replayed");
        let mut edge = ReplayGuard::default();
        assert!(
            edge.admit([2; 32], NOW - window, NOW),
            "at the window's edge"
        );
        assert!(!guard.admit([3; 32], NOW - window - 1, NOW), "too old");
        assert!(
            !guard.admit([4; 32], NOW + window + 1, NOW),
            "from the future"
        );
        // Once the window has passed, the first is forgotten and refused by its clock alone.
        assert!(!guard.admit([1; 32], NOW, NOW + window + 1));
        assert!(guard.seen.len() <= 1);
    }

    #[test]
    fn memory_stays_bounded_and_what_is_forgotten_early_is_refused() {
        let mut guard = ReplayGuard::default();
        for i in 0..MAX_REMEMBERED as u64 + 10 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_be_bytes());
            assert!(guard.admit(key, NOW + i, NOW + i));
        }
        assert_eq!(guard.seen.len(), MAX_REMEMBERED);
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&0u64.to_be_bytes());
        assert!(!guard.admit(first, NOW, NOW + 20), "forgotten, and refused");
    }
}
