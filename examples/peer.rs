//! A Pastry peer as its own process: it joins an overlay (through a discovery node, through a
//! known peer, or as the first node of a new one) and answers commands on stdin.
//!
//! ```text
//! cargo run --example peer -- --discovery 127.0.0.1:4000 --key-file cluster.key
//! ```
//!
//! Once joined it prints `peer ID listening on ADDR` (and `compact protocol on ADDR` with
//! `--compact-port`), then reads commands: `id`, `leaf-set`,
//! `routing-table`, `lookup KEY`, `list-files`, `help`, `exit` (end of input also leaves and
//! exits).
//!
//! The objects it holds live in `--data-dir`, kept after it exits; without that flag, in a
//! temporary directory removed at exit (after a graceful leave has handed them over).

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use common::{
    command_loop, count, init_logging, listen_addr, printable, resolve, say, Args, SecurityFlags,
};
use pastry::{Id, Node, NodeConfig, NodeInfo};

const USAGE: &str = concat!(
    "\
Usage: peer [OPTIONS] (--key-file FILE | --insecure)

Runs a Pastry peer: joins an overlay, then reads commands from stdin.
With neither --discovery nor --bootstrap it starts a new overlay alone.

Options:
  --host ADDR            address to listen on (default 127.0.0.1)
  --port N               port to listen on (default 0: the OS chooses)
  --advertise ADDR:PORT  address other peers use to reach this one (default: the
                         listening address; needed with --host 0.0.0.0)
  --id HEX               this peer's id, 1 to 4 hex digits (default: the one it last
                         ran with in --data-dir, else random)
  --discovery ADDR:PORT  join through the discovery node at ADDR:PORT
  --bootstrap ADDR:PORT  join through the known peer at ADDR:PORT, without discovery
  --data-dir DIR         keep this peer's objects, identity and id in DIR (created
                         if missing; kept at exit). Default: a temporary directory,
                         removed at exit
  --leaf-half N          leaf-set members kept on each side (default 8)
  --compact-port N       serve the tracker seed's compact protocol on port N (0: the
                         OS chooses): PLAINTEXT AND UNAUTHENTICATED, anyone who reaches
                         it may insert, read and delete 32-bit values
  --compact-host ADDR    address the compact protocol listens on (default 127.0.0.1)
",
    security_usage!(),
    "
  -h, --help             print this help

Commands:
  id              this peer's id and address
  leaf-set        the leaf set: counter-clockwise side, then clockwise side
  routing-table   the routing table: 4 rows of 16 columns
  lookup KEY      the route to the peer responsible for KEY (1 to 4 hex digits)
  list-files      the objects this peer holds, one per line: KEY SIZE NAME
  help            this list
  exit            leave the overlay and stop (so does the end of input)

Logging: RUST_LOG=info (default warn), on stderr."
);

/// How the peer enters an overlay.
#[derive(Clone, Copy)]
enum Entry {
    Discovery(SocketAddr),
    Bootstrap(SocketAddr),
    Alone,
}

fn main() -> ExitCode {
    let mut args = Args::from_env(USAGE);
    let mut host = "127.0.0.1".to_string();
    let mut port = 0u16;
    let mut config = NodeConfig::default();
    let mut entry = Entry::Alone;
    let mut security = SecurityFlags::default();
    let mut compact_host = "127.0.0.1".to_string();
    let mut compact_port: Option<u16> = None;
    while let Some(flag) = args.next_flag() {
        if security.take(&flag, &mut args, false) {
            continue;
        }
        match flag.as_str() {
            "--host" => host = args.value(&flag),
            "--port" => port = args.value(&flag),
            "--advertise" => config.advertise = Some(args.value_with(&flag, resolve)),
            "--id" => config.id = Some(args.value(&flag)),
            "--discovery" | "--bootstrap" if !matches!(entry, Entry::Alone) => {
                args.fail("give at most one of --discovery and --bootstrap")
            }
            "--discovery" => entry = Entry::Discovery(args.value_with(&flag, resolve)),
            "--bootstrap" => entry = Entry::Bootstrap(args.value_with(&flag, resolve)),
            "--data-dir" => config.data_dir = Some(args.value::<PathBuf>(&flag)),
            "--leaf-half" => config.leaf_half = args.value(&flag),
            "--compact-host" => compact_host = args.value(&flag),
            "--compact-port" => compact_port = Some(args.value(&flag)),
            _ => args.unknown(&flag),
        }
    }
    config.compact_listen = compact_port.map(|port| {
        listen_addr(&compact_host, port)
            .unwrap_or_else(|e| args.fail(&format!("--compact-host {compact_host}: {e}")))
    });
    config.listen =
        listen_addr(&host, port).unwrap_or_else(|e| args.fail(&format!("--host {host}: {e}")));
    if let Some(dir) = &config.data_dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    init_logging();
    config.net.security = security.security(&args);

    let node = match start_and_join(&config, entry) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let me = node.info();
    say(format_args!("peer {} listening on {}", me.id, me.addr));
    if let Some(addr) = node.compact_addr() {
        say(format_args!("compact protocol on {addr}"));
        eprintln!("warning: the compact protocol is plaintext and unauthenticated");
    }

    command_loop(|command, rest| {
        match (command, rest) {
            ("id", []) => say(format_args!("{} {}", me.id, me.addr)),
            ("leaf-set", []) => print_leaf_set(&node),
            ("routing-table", []) => print_routing_table(&node),
            ("lookup", [key]) => lookup(&node, key),
            ("list-files", []) => list_files(&node),
            ("help", _) => say(USAGE),
            ("exit", []) => return false,
            ("id" | "leaf-set" | "routing-table" | "list-files" | "exit", _) => {
                eprintln!("error: {command} takes no arguments")
            }
            ("lookup", _) => eprintln!("error: usage: lookup KEY (1 to 4 hex digits)"),
            _ => eprintln!("error: unknown command {command:?}; type help for the list"),
        }
        true
    });

    if let Err(e) = node.leave() {
        eprintln!("error: leaving: {e}");
    }
    node.shutdown();
    say("left");
    ExitCode::SUCCESS
}

/// Starts a node and brings it into an overlay (a random id already in use is drawn
/// again: `Node::start_joined`).
fn start_and_join(config: &NodeConfig, entry: Entry) -> pastry::Result<Node> {
    let via = match entry {
        Entry::Discovery(addr) => pastry::Entry::Discovery(addr),
        Entry::Bootstrap(addr) => pastry::Entry::Peer(addr),
        Entry::Alone => {
            let node = Node::start(config.clone())?;
            node.create()?;
            return Ok(node);
        }
    };
    Node::start_joined(config.clone(), via)
}

fn print_leaf_set(node: &Node) {
    let leaf_set = node.leaf_set();
    say(format_args!(
        "ccw (farthest to nearest): {}",
        side(leaf_set.ccw().iter().rev())
    ));
    say(format_args!(
        "cw (nearest to farthest):  {}",
        side(leaf_set.cw().iter())
    ));
}

/// One side of the leaf set: `ID ADDR, ID ADDR, ...`.
fn side<'a>(nodes: impl Iterator<Item = &'a NodeInfo>) -> String {
    let cells: Vec<String> = nodes.map(|n| format!("{} {}", n.id, n.addr)).collect();
    if cells.is_empty() {
        "(empty)".to_string()
    } else {
        cells.join(", ")
    }
}

fn print_routing_table(node: &Node) {
    let table = node.routing_table();
    let header: Vec<String> = (0..16).map(|c| format!("{c:>4x}")).collect();
    say(format_args!("row {}", header.join(" ")));
    for row in 0..4 {
        let cells: Vec<String> = table
            .row(row)
            .iter()
            .map(|cell| cell.map_or("----".to_string(), |n| n.id.to_string()))
            .collect();
        say(format_args!("{row:>3} {}", cells.join(" ")));
    }
}

fn lookup(node: &Node, key: &str) {
    let key: Id = match key.parse() {
        Ok(key) => key,
        Err(e) => return eprintln!("error: {e}"),
    };
    match node.lookup(key) {
        Ok(route) => {
            for (i, hop) in route.path.iter().enumerate() {
                say(format_args!("hop {i}: {} {}", hop.id, hop.addr));
            }
            let last = route.responsible();
            say(format_args!(
                "responsible: {} {} ({})",
                last.id,
                last.addr,
                count(route.hops() as u64, "hop")
            ));
        }
        Err(e) => eprintln!("error: lookup {key}: {e}"),
    }
}

/// One line per object held, `KEY SIZE NAME` (the name shown lossily as UTF-8, control
/// characters escaped), by key then name; then `N objects`.
fn list_files(node: &Node) {
    match node.objects() {
        Ok(mut objects) => {
            objects.sort_by(|a, b| (a.key, &a.name).cmp(&(b.key, &b.name)));
            for object in &objects {
                say(format_args!(
                    "{} {} {}",
                    object.key,
                    object.size,
                    printable(&object.name)
                ));
            }
            say(count(objects.len() as u64, "object"));
        }
        Err(e) => eprintln!("error: list-files: {e}"),
    }
}
