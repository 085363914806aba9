//! The discovery node as its own process: it tracks the live peers of one overlay, refuses an
//! id already in use and hands newcomers a random joined peer.
//!
//! ```text
//! cargo run --example discovery -- --port 4000 --new-key cluster.key
//! ```
//!
//! It prints `discovery listening on ADDR` (and `tracker listening on ADDR` with
//! `--tracker-port`), then reads commands from stdin: `list-nodes`, `help`, `exit` (end of
//! input also exits).

#[macro_use]
mod common;

use std::process::ExitCode;

use common::{command_loop, count, init_logging, listen_addr, say, Args, SecurityFlags};
use pastry::Discovery;

const USAGE: &str = concat!(
    "\
Usage: discovery [--host ADDR] [--port N] (--new-key FILE | --key-file FILE | --insecure)

Runs a Pastry discovery node, then reads commands from stdin.

Options:
  --host ADDR      address to listen on (default 127.0.0.1)
  --port N         port to listen on (default 0: the OS chooses)
  --new-key FILE   make the cluster key, write it to FILE (which must not exist; mode
                   0600), and use it: give FILE to the peers and clients with --key-file
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
    while let Some(flag) = args.next_flag() {
        if security.take(&flag, &mut args, true) {
            continue;
        }
        match flag.as_str() {
            "--host" => host = args.value(&flag),
            "--port" => port = args.value(&flag),
            "--tracker-host" => tracker_host = args.value(&flag),
            "--tracker-port" => tracker_port = Some(args.value(&flag)),
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

    let discovery = match Discovery::start(addr, security) {
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
