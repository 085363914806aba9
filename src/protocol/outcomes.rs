//! The outcomes of recent writes, by the client's request id: a retried put or delete is
//! answered with what its first execution did, not executed again. The responsible node
//! remembers them, and so do the other holders (each copy carries its write's request id and
//! outcome), so that the answer is exact even when the retry reaches a new responsible node.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::wire::{Message, RecordHead};

/// How long an outcome is remembered: well beyond the time a client keeps retrying.
pub const OUTCOME_MEMORY: Duration = Duration::from_secs(120);

/// Most outcomes remembered (about 40 bytes each): the oldest go first beyond it.
pub const MAX_OUTCOMES: usize = 1 << 16;

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A put.
    Stored {
        /// The version it was given.
        version: u64,
        /// Whether it is the version held (not overtaken by a newer one).
        kept: bool,
    },
    /// A delete.
    Deleted {
        /// The version of its deletion record.
        version: u64,
        /// Whether an object existed just before it.
        existed: bool,
    },
}

impl Outcome {
    /// The outcome a copy of a write carries (its head's version and, for a delete, whether
    /// an object existed before it).
    pub fn of_copy(head: &RecordHead) -> Outcome {
        if head.deleted {
            Outcome::Deleted {
                version: head.version,
                existed: head.existed,
            }
        } else {
            Outcome::Stored {
                version: head.version,
                kept: true,
            }
        }
    }

    /// The reply that reports this outcome.
    pub fn reply(self) -> Message {
        match self {
            Outcome::Stored { version, kept } => Message::Stored {
                version,
                kept,
                before: 0,
                before_live: false,
            },
            Outcome::Deleted { version, existed } => Message::Deleted { existed, version },
        }
    }
}

/// Outcomes by request id, forgotten after [`OUTCOME_MEMORY`] or beyond [`MAX_OUTCOMES`].
#[derive(Debug, Default)]
pub struct Outcomes {
    by_request: HashMap<u64, Outcome>,
    /// Request ids in the order they were remembered, with when.
    order: VecDeque<(Instant, u64)>,
}

impl Outcomes {
    /// The outcome of `request`, if it ran here recently.
    pub fn get(&mut self, request: u64, now: Instant) -> Option<Outcome> {
        self.expire(now);
        self.by_request.get(&request).copied()
    }

    /// Remembers the outcome of `request` (0, no request id, is not remembered). The first
    /// outcome of a request stays: it is the one its retries must hear.
    pub fn remember(&mut self, request: u64, outcome: Outcome, now: Instant) {
        if request == 0 || self.by_request.contains_key(&request) {
            return;
        }
        self.expire(now);
        while self.order.len() >= MAX_OUTCOMES {
            if let Some((_, old)) = self.order.pop_front() {
                self.by_request.remove(&old);
            }
        }
        self.by_request.insert(request, outcome);
        self.order.push_back((now, request));
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, request)) = self.order.front() {
            if now.saturating_duration_since(at) < OUTCOME_MEMORY {
                break;
            }
            self.order.pop_front();
            self.by_request.remove(&request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_remembered_once_and_forgotten_in_time() {
        let t0 = Instant::now();
        let mut o = Outcomes::default();
        let first = Outcome::Deleted {
            version: 5,
            existed: true,
        };
        o.remember(9, first, t0);
        o.remember(
            9,
            Outcome::Deleted {
                version: 6,
                existed: false,
            },
            t0,
        );
        o.remember(0, first, t0);
        assert_eq!(o.get(9, t0), Some(first));
        assert_eq!(o.get(0, t0), None);
        assert_eq!(
            o.get(9, t0 + OUTCOME_MEMORY - Duration::from_millis(1)),
            Some(first)
        );
        assert_eq!(o.get(9, t0 + OUTCOME_MEMORY), None);
        assert!(o.order.is_empty() && o.by_request.is_empty());
    }

    #[test]
    fn the_oldest_outcomes_go_beyond_the_bound() {
        let t0 = Instant::now();
        let mut o = Outcomes::default();
        for r in 1..=(MAX_OUTCOMES as u64 + 10) {
            o.remember(
                r,
                Outcome::Stored {
                    version: r,
                    kept: true,
                },
                t0,
            );
        }
        assert_eq!(o.by_request.len(), MAX_OUTCOMES);
        assert_eq!(o.get(10, t0), None);
        assert!(o.get(11, t0).is_some());
    }
}
