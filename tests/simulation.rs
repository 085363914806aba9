//! The overlay's protocols in the deterministic simulator (`pastry::sim`): hundreds of seeded
//! runs of churn with faults, each checked against the invariants once it settles; a seed
//! replays exactly; seeds that once failed are kept as named regressions.
//!
//! `PASTRY_SIM_SEEDS=N` runs N seeds instead of 200 (`PASTRY_SIM_FIRST` sets the first).

use std::time::Duration;

use pastry::sim::scenario::{self, ChurnReport};
use pastry::sim::{Sim, SimConfig};

/// Virtual seconds of churn per seed in CI (the documented long run uses 30).
const CHURN: Duration = Duration::from_secs(20);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The node count of `seed`: from 64 to 256, spread by the seed.
fn nodes_for(seed: u64) -> usize {
    64 + (pastry::Rng::seeded(seed).next_u64() % 193) as usize
}

/// What to print for a failed seed: what broke, and how to replay it.
fn describe(r: &ChurnReport, churn: Duration) -> String {
    let shown: Vec<String> = r
        .violations
        .iter()
        .take(5)
        .map(|v| format!("    {v}"))
        .collect();
    format!(
        "seed {} ({} nodes): {} violations, first:\n{}\n  replay: cargo run --release --example simulate -- --churn --seed {} --nodes {} --seconds {}",
        r.seed,
        r.nodes,
        r.violations.len(),
        shown.join("\n"),
        r.seed,
        r.nodes,
        churn.as_secs()
    )
}

fn assert_holds(seed: u64, nodes: usize, churn: Duration) {
    let report = scenario::churn(seed, nodes, churn);
    assert!(report.violations.is_empty(), "{}", describe(&report, churn));
}

#[test]
fn seeds_of_churn_with_faults_keep_every_invariant() {
    let count = env_or("PASTRY_SIM_SEEDS", 200);
    let first = env_or("PASTRY_SIM_FIRST", 1);
    let seeds: Vec<u64> = (first..first + count).collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|s| {
        let threads: Vec<_> = seeds
            .chunks(seeds.len().div_ceil(workers).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&seed| scenario::churn(seed, nodes_for(seed), CHURN))
                        .filter(|r| !r.violations.is_empty())
                        .map(|r| describe(&r, CHURN))
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a simulation thread panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {count} seeds broke invariants:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_seed_replays_event_for_event() {
    let a = scenario::churn(11, 64, Duration::from_secs(10));
    let b = scenario::churn(11, 64, Duration::from_secs(10));
    assert_eq!((a.trace, a.events), (b.trace, b.events));
    let c = scenario::churn(12, 64, Duration::from_secs(10));
    assert_ne!(a.trace, c.trace);
}

#[test]
fn a_thousand_nodes_built_by_joins_route_every_lookup_to_the_responsible_node() {
    let mut sim = Sim::new(SimConfig {
        seed: 3,
        ..SimConfig::default()
    });
    let ids = scenario::random_ids(&mut sim, 1000);
    let rounds = scenario::build(&mut sim, &ids, Duration::from_millis(1), 60);
    let violations = sim.check();
    assert!(
        violations.is_empty(),
        "after {rounds} rounds: {:?}",
        &violations[..violations.len().min(5)]
    );
    assert_eq!(sim.members().len(), 1000);
    let hops = scenario::lookups(&mut sim, 3000);
    assert!(
        hops.violations.is_empty(),
        "{:?}",
        &hops.violations[..hops.violations.len().min(5)]
    );
    assert_eq!(hops.count(), 3000);
    // log16(1000) = 2.49: Pastry's bound is ceil(log16 N) hops, plus one within the leaf set.
    assert!(hops.max() <= 4, "max {} hops", hops.max());
    assert!(hops.mean() < 2.8, "mean {} hops", hops.mean());
}

#[test]
fn the_invariants_catch_a_crash_until_the_overlay_repairs_it() {
    let mut sim = Sim::new(SimConfig {
        seed: 5,
        ..SimConfig::default()
    });
    let ids = scenario::random_ids(&mut sim, 64);
    scenario::build(&mut sim, &ids, Duration::from_millis(5), 60);
    assert!(sim.check().is_empty());
    let victim = ids[0];
    sim.crash(victim);
    // Nobody has noticed yet: its neighbours still hold it, and name it as a holder.
    let broken = sim.check();
    let what: Vec<&str> = broken.iter().map(|v| v.what.as_str()).collect();
    assert!(what.iter().any(|w| w.starts_with("leaf set")), "{what:?}");
    assert!(what.iter().any(|w| w.contains("other holders")), "{what:?}");
    let rounds = sim.settle(60);
    assert!(rounds < 60, "not repaired: {:?}", sim.check());
    assert!(sim.node(victim).is_none());
}

// Seeds that once failed, kept as named regressions.

/// A partition longer than failure detection: each side found the other dead and, once it
/// healed, nothing made them speak again; nodes stayed out of their neighbours' leaf sets
/// for good. Fixed by asking nodes found silent again while they would be leaf-set members.
#[test]
fn regression_a_healed_partition_rejoins_both_sides() {
    assert_holds(1, 128, Duration::from_secs(30));
}

/// During a partition each side reported the other dead to discovery, which forgot them
/// all; a newcomer, handed no peer, started a second ring that never merged. Fixed by
/// discovery asking a node reported dead before forgetting it.
#[test]
fn regression_a_partition_does_not_empty_discovery() {
    assert_holds(2, 128, Duration::from_secs(30));
}

/// Routing-table entries dropped as dead came back from other nodes' rows, again and again,
/// so that three nodes still held a crashed node's old address after 120 rounds. Fixed by
/// asking an entry heard of second hand whether it is alive before it takes a cell.
#[test]
fn regression_stale_table_entries_do_not_come_back() {
    assert_holds(184, 70, Duration::from_secs(20));
}

#[test]
fn the_object_invariants_catch_copies_lost_with_every_holder() {
    let mut sim = Sim::new(SimConfig {
        seed: 9,
        ..SimConfig::default()
    });
    let ids = scenario::random_ids(&mut sim, 32);
    scenario::build(&mut sim, &ids, Duration::from_millis(5), 60);
    let members = sim.members();
    sim.put(members[0], b"kept", b"one");
    sim.put(members[1], b"lost", b"two");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.acked().len(), 2, "both writes acknowledged");
    assert!(sim.check().is_empty(), "{:?}", sim.check());
    // A holder of "kept" crashes: its copies are made again elsewhere.
    let holders = |sim: &Sim, name: &[u8]| {
        let mut all = sim.members();
        let key = pastry::id::key_of(name);
        all.sort_by(|a, b| a.cmp_for_key(*b, key));
        all.truncate(sim.config().replicas);
        all
    };
    sim.crash(holders(&sim, b"kept")[0]);
    let rounds = sim.settle(60);
    assert!(rounds < 60, "not repaired: {:?}", sim.check());
    // Every holder of "lost" crashes at once: nothing is left to copy from.
    for id in holders(&sim, b"lost") {
        sim.crash(id);
    }
    sim.settle(60);
    // Beyond the fault model (k holders failed between repairs): shown, not a violation.
    assert!(sim.check().is_empty(), "{:?}", sim.check());
    let beyond = sim.losses_beyond_faults();
    assert_eq!(beyond.len(), 1, "{beyond:?}");
    assert!(beyond[0].what.contains("\"lost\""), "{beyond:?}");
}

/// Asserts `seed` keeps every invariant and loses at most one acknowledged write, and that
/// only beyond the fault model.
fn assert_at_most_one_loss_beyond_faults(seed: u64, nodes: usize) {
    let churn = Duration::from_secs(10);
    let report = scenario::churn(seed, nodes, churn);
    assert!(report.violations.is_empty(), "{}", describe(&report, churn));
    assert!(
        report.beyond_faults.len() <= 1,
        "{:?}",
        report.beyond_faults
    );
}

/// All three holders of an acknowledged write crashed within 1.25 s (10.46, 11.46 and
/// 11.71 s), before any repair: the write was lost, as the fault model allows, and flagged
/// as a violation until the checker told this apart from a loss the protocol should
/// prevent. Since the leaf-set exchanges with farther neighbours came every fourth round
/// (f0ca032) the run takes another course and loses nothing; the checker's telling such a
/// loss apart is tested on purpose by `the_object_invariants_catch_copies_lost_with_every_holder`.
#[test]
fn regression_three_holders_crashing_at_once_is_beyond_the_fault_model() {
    assert_at_most_one_loss_beyond_faults(248_041, 73);
}

/// The same within 0.5 s, by a restart on a new disk and two crashes (the same change of
/// course since f0ca032).
#[test]
fn regression_a_restart_without_store_counts_as_a_holder_lost() {
    assert_at_most_one_loss_beyond_faults(255_644, 65);
}

/// A node cut off from all of its leaf set by a partition took a write as the only holder,
/// then left: with no neighbour to hand it to, it left with the record as if it were the
/// last node, and the acknowledged write was lost. Fixed by staying until the record can be
/// handed over unless discovery knows no other node.
#[test]
fn regression_a_cut_off_node_does_not_leave_with_the_only_copy() {
    assert_holds(201_218, 124, Duration::from_secs(10));
}

/// The same cut-off node, met through a crash: it took a delete as the only holder,
/// acknowledged it, and crashed; the acknowledged delete was lost with one failure. Fixed by
/// refusing writes (retryable) at a node with no other holder unless no other node lives.
#[test]
fn regression_a_cut_off_node_takes_no_write_it_would_hold_alone() {
    assert_holds(218_118, 87, Duration::from_secs(10));
}
