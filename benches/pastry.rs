//! Benchmarks of libpastry on loopback, in one process, each figure beside a baseline measured
//! in the same run (issue 6). Long because every section and the report that gathers them live
//! together; a directory of one file per section is the plan.
//!
//! ```text
//! cargo bench                              # every section; rewrites BENCHMARKS.md
//! cargo bench -- lookup                    # only the sections whose name contains "lookup"
//! cargo bench --bench pastry -- --quick    # smaller sizes and fewer samples: a smoke run
//! ```
//!
//! (`--quick` needs `--bench pastry`: plain `cargo bench` also runs the library's own libtest
//! bench harness, which rejects options it does not know.)
//!
//! Sections: `lookup-latency`, `lookup-throughput`, `hops`, `store`, `small-values`, `join`,
//! `idle`. A full run writes `BENCHMARKS.md` at the crate root; a filtered or quick run writes
//! `target/BENCHMARKS.partial.md` so that a smoke run never replaces the real results. Text
//! after the notes marker in `BENCHMARKS.md` is written by hand and kept.
//!
//! Baselines: a loopback TCP echo server (std::net, TCP_NODELAY, one thread per connection)
//! answering 64-byte requests on an established connection, and a raw loopback TCP stream
//! written in 1 MiB writes to a thread that reads and discards it.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pastry::{Client, ClientConfig, Discovery, Entry, Id, Node, NodeConfig, Rng, DEFAULT_REPLICAS};

/// Leaf-set size with the default configuration (`leaf_half` 8 on each side).
const LEAF_SET: f64 = 16.0;
/// Hand-written text after this line of BENCHMARKS.md survives a rerun.
const NOTES_MARKER: &str =
    "<!-- Everything below this line is written by hand and kept when the benchmark reruns. -->";
/// Established connections to the echo server: the first 16 serve the concurrent raw rate,
/// all of them the fan-out round trip.
const RAW_CONNS: usize = 64;
/// Request and reply size of the raw round trip.
const RAW_MSG: usize = 64;
const MIB: u64 = 1024 * 1024;

/// A benchmark section: measures, printing and recording its rows.
type SectionFn = fn(&mut Ctx);

fn main() {
    let _ = env_logger::try_init(); // RUST_LOG=pastry=debug shows what the nodes do
    let _ = fd_limit();
    let opts = Opts::parse();
    let mut ctx = Ctx::new(opts);
    let sections: [(&str, &str, SectionFn); 7] = [
        ("lookup-latency", "1. Lookup latency", lookup_latency),
        (
            "lookup-throughput",
            "2. Lookup throughput",
            lookup_throughput,
        ),
        ("hops", "3. Hops", hops),
        ("store", "4. Store and retrieve of large objects", store),
        ("small-values", "5. Small values", small_values),
        ("join", "6. Join", join),
        ("idle", "7. Idle nodes: memory and threads", idle),
    ];
    let started = Instant::now();
    for (name, title, run) in sections {
        if ctx.opts.selects(name) {
            ctx.report.begin(name, title);
            run(&mut ctx);
        }
    }
    ctx.nets.current = None; // shut the last network down before cleaning up
    let _ = fs::remove_dir_all(&ctx.root);
    ctx.finish(started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Options, sizes and the shared context

struct Opts {
    quick: bool,
    filters: Vec<String>,
}

impl Opts {
    fn parse() -> Opts {
        let mut opts = Opts {
            quick: false,
            filters: Vec::new(),
        };
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--bench" => {} // cargo bench passes it
                "--quick" => opts.quick = true,
                a if a.starts_with('-') => eprintln!("ignoring unknown option {a}"),
                a => opts.filters.push(a.to_string()),
            }
        }
        opts
    }

    fn selects(&self, section: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| section.contains(f.as_str()))
    }

    fn full(&self) -> bool {
        !self.quick && self.filters.is_empty()
    }

    fn command(&self) -> String {
        let mut args: Vec<&str> = Vec::new();
        if self.quick {
            args.push("--quick");
        }
        args.extend(self.filters.iter().map(String::as_str));
        if args.is_empty() {
            "cargo bench".into()
        } else {
            format!("cargo bench -- {}", args.join(" "))
        }
    }

    /// `full` normally, `quick` with `--quick`.
    fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

struct Ctx {
    opts: Opts,
    report: Report,
    /// Node data directories live under it; removed at the end.
    root: PathBuf,
    /// Established connections to the echo server, one per concurrent raw caller.
    raw: Vec<TcpStream>,
    sink: SocketAddr,
    rng: Rng,
    nets: Nets,
}

/// The network built last, kept while the next measurement asks for the same one.
struct Nets {
    root: PathBuf,
    rng: Rng,
    current: Option<Net>,
}

impl Nets {
    /// A running network of `n` nodes with `profile`: the one kept from before, or a new one.
    fn get(&mut self, n: usize, profile: Profile) -> Result<&Net, String> {
        let reuse = self
            .current
            .as_ref()
            .is_some_and(|net| net.built == n && net.profile == profile);
        if !reuse {
            self.current = None; // free its threads and sockets first
            let dir = self.root.join(format!("net-{n}-{}", profile.name()));
            let seed = self.rng.next_u64();
            self.current = Some(Net::build(n, profile, &dir, seed)?);
        }
        Ok(self.current.as_ref().expect("just built"))
    }

    /// Like [`Nets::get`]; a network that does not start is reported in `report` as a row of
    /// the `lead` cells and why.
    fn get_or_report(
        &mut self,
        n: usize,
        profile: Profile,
        report: &mut Report,
        lead: Vec<String>,
    ) -> Result<&Net, String> {
        match self.get(n, profile) {
            Ok(net) => Ok(net),
            Err(e) => {
                let mut row = lead;
                row.push(format!("does not start: {e}"));
                report.row(row);
                Err(e)
            }
        }
    }
}

impl Ctx {
    fn new(opts: Opts) -> Ctx {
        let root = std::env::temp_dir().join(format!("pastry-bench-{}", std::process::id()));
        fs::create_dir_all(&root).expect("create the benchmark's temporary directory");
        Ctx {
            opts,
            report: Report {
                load_at_start: load_average(),
                ..Report::default()
            },
            raw: raw_connections(start_echo_server(), RAW_CONNS),
            sink: start_sink_server(),
            rng: Rng::seeded(0x5eed_0006),
            nets: Nets {
                root: root.clone(),
                rng: Rng::seeded(0x5eed_0007),
                current: None,
            },
            root,
        }
    }

    fn finish(&mut self, took: Duration) {
        let md = self.report.markdown(&self.opts, took);
        let path = if self.opts.full() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md")
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/BENCHMARKS.partial.md")
        };
        let kept = fs::read_to_string(&path)
            .ok()
            .and_then(|old| {
                old.split_once(NOTES_MARKER)
                    .map(|(_, notes)| notes.to_string())
            })
            .unwrap_or_else(|| "\n\n## What remains and why\n\n(to be written)\n".into());
        let text = format!("{md}\n{NOTES_MARKER}{kept}");
        match fs::write(&path, text) {
            Ok(()) => println!("\nwrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
        println!("\n{}", self.report.targets_markdown());
    }
}

// ---------------------------------------------------------------------------------------------
// The report: tables printed row by row as they are measured, then written as markdown

#[derive(Default)]
struct Report {
    sections: Vec<Section>,
    targets: Vec<Check>,
    load_at_start: String,
}

struct Section {
    title: String,
    /// Notes and tables in the order they were made.
    items: Vec<Item>,
}

enum Item {
    Note(String),
    Table(Table),
}

struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

struct Check {
    target: String,
    measured: String,
    met: bool,
}

impl Report {
    fn begin(&mut self, name: &str, title: &str) {
        println!("\n## {title}  ({name})");
        self.sections.push(Section {
            title: title.to_string(),
            items: Vec::new(),
        });
    }

    fn section(&mut self) -> &mut Section {
        self.sections.last_mut().expect("a section has begun")
    }

    /// A line of explanation under the section's title.
    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("{text}");
        self.section().items.push(Item::Note(text));
    }

    fn table(&mut self, columns: &[&str]) {
        println!("\n| {} |", columns.join(" | "));
        self.section().items.push(Item::Table(Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }));
    }

    fn row(&mut self, cells: Vec<String>) {
        println!("| {} |", cells.join(" | "));
        match self.section().items.last_mut() {
            Some(Item::Table(table)) => table.rows.push(cells),
            _ => panic!("a row outside a table"),
        }
    }

    fn check(&mut self, target: impl Into<String>, measured: impl Into<String>, met: bool) {
        let check = Check {
            target: target.into(),
            measured: measured.into(),
            met,
        };
        println!(
            "  target: {} -> {} ({})",
            check.target,
            check.measured,
            if met { "met" } else { "MISSED" }
        );
        self.targets.push(check);
    }

    fn targets_markdown(&self) -> String {
        let mut md = String::from("| Target | Measured | Met |\n|---|---|---|\n");
        for c in &self.targets {
            let met = if c.met { "yes" } else { "**no**" };
            let _ = writeln!(
                md,
                "| {} | {} | {met} |",
                cell(&c.target),
                cell(&c.measured)
            );
        }
        md
    }

    fn markdown(&self, opts: &Opts, took: Duration) -> String {
        let mut md = String::from("# Benchmarks\n\n");
        let _ = writeln!(md, "- Date: {}", utc_now());
        let _ = writeln!(md, "- Machine: {}", machine());
        let _ = writeln!(
            md,
            "- Library: built from the working tree at commit {}",
            git_commit()
        );
        let _ = writeln!(
            md,
            "- Load average (1, 5, 15 min) at the start: {}; at the end: {}. The machine is \
             shared: other work running meanwhile slows every figure, baselines included.",
            self.load_at_start,
            load_average()
        );
        let _ = writeln!(
            md,
            "- Command: `{}` (release build; the run took {:.0} s)",
            opts.command(),
            took.as_secs_f64()
        );
        md.push_str(
            "- Everything runs in one process on loopback (127.0.0.1). Every ratio is against a \
             baseline measured in the same run: a raw 64-byte request/response on an \
             established loopback TCP connection (std::net, TCP_NODELAY, echo thread per \
             connection) or a raw loopback TCP stream of the same size (1 MiB writes, a thread \
             reading and discarding).\n",
        );
        md.push_str(
            "- Percentiles are nearest-rank over the samples shown. Memory is VmRSS/VmHWM from \
             /proc/self/status, threads are /proc/self/task entries, sockets and files are \
             /proc/self/fd entries.\n",
        );
        md.push_str("\n## Targets\n\n");
        md.push_str(&self.targets_markdown());
        for s in &self.sections {
            let _ = write!(md, "\n## {}\n\n", s.title);
            for item in &s.items {
                match item {
                    Item::Note(n) => {
                        let _ = writeln!(md, "{n}\n");
                    }
                    Item::Table(t) => {
                        let _ = writeln!(md, "| {} |", row_markdown(&t.columns));
                        let _ = writeln!(md, "|{}", "---|".repeat(t.columns.len()));
                        for r in &t.rows {
                            let _ = writeln!(md, "| {} |", row_markdown(r));
                        }
                        md.push('\n');
                    }
                }
            }
        }
        md
    }
}

/// A table cell for markdown: a `|` in the text (as in `|L|`) must not end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn row_markdown(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| cell(c))
        .collect::<Vec<_>>()
        .join(" | ")
}

// ---------------------------------------------------------------------------------------------
// Networks

/// How the nodes of a network are configured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Profile {
    /// `NodeConfig::default()` (only the data directory set).
    Default,
    /// Default but `sync_writes: false`: writes are not fsynced.
    NoSync,
    /// `sync_writes: false` and one copy per object (`replicas: 1`): no replication.
    NoSyncOneCopy,
    /// Default but `net.pool_per_peer: 0`: no connection is kept, every request opens its
    /// own. When this was written, the only setting with which more than about 130 nodes
    /// fitted in one process under the 20,000-descriptor limit (see BENCHMARKS.md).
    NoPool,
    /// `NoPool` and `maintenance_interval` of 10 s: 1,000 nodes in one process on 2 cores.
    Large,
    /// `NoPool` and `maintenance_interval` of one hour: no background traffic, so that the
    /// messages of a join can be counted exactly.
    Quiet,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::NoSync => "nosync",
            Profile::NoSyncOneCopy => "nosync-1copy",
            Profile::NoPool => "nopool",
            Profile::Large => "large",
            Profile::Quiet => "quiet",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Profile::Default => "`NodeConfig::default()`",
            Profile::NoSync => "default but `sync_writes: false`",
            Profile::NoSyncOneCopy => "default but `sync_writes: false, replicas: 1`",
            Profile::NoPool => "default but `pool_per_peer: 0`",
            Profile::Large => "default but `pool_per_peer: 0, maintenance_interval: 10 s`",
            Profile::Quiet => "default but `pool_per_peer: 0, maintenance_interval: 3600 s`",
        }
    }

    /// The client's configuration: it syncs retrieved files as the nodes sync their copies.
    fn client(self, discovery: SocketAddr) -> Client {
        let config = ClientConfig {
            sync_writes: self.config(PathBuf::new()).sync_writes,
            ..ClientConfig::default()
        };
        Client::with_config(Entry::Discovery(discovery), config)
    }

    fn config(self, dir: PathBuf) -> NodeConfig {
        let mut c = NodeConfig {
            data_dir: Some(dir),
            ..NodeConfig::default()
        };
        match self {
            Profile::Default => {}
            Profile::NoSync => c.sync_writes = false,
            Profile::NoSyncOneCopy => {
                c.sync_writes = false;
                c.replicas = 1;
            }
            Profile::NoPool => c.net.pool_per_peer = 0,
            Profile::Large => {
                c.net.pool_per_peer = 0;
                c.maintenance_interval = Duration::from_secs(10);
            }
            Profile::Quiet => {
                c.net.pool_per_peer = 0;
                c.maintenance_interval = Duration::from_secs(3600);
            }
        }
        c
    }
}

/// A discovery node and `built` nodes joined through it one after another.
struct Net {
    profile: Profile,
    built: usize,
    discovery: Discovery,
    nodes: Vec<Node>,
    dir: PathBuf,
    build_time: Duration,
    /// Process resources before the network started and once it had settled.
    before: Resources,
    settled: Resources,
}

impl Net {
    fn build(n: usize, profile: Profile, dir: &Path, seed: u64) -> Result<Net, String> {
        trim_heap();
        let before = Resources::now();
        let t0 = Instant::now();
        let discovery = Discovery::start("127.0.0.1:0".parse().unwrap())
            .map_err(|e| format!("discovery does not start: {e}"))?;
        let mut rng = Rng::seeded(seed);
        let mut used = std::collections::HashSet::new();
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        // Sampled every 10 nodes: once descriptors run out, /proc/self/fd cannot be read.
        let mut sampled = (0, before);
        while nodes.len() < n {
            let id = Id(rng.next_u64() as u16);
            if !used.insert(id) {
                continue;
            }
            let i = nodes.len();
            let config = NodeConfig {
                id: Some(id),
                ..profile.config(dir.join(format!("{i}")))
            };
            let joined = Node::start(config).and_then(|node| {
                node.join_discovery(discovery.local_addr())?;
                Ok(node)
            });
            match joined {
                Ok(node) => nodes.push(node),
                Err(e) => {
                    let (at, r) = sampled;
                    let msg = format!(
                        "node {} of {n} failed after {:.1} s: {e}. With {at} nodes the process \
                         had {} threads and {} descriptors open (limit {})",
                        i + 1,
                        t0.elapsed().as_secs_f64(),
                        r.threads,
                        r.fds,
                        fd_limit()
                    );
                    eprintln!("  {msg}");
                    drop(nodes);
                    let _ = fs::remove_dir_all(dir);
                    return Err(msg);
                }
            }
            if (i + 1) % 10 == 0 {
                let r = Resources::now();
                if r.fds > 0 {
                    sampled = (i + 1, r); // 0: /proc/self/fd could not be opened
                }
            }
            if (i + 1) % 250 == 0 && i + 1 < n {
                let r = Resources::now();
                eprintln!(
                    "  ... {} nodes joined in {:.1} s ({} threads, {} descriptors)",
                    i + 1,
                    t0.elapsed().as_secs_f64(),
                    r.threads,
                    r.fds
                );
            }
        }
        let build_time = t0.elapsed();
        // Let joins' after-effects and a few maintenance rounds pass before measuring.
        let settle = match profile {
            Profile::Quiet | Profile::Large => Duration::from_secs(2),
            _ => Duration::from_secs(3),
        };
        thread::sleep(settle);
        let settled = Resources::now();
        eprintln!(
            "  built {n} nodes ({}) in {:.1} s: {} threads, {} descriptors, RSS {} MiB",
            profile.name(),
            build_time.as_secs_f64(),
            settled.threads,
            settled.fds,
            settled.rss_kb / 1024
        );
        Ok(Net {
            profile,
            built: n,
            discovery,
            nodes,
            dir: dir.to_path_buf(),
            build_time,
            before,
            settled,
        })
    }

    fn random_node(&self, rng: &mut Rng) -> &Node {
        &self.nodes[rng.below(self.nodes.len())]
    }

    /// Whether `holder` is the live node closest to `key` (ties to the larger id).
    fn is_responsible(&self, key: Id, holder: Id) -> bool {
        pastry::responsible(key, self.nodes.iter().map(|n| n.id())) == Some(holder)
    }

    fn total_sent(&self) -> u64 {
        self.nodes.iter().map(|n| n.stats().sent).sum()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.shutdown();
        }
        self.discovery.shutdown();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Lookups of random keys from random nodes: latencies and hop counts, and failures.
#[derive(Default)]
struct Lookups {
    latencies: Vec<Duration>,
    hops: Vec<usize>,
    failures: usize,
    /// Lookups that ended at a node other than the live node closest to the key.
    wrong: usize,
    first_error: Option<String>,
}

impl Lookups {
    fn extend(&mut self, more: Lookups) {
        self.latencies.extend(more.latencies);
        self.hops.extend(more.hops);
        self.failures += more.failures;
        self.wrong += more.wrong;
        if self.first_error.is_none() {
            self.first_error = more.first_error;
        }
    }
}

fn random_lookups(net: &Net, count: usize, rng: &mut Rng) -> Lookups {
    let mut out = Lookups {
        latencies: Vec::with_capacity(count),
        hops: Vec::with_capacity(count),
        ..Lookups::default()
    };
    for _ in 0..count {
        let node = net.random_node(rng);
        let key = Id(rng.next_u64() as u16);
        let t = Instant::now();
        match node.lookup(key) {
            Ok(route) => {
                out.latencies.push(t.elapsed());
                out.hops.push(route.hops());
                if !net.is_responsible(key, route.responsible().id) {
                    out.wrong += 1;
                }
            }
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out
}

/// Lookups from random nodes until the nodes hold their pooled connections, as in a network
/// that has been running: rounds of N lookups until one opens fewer than N / 50 connections
/// (at most 40 rounds; with no pool every hop opens one, so one round).
fn warm_up(net: &Net, rng: &mut Rng) {
    let opened = || net.nodes.iter().map(|n| n.stats().opened).sum::<u64>();
    let n = net.nodes.len();
    let pooled = net.profile.config(PathBuf::new()).net.pool_per_peer > 0;
    for _ in 0..40 {
        let before = opened();
        let _ = random_lookups(net, n, rng);
        if !pooled || (opened() - before) * 50 < n as u64 {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section 1: lookup latency

fn lookup_latency(ctx: &mut Ctx) {
    let runs: Vec<(usize, Profile)> = ctx.opts.pick(
        vec![
            (16, Profile::Default),
            (64, Profile::Default),
            (64, Profile::NoPool),
            (256, Profile::Default),
            (256, Profile::NoPool),
            (256, Profile::Large),
        ],
        vec![
            (16, Profile::Default),
            (64, Profile::Default),
            (64, Profile::NoPool),
        ],
    );
    let samples = ctx.opts.pick(3000, 300);
    ctx.report.note(format!(
        "{samples} timed lookups per row, each for a random key from a random node, after \
         untimed ones that open the pooled connections (rounds of N until one opens fewer than \
         N / 50 connections: each node then holds connections to the nodes of its tables, as \
         in a network that has been running). A lookup's first step is local; each \
         hop is one request. The raw round trips are interleaved with the lookups (10 rounds \
         of {} lookups, then 500 raw round trips on one established connection and 500 on one \
         of {RAW_CONNS} established connections picked at random, like a lookup that reaches \
         a different node's thread at each hop), so that both see the same machine state and \
         maintenance traffic. Lookups are forwarded hop by hop, so a hop is a request from \
         one node to the next over a connection it keeps. 64 and 256 nodes are also measured \
         with `pool_per_peer: 0` (no connection kept: every request opens its own), the \
         setting with which 1,000 nodes fit in one process under the descriptor limit \
         (section 7); the target is checked for the default configuration.",
        samples / 10
    ));
    ctx.report.table(&[
        "Nodes",
        "Configuration",
        "Lookup p50",
        "Lookup mean",
        "Lookup p99",
        "Mean hops",
        "Raw RTT p50",
        "Raw RTT p99",
        "Raw RTT p50, random of 64",
        "p50 ÷ (hops × RTT)",
        "p50 ÷ (hops × RTT of random of 64)",
        "Target ≤ 1.5",
        "After: threads / descriptors / nodes discovery lists",
    ]);
    for (n, profile) in runs {
        let mut rng = Rng::seeded(ctx.rng.next_u64());
        let lead = vec![n.to_string(), profile.describe().into()];
        let net = match ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) {
            Ok(net) => net,
            Err(e) => {
                // The target is the library's as configured by default; the other rows show
                // what a configuration for scale costs.
                if n >= 64 && profile == Profile::Default {
                    ctx.report.check(
                        format!(
                            "Lookup p50 ≤ 1.5 × mean hops × raw RTT, {n} nodes, {}",
                            profile.describe()
                        ),
                        format!("network does not start: {e}"),
                        false,
                    );
                }
                continue;
            }
        };
        warm_up(net, &mut rng);
        let mut l = Lookups::default();
        let (mut raw, mut fan) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            l.extend(random_lookups(net, samples / 10, &mut rng));
            raw.extend(raw_rtts(&ctx.raw[0], 500));
            fan.extend(raw_fan_out(&ctx.raw, 500, &mut rng));
        }
        let after = Resources::now();
        let listed = net.discovery.peers().len();
        sort(&mut l.latencies);
        sort(&mut raw);
        sort(&mut fan);
        let hops = mean_usize(&l.hops);
        let (p50, rtt) = (pct(&l.latencies, 50.0), pct(&raw, 50.0));
        let ratio = secs(p50) / (hops * secs(rtt));
        let met = ratio <= 1.5 && l.failures == 0 && l.wrong == 0;
        ctx.report.row(vec![
            n.to_string(),
            profile.describe().into(),
            format!("{}{}", fmt_dur(p50), failures_note(&l)),
            fmt_dur(mean_dur(&l.latencies)),
            fmt_dur(pct(&l.latencies, 99.0)),
            format!("{hops:.2}"),
            fmt_dur(rtt),
            fmt_dur(pct(&raw, 99.0)),
            fmt_dur(pct(&fan, 50.0)),
            format!("{ratio:.2}"),
            format!("{:.2}", secs(p50) / (hops * secs(pct(&fan, 50.0)))),
            yes_no(met),
            format!("{} / {} / {listed}", after.threads, after.fds),
        ]);
        if n >= 64 && profile == Profile::Default {
            ctx.report.check(
                format!(
                    "Lookup p50 ≤ 1.5 × mean hops × raw RTT, {n} nodes, {}",
                    profile.describe()
                ),
                format!(
                    "{} vs {hops:.2} × {} → {ratio:.2}×",
                    fmt_dur(p50),
                    fmt_dur(rtt)
                ),
                met,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section 2: lookup throughput

fn lookup_throughput(ctx: &mut Ctx) {
    let n = 64;
    let window = ctx
        .opts
        .pick(Duration::from_secs(3), Duration::from_millis(500));
    ctx.report.note(format!(
        "{n} nodes. Each caller is a thread doing lookups of random keys from random nodes for \
         {:.1} s; the raw rate is the same number of threads, each doing 64-byte round trips on \
         its own established connection for the same time, right after. A lookup of h hops is \
         h requests, so the like-for-like figure is hop requests per second (lookups × mean \
         hops) against raw requests per second. 2 cores are shared by callers and servers.",
        window.as_secs_f64()
    ));
    ctx.report.table(&[
        "Configuration",
        "Callers",
        "Lookups/s",
        "Mean hops",
        "Hop requests/s",
        "Raw requests/s",
        "Lookups ÷ raw",
        "Hop requests ÷ raw",
        "After: threads / descriptors / nodes discovery lists",
    ]);
    for profile in [Profile::Default, Profile::NoPool] {
        let seed = ctx.rng.next_u64();
        let lead = vec![profile.describe().into()];
        let Ok(net) = ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) else {
            continue;
        };
        let mut rng = Rng::seeded(seed);
        warm_up(net, &mut rng);
        for callers in [1usize, 4, 16] {
            let done = concurrent_lookups(net, callers, window, seed);
            let raw = raw_rate(&ctx.raw[..callers], window);
            let after = Resources::now();
            let listed = net.discovery.peers().len();
            let lookups = done.lookups.into_inner();
            let per_s = lookups as f64 / window.as_secs_f64();
            let mean_hops = done.hops.into_inner() as f64 / lookups.max(1) as f64;
            let mut failed = String::new();
            let (wrong, failures) = (done.wrong.into_inner(), done.failures.into_inner());
            if wrong > 0 {
                failed += &format!(" ({wrong} ended at the wrong node)");
            }
            if failures > 0 {
                failed += &format!(" ({failures} failed)");
            }
            ctx.report.row(vec![
                profile.describe().into(),
                callers.to_string(),
                format!("{per_s:.0}{failed}"),
                format!("{mean_hops:.2}"),
                format!("{:.0}", per_s * mean_hops),
                format!("{raw:.0}"),
                format!("{:.3}", per_s / raw),
                format!("{:.2}", per_s * mean_hops / raw),
                format!("{} / {} / {listed}", after.threads, after.fds),
            ]);
        }
    }
}

/// What concurrent callers did in a window.
#[derive(Default)]
struct Concurrent {
    lookups: AtomicU64,
    hops: AtomicU64,
    failures: AtomicU64,
    /// Lookups that ended at a node other than the live node closest to the key.
    wrong: AtomicU64,
}

/// `callers` threads doing lookups for `window`.
fn concurrent_lookups(net: &Net, callers: usize, window: Duration, seed: u64) -> Concurrent {
    let done = Concurrent::default();
    let deadline = Instant::now() + window;
    thread::scope(|s| {
        for c in 0..callers {
            let done = &done;
            s.spawn(move || {
                let mut rng = Rng::seeded(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9));
                while Instant::now() < deadline {
                    let key = Id(rng.next_u64() as u16);
                    match net.random_node(&mut rng).lookup(key) {
                        Ok(route) => {
                            done.lookups.fetch_add(1, Ordering::Relaxed);
                            done.hops.fetch_add(route.hops() as u64, Ordering::Relaxed);
                            if !net.is_responsible(key, route.responsible().id) {
                                done.wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            done.failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    done
}

// ---------------------------------------------------------------------------------------------
// Section 3: hops

fn hops(ctx: &mut Ctx) {
    let sizes: Vec<(usize, Profile)> = ctx.opts.pick(
        vec![
            (16, Profile::Default),
            (64, Profile::Default),
            (256, Profile::Default),
            (1000, Profile::Large),
        ],
        vec![(16, Profile::Default), (64, Profile::Default)],
    );
    let samples = ctx.opts.pick(3000, 300);
    ctx.report.note(format!(
        "{samples} lookups per size for random keys from random nodes. Hops do not depend on the \
         connection settings; the configuration is the one with which each size starts in one \
         process (section 7)."
    ));
    ctx.report.table(&[
        "Nodes",
        "Configuration",
        "Build (s)",
        "Mean hops",
        "p99 hops",
        "Max hops",
        "log16 N",
        "ceil(log16 N) + 1",
        "Mean ≤ log16 N",
        "Max ≤ ceil + 1",
    ]);
    for (n, profile) in sizes {
        let mut rng = Rng::seeded(ctx.rng.next_u64());
        let lead = vec![n.to_string(), profile.describe().into()];
        let net = match ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) {
            Ok(net) => net,
            Err(e) => {
                ctx.report.check(
                    format!("Hops at {n} nodes"),
                    format!("network does not start: {e}"),
                    false,
                );
                continue;
            }
        };
        let build = net.build_time;
        let mut l = random_lookups(net, samples, &mut rng);
        l.hops.sort_unstable();
        let mean = mean_usize(&l.hops);
        let max = l.hops.last().copied().unwrap_or(0);
        let log = (n as f64).ln() / 16f64.ln();
        let bound = log.ceil() as usize + 1;
        ctx.report.row(vec![
            n.to_string(),
            profile.describe().into(),
            format!("{:.1}", build.as_secs_f64()),
            format!("{mean:.2}{}", failures_note(&l)),
            pct(&l.hops, 99.0).to_string(),
            max.to_string(),
            format!("{log:.2}"),
            bound.to_string(),
            yes_no(mean <= log),
            yes_no(max <= bound),
        ]);
        ctx.report.check(
            format!("Mean hops ≤ log16 N, {n} nodes"),
            format!("{mean:.2} vs {log:.2}"),
            mean <= log,
        );
        ctx.report.check(
            format!("Max hops ≤ ceil(log16 N) + 1, {n} nodes"),
            format!("{max} vs {bound}"),
            max <= bound,
        );
        if n >= 1000 {
            ctx.report.check(
                "1,000 nodes start, join and answer lookups in one process",
                format!(
                    "with {}: built in {:.0} s; {} of {samples} lookups answered",
                    profile.describe(),
                    build.as_secs_f64(),
                    l.hops.len(),
                ),
                l.failures == 0,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section 4: store and retrieve of large objects

fn store(ctx: &mut Ctx) {
    let nodes = 16;
    let size = ctx.opts.pick(256 * MIB, 32 * MIB);
    let big = ctx.opts.pick(1024 * MIB, 128 * MIB);
    ctx.report.note(format!(
        "A {} object stored with `Client::store_file` and retrieved with \
         `Client::retrieve_file` (file to file, streamed) through a {nodes}-node network, \
         beside a raw loopback TCP stream of the same size measured in the same run. A store \
         goes to the responsible node, which streams it to its disk, then copies it to the \
         other holders (default 3 copies), so the wire carries copies × size, the holder's \
         part after the client's; the `sync_writes: true` default fsyncs each copy, \
         and the client's (`ClientConfig::sync_writes`, set like the nodes') the retrieved \
         file. Files live on the same disk as the nodes' data.",
        fmt_bytes(size)
    ));
    let src = ctx.root.join("object-large");
    write_pattern_file(&src, size).expect("write the source file");
    let raw = raw_stream(ctx.sink, size);
    let raw_rate = size as f64 / secs(raw);
    let (crc_bytewise, crc_sliced, crc_folded) = crc_rates(&src);
    let file_copy = raw_file_stream(&src, &ctx.root.join("object-raw-copy"));
    ctx.report.note(format!(
        "For reference, in the same run over the same file: CRC-32/ISO-HDLC with the crc \
         crate's byte-at-a-time table (`Crc::<u32>`) {crc_bytewise:.0} MiB/s, with its 16-byte \
         table (`Crc::<u32, Table<16>>`) {crc_sliced:.0} MiB/s, with the crc32fast crate's \
         carry-less multiply folding, as the library computes it, {crc_folded:.0} MiB/s; a raw \
         file-to-file copy over \
         loopback TCP (read the file in 1 MiB blocks, send, receive, write a new file, no \
         fsync) {:.0} MiB/s.",
        size as f64 / MIB as f64 / secs(file_copy)
    ));
    ctx.report.table(&[
        "Configuration",
        "Operation",
        "Time",
        "Object MiB/s",
        "Wire MiB/s (copies × size)",
        "Raw stream MiB/s",
        "Object ÷ raw",
        "Target ≥ 0.70",
    ]);
    let profiles = [
        (Profile::Default, 3u64),
        (Profile::NoSync, 3),
        (Profile::NoSyncOneCopy, 1),
    ];
    for (profile, copies) in profiles {
        let lead = vec![profile.describe().into()];
        let Ok(net) = ctx
            .nets
            .get_or_report(nodes, profile, &mut ctx.report, lead)
        else {
            continue;
        };
        let client = profile.client(net.discovery.local_addr());
        let out = ctx.root.join("object-out");
        let t = Instant::now();
        let stored = client.store_file(&src);
        let store_time = t.elapsed();
        let t = Instant::now();
        let fetched = stored.as_ref().map_err(|e| e.to_string()).and_then(|_| {
            client
                .retrieve_file("object-large", &out)
                .map_err(|e| e.to_string())
        });
        let fetch_time = t.elapsed();
        let same = fetched.is_ok() && files_equal(&src, &out);
        let _ = fs::remove_file(&out);
        for (op, time, ok, wire_copies) in [
            ("store", store_time, stored.is_ok(), copies),
            ("retrieve", fetch_time, same, 1),
        ] {
            if !ok {
                let why = match (&stored, &fetched) {
                    (Err(e), _) => e.to_string(),
                    (_, Err(e)) => e.clone(),
                    _ => "retrieved bytes differ".into(),
                };
                ctx.report.row(vec![
                    profile.describe().into(),
                    op.into(),
                    format!("failed: {why}"),
                ]);
                continue;
            }
            let rate = size as f64 / secs(time);
            let ratio = rate / raw_rate;
            ctx.report.row(vec![
                profile.describe().into(),
                op.into(),
                fmt_dur(time),
                format!("{:.0}", rate / MIB as f64),
                format!("{:.0}", rate * wire_copies as f64 / MIB as f64),
                format!("{:.0}", raw_rate / MIB as f64),
                format!("{ratio:.2}"),
                yes_no(ratio >= 0.7),
            ]);
            ctx.report.check(
                format!(
                    "{op} ≥ 70% of raw stream, {}, {}",
                    fmt_bytes(size),
                    profile.describe()
                ),
                format!(
                    "{:.0} vs {:.0} MiB/s → {:.0}%",
                    rate / MIB as f64,
                    raw_rate / MIB as f64,
                    ratio * 100.0
                ),
                ratio >= 0.7,
            );
        }
    }
    let _ = fs::remove_file(&src);
    peak_memory(ctx, nodes, big);
}

/// Peak memory growth of the process while a `size` object is stored and retrieved.
fn peak_memory(ctx: &mut Ctx, nodes: usize, size: u64) {
    let src = ctx.root.join("object-huge");
    let out = ctx.root.join("object-huge-out");
    write_pattern_file(&src, size).expect("write the source file");
    let entry = match ctx.nets.get(nodes, Profile::NoSync) {
        Ok(net) => net.discovery.local_addr(),
        Err(e) => {
            ctx.report.note(format!("memory test failed: {e}"));
            return;
        }
    };
    let client = Profile::NoSync.client(entry);
    trim_heap();
    let rss_before = status_kb("VmRSS");
    let reset = reset_peak_rss();
    let t = Instant::now();
    let result = client
        .store_file(&src)
        .and_then(|_| client.retrieve_file("object-huge", &out));
    let took = t.elapsed();
    let hwm = status_kb("VmHWM");
    let growth_mib = hwm.saturating_sub(rss_before) as f64 / 1024.0;
    let same = result.is_ok() && files_equal(&src, &out);
    let _ = fs::remove_file(&src);
    let _ = fs::remove_file(&out);
    ctx.report.note(format!(
        "Peak memory: a {} object stored and retrieved through {nodes} nodes ({}, 3 copies) \
         in {:.1} s. The peak (VmHWM) was reset to the current RSS just before, by writing \
         \"5\" to /proc/self/clear_refs{}.",
        fmt_bytes(size),
        Profile::NoSync.describe(),
        took.as_secs_f64(),
        if reset {
            ""
        } else {
            " (which FAILED: the peak may be older)"
        },
    ));
    ctx.report.table(&[
        "Object",
        "RSS before",
        "Peak RSS during",
        "Peak growth",
        "Largest frame (client)",
        "Target ≤ 64 MiB",
    ]);
    let outcome = match &result {
        Err(e) => format!(" (failed: {e})"),
        Ok(_) if !same => " (retrieved bytes differ)".into(),
        Ok(_) => String::new(),
    };
    ctx.report.row(vec![
        format!("{}{outcome}", fmt_bytes(size)),
        format!("{:.0} MiB", rss_before as f64 / 1024.0),
        format!("{:.0} MiB", hwm as f64 / 1024.0),
        format!("{growth_mib:.1} MiB"),
        fmt_bytes(client.stats().largest_frame),
        yes_no(growth_mib <= 64.0 && same),
    ]);
    ctx.report.check(
        format!("Peak memory growth ≤ 64 MiB moving {}", fmt_bytes(size)),
        format!("{growth_mib:.1} MiB"),
        growth_mib <= 64.0 && same,
    );
}

// ---------------------------------------------------------------------------------------------
// Section 5: small values

fn small_values(ctx: &mut Ctx) {
    let n = 64;
    let samples = ctx.opts.pick(1000, 100);
    ctx.report.note(format!(
        "`Client::put` and `Client::get` of a 4-byte value under {samples} distinct names, \
         through a {n}-node network, by one client entering through discovery (it keeps its \
         entry peer). Requests per operation: the client's own count (`Client::stats().sent`: \
         the lookup sent to the entry peer and one request to the holder) plus the hops the \
         entry peer and those after it forwarded the lookup, plus for a put the holder's \
         round of copies to the other holders (sent side by side: one round trip). \
         The raw round trip (one established connection) is measured before, between and after \
         the puts and gets. Each copy is one file on the holder, so a second baseline, measured \
         in the same run on the same disk, is the raw file work a copy costs: for a put, mkdir \
         of a key directory, create a temporary file, write 38 bytes, rename it into place \
         (with fsync of the file and the directory when writes are synced); for a get, open, \
         read and close. Expected = requests × raw RTT + file ops in sequence × raw file op \
         (1: a put's copies are written side by side, the holder's among them; 1 for a get)."
    ));
    ctx.report.table(&[
        "Configuration",
        "Operation",
        "p50",
        "p99",
        "Requests/op",
        "Raw RTT p50",
        "Raw file op p50",
        "p50 ÷ raw RTT",
        "p50 ÷ (requests × raw RTT)",
        "p50 ÷ expected",
    ]);
    for profile in [Profile::Default, Profile::NoSync] {
        let lead = vec![profile.describe().into()];
        let Ok(net) = ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) else {
            continue;
        };
        let client = profile.client(net.discovery.local_addr());
        let value = [1u8, 2, 3, 4];
        let names: Vec<String> = (0..samples)
            .map(|i| format!("small-{}-{i}", profile.name()))
            .collect();
        for name in names.iter().take(20) {
            let _ = client.put(format!("warm-{name}"), &value); // connections to the holders
        }
        // An operation answers with the hops its lookup was forwarded beyond the entry peer:
        // requests too, made by the peers rather than the client.
        let timed = |op: &dyn Fn(&str) -> Result<usize, String>| {
            let sent = client.stats().sent;
            let mut forwarded = 0;
            let mut times = Vec::with_capacity(samples);
            let mut error = None;
            for name in &names {
                let t = Instant::now();
                match op(name) {
                    Ok(hops) => {
                        times.push(t.elapsed());
                        forwarded += hops;
                    }
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            let requests = (client.stats().sent - sent + forwarded as u64) as f64 / samples as f64;
            sort(&mut times);
            (times, requests, error)
        };
        let sync = profile == Profile::Default;
        let fs_dir = ctx.root.join(format!("file-baseline-{}", profile.name()));
        let (file_write, file_read) = raw_file_ops(&fs_dir, samples.min(300), sync);
        let _ = fs::remove_dir_all(&fs_dir);
        // Raw round trips before, between and after, so that they share the machine's state.
        let mut raw = raw_rtts(&ctx.raw[0], 2000);
        let put = timed(&|name| {
            client
                .put(name, &value)
                .map(|stored| stored.route.hops())
                .map_err(|e| e.to_string())
        });
        raw.extend(raw_rtts(&ctx.raw[0], 2000));
        let get = timed(&|name| match client.get(name) {
            Ok(f) if f.data == value => Ok(f.route.hops()),
            Ok(_) => Err("wrong value".into()),
            Err(e) => Err(e.to_string()),
        });
        raw.extend(raw_rtts(&ctx.raw[0], 2000));
        sort(&mut raw);
        let rtt = pct(&raw, 50.0);
        // The holder versions a put, then writes its copy and the other holders' side by side:
        // one file op in sequence, and one more round trip (holder to holders) when there are
        // copies besides its own.
        let copies = 1.0;
        let put = (
            put.0,
            put.1 + if DEFAULT_REPLICAS > 1 { 1.0 } else { 0.0 },
            put.2,
        );
        for (op, (times, requests, error), file_op, copies) in [
            ("put", put, file_write, copies),
            ("get", get, file_read, copies),
        ] {
            if times.is_empty() {
                let e = error.unwrap_or_default();
                ctx.report.row(vec![
                    profile.describe().into(),
                    op.into(),
                    format!("failed: {e}"),
                ]);
                continue;
            }
            let p50 = pct(&times, 50.0);
            let failed = match error {
                Some(e) => format!(" ({} failed: {e})", samples - times.len()),
                None => String::new(),
            };
            ctx.report.row(vec![
                profile.describe().into(),
                op.into(),
                format!("{}{failed}", fmt_dur(p50)),
                fmt_dur(pct(&times, 99.0)),
                format!("{requests:.2}"),
                fmt_dur(rtt),
                fmt_dur(file_op),
                format!("{:.1}", secs(p50) / secs(rtt)),
                format!("{:.2}", secs(p50) / (requests * secs(rtt))),
                format!(
                    "{:.2}",
                    secs(p50) / (requests * secs(rtt) + copies * secs(file_op))
                ),
            ]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Section 6: join

fn join(ctx: &mut Ctx) {
    let sizes = ctx.opts.pick(vec![16, 256, 1000], vec![16, 32, 64]);
    let joins = ctx.opts.pick(5, 2);
    ctx.report.note(format!(
        "{joins} nodes join one after another (each measured alone) a network of N nodes \
         configured {}: no background traffic, so the messages counted (`stats().sent` summed \
         over every node and the joiner, before and after) are the join's own, including the \
         joiner's requests to discovery. |L| = 16. The join's requests: register with \
         discovery, one JoinHop per node on the route, pulls from the 2 nearest neighbours, an \
         Announce to every node in the new tables (leaf set and routing table), and Joined.",
        Profile::Quiet.describe()
    ));
    ctx.report.table(&[
        "N",
        "Join time p50",
        "Join time max",
        "Messages (mean)",
        "by joiner",
        "by others",
        "log16 N + |L|",
        "Messages ÷ (log16 N + |L|)",
    ]);
    let mut points: Vec<(usize, f64)> = Vec::new();
    for n in sizes {
        let seed = ctx.rng.next_u64();
        let dir = ctx.root.join(format!("joiners-{n}"));
        let lead = vec![n.to_string()];
        let Ok(net) = ctx
            .nets
            .get_or_report(n, Profile::Quiet, &mut ctx.report, lead)
        else {
            continue;
        };
        let mut rng = Rng::seeded(seed);
        let taken: std::collections::HashSet<Id> = net.nodes.iter().map(|n| n.id()).collect();
        let mut times = Vec::new();
        let (mut by_joiner, mut by_others) = (0u64, 0u64);
        let mut joiners = Vec::new();
        let mut error = None;
        while joiners.len() + error.iter().count() < joins {
            let id = Id(rng.next_u64() as u16);
            if taken.contains(&id) || joiners.iter().any(|j: &Node| j.id() == id) {
                continue;
            }
            let config = NodeConfig {
                id: Some(id),
                ..Profile::Quiet.config(dir.join(format!("{}", joiners.len())))
            };
            let node = match Node::start(config) {
                Ok(node) => node,
                Err(e) => {
                    error = Some(e.to_string());
                    continue;
                }
            };
            let others = net.total_sent() + joiners.iter().map(|j| j.stats().sent).sum::<u64>();
            let t = Instant::now();
            let joined = node.join_discovery(net.discovery.local_addr());
            let took = t.elapsed();
            if let Err(e) = joined {
                error = Some(e.to_string());
                continue;
            }
            times.push(took);
            let others_after =
                net.total_sent() + joiners.iter().map(|j| j.stats().sent).sum::<u64>();
            by_joiner += node.stats().sent;
            by_others += others_after - others;
            joiners.push(node);
        }
        drop(joiners); // crash-stop: the others are told nothing in a quiet network
        let _ = fs::remove_dir_all(&dir);
        if times.is_empty() {
            let e = error.unwrap_or_default();
            ctx.report.row(vec![n.to_string(), format!("failed: {e}")]);
            continue;
        }
        sort(&mut times);
        let k = times.len() as f64;
        let messages = (by_joiner + by_others) as f64 / k;
        let scale = (n as f64).ln() / 16f64.ln() + LEAF_SET;
        points.push((n, messages));
        ctx.report.row(vec![
            n.to_string(),
            fmt_dur(pct(&times, 50.0)),
            fmt_dur(*times.last().expect("a join")),
            format!("{messages:.1}"),
            format!("{:.1}", by_joiner as f64 / k),
            format!("{:.1}", by_others as f64 / k),
            format!("{scale:.2}"),
            format!("{:.2}", messages / scale),
        ]);
    }
    // The joined nodes were crash-stopped: this network must not be reused.
    ctx.nets.current = None;
    join_growth(ctx, &points);
}

/// Whether messages per join grow like log16 N + |L| or like N: both models, `a + b·x`, are
/// fitted by least squares to the measured points, and the one with the smaller residual wins.
fn join_growth(ctx: &mut Ctx, points: &[(usize, f64)]) {
    if points.len() < 3 {
        return; // two points fit any two-parameter model exactly
    }
    let log_model = |n: usize| (n as f64).ln() / 16f64.ln() + LEAF_SET;
    let lin_model = |n: usize| n as f64;
    let (fit_log, rms_log) = fit(points, log_model);
    let (fit_lin, rms_lin) = fit(points, lin_model);
    let (&(n0, m0), &(n1, m1)) = (points.first().unwrap(), points.last().unwrap());
    let slope = (m1 / m0).ln() / (n1 as f64 / n0 as f64).ln();
    ctx.report.note(format!(
        "From {n0} to {n1} nodes (×{:.1}) the messages per join grew ×{:.2}, while log16 N + |L| \
         grew ×{:.2} (log-log slope in N: {slope:.2}; growth like N would be 1.00). Least-squares \
         fits: messages ≈ {:.1} + {:.2} × (log16 N + |L|), RMS residual {rms_log:.1}; messages ≈ \
         {:.1} + {:.4} × N, RMS residual {rms_lin:.1}.",
        n1 as f64 / n0 as f64,
        m1 / m0,
        log_model(n1) / log_model(n0),
        fit_log.0,
        fit_log.1,
        fit_lin.0,
        fit_lin.1,
    ));
    ctx.report.check(
        "Join messages grow like log16 N + |L|, not like N (the log model fits better)",
        format!(
            "{m0:.0} messages at {n0} nodes, {m1:.0} at {n1}; RMS residual {rms_log:.1} (log) \
             vs {rms_lin:.1} (linear)"
        ),
        rms_log < rms_lin,
    );
}

/// Least-squares `y ≈ a + b·model(n)`: ((a, b), RMS residual).
fn fit(points: &[(usize, f64)], model: impl Fn(usize) -> f64) -> ((f64, f64), f64) {
    let k = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|&(n, _)| model(n)).collect();
    let mx = xs.iter().sum::<f64>() / k;
    let my = points.iter().map(|p| p.1).sum::<f64>() / k;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (x - mx) * (p.1 - my))
        .sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let a = my - b * mx;
    let sse: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (p.1 - a - b * x).powi(2))
        .sum();
    ((a, b), (sse / k).sqrt())
}

// ---------------------------------------------------------------------------------------------
// Section 7: idle nodes

fn idle(ctx: &mut Ctx) {
    let sizes: Vec<(usize, Profile)> = ctx.opts.pick(
        vec![
            (64, Profile::Default),
            (256, Profile::Default),
            (256, Profile::NoPool),
            (1000, Profile::Default),
            (1000, Profile::Large),
        ],
        vec![(64, Profile::Default), (64, Profile::NoPool)],
    );
    ctx.report.note(format!(
        "Process resources once a network has been built and left idle for a few seconds, \
         minus those before it started, divided by the number of nodes (the discovery node is \
         included). Threads: one acceptor and one maintenance thread per node, plus one per \
         inbound connection (256 KiB stacks); outbound connections are pooled (at most 4 per \
         peer). The process may open {} files.",
        fd_limit()
    ));
    ctx.report.table(&[
        "Nodes",
        "Configuration",
        "Build (s)",
        "RSS per node",
        "Threads per node",
        "Descriptors per node",
        "Total threads",
        "Total descriptors",
    ]);
    for (n, profile) in sizes {
        let lead = vec![n.to_string(), profile.describe().into()];
        let net = match ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) {
            Ok(net) => net,
            Err(e) => {
                if n >= 1000 {
                    ctx.report.check(
                        format!(
                            "1,000 nodes start and join in one process ({})",
                            profile.describe()
                        ),
                        e,
                        false,
                    );
                }
                continue;
            }
        };
        let (b, s) = (net.before, net.settled);
        let per = |x: f64| x / n as f64;
        let row = vec![
            n.to_string(),
            profile.describe().into(),
            format!("{:.1}", net.build_time.as_secs_f64()),
            format!("{:.0} KiB", per(s.rss_kb as f64 - b.rss_kb as f64)),
            format!("{:.1}", per(s.threads as f64 - b.threads as f64)),
            format!("{:.1}", per(s.fds as f64 - b.fds as f64)),
            s.threads.to_string(),
            s.fds.to_string(),
        ];
        let build = net.build_time;
        ctx.report.row(row);
        if n >= 1000 {
            ctx.report.check(
                format!(
                    "1,000 nodes start and join in one process ({})",
                    profile.describe()
                ),
                format!("built in {:.0} s", build.as_secs_f64()),
                true,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw baselines

/// An echo server: every connection gets a thread that answers each 64-byte request with it.
fn start_echo_server() -> SocketAddr {
    serve_forever(|mut s| {
        let mut buf = [0u8; RAW_MSG];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                return;
            }
        }
    })
}

/// A sink: every connection gets a thread that reads to the end, then answers the byte count.
fn start_sink_server() -> SocketAddr {
    serve_forever(|mut s| {
        let mut buf = vec![0u8; MIB as usize];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => total += k as u64,
                Err(_) => return,
            }
        }
        let _ = s.write_all(&total.to_le_bytes());
    })
}

fn serve_forever(conn: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a baseline server");
    let addr = listener.local_addr().expect("its address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            thread::spawn(move || conn(stream));
        }
    });
    addr
}

/// `count` established, warmed-up connections to the echo server at `addr`, opened once at the
/// start so that a network that later runs out of descriptors cannot take the baseline down.
fn raw_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let s = connect_raw(addr);
            let mut buf = [7u8; RAW_MSG];
            for _ in 0..200 {
                (&s).write_all(&buf).unwrap();
                (&s).read_exact(&mut buf).unwrap();
            }
            s
        })
        .collect()
}

fn connect_raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to a baseline server");
    s.set_nodelay(true).expect("TCP_NODELAY");
    s
}

/// `count` timed 64-byte round trips on an established connection, sorted.
fn raw_rtts(mut s: &TcpStream, count: usize) -> Vec<Duration> {
    let mut buf = [7u8; RAW_MSG];
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            let t = Instant::now();
            s.write_all(&buf).unwrap();
            s.read_exact(&mut buf).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

/// `count` timed 64-byte round trips, each on one of `conns` picked at random, sorted.
fn raw_fan_out(conns: &[TcpStream], count: usize, rng: &mut Rng) -> Vec<Duration> {
    let mut buf = [7u8; RAW_MSG];
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            let mut s = &conns[rng.below(conns.len())];
            let t = Instant::now();
            s.write_all(&buf).unwrap();
            s.read_exact(&mut buf).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

/// Round trips per second of `conns.len()` threads, each on its own connection, for `window`.
fn raw_rate(conns: &[TcpStream], window: Duration) -> f64 {
    let total = AtomicU64::new(0);
    let go = AtomicBool::new(false);
    thread::scope(|sc| {
        for mut s in conns {
            let (total, go) = (&total, &go);
            sc.spawn(move || {
                let mut buf = [7u8; RAW_MSG];
                while !go.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                let deadline = Instant::now() + window;
                let mut done = 0;
                while Instant::now() < deadline {
                    s.write_all(&buf).unwrap();
                    s.read_exact(&mut buf).unwrap();
                    done += 1;
                }
                total.fetch_add(done, Ordering::Relaxed);
            });
        }
        thread::sleep(Duration::from_millis(20)); // every caller started
        go.store(true, Ordering::Release);
    });
    total.into_inner() as f64 / window.as_secs_f64()
}

/// Time to push `size` bytes through a fresh loopback connection until the reader has them all.
fn raw_stream(addr: SocketAddr, size: u64) -> Duration {
    let chunk = vec![0x5au8; MIB as usize];
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let mut s = connect_raw(addr);
        let t = Instant::now();
        let mut left = size;
        while left > 0 {
            let k = left.min(MIB) as usize;
            s.write_all(&chunk[..k]).unwrap();
            left -= k as u64;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = [0u8; 8];
        s.read_exact(&mut got).unwrap();
        assert_eq!(u64::from_le_bytes(got), size);
        best = best.min(t.elapsed());
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Files

/// Writes `size` bytes of a non-repeating pattern.
fn write_pattern_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(MIB as usize, fs::File::create(path)?);
    let mut rng = Rng::seeded(size);
    let mut block = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let k = left.min(MIB) as usize;
        f.write_all(&block[..k])?;
        left -= k as u64;
    }
    f.flush()
}

/// The file work of storing and reading one small copy, done raw in `dir`: p50 of (mkdir, create
/// a temporary file, write 38 bytes, rename into the new directory; with `sync`, fsync of the
/// file before the rename and of the directory after) and of (open, read, close).
fn raw_file_ops(dir: &Path, count: usize, sync: bool) -> (Duration, Duration) {
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).expect("create the file baseline's directory");
    let record = [0x5au8; 38];
    let mut writes = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        let key_dir = dir.join(format!("k{i:04}"));
        let temp = tmp.join(format!("{i}.tmp"));
        fs::create_dir(&key_dir).expect("mkdir");
        let mut f = fs::File::create(&temp).expect("create");
        f.write_all(&record).expect("write");
        if sync {
            f.sync_all().expect("fsync");
        }
        drop(f);
        fs::rename(&temp, key_dir.join("object")).expect("rename");
        if sync {
            fs::File::open(&key_dir)
                .and_then(|d| d.sync_all())
                .expect("fsync dir");
        }
        writes.push(t.elapsed());
    }
    let mut reads = Vec::with_capacity(count);
    let mut buf = Vec::with_capacity(64);
    for i in 0..count {
        let t = Instant::now();
        buf.clear();
        let mut f = fs::File::open(dir.join(format!("k{i:04}")).join("object")).expect("open");
        f.read_to_end(&mut buf).expect("read");
        drop(f);
        reads.push(t.elapsed());
    }
    sort(&mut writes);
    sort(&mut reads);
    (pct(&writes, 50.0), pct(&reads, 50.0))
}

/// Time to copy the file at `src` to `dst` through a fresh loopback TCP connection: one thread
/// reads the file and sends it, another receives it into a new file (not synced).
fn raw_file_stream(src: &Path, dst: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let t = Instant::now();
    let receiver = {
        let dst = dst.to_path_buf();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut out = fs::File::create(&dst).expect("create the copy");
            std::io::copy(&mut s, &mut out).expect("receive");
        })
    };
    let mut s = connect_raw(addr);
    let mut f = fs::File::open(src).expect("open the source");
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let k = f.read(&mut buf).expect("read the source");
        if k == 0 {
            break;
        }
        s.write_all(&buf[..k]).expect("send");
    }
    drop(s);
    receiver.join().expect("receiver");
    let took = t.elapsed();
    let _ = fs::remove_file(dst);
    took
}

/// MiB/s of CRC-32/ISO-HDLC over the file at `path` (read into memory first): with the crc
/// crate's default byte-at-a-time table, with its 16-byte table, and with crc32fast (as the
/// library computes it).
fn crc_rates(path: &Path) -> (f64, f64, f64) {
    let data = fs::read(path).expect("read the source file");
    let mib = data.len() as f64 / MIB as f64;
    let bytewise = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let t = Instant::now();
    let a = bytewise.checksum(&data);
    let rate_bytewise = mib / secs(t.elapsed());
    let sliced = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
    let t = Instant::now();
    let b = sliced.checksum(&data);
    let rate_sliced = mib / secs(t.elapsed());
    let t = Instant::now();
    let c = crc32fast::hash(&data);
    let rate_folded = mib / secs(t.elapsed());
    assert_eq!(a, b);
    assert_eq!(a, c);
    (rate_bytewise, rate_sliced, rate_folded)
}

fn files_equal(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let ka = read_full(&mut fa, &mut ba);
        let kb = read_full(&mut fb, &mut bb);
        if ka != kb || ba[..ka] != bb[..kb] {
            return false;
        }
        if ka == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

// ---------------------------------------------------------------------------------------------
// The process and the machine

#[derive(Clone, Copy, Debug)]
struct Resources {
    rss_kb: u64,
    threads: usize,
    fds: usize,
}

impl Resources {
    fn now() -> Resources {
        Resources {
            rss_kb: status_kb("VmRSS"),
            threads: count_dir("/proc/self/task"),
            fds: count_dir("/proc/self/fd"),
        }
    }
}

fn count_dir(path: &str) -> usize {
    fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// A `kB` field of /proc/self/status.
fn status_kb(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    proc_kb(&status, field)
}

fn proc_kb(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS.
fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

extern "C" {
    /// glibc: returns freed heap memory to the system, so that RSS before a measurement does
    /// not include what an earlier network freed.
    fn malloc_trim(pad: usize) -> i32;
}

fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// The open-file limit, read once (it cannot be read once descriptors have run out).
fn fd_limit() -> String {
    static LIMIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIMIT.get_or_init(read_fd_limit).clone()
}

fn read_fd_limit() -> String {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The commit checked out, read from .git without running git.
fn git_commit() -> String {
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join(".git");
    let head = fs::read_to_string(git.join("HEAD")).unwrap_or_default();
    let head = head.trim();
    let hash = match head.strip_prefix("ref: ") {
        None => head.to_string(),
        Some(name) => fs::read_to_string(git.join(name))
            .map(|h| h.trim().to_string())
            .or_else(|_| {
                fs::read_to_string(git.join("packed-refs")).map(|packed| {
                    packed
                        .lines()
                        .find(|l| l.ends_with(name))
                        .and_then(|l| l.split_whitespace().next())
                        .unwrap_or_default()
                        .to_string()
                })
            })
            .unwrap_or_default(),
    };
    if hash.is_empty() {
        "unknown".into()
    } else {
        hash.chars().take(12).collect()
    }
}

fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = proc_kb(&meminfo, "MemTotal") as f64 / (1024.0 * 1024.0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem_gib:.1} GiB memory, Linux {}, open-file limit {}",
        kernel.trim(),
        fd_limit()
    )
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// Numbers

fn sort(v: &mut [Duration]) {
    v.sort_unstable();
}

/// Nearest-rank percentile of sorted samples.
fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mean_dur(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / (v.len().max(1) as u32)
}

fn mean_usize(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1024 * MIB && b % (1024 * MIB) == 0 {
        format!("{} GiB", b / (1024 * MIB))
    } else if b >= MIB {
        format!("{:.0} MiB", b as f64 / MIB as f64)
    } else if b >= 1024 {
        format!("{:.0} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn yes_no(ok: bool) -> String {
    if ok { "yes" } else { "**no**" }.into()
}

fn failures_note(l: &Lookups) -> String {
    let mut note = String::new();
    if l.wrong > 0 {
        note = format!(" ({} ended at the wrong node)", l.wrong);
    }
    if let Some(e) = &l.first_error {
        note += &format!(" ({} failed, first: {e})", l.failures);
    }
    note
}
