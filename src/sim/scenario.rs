//! Ready-made runs of the simulator: building an overlay by joins, measuring lookups, and a
//! seeded run of churn with faults whose invariants are checked once it settles. The
//! `simulate` example and the tests run these.

use std::time::Duration;

use super::{LookupEnd, Sim, SimConfig, Violation};
use crate::id::Id;

/// Lookups started at once when many are measured: enough to overlap, few enough that the
/// in-flight state stays small.
const LOOKUP_BATCH: usize = 1000;

/// Joins `ids` one after another, `gap` apart (overlapping when the gap is shorter than a
/// join), then runs maintenance until the invariants hold, at most `max_rounds`. Returns the
/// rounds the settling took.
pub fn build(sim: &mut Sim, ids: &[Id], gap: Duration, max_rounds: usize) -> usize {
    for id in ids {
        sim.join(*id);
        sim.run_for(gap);
    }
    sim.settle(max_rounds)
}

/// `count` distinct random ids.
pub fn random_ids(sim: &mut Sim, count: usize) -> Vec<Id> {
    let count = count.min(1 << 16);
    let mut taken = vec![false; 1 << 16];
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let id = sim.rng().next_u64() as u16;
        if !std::mem::replace(&mut taken[usize::from(id)], true) {
            ids.push(Id(id));
        }
    }
    ids
}

/// Every id, in a random order, so that joins land all over the ring (in order, each would
/// join beside the one before, all crowding one neighbourhood).
pub fn all_ids(sim: &mut Sim) -> Vec<Id> {
    let mut ids: Vec<Id> = (0..=u16::MAX).map(Id).collect();
    for i in (1..ids.len()).rev() {
        let j = sim.rng().below(i + 1);
        ids.swap(i, j);
    }
    ids
}

/// What a batch of lookups found.
#[derive(Clone, Debug, Default)]
pub struct Hops {
    /// Lookups by hops taken: `histogram[h]` took `h`.
    pub histogram: Vec<u64>,
    /// Lookups that failed or ended at the wrong node.
    pub violations: Vec<Violation>,
}

impl Hops {
    /// Lookups that ended at the right node.
    pub fn count(&self) -> u64 {
        self.histogram.iter().sum()
    }

    /// The mean hops.
    pub fn mean(&self) -> f64 {
        let total: u64 = self.histogram.iter().zip(0u64..).map(|(n, h)| n * h).sum();
        total as f64 / self.count().max(1) as f64
    }

    /// The hops within which `q` (0 to 1) of the lookups ended.
    pub fn quantile(&self, q: f64) -> usize {
        let want = (q * self.count() as f64).ceil() as u64;
        let mut seen = 0;
        for (h, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= want {
                return h;
            }
        }
        self.histogram.len().saturating_sub(1)
    }

    /// The most hops taken.
    pub fn max(&self) -> usize {
        self.histogram.iter().rposition(|n| *n > 0).unwrap_or(0)
    }

    fn add(&mut self, sim: &Sim, ended: &[LookupEnd]) {
        self.violations.extend(sim.check_lookups(ended));
        for end in ended {
            if let Ok(path) = &end.path {
                let hops = path.len().saturating_sub(1);
                if self.histogram.len() <= hops {
                    self.histogram.resize(hops + 1, 0);
                }
                self.histogram[hops] += 1;
            }
        }
    }
}

/// Runs `count` lookups of random keys from random members, in overlapping batches, and
/// checks that each ended at the responsible member.
pub fn lookups(sim: &mut Sim, count: usize) -> Hops {
    let mut hops = Hops::default();
    let members = sim.members();
    if members.is_empty() {
        return hops;
    }
    // Long enough for any lookup to end, failures included.
    let wait = sim.config().call_timeout * 3;
    let mut left = count;
    while left > 0 {
        let batch = left.min(LOOKUP_BATCH);
        left -= batch;
        for _ in 0..batch {
            let from = members[sim.rng().below(members.len())];
            let key = Id(sim.rng().next_u64() as u16);
            sim.lookup(from, key);
        }
        sim.run_until_lookups_end(wait);
        let ended = sim.take_lookups();
        hops.add(sim, &ended);
    }
    hops
}

/// The outcome of one churn run.
#[derive(Clone, Debug)]
pub struct ChurnReport {
    /// The seed.
    pub seed: u64,
    /// Nodes at the start.
    pub nodes: usize,
    /// Live members at the end.
    pub members: usize,
    /// Broken invariants once settled (none, if all is well).
    pub violations: Vec<Violation>,
    /// Acknowledged writes lost with `k` holders' stores at once: beyond the fault model,
    /// so not violations, but shown.
    pub beyond_faults: Vec<Violation>,
    /// Rounds the final settling took.
    pub settle_rounds: usize,
    /// Lookups made during the churn, and how many of them failed (allowed: the network
    /// was failing under them).
    pub lookups_during: (u64, usize),
    /// Client writes made during the churn, and how many were acknowledged.
    pub writes: (u64, usize),
    /// The run's trace hash.
    pub trace: u64,
    /// Events simulated.
    pub events: u64,
}

/// Names the racing clients of a churn run write.
const NAMES: usize = 40;

/// Most maintenance rounds a settling may take before the invariants count as broken.
pub const SETTLE_ROUNDS: usize = 120;

/// A seeded run: `nodes` nodes join; then for `churn` of virtual time nodes crash, restart,
/// leave and join, the network loses messages and splits in two for a few seconds at a
/// time, and lookups race with all of it; then the faults stop, the overlay settles, and the
/// invariants and a round of lookups are checked.
pub fn churn(seed: u64, nodes: usize, churn: Duration) -> ChurnReport {
    let mut sim = Sim::new(SimConfig {
        seed,
        call_timeout: Duration::from_secs(1),
        ..SimConfig::default()
    });
    let ids = random_ids(&mut sim, nodes);
    build(&mut sim, &ids, Duration::from_millis(20), SETTLE_ROUNDS);
    let mut violations = sim.check();
    let mut crashed: Vec<Id> = Vec::new();
    let mut heal_at: Option<Duration> = None;
    let step = Duration::from_millis(250);
    let end = sim.elapsed() + churn;
    let mut during = Hops::default();
    let mut writes = 0u64;
    while sim.elapsed() < end {
        let members = sim.members();
        let pick = |sim: &mut Sim, from: &[Id]| from[sim.rng().below(from.len())];
        match sim.rng().below(100) {
            0..=9 if members.len() > nodes / 2 => {
                let id = pick(&mut sim, &members);
                sim.crash(id);
                crashed.push(id);
            }
            10..=17 if !crashed.is_empty() => {
                let at = sim.rng().below(crashed.len());
                let id = crashed.swap_remove(at);
                sim.join(id);
            }
            18..=19 if !members.is_empty() => {
                let id = pick(&mut sim, &members);
                sim.restart(id);
            }
            20..=21 if !members.is_empty() => {
                let id = pick(&mut sim, &members);
                sim.restart_with_store(id);
            }
            22..=26 if members.len() > nodes / 2 => {
                let id = pick(&mut sim, &members);
                sim.leave(id);
            }
            27..=33 => {
                let id = Id(sim.rng().next_u64() as u16);
                if sim.node(id).is_none() && !crashed.contains(&id) {
                    sim.join(id);
                }
            }
            34..=36 if heal_at.is_none() => {
                let percent = 10 + sim.rng().below(40) as u8;
                sim.partition(percent);
                let secs = 1 + sim.rng().below(8) as u64;
                heal_at = Some(sim.elapsed() + Duration::from_secs(secs));
            }
            37..=40 => {
                let ppm = sim.rng().below(50_000) as u32;
                sim.set_loss_ppm(ppm);
            }
            _ => {}
        }
        if heal_at.is_some_and(|at| sim.elapsed() >= at) {
            sim.heal();
            heal_at = None;
        }
        // Racing clients: lookups, and writes of a few names (so that writes of one name
        // race), from random members all along.
        let members = sim.members();
        for _ in 0..3.min(members.len()) {
            let from = pick(&mut sim, &members);
            let key = Id(sim.rng().next_u64() as u16);
            sim.lookup(from, key);
            let from = pick(&mut sim, &members);
            let name = format!("object-{}", sim.rng().below(NAMES));
            writes += 1;
            if sim.rng().below(8) == 0 {
                sim.delete(from, name.as_bytes());
            } else {
                let data = sim.rng().next_u64().to_le_bytes();
                sim.put(from, name.as_bytes(), &data);
            }
        }
        sim.run_for(step);
        let ended = sim.take_lookups();
        during.add(&sim, &ended);
    }
    sim.heal();
    sim.set_loss_ppm(0);
    let settle_rounds = sim.settle(SETTLE_ROUNDS);
    sim.run_until_lookups_end(sim.config().call_timeout * 3);
    let ended = sim.take_lookups();
    during.add(&sim, &ended);
    violations.extend(sim.check());
    violations.extend(lookups(&mut sim, 200).violations);
    let failed_during = during.violations.len();
    ChurnReport {
        seed,
        nodes,
        members: sim.members().len(),
        violations,
        beyond_faults: sim.losses_beyond_faults(),
        settle_rounds,
        lookups_during: (during.count() + failed_during as u64, failed_during),
        writes: (writes, sim.acked().len()),
        trace: sim.trace_hash(),
        events: sim.stats().events,
    }
}
