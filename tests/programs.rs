//! The example programs as separate processes: a discovery node and eight peers on loopback,
//! driven through their stdin and read through their stdout, and the StoreData program run
//! against them, checked against the oracle.
//!
//! The programs are the example binaries cargo puts in `target/<profile>/examples/`: plain
//! `cargo test` builds them; `cargo test --all-targets` and `cargo test --test programs` do not.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
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
fn programs() -> [PathBuf; 4] {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/programs-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps")
        .join("examples");
    let path = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let paths = [
        path("discovery"),
        path("peer"),
        path("demo"),
        path("store_data"),
    ];
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
    let [discovery_path, peer_path, _, _] = programs();
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

/// A directory under the system's temporary directory, unique to this run; removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("pastry-{label}-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    fn join(&self, part: &str) -> PathBuf {
        self.0.join(part)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `path` as an argument (the temporary directory has a UTF-8 path in every test set-up).
fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// What one run of a program to its end gave.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    program: Program,
}

/// Runs the program at `path` with `args` and no input to its end, within `within`.
fn run_to_end(path: &PathBuf, args: &[&str], within: Duration) -> Finished {
    let mut program = Program::start(path, args);
    program.close_stdin();
    let stdout = program.rest(within);
    let status = program.wait(within);
    Finished {
        status,
        stdout,
        program,
    }
}

/// One object as `store_data` reports it: `NAME: key KEY`, `hop I: ID ADDR` lines, then a
/// line about the holder, such as `stored on ID ADDR (N bytes)`.
#[derive(Debug)]
struct Report {
    name: String,
    key: Id,
    hops: Vec<Id>,
    holder: Id,
    /// The holder line after `<verb> ID ADDR `.
    tail: String,
}

/// Splits `store_data`'s output into reports; `verb` starts the holder lines (`stored on`).
fn reports(lines: &[String], verb: &str) -> Vec<Report> {
    let mut out = Vec::new();
    let mut lines = lines.iter();
    while let Some(first) = lines.next() {
        let (name, key) = first
            .rsplit_once(": key ")
            .unwrap_or_else(|| panic!("expected NAME: key KEY, got {first:?}"));
        let mut hops = Vec::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("no {verb} line for {name}"));
            if let Some(rest) = line.strip_prefix(&format!("{verb} ")) {
                let mut words = rest.splitn(3, ' ');
                let holder = words.next().unwrap().parse().unwrap();
                let _addr = words.next().unwrap();
                out.push(Report {
                    name: name.to_string(),
                    key: key.parse().unwrap(),
                    hops,
                    holder,
                    tail: words.next().unwrap_or("").to_string(),
                });
                break;
            }
            let hop = line
                .strip_prefix(&format!("hop {}: ", hops.len()))
                .unwrap_or_else(|| panic!("expected hop {}, got {line:?}", hops.len()));
            hops.push(hop.split(' ').next().unwrap().parse().unwrap());
        }
    }
    out
}

/// The objects a peer lists: (key, size, name), checking its `<n> objects` line.
fn list_files(peer: &mut Program) -> Vec<(Id, u64, String)> {
    peer.send("list-files");
    let mut lines = peer.lines_until(REPLY, |l| l.ends_with(" objects"));
    let count = lines.pop().unwrap();
    assert_eq!(count, format!("{} objects", lines.len()));
    lines
        .iter()
        .map(|l| {
            let mut words = l.splitn(3, ' ');
            let key = words.next().unwrap().parse().unwrap();
            let size = words.next().unwrap().parse().unwrap();
            (key, size, words.next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn store_data_stores_retrieves_and_deletes_files_on_eight_peers() {
    // Dropped last: every program is killed before its directory goes.
    let scratch = ScratchDir::new("programs");
    let [discovery_path, peer_path, _, store_path] = programs();
    let mut discovery = Program::start(&discovery_path, &["--port", "0"]);
    let first = discovery.line(STARTUP);
    let addr = first
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();

    let ids = random_ids(&mut Rng::seeded(0x570e), 8);
    let mut peers = Vec::new();
    let mut peer_addrs = Vec::new();
    for &id in &ids {
        let id_arg = id.to_string();
        let data_dir = scratch.join(&format!("peer-{id}"));
        let args = ["--discovery", &addr, "--id", &id_arg, "--data-dir"];
        let program = Program::start(&peer_path, &[&args[..], &[arg(&data_dir)]].concat());
        let line = program.line(STARTUP);
        let peer_addr = line
            .strip_prefix(&format!("peer {id} listening on "))
            .unwrap_or_else(|| panic!("{line:?}"));
        peer_addrs.push(peer_addr.to_string());
        peers.push(Peer { id, program });
    }
    assert_eq!(list_nodes(&mut discovery), sorted(ids.clone()));

    // The files: empty, a little text, and about 3 MiB of pseudo-random bytes.
    let input = scratch.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = Rng::seeded(0xf11e);
    let mut random = Vec::new();
    while random.len() < 3 * 1024 * 1024 + 1001 {
        random.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("hello.txt", b"hello from the programs test\n".to_vec()),
        ("random.bin", random),
    ];
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| input.join(name)).collect();
    for ((_, bytes), path) in files.iter().zip(&paths) {
        std::fs::write(path, bytes).unwrap();
    }
    let holder_of = |name: &str| oracle_responsible(key_of(name.as_bytes()), &ids);

    // Store all three in one run: each lands on the node the oracle names.
    let mut args = vec!["--discovery", &addr, "store"];
    args.extend(paths.iter().map(|p| arg(p)));
    let stored = run_to_end(&store_path, &args, STARTUP);
    assert!(
        stored.status.success(),
        "store exited with {}; stderr:\n{}",
        stored.status,
        stored.program.stderr()
    );
    let stored = reports(&stored.stdout, "stored on");
    assert_eq!(stored.len(), files.len(), "{stored:?}");
    for ((name, bytes), report) in files.iter().zip(&stored) {
        assert_eq!(report.name, *name);
        assert_eq!(report.key, key_of(name.as_bytes()), "{name}");
        assert_eq!(report.holder, holder_of(name), "holder of {name}");
        assert_eq!(report.hops.last(), Some(&report.holder), "{report:?}");
        assert!(report.hops.iter().all(|h| ids.contains(h)), "{report:?}");
        assert_eq!(report.tail, format!("({} bytes)", bytes.len()), "{name}");
    }

    // The holder of each lists it, with its size.
    for (name, bytes) in &files {
        let holder = holder_of(name);
        let peer = peers.iter_mut().find(|p| p.id == holder).unwrap();
        let listed = list_files(&mut peer.program);
        let entry = (
            key_of(name.as_bytes()),
            bytes.len() as u64,
            name.to_string(),
        );
        assert!(listed.contains(&entry), "{holder} lists {listed:?}");
    }

    // Each comes back byte for byte, through discovery and through a known peer.
    let output = scratch.join("out");
    std::fs::create_dir_all(&output).unwrap();
    for (i, (name, bytes)) in files.iter().enumerate() {
        let out = output.join(name);
        let entry = if i % 2 == 0 {
            ["--discovery", addr.as_str()]
        } else {
            ["--peer", peer_addrs[i].as_str()]
        };
        let args = [&entry[..], &["retrieve", name, arg(&out)]].concat();
        let retrieved = run_to_end(&store_path, &args, STARTUP);
        assert!(
            retrieved.status.success(),
            "retrieve {name} exited with {}; stderr:\n{}",
            retrieved.status,
            retrieved.program.stderr()
        );
        let report = &reports(&retrieved.stdout, "retrieved from")[0];
        assert_eq!(report.holder, holder_of(name), "{name}");
        assert_eq!(
            report.tail,
            format!("({} bytes) into {}", bytes.len(), out.display())
        );
        assert!(std::fs::read(&out).unwrap() == *bytes, "{name} differs");
    }

    // Delete one: the holder had it, lists it no more, and retrieving it fails (exit 1).
    let gone = "hello.txt";
    let deleted = run_to_end(&store_path, &["--discovery", &addr, "delete", gone], REPLY);
    assert!(deleted.status.success(), "{}", deleted.program.stderr());
    let report = &reports(&deleted.stdout, "deleted on")[0];
    assert_eq!(
        (report.holder, report.tail.as_str()),
        (holder_of(gone), "(existed)")
    );
    let peer = peers.iter_mut().find(|p| p.id == holder_of(gone)).unwrap();
    assert!(list_files(&mut peer.program)
        .iter()
        .all(|(_, _, n)| n != gone));
    let out = output.join("deleted-copy");
    let missing = run_to_end(
        &store_path,
        &["--discovery", &addr, "retrieve", gone, arg(&out)],
        REPLY,
    );
    assert_eq!(missing.status.code(), Some(1), "{:?}", missing.stdout);
    assert!(missing.stdout.is_empty(), "{:?}", missing.stdout);
    assert!(wait_until(REPLY, || missing
        .program
        .stderr()
        .contains("error: retrieve hello.txt: no object named")));
    assert!(!out.exists(), "a failed retrieval left {}", out.display());

    // Without OUTPUT, a name that is not a plain file name is refused as a usage error.
    let refused = run_to_end(
        &store_path,
        &["--discovery", &addr, "retrieve", "../x"],
        REPLY,
    );
    assert_eq!(refused.status.code(), Some(2));

    // Commands from stdin: the exit status says whether all of them succeeded.
    let mut session = Program::start(&store_path, &["--discovery", &addr]);
    let copy = output.join("again.bin");
    session.send(&format!("retrieve random.bin {}", arg(&copy)));
    let lines = session.lines_until(REPLY, |l| l.starts_with("retrieved from"));
    assert_eq!(
        reports(&lines, "retrieved from")[0].holder,
        holder_of("random.bin")
    );
    session.send("frobnicate");
    session.send("exit");
    assert_eq!(session.wait(REPLY).code(), Some(1));
    assert!(wait_until(REPLY, || session
        .stderr()
        .contains("unknown command")));
    assert!(std::fs::read(&copy).unwrap() == files[2].1);

    drop(peers);
    drop(discovery);
    drop(scratch);
}
