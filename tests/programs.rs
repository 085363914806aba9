//! The example programs as separate processes: a discovery node and eight peers on loopback,
//! driven through their stdin and read through their stdout, checked against the oracle.
//!
//! The programs are the example binaries cargo puts in `target/<profile>/examples/`: plain
//! `cargo test` builds them; `cargo test --all-targets` and `cargo test --test programs` do not.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{oracle_responsible, random_ids, wait_until};
use pastry::{key_of, Id, Rng};

/// How long a program may take to start, or a peer to join.
const STARTUP: Duration = Duration::from_secs(20);
/// How long a program may take to answer a command or to exit.
const REPLY: Duration = Duration::from_secs(10);

/// The paths of the example programs, which `cargo test` builds before running the tests.
fn programs() -> [PathBuf; 3] {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/programs-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps")
        .join("examples");
    let path = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let paths = [path("discovery"), path("peer"), path("demo")];
    for p in &paths {
        assert!(
            p.is_file(),
            "{} is not built: run plain `cargo test` (or `cargo build --examples` first)",
            p.display()
        );
    }
    paths
}

/// A running program. Dropping it kills the process, so a failing test leaves none behind.
struct Program {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines of stdout, read by a thread; closed when stdout ends.
    stdout: Receiver<String>,
    /// All of stderr so far, read by a thread; shown when a test fails.
    stderr: Arc<Mutex<String>>,
}

impl Program {
    fn start(path: &PathBuf, args: &[&str]) -> Program {
        let name = format!(
            "{} {}",
            path.file_stem().unwrap().to_string_lossy(),
            args.join(" ")
        );
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdin = child.stdin.take();
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Program {
            name,
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: write {line:?}: {e}", self.name));
    }

    /// Closes stdin: the program sees the end of its input.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line of stdout, waiting at most `within`.
    fn line(&self, within: Duration) -> String {
        match self.stdout.recv_timeout(within) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no output within {within:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: stdout closed; stderr:\n{}", self.name, self.stderr())
            }
        }
    }

    /// Lines of stdout up to and including the first for which `last` holds.
    fn lines_until(&self, within: Duration, last: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.line(left);
            let done = last(&line);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Every remaining line of stdout, until the program closes it.
    fn rest(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: stdout still open after {within:?}", self.name)
                }
            }
        }
    }

    /// Waits at most `within` for the program to exit.
    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: still running after {within:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started peer and its id.
struct Peer {
    id: Id,
    program: Program,
}

impl Peer {
    /// Looks up `key`; returns the responsible id and the hop lines.
    fn lookup(&mut self, key: Id) -> (Id, Vec<String>) {
        self.program.send(&format!("lookup {key}"));
        let mut lines = self
            .program
            .lines_until(REPLY, |l| l.starts_with("responsible:"));
        let last = lines.pop().unwrap();
        let id = last
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("bad line {last:?}"));
        (id, lines)
    }

    /// Sends `exit`; checks that the peer says `left` and exits with status 0.
    fn exit(mut self) {
        self.program.send("exit");
        self.check_left();
    }

    /// Closes stdin; checks that the peer says `left` and exits with status 0.
    fn end_input(mut self) {
        self.program.close_stdin();
        self.check_left();
    }

    fn check_left(mut self) {
        assert_eq!(self.program.line(STARTUP), "left", "{}", self.program.name);
        let status = self.program.wait(STARTUP);
        assert!(
            status.success(),
            "{} exited with {status}",
            self.program.name
        );
    }
}

/// The ids discovery lists, checking its `<n> nodes` line.
fn list_nodes(discovery: &mut Program) -> Vec<Id> {
    discovery.send("list-nodes");
    let mut lines = discovery.lines_until(REPLY, |l| l.ends_with(" nodes"));
    let count = lines.pop().unwrap();
    assert_eq!(count, format!("{} nodes", lines.len()));
    lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn sorted(mut ids: Vec<Id>) -> Vec<Id> {
    ids.sort();
    ids
}

#[test]
fn help_prints_usage_and_bad_flags_are_refused() {
    let paths = programs();
    for path in &paths {
        let mut help = Program::start(path, &["--help"]);
        let out = help.rest(REPLY).join("\n");
        assert!(help.wait(REPLY).success(), "{} --help fails", help.name);
        assert!(out.starts_with("Usage:"), "{}: {out}", help.name);

        let mut bad = Program::start(path, &["--no-such-flag"]);
        assert_eq!(bad.wait(REPLY).code(), Some(2), "{}", bad.name);
        assert!(wait_until(REPLY, || bad.stderr().contains("unknown flag")));
    }
}

#[test]
fn discovery_and_eight_peers_as_processes() {
    let [discovery_path, peer_path, _] = programs();
    let mut discovery = Program::start(&discovery_path, &["--port", "0"]);
    let first = discovery.line(STARTUP);
    let addr = first
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();

    let ids = random_ids(&mut Rng::seeded(0x9e6d), 8);
    let mut peers = Vec::new();
    for &id in &ids {
        let id_arg = id.to_string();
        let args = ["--discovery", &addr, "--port", "0", "--id", &id_arg];
        let program = Program::start(&peer_path, &args);
        let line = program.line(STARTUP);
        assert!(
            line.starts_with(&format!("peer {id} listening on 127.0.0.1:")),
            "{line:?}"
        );
        peers.push(Peer { id, program });
    }
    assert_eq!(list_nodes(&mut discovery), sorted(ids.clone()));

    // Lookups from each peer end at the node the oracle names, starting at that peer.
    let mut rng = Rng::seeded(7);
    let mut keys = vec![key_of(b"hello.txt"), key_of(b"notes.md")];
    keys.extend(random_ids(&mut rng, 6));
    for (i, &key) in keys.iter().enumerate() {
        let peer = &mut peers[i % ids.len()];
        let (responsible, hops) = peer.lookup(key);
        assert!(
            hops[0].starts_with(&format!("hop 0: {} ", peer.id)),
            "{hops:?}"
        );
        assert_eq!(responsible, oracle_responsible(key, &ids), "key {key}");
    }

    // Bad input is reported on stderr and the peer carries on.
    let peer = &mut peers[0].program;
    peer.send("lookup not-hex");
    peer.send("frobnicate");
    peer.send("id");
    assert!(peer.line(REPLY).starts_with(&ids[0].to_string()));
    assert!(wait_until(REPLY, || {
        let err = peer.stderr();
        err.contains("invalid identifier") && err.contains("unknown command")
    }));

    // One peer leaves: discovery lists the others, and lookups route around it.
    let gone = peers.remove(3);
    let gone_id = gone.id;
    gone.exit();
    let live: Vec<Id> = ids.iter().copied().filter(|&i| i != gone_id).collect();
    assert_eq!(list_nodes(&mut discovery), sorted(live.clone()));
    for (i, &key) in keys.iter().chain([&gone_id]).enumerate() {
        let (responsible, _) = peers[i % live.len()].lookup(key);
        assert_eq!(responsible, oracle_responsible(key, &live), "key {key}");
    }

    // The others leave one by one, the last at the end of its input.
    let last = peers.pop().unwrap();
    for peer in peers {
        peer.exit();
    }
    last.end_input();
    assert!(list_nodes(&mut discovery).is_empty());
    // The end of its input stops discovery.
    discovery.close_stdin();
    assert!(discovery.wait(REPLY).success());
}
