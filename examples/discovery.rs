//! The discovery node as its own process: it tracks the live peers of one overlay, refuses an
//! id already in use and hands newcomers a random joined peer.
//!
//! ```text
//! cargo run --example discovery -- --port 4000 --new-key cluster.key \
//!     --new-client-key client.key --authority-file authority.key
//! ```
//!
//! It prints `discovery listening on ADDR` (and `tracker listening on ADDR` with
//! `--tracker-port`), then reads commands from stdin: `list-nodes`, `help`, `exit` (end of
//! input also exits).

#[macro_use]
mod common;

use std::process::ExitCode;

use common::{command_loop, count, init_logging, listen_addr, say, Args, SecurityFlags};
use std::path::PathBuf;

use pastry::{Discovery, Identity, NetConfig, Security, DISCOVERY_MAX_CONNECTIONS};

const USAGE: &str = concat!(
    "\
Usage: discovery [--host ADDR] [--port N] (--new-key FILE | --key-file FILE | --insecure)
                 [--new-client-key FILE] [--authority-file FILE]

Runs a Pastry discovery node, then reads commands from stdin.

Options:
  --host ADDR      address to listen on (default 127.0.0.1)
  --port N         port to listen on (default 0: the OS chooses)
  --new-key FILE   make the cluster key, write it to FILE (which must not exist; mode
                   0600), and use it: give FILE to the peers with --key-file
  --new-client-key FILE  write the client key of the cluster key to FILE (which must not
                   exist; mode 0600): give it to programs that only store, retrieve and
                   delete objects (store_data), which can then do nothing more
  --authority-file FILE  the key that signs node certificates, made there the first time
                   (mode 0600): a discovery restarted with it goes on certifying its nodes
                   (without it, a new key in memory: its nodes refuse a restarted discovery)
  --tracker-port N serve the tracker seed's tracker on port N (0: the OS chooses):
                   PLAINTEXT AND UNAUTHENTICATED, anyone who reaches it may use it
  --tracker-host ADDR  address the tracker listens on (default 127.0.0.1)
",
    security_usage!(),
    "
  -h, --help       print this help

Commands:
  list-nodes    the joined peers, one per line: ID ADDR
  help          this list
  exit          stop (so does the end of input)

Logging: RUST_LOG=info (default warn), on stderr."
);

fn main() -> ExitCode {
    let mut args = Args::from_env(USAGE);
    let mut host = "127.0.0.1".to_string();
    let mut port = 0u16;
    let mut security = SecurityFlags::default();
    let mut tracker_host = "127.0.0.1".to_string();
    let mut tracker_port: Option<u16> = None;
    let mut client_key: Option<PathBuf> = None;
    let mut authority_file: Option<PathBuf> = None;
    while let Some(flag) = args.next_flag() {
        if security.take(&flag, &mut args, true) {
            continue;
        }
        match flag.as_str() {
            "--host" => host = args.value(&flag),
            "--port" => port = args.value(&flag),
            "--tracker-host" => tracker_host = args.value(&flag),
            "--tracker-port" => tracker_port = Some(args.value(&flag)),
            "--new-client-key" => client_key = Some(args.value(&flag)),
            "--authority-file" => authority_file = Some(args.value(&flag)),
            _ => args.unknown(&flag),
        }
    }
    let tracker = tracker_port.map(|port| {
        listen_addr(&tracker_host, port)
            .unwrap_or_else(|e| args.fail(&format!("--tracker-host {tracker_host}: {e}")))
    });
    let addr =
        listen_addr(&host, port).unwrap_or_else(|e| args.fail(&format!("--host {host}: {e}")));
    init_logging();
    let security = security.security(&args);
    if let Some(path) = client_key {
        let Security::Key(key) = &security else {
            args.fail("--new-client-key needs a cluster key, not --insecure");
        };
        if let Err(e) = key.client_key().save(&path) {
            args.fail(&format!("--new-client-key {}: {e}", path.display()));
        }
        eprintln!("wrote the client key to {} (mode 0600)", path.display());
    }
    let authority = match authority_file {
        Some(path) => Identity::in_file(&path)
            .unwrap_or_else(|e| args.fail(&format!("--authority-file {}: {e}", path.display()))),
        None => Identity::generate().unwrap_or_else(|e| args.fail(&e.to_string())),
    };
    let net = NetConfig {
        max_connections: DISCOVERY_MAX_CONNECTIONS,
        ..NetConfig::with(security)
    };

    let discovery = match Discovery::start_with_authority(addr, net, authority) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot start discovery on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    say(format_args!(
        "discovery listening on {}",
        discovery.local_addr()
    ));
    if let Some(addr) = tracker {
        match discovery.start_tracker(addr) {
            Ok(addr) => say(format_args!("tracker listening on {addr}")),
            Err(e) => {
                eprintln!("error: cannot start the tracker on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
        eprintln!("warning: the tracker is plaintext and unauthenticated");
    }

    command_loop(|command, _args| match command {
        "list-nodes" => {
            let peers = discovery.peers();
            for peer in &peers {
                say(format_args!("{} {}", peer.id, peer.addr));
            }
            say(count(peers.len() as u64, "node"));
            true
        }
        "help" => {
            say(USAGE);
            true
        }
        "exit" => false,
        other => {
            eprintln!("error: unknown command {other:?}; type help for the list");
            true
        }
    });
    discovery.shutdown();
    ExitCode::SUCCESS
}
