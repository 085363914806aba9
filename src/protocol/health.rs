//! What a node has seen of other nodes' failures, as rules with time passed in: when a node
//! counts as dead, how long it stays out of the tables, and what brings it back. The node's
//! maintenance and every protocol feed it evidence; no clock is read here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::id::Id;

/// How long a node found dead stays out of this node's tables, unless it speaks to this node
/// itself: long enough for every neighbour to notice it too, so that none hands it back.
pub const DEAD_MEMORY: Duration = Duration::from_secs(30);

/// Consecutive failures to answer sensibly (a timeout, a malformed frame or a reply that
/// makes no sense) after which a node counts as dead: a node that cannot be understood is of
/// no more use to routing than a silent one. A refused connection counts at once: nothing
/// listens there any more.
pub const TIMEOUTS_TO_DEAD: u32 = 2;

/// Evidence against a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens at its address, or another node answers there: dead at once.
    Gone,
    /// It did not answer in time, or answered nonsense: dead after [`TIMEOUTS_TO_DEAD`] in a
    /// row.
    Silent,
}

/// Why a node is kept out of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Absence {
    /// It failed to answer: any word from it proves it alive after all.
    Failed,
    /// It left gracefully: only its own announcement of a new join brings it back, so that a
    /// message it sent before leaving, arriving late, cannot.
    Departed,
}

/// Nodes found dead or departed, and consecutive silences.
#[derive(Debug, Default)]
pub struct Health {
    /// Nodes found dead or departed, and when.
    dead: HashMap<Id, (Instant, Absence)>,
    /// Consecutive silences per node.
    silent: HashMap<Id, u32>,
}

impl Health {
    /// Notes `failure` of `id` at `now`; returns whether `id` now counts as dead (it is then
    /// kept out for [`DEAD_MEMORY`]).
    pub fn failed(&mut self, id: Id, failure: Failure, now: Instant) -> bool {
        let dead = match failure {
            Failure::Gone => true,
            Failure::Silent => {
                let count = self.silent.entry(id).or_default();
                *count += 1;
                *count >= TIMEOUTS_TO_DEAD
            }
        };
        if dead {
            self.dead.insert(id, (now, Absence::Failed));
        }
        dead
    }

    /// Whether `id` was found dead or departed within [`DEAD_MEMORY`] of `now`.
    pub fn is_dead(&self, id: Id, now: Instant) -> bool {
        self.dead
            .get(&id)
            .is_some_and(|(since, _)| now.saturating_duration_since(*since) < DEAD_MEMORY)
    }

    /// Forgets what is older than [`DEAD_MEMORY`] at `now`; done now and then, so that the
    /// memory stays as small as the recent failures.
    pub fn forget_old(&mut self, now: Instant) {
        self.dead
            .retain(|_, (since, _)| now.saturating_duration_since(*since) < DEAD_MEMORY);
    }

    /// `id` answered sensibly: its silences are forgotten.
    pub fn answered(&mut self, id: Id) {
        self.silent.remove(&id);
    }

    /// `id` has spoken to this node: if it was only thought dead, it is alive after all.
    pub fn heard_from(&mut self, id: Id) {
        if self
            .dead
            .get(&id)
            .is_some_and(|(_, why)| *why == Absence::Failed)
        {
            self.dead.remove(&id);
        }
        self.silent.remove(&id);
    }

    /// `id` announced a new join: whatever was thought of it, it is a member again.
    pub fn rejoined(&mut self, id: Id) {
        self.dead.remove(&id);
        self.silent.remove(&id);
    }

    /// `id` left gracefully at `now`: kept out for [`DEAD_MEMORY`] unless it joins again.
    pub fn departed(&mut self, id: Id, now: Instant) {
        self.dead.insert(id, (now, Absence::Departed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_twice_a_refusal_once_and_death_is_forgotten_in_time() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert!(!h.failed(Id(1), Failure::Silent, t0));
        h.answered(Id(1)); // an answer in between starts the count again
        assert!(!h.failed(Id(1), Failure::Silent, t0));
        assert!(h.failed(Id(1), Failure::Silent, t0));
        assert!(h.is_dead(Id(1), t0 + DEAD_MEMORY - Duration::from_millis(1)));
        assert!(!h.is_dead(Id(1), t0 + DEAD_MEMORY));
        assert!(h.failed(Id(2), Failure::Gone, t0));
        assert!(h.is_dead(Id(2), t0));
    }

    #[test]
    fn a_word_revives_the_failed_but_only_a_join_the_departed() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.failed(Id(1), Failure::Gone, t0);
        h.departed(Id(2), t0);
        h.heard_from(Id(1));
        h.heard_from(Id(2)); // a late message from before it left
        assert!(!h.is_dead(Id(1), t0));
        assert!(h.is_dead(Id(2), t0));
        h.rejoined(Id(2));
        assert!(!h.is_dead(Id(2), t0));
    }
}
