//! A whole Pastry network in one process, on loopback: the first thing to run.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! It starts a discovery node and `--nodes` peers (default 16) on 127.0.0.1, joins them one
//! after another, looks up a few keys from random peers and prints each route, checking that
//! it ends at the peer the brute-force rule names. Then a quarter of the peers leave
//! gracefully and the lookups run again. It exits non-zero if any check fails.

mod common;

use std::process::ExitCode;

use common::{init_logging, Args};
use pastry::{key_of, responsible, Discovery, Id, Key, Node, NodeConfig, Rng};

const USAGE: &str = "\
Usage: demo [--nodes N] [--seed N]

Starts a discovery node and N peers in this process on 127.0.0.1, routes lookups
through them, makes a quarter of them leave, and routes the lookups again.
Exits non-zero if a lookup does not end at the responsible peer.

Options:
  --nodes N    number of peers (default 16)
  --seed N     seed for the peer ids and the random choices (default: random)
  -h, --help   print this help

Logging: RUST_LOG=info (default warn), on stderr.";

/// Names whose keys are looked up, as a store would for files of these names.
const NAMES: [&str; 3] = ["hello.txt", "notes.md", "photo.jpg"];
/// How many random keys are looked up besides the names.
const RANDOM_KEYS: usize = 3;

fn main() -> ExitCode {
    let mut args = Args::from_env(USAGE);
    let mut nodes = 16usize;
    let mut seed = None;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--nodes" => nodes = args.value(&flag),
            "--seed" => seed = Some(args.value(&flag)),
            _ => args.unknown(&flag),
        }
    }
    if nodes == 0 || nodes > 4096 {
        args.fail("--nodes must be between 1 and 4096");
    }
    init_logging();
    let seed = seed.unwrap_or_else(|| Rng::from_entropy().next_u64());
    match run(nodes, seed) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("{failures} check(s) failed (seed {seed})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e} (seed {seed})");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo; returns how many checks failed.
fn run(count: usize, seed: u64) -> pastry::Result<usize> {
    let mut rng = Rng::seeded(seed);
    println!("libpastry demo: {count} peers on 127.0.0.1 (seed {seed})");
    let discovery = Discovery::start("127.0.0.1:0".parse().expect("an address"))?;
    println!("discovery listening on {}", discovery.local_addr());

    let mut nodes = Vec::with_capacity(count);
    for id in distinct_ids(&mut rng, count) {
        let node = Node::start(NodeConfig {
            id: Some(id),
            ..NodeConfig::default()
        })?;
        node.join_discovery(discovery.local_addr())?;
        nodes.push(node);
    }
    println!("{count} peers joined one after another");
    show_network(&discovery);

    let mut keys: Vec<(Key, String)> = NAMES
        .iter()
        .map(|name| (key_of(name.as_bytes()), format!(" ({name})")))
        .collect();
    keys.extend((0..RANDOM_KEYS).map(|_| (Id(rng.next_u64() as u16), String::new())));

    println!("\nlookups, each from a random peer:");
    let mut failures = lookups(&nodes, &keys, &mut rng);

    let leaving = count / 4;
    let mut gone = Vec::with_capacity(leaving);
    for _ in 0..leaving {
        let node = nodes.remove(rng.below(nodes.len()));
        node.leave()?;
        node.shutdown();
        gone.push(node.id().to_string());
    }
    if leaving == 0 {
        println!("\nno peer leaves: a quarter of {count} is none");
    } else {
        println!("\n{leaving} peers left gracefully: {}", gone.join(" "));
    }
    show_network(&discovery);
    if discovery.peers().len() != nodes.len() {
        println!("  WRONG: discovery should list {} peers", nodes.len());
        failures += 1;
    }

    println!("\nthe same lookups again:");
    failures += lookups(&nodes, &keys, &mut rng);

    for node in &nodes {
        node.shutdown();
    }
    discovery.shutdown();
    if failures == 0 {
        println!("\nevery lookup ended at the responsible peer; all stopped");
    }
    Ok(failures)
}

/// `n` different random ids.
fn distinct_ids(rng: &mut Rng, n: usize) -> Vec<Id> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let id = Id(rng.next_u64() as u16);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Prints the ids discovery lists, in ring order.
fn show_network(discovery: &Discovery) {
    let peers = discovery.peers();
    let ids: Vec<String> = peers.iter().map(|p| p.id.to_string()).collect();
    println!("network ({} peers): {}", peers.len(), ids.join(" "));
}

/// Looks up each key from a random node, prints the route and checks where it ends against
/// the brute-force rule over the live ids. Returns how many checks failed.
fn lookups(nodes: &[Node], keys: &[(Key, String)], rng: &mut Rng) -> usize {
    let live: Vec<Id> = nodes.iter().map(Node::id).collect();
    let mut failures = 0;
    for (key, label) in keys {
        let from = &nodes[rng.below(nodes.len())];
        let expected = responsible(*key, live.iter().copied()).expect("a live peer");
        match from.lookup(*key) {
            Ok(route) => {
                let path: Vec<String> = route.path.iter().map(|n| n.id.to_string()).collect();
                let verdict = if route.responsible().id == expected {
                    "ok".to_string()
                } else {
                    failures += 1;
                    format!("WRONG: {expected} is responsible")
                };
                println!(
                    "  key {key}{label} from {}: {} ({} hop{})  {verdict}",
                    from.id(),
                    path.join(" -> "),
                    route.hops(),
                    if route.hops() == 1 { "" } else { "s" }
                );
            }
            Err(e) => {
                failures += 1;
                println!("  key {key}{label} from {}: FAILED: {e}", from.id());
            }
        }
    }
    failures
}
