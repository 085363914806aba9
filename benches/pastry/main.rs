//! Benchmarks of libpastry on loopback, in one process, each figure beside a baseline measured
//! in the same run: one file per section, the report, the networks, the raw baselines and the
//! system figures beside this one.
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
//! `idle`, `simulator`, `opendht` (libpastry beside OpenDHT, through the shared harness in
//! `../shared/peers/opendht/`), `processes` (1,000 nodes as several processes; the program
//! runs copies of itself with `--child-nodes`), `million` (a million small values on one node),
//! `certificates` (joins and lookups with certified node ids against without).
//! A full run writes `BENCHMARKS.md` at the crate root; a
//! filtered or quick run writes `target/BENCHMARKS.partial.md` so that a smoke run never
//! replaces the real results. Text after the notes marker in `BENCHMARKS.md` is written by
//! hand and kept.
//!
//! Baselines: a loopback TCP echo server (std::net, TCP_NODELAY, one thread per connection)
//! answering 64-byte requests on an established connection, the same echo served by one
//! thread a processor driven by readiness (epoll), and a raw loopback TCP stream written in
//! 1 MiB writes to a thread that reads and discards it.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pastry::{
    Client, ClientConfig, Discovery, Entry, Id, Node, NodeConfig, Rng, Security, DEFAULT_REPLICAS,
};

/// Leaf-set size with the default configuration (`leaf_half` 8 on each side).
pub(crate) const LEAF_SET: f64 = 16.0;
/// Hand-written text after this line of BENCHMARKS.md survives a rerun.
pub(crate) const NOTES_MARKER: &str =
    "<!-- Everything below this line is written by hand and kept when the benchmark reruns. -->";
/// Established connections to the echo server: the first 16 serve the concurrent raw rate,
/// all of them the fan-out round trip.
pub(crate) const RAW_CONNS: usize = 64;
/// Established connections to the readiness-driven echo server, one per concurrent caller of
/// Section 2.
pub(crate) const READY_CONNS: usize = 32;
/// Request and reply size of the raw round trip.
pub(crate) const RAW_MSG: usize = 64;
pub(crate) const MIB: u64 = 1024 * 1024;

/// A benchmark section: measures, printing and recording its rows.
pub(crate) type SectionFn = fn(&mut Ctx);

mod baselines;
mod certificates;
mod hops;
mod idle;
mod join;
mod lookups;
mod million;
mod networks;
mod opendht;
mod plaintext;
mod processes;
mod report;
mod simulator;
mod small_values;
mod store;
mod strangers;
mod system;

use baselines::*;
use certificates::*;
use hops::*;
use idle::*;
use join::*;
use lookups::*;
use million::*;
use networks::*;
use opendht::*;
use plaintext::*;
use processes::*;
use report::*;
use small_values::*;
use store::*;
use strangers::*;
use system::*;

pub(crate) fn main() {
    let _ = env_logger::try_init(); // RUST_LOG=pastry=debug shows what the nodes do
    let _ = fd_limit();
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child-nodes") {
        child(&args[at + 1..]);
    }
    let opts = Opts::parse();
    let mut ctx = Ctx::new(opts);
    let sections: [(&str, &str, SectionFn); 13] = [
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
        ("simulator", "8. The simulator", simulator::simulator),
        ("opendht", "9. Beside OpenDHT", opendht),
        (
            "processes",
            "10. 1,000 nodes as several processes",
            processes,
        ),
        ("million", "11. A million small values on one node", million),
        ("certificates", "12. Certified node ids", certificates),
        ("strangers", "13. Strangers' connections", strangers),
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

pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) filters: Vec<String>,
}

impl Opts {
    pub(crate) fn parse() -> Opts {
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

    pub(crate) fn selects(&self, section: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| section.contains(f.as_str()))
    }

    pub(crate) fn full(&self) -> bool {
        !self.quick && self.filters.is_empty()
    }

    pub(crate) fn command(&self) -> String {
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
    pub(crate) fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

pub(crate) struct Ctx {
    pub(crate) opts: Opts,
    pub(crate) report: Report,
    /// Node data directories live under it; removed at the end.
    pub(crate) root: PathBuf,
    /// Established connections to the echo server, one per concurrent raw caller.
    pub(crate) raw: Vec<TcpStream>,
    /// Established connections to the readiness-driven echo server, one per concurrent caller.
    pub(crate) ready: Vec<TcpStream>,
    /// Where the readiness-driven echo server listens.
    pub(crate) ready_addr: SocketAddr,
    /// Sockets of the process before any network: the baselines' own.
    pub(crate) base_sockets: usize,
    pub(crate) sink: SocketAddr,
    pub(crate) rng: Rng,
    pub(crate) nets: Nets,
}

/// The network built last, kept while the next measurement asks for the same one.
pub(crate) struct Nets {
    pub(crate) root: PathBuf,
    pub(crate) rng: Rng,
    pub(crate) current: Option<Net>,
}

impl Nets {
    /// A running network of `n` nodes with `profile`: the one kept from before, or a new one.
    pub(crate) fn get(&mut self, n: usize, profile: Profile) -> Result<&Net, String> {
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
    pub(crate) fn get_or_report(
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
    pub(crate) fn new(opts: Opts) -> Ctx {
        let root = std::env::temp_dir().join(format!("pastry-bench-{}", std::process::id()));
        fs::create_dir_all(&root).expect("create the benchmark's temporary directory");
        let ready_addr = start_readiness_echo_server();
        let mut ctx = Ctx {
            opts,
            report: Report {
                load_at_start: load_average(),
                ..Report::default()
            },
            raw: raw_connections(start_echo_server(), RAW_CONNS),
            ready: raw_connections(ready_addr, READY_CONNS),
            ready_addr,
            base_sockets: 0,
            sink: start_sink_server(),
            rng: Rng::seeded(0x5eed_0006),
            nets: Nets {
                root: root.clone(),
                rng: Rng::seeded(0x5eed_0007),
                current: None,
            },
            root,
        };
        ctx.base_sockets = count_sockets();
        ctx
    }

    pub(crate) fn finish(&mut self, took: Duration) {
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
