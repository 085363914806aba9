//! Section 8: the deterministic simulator's own speed, and the overlay it builds, beside a
//! bare event loop measured in the same run (a binary heap of timed no-op events: the
//! ceiling of any discrete-event simulator on this machine).

use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use pastry::sim::scenario;
use pastry::sim::{Sim, SimConfig};
use pastry::{Id, Rng};

use super::{Ctx, Resources};

/// Virtual seconds of steady running measured after a build.
pub(crate) const STEADY: Duration = Duration::from_secs(10);

pub(super) fn simulator(ctx: &mut Ctx) {
    let sizes: Vec<usize> = ctx.opts.pick(vec![1000, 65536], vec![1000]);
    ctx.report.note(
        "The simulator (`pastry::sim`) runs the nodes' own membership state machines on one \
         thread with a virtual clock (defaults: 1 s maintenance rounds, 5 s call timeout, \
         1–20 ms one-way delays). Build: every node joins through discovery, 500 µs of \
         virtual time apart, and the overlay settles until every invariant holds (65,536 \
         nodes: every id). Steady: then 10 virtual seconds of maintenance with 1,000 random \
         lookups a virtual second. Baseline: a bare event loop (a binary heap of timed no-op \
         events) on this machine in the same run. RSS is the process's growth over the build.",
    );
    ctx.report.table(&[
        "Nodes",
        "Build (wall s)",
        "Build (virtual s)",
        "Invariants",
        "Steady events/s",
        "Virtual s per wall s",
        "Baseline events/s",
        "Simulator / baseline",
        "RSS per node",
    ]);
    let baseline = bare_event_loop();
    for n in sizes {
        let before = Resources::now();
        let mut sim = Sim::new(SimConfig {
            seed: 7,
            ..SimConfig::default()
        });
        let ids: Vec<Id> = if n == 1 << 16 {
            scenario::all_ids(&mut sim)
        } else {
            scenario::random_ids(&mut sim, n)
        };
        let started = Instant::now();
        scenario::build(
            &mut sim,
            &ids,
            Duration::from_micros(500),
            scenario::SETTLE_ROUNDS,
        );
        let build = started.elapsed();
        let virtual_build = sim.elapsed();
        let violations = sim.check().len();
        let after = Resources::now();
        let (events, wall) = steady(&mut sim);
        let rate = events as f64 / wall.as_secs_f64();
        let speed = STEADY.as_secs_f64() / wall.as_secs_f64();
        ctx.report.row(vec![
            n.to_string(),
            format!("{:.1}", build.as_secs_f64()),
            format!("{:.1}", virtual_build.as_secs_f64()),
            if violations == 0 {
                "all held".into()
            } else {
                format!("{violations} broken")
            },
            format!("{rate:.0}"),
            format!("{speed:.2}"),
            format!("{baseline:.0}"),
            format!("{:.3}", rate / baseline),
            format!(
                "{:.1} KiB",
                after.rss_kb.saturating_sub(before.rss_kb) as f64 / n as f64
            ),
        ]);
        if n == 1000 {
            ctx.report.check(
                "the simulator runs 1,000 nodes faster than real time",
                format!("{speed:.1} virtual s per wall s"),
                speed > 1.0,
            );
        }
        ctx.report.check(
            format!("{n} simulated nodes built by joins keep every invariant"),
            format!("{violations} violations"),
            violations == 0,
        );
    }
}

/// Runs [`STEADY`] of virtual time with lookups; the events and the wall time it took.
pub(crate) fn steady(sim: &mut Sim) -> (u64, Duration) {
    let members = sim.members();
    let events = sim.stats().events;
    let started = Instant::now();
    let step = Duration::from_millis(100);
    let mut left = STEADY;
    while !left.is_zero() {
        for _ in 0..100 {
            let from = members[sim.rng().below(members.len())];
            let key = Id(sim.rng().next_u64() as u16);
            sim.lookup(from, key);
        }
        sim.run_for(step);
        left = left.saturating_sub(step);
    }
    (sim.stats().events - events, started.elapsed())
}

/// Events a second through a binary heap of timed events with a trivial handler, kept at
/// about the size of a large simulation's queue.
pub(crate) fn bare_event_loop() -> f64 {
    const QUEUE: u64 = 100_000;
    const EVENTS: u64 = 5_000_000;
    let mut rng = Rng::seeded(1);
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u64)>> = BinaryHeap::new();
    for seq in 0..QUEUE {
        heap.push(std::cmp::Reverse((rng.next_u64() % 1_000_000, seq)));
    }
    let started = Instant::now();
    let mut sum = 0u64;
    for seq in QUEUE..QUEUE + EVENTS {
        let Some(std::cmp::Reverse((at, _))) = heap.pop() else {
            break;
        };
        sum = sum.wrapping_add(at);
        heap.push(std::cmp::Reverse((at + rng.next_u64() % 20_000, seq)));
    }
    std::hint::black_box(sum);
    EVENTS as f64 / started.elapsed().as_secs_f64()
}
