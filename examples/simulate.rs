//! The deterministic simulator as a program: builds an overlay of simulated nodes by the join
//! protocol and measures its lookups, or runs seeds of churn with faults and checks the
//! invariants. The nodes run the library's own protocol code; only the network and the
//! clock are simulated.
//!
//! ```text
//! cargo run --release --example simulate -- --nodes 65536 --seed 7
//! cargo run --release --example simulate -- --churn --seed 7 --nodes 128
//! cargo run --release --example simulate -- --churn --seeds 100000 --nodes 64-256
//! ```

mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{init_logging, Args};
use pastry::sim::scenario::{self, ChurnReport, SETTLE_ROUNDS};
use pastry::sim::{Sim, SimConfig};
use pastry::Id;

const USAGE: &str = "\
Usage: simulate [--nodes N] [--seed S] [--all-ids] [--lookups N] [options]
       simulate --churn [--seed S | --seeds COUNT [--first S]] [--nodes N | --nodes MIN-MAX]

Simulates a Pastry overlay on one thread, with a virtual clock and an in-memory network.
The same seed gives the same run: the trace hash printed at the end is the same on every
machine.

Building (the default): N nodes (random distinct ids, or every id with --all-ids when N is
65536) join one after another through discovery; the overlay settles; the invariants are
checked; then random lookups are measured: hops (histogram, mean, p99, max), join messages
per node, routing-table fill, time and memory.

Churn (--churn): nodes crash, restart, leave and join for --seconds of virtual time while
messages are lost, the network splits and heals, and lookups race; then the overlay
settles and the invariants are checked. With --seeds, runs COUNT seeds from --first (node
counts drawn from MIN-MAX) and prints each failing seed with the command that replays it.

Options:
  --nodes N | MIN-MAX   nodes (default 1000; churn: 64-256)
  --seed S              the seed (default 7)
  --seeds COUNT         churn: run COUNT seeds
  --first S             churn: the first of the seeds (default 1)
  --seconds T           churn: virtual seconds of churn (default 30)
  --all-ids             build: every id from 0000 to ffff (needs --nodes 65536)
  --lookups N           build: lookups to measure (default 100000)
  --gap-us U            build: virtual microseconds between joins (default 500)
  --leaf-half L         leaf-set members on each side (default 8)
  --replicas K          copies kept of each object, whose holders are checked (default 3)
  --timeout-ms T        the nodes' call timeout (default 5000; churn: 1000)
  --interval-ms T       the nodes' maintenance interval (default 1000)
  --latency-ms LO-HI    one-way message delay range (default 1-20)
  -h, --help            print this help

Exit status: 0 when every invariant held, 1 otherwise.";

struct Options {
    nodes: (usize, usize),
    seed: u64,
    seeds: Option<u64>,
    first: u64,
    seconds: u64,
    churn: bool,
    all_ids: bool,
    lookups: usize,
    gap_us: u64,
    config: SimConfig,
}

fn range(s: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo: u64 = lo.parse().map_err(|e| format!("{e}"))?;
    let hi: u64 = hi.parse().map_err(|e| format!("{e}"))?;
    if lo > hi {
        return Err("the low end is above the high end".into());
    }
    Ok((lo, hi))
}

fn options() -> Options {
    let mut args = Args::from_env(USAGE);
    let mut o = Options {
        nodes: (1000, 1000),
        seed: 7,
        seeds: None,
        first: 1,
        seconds: 30,
        churn: false,
        all_ids: false,
        lookups: 100_000,
        gap_us: 500,
        config: SimConfig::default(),
    };
    let mut nodes = None;
    let mut timeout = None;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--nodes" => {
                let (lo, hi) = args.value_with(&flag, range);
                nodes = Some((lo as usize, hi as usize));
            }
            "--seed" => o.seed = args.value(&flag),
            "--seeds" => o.seeds = Some(args.value(&flag)),
            "--first" => o.first = args.value(&flag),
            "--seconds" => o.seconds = args.value(&flag),
            "--churn" => o.churn = true,
            "--all-ids" => o.all_ids = true,
            "--lookups" => o.lookups = args.value(&flag),
            "--gap-us" => o.gap_us = args.value(&flag),
            "--leaf-half" => o.config.leaf_half = args.value(&flag),
            "--replicas" => o.config.replicas = args.value(&flag),
            "--timeout-ms" => timeout = Some(Duration::from_millis(args.value(&flag))),
            "--interval-ms" => {
                o.config.maintenance_interval = Duration::from_millis(args.value(&flag))
            }
            "--latency-ms" => {
                let (lo, hi) = args.value_with(&flag, range);
                o.config.min_latency = Duration::from_millis(lo);
                o.config.max_latency = Duration::from_millis(hi);
            }
            _ => args.unknown(&flag),
        }
    }
    let default_nodes = if o.churn { (64, 256) } else { (1000, 1000) };
    o.nodes = nodes.unwrap_or(default_nodes);
    if o.nodes.0 == 0 || o.nodes.1 > 1 << 16 {
        args.fail("--nodes: from 1 to 65536");
    }
    if o.all_ids && o.nodes.0 != 1 << 16 {
        args.fail("--all-ids needs --nodes 65536");
    }
    if o.config.leaf_half == 0 {
        args.fail("--leaf-half: at least 1");
    }
    if o.config.replicas == 0 || o.config.replicas > o.config.leaf_half + 1 {
        args.fail("--replicas: from 1 to the leaf-half plus one");
    }
    o.config.call_timeout = timeout.unwrap_or(if o.churn {
        Duration::from_secs(1)
    } else {
        o.config.call_timeout
    });
    o.config.seed = o.seed;
    o
}

fn main() -> ExitCode {
    let o = options();
    init_logging();
    let ok = if o.churn { churn(&o) } else { build(&o) };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The resident memory of this process, in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn build(o: &Options) -> bool {
    let n = o.nodes.0;
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut sim = Sim::new(o.config.clone());
    let ids: Vec<Id> = if o.all_ids {
        scenario::all_ids(&mut sim)
    } else {
        scenario::random_ids(&mut sim, n)
    };
    let gap = Duration::from_micros(o.gap_us);
    let rounds = scenario::build(&mut sim, &ids, gap, SETTLE_ROUNDS);
    let built = started.elapsed();
    let rss_built = rss_kib();
    let violations = sim.check();
    let stats = sim.stats().clone();
    println!(
        "built {} nodes by joins in {:.1} s ({:.1} virtual s, settled in {rounds} rounds), {} KiB resident for the overlay ({:.2} KiB a node)",
        sim.members().len(),
        built.as_secs_f64(),
        sim.elapsed().as_secs_f64(),
        rss_built.saturating_sub(rss_before),
        rss_built.saturating_sub(rss_before) as f64 / n as f64,
    );
    println!(
        "join messages per node: {:.1} (calls by joining nodes and their announcements); failed joins retried: {}",
        stats.join_calls as f64 / n as f64,
        stats.failed_joins
    );
    let members = sim.members();
    let entries: usize = members
        .iter()
        .filter_map(|id| sim.node(*id))
        .map(|core| core.state().table().entries().count())
        .sum();
    println!(
        "routing-table entries per node: {:.1}",
        entries as f64 / members.len().max(1) as f64
    );
    report_violations("after building", &violations);
    let events_before = sim.stats().events;
    let (virtual_before, wall) = (sim.elapsed(), Instant::now());
    let hops = scenario::lookups(&mut sim, o.lookups);
    let wall = wall.elapsed().as_secs_f64();
    let events = sim.stats().events - events_before;
    let log16 = (n as f64).ln() / 16f64.ln();
    println!(
        "{} lookups: mean {:.2} hops, p99 {}, max {} (log16 N = {:.2}, ceil(log16 N) + 1 = {})",
        hops.count(),
        hops.mean(),
        hops.quantile(0.99),
        hops.max(),
        log16,
        log16.ceil() as usize + 1
    );
    let total = hops.count().max(1) as f64;
    let histogram: Vec<String> = hops
        .histogram
        .iter()
        .enumerate()
        .map(|(h, c)| format!("{h}: {c} ({:.1}%)", 100.0 * *c as f64 / total))
        .collect();
    println!("hops histogram: {}", histogram.join(", "));
    println!(
        "simulator speed during lookups: {:.0} events/s, {:.3} virtual s per wall s",
        events as f64 / wall,
        (sim.elapsed() - virtual_before).as_secs_f64() / wall
    );
    report_violations("lookups", &hops.violations);
    println!("trace {:016x}", sim.trace_hash());
    violations.is_empty() && hops.violations.is_empty()
}

fn report_violations(what: &str, violations: &[pastry::sim::Violation]) {
    if violations.is_empty() {
        println!("invariants {what}: all held");
        return;
    }
    println!("invariants {what}: {} violations", violations.len());
    for v in violations.iter().take(10) {
        println!("  {v}");
    }
}

fn churn(o: &Options) -> bool {
    let seconds = Duration::from_secs(o.seconds);
    let Some(count) = o.seeds else {
        let report = scenario::churn(o.seed, o.nodes.0, seconds);
        print_report(&report, o);
        return report.violations.is_empty();
    };
    let started = Instant::now();
    let mut failed = 0u64;
    let mut beyond = 0u64;
    let mut events = 0u64;
    for seed in o.first..o.first.saturating_add(count) {
        let span = (o.nodes.1 - o.nodes.0 + 1) as u64;
        let nodes = o.nodes.0 + (mix(seed) % span) as usize;
        let report = scenario::churn(seed, nodes, seconds);
        events += report.events;
        if !report.violations.is_empty() {
            failed += 1;
        }
        if !report.beyond_faults.is_empty() {
            beyond += 1;
        }
        if !report.violations.is_empty() || !report.beyond_faults.is_empty() {
            print_report(&report, o);
        }
        let done = seed - o.first + 1;
        if done % 100 == 0 || done == count {
            println!(
                "{done} seeds, {failed} failed, {beyond} lost writes beyond the fault model, {:.0} s, {:.0} events/s",
                started.elapsed().as_secs_f64(),
                events as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    failed == 0
}

/// Spreads consecutive seeds over the node counts.
fn mix(seed: u64) -> u64 {
    pastry::Rng::seeded(seed).next_u64()
}

fn print_report(r: &ChurnReport, o: &Options) {
    println!(
        "seed {}: {} nodes, {} members at the end, settled in {} rounds, {} lookups during churn ({} failed), {} writes ({} acknowledged), {} events, trace {:016x}",
        r.seed, r.nodes, r.members, r.settle_rounds, r.lookups_during.0, r.lookups_during.1, r.writes.0, r.writes.1, r.events, r.trace
    );
    if !r.violations.is_empty() {
        println!("  {} violations; first ones:", r.violations.len());
        for v in r.violations.iter().take(5) {
            println!("    {v}");
        }
        println!(
            "  replay: cargo run --release --example simulate -- --churn --seed {} --nodes {} --seconds {}",
            r.seed, r.nodes, o.seconds
        );
    }
    for v in &r.beyond_faults {
        println!("  beyond the fault model: {v}");
    }
}
