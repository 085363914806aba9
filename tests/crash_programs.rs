//! Peers that crash, as processes: twelve `peer` programs hold 200 files stored by one
//! `store_data` run; two neighbours on the ring are killed with SIGKILL. The others must
//! notice, tell discovery, re-replicate the lost copies onto the best-placed live peers, and
//! serve every file back byte for byte.
//!
//! The programs are the example binaries cargo puts in `target/<profile>/examples/`: plain
//! `cargo test` builds them; `cargo test --test crash_programs` alone does not (run
//! `cargo build --examples` first). The peers log at `pastry=info` to stderr, shown when the
//! test fails; set `RUST_LOG` (say `pastry=debug`) to change that.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{random_ids, wait_until};
use pastry::{key_of, Id, Rng};

/// How long a program may take to start, or a peer to join.
const STARTUP: Duration = Duration::from_secs(20);
/// How long a program may take to answer a command or to exit.
const REPLY: Duration = Duration::from_secs(10);
/// How long one `store_data` run over all the files may take.
const ALL_FILES: Duration = Duration::from_secs(120);
/// How long the overlay may take to notice the crashes and repair itself.
const REPAIR: Duration = Duration::from_secs(30);

const PEERS: usize = 12;
const FILES: usize = 200;
/// Copies kept of each object.
const REPLICAS: usize = 3;

/// The paths of the programs: discovery, peer and store_data.
fn programs() -> [PathBuf; 3] {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/crash_programs-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps")
        .join("examples");
    let path = |name: &str| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let paths = [path("discovery"), path("peer"), path("store_data")];
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
    /// All of stderr so far, read by a thread; shown when the test fails.
    stderr: Arc<Mutex<String>>,
}

impl Program {
    fn start(path: &Path, args: &[&str]) -> Program {
        let name = format!(
            "{} {}",
            path.file_stem().unwrap().to_string_lossy(),
            args.join(" ")
        );
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "pastry=info".to_string());
        let mut child = Command::new(path)
            .args(args)
            .env("RUST_LOG", log)
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
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: stdout still open after {within:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
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

    /// Runs to its end with no input: its stdout and exit status.
    fn run_to_end(mut self, within: Duration) -> (Vec<String>, ExitStatus, Program) {
        self.close_stdin();
        let stdout = self.rest(within);
        let status = self.wait(REPLY);
        (stdout, status, self)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the system's temporary directory, unique to this run; removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("pastry-crash-{}-{nanos:x}", std::process::id()));
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

/// A started `peer` program and its id.
struct Peer {
    id: Id,
    program: Program,
}

impl Peer {
    fn start(path: &Path, discovery: &str, id: Id, data_dir: &Path) -> Peer {
        let id_arg = id.to_string();
        let args = [
            "--discovery",
            discovery,
            "--port",
            "0",
            "--id",
            &id_arg,
            "--data-dir",
            arg(data_dir),
        ];
        let program = Program::start(path, &args);
        let line = program.line(STARTUP);
        assert!(
            line.starts_with(&format!("peer {id} listening on 127.0.0.1:")),
            "{}: {line:?}",
            program.name
        );
        Peer { id, program }
    }

    /// The names of the objects it holds, with their sizes, checking its `<n> objects` line.
    fn list_files(&mut self) -> Vec<(String, u64)> {
        self.program.send("list-files");
        let mut lines = self.program.lines_until(REPLY, |l| l.ends_with(" objects"));
        let count = lines.pop().unwrap();
        assert_eq!(count, format!("{} objects", lines.len()), "{}", self.id);
        lines
            .iter()
            .map(|l| {
                // KEY SIZE NAME
                let mut words = l.splitn(3, ' ');
                let (_key, size, name) = (words.next(), words.next(), words.next());
                match (size.and_then(|s| s.parse().ok()), name) {
                    (Some(size), Some(name)) => (name.to_string(), size),
                    _ => panic!("{}: bad list-files line {l:?}", self.id),
                }
            })
            .collect()
    }
}

/// The last lines of every peer's stderr, for a failure message.
fn logs(peers: &[Peer]) -> String {
    let mut text = String::new();
    for peer in peers {
        let err = peer.program.stderr();
        let lines: Vec<&str> = err.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        text.push_str(&format!(
            "--- peer {} stderr (last {}):\n",
            peer.id,
            tail.len()
        ));
        for line in tail {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
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

/// The oracle: the `k` live ids best placed for `key` (the nodes that keep its copies), best
/// first: by ring distance to the key, ties to the larger id.
fn best_placed(key: Id, live: &[Id], k: usize) -> Vec<Id> {
    let distance = |id: Id| {
        let cw = id.0.wrapping_sub(key.0);
        cw.min(key.0.wrapping_sub(id.0))
    };
    let mut ids = live.to_vec();
    ids.sort_by(|a, b| distance(*a).cmp(&distance(*b)).then(b.cmp(a)));
    ids.truncate(k);
    ids
}

/// The object name and holder of each report in `store_data`'s output: a `NAME: key KEY`
/// line, `hop I: ID ADDR` lines, then a line starting with `verb ID ADDR`.
fn holders(lines: &[String], verb: &str) -> Vec<(String, Id)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix(verb) {
            let holder = rest.split_whitespace().next().and_then(|w| w.parse().ok());
            match (name.take(), holder) {
                (Some(name), Some(holder)) => out.push((name, holder)),
                _ => panic!("unexpected {line:?} in {lines:#?}"),
            }
        } else if let Some((n, _key)) = line.rsplit_once(": key ") {
            name = Some(n.to_string());
        } else if !line.starts_with("hop ") {
            panic!("unexpected {line:?} in {lines:#?}");
        }
    }
    out
}

/// Retrieves every file with one interactive `store_data` session into `output` and checks
/// each against its original and its holder against the oracle over `live`.
fn retrieve_all(
    store_data: &Path,
    discovery: &str,
    files: &[(String, Vec<u8>)],
    output: &Path,
    live: &[Id],
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(output);
    std::fs::create_dir_all(output).unwrap();
    let mut session = Program::start(store_data, &["--discovery", discovery]);
    for (name, _) in files {
        session.send(&format!("retrieve {name} {}", arg(&output.join(name))));
    }
    session.send("exit");
    let (stdout, status, session) = session.run_to_end(ALL_FILES);
    if !status.success() {
        let err = session.stderr();
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        return Err(format!(
            "store_data exited with {status}; {} errors:\n{}",
            errors.len(),
            errors.join("\n")
        ));
    }
    let retrieved = holders(&stdout, "retrieved from ");
    if retrieved.len() != files.len() {
        return Err(format!("{} files retrieved", retrieved.len()));
    }
    for ((name, bytes), (reported, holder)) in files.iter().zip(&retrieved) {
        assert_eq!(reported, name, "retrieval reports out of order");
        let best = best_placed(key_of(name.as_bytes()), live, 1)[0];
        if *holder != best {
            return Err(format!("{name} retrieved from {holder}, not {best}"));
        }
        let copy = std::fs::read(output.join(name)).map_err(|e| format!("{name}: {e}"))?;
        if copy != *bytes {
            return Err(format!("{name} differs from the original"));
        }
    }
    Ok(())
}

/// Checks that every file is held by exactly its `REPLICAS` best-placed peers, with its size;
/// returns the first few discrepancies.
fn check_replicas(peers: &mut [Peer], files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let live: Vec<Id> = peers.iter().map(|p| p.id).collect();
    let mut held: BTreeMap<String, Vec<Id>> = BTreeMap::new();
    for peer in peers.iter_mut() {
        for (name, size) in peer.list_files() {
            let expected = files.iter().find(|(n, _)| *n == name).map(|(_, b)| b.len());
            if expected != Some(size as usize) {
                return Err(format!("{} holds {name} with {size} bytes", peer.id));
            }
            held.entry(name).or_default().push(peer.id);
        }
    }
    let wrong: Vec<String> = files
        .iter()
        .filter_map(|(name, _)| {
            let want = sorted(best_placed(key_of(name.as_bytes()), &live, REPLICAS));
            let got = sorted(held.get(name).cloned().unwrap_or_default());
            (got != want).then(|| format!("{name}: held by {got:?}, want {want:?}"))
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        let first: Vec<&str> = wrong.iter().take(10).map(String::as_str).collect();
        Err(format!(
            "{} files misplaced, such as:\n{}",
            wrong.len(),
            first.join("\n")
        ))
    }
}

/// Polls `check` until it passes or `limit` passes; then, its last complaint.
fn poll(limit: Duration, mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    let passed = wait_until(limit, || match check() {
        Ok(()) => true,
        Err(why) => {
            last = why;
            thread::sleep(Duration::from_millis(200));
            false
        }
    });
    if passed {
        Ok(())
    } else {
        Err(last)
    }
}

#[test]
fn store_data_survives_two_peers_killed_with_sigkill() {
    let started = Instant::now();
    // Declared first, dropped last: every program is killed before its directory goes.
    let scratch = ScratchDir::new();
    let [discovery_path, peer_path, store_path] = programs();
    let mut discovery = Program::start(&discovery_path, &["--port", "0"]);
    let first = discovery.line(STARTUP);
    let addr = first
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();

    let mut rng = Rng::seeded(0xc4a5);
    let ids = random_ids(&mut rng, PEERS);
    let mut peers: Vec<Peer> = ids
        .iter()
        .map(|&id| Peer::start(&peer_path, &addr, id, &scratch.join(&format!("peer-{id}"))))
        .collect();
    assert_eq!(list_nodes(&mut discovery), sorted(ids.clone()));

    // 200 files of 1 to 4 KiB of pseudo-random bytes, stored in one run.
    let input = scratch.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|i| {
            let len = 1024 + rng.below(3 * 1024 + 1);
            let bytes = (0..len).map(|_| rng.next_u64() as u8).collect();
            (format!("file-{i:03}.bin"), bytes)
        })
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| input.join(name)).collect();
    for ((_, bytes), path) in files.iter().zip(&paths) {
        std::fs::write(path, bytes).unwrap();
    }
    let mut args = vec!["--discovery", addr.as_str(), "store"];
    args.extend(paths.iter().map(|p| arg(p)));
    let (stdout, status, store) = Program::start(&store_path, &args).run_to_end(ALL_FILES);
    assert!(
        status.success(),
        "store exited with {status}; stderr:\n{}",
        store.stderr()
    );
    let stored = holders(&stdout, "stored on ");
    assert_eq!(stored.len(), FILES);
    for ((name, _), (reported, holder)) in files.iter().zip(&stored) {
        assert_eq!(reported, name);
        let best = best_placed(key_of(name.as_bytes()), &ids, 1)[0];
        assert_eq!(*holder, best, "holder of {name}");
    }
    if let Err(why) = poll(REPAIR, || check_replicas(&mut peers, &files)) {
        panic!("before the kill: {why}\n{}", logs(&peers));
    }

    // Two neighbours on the ring die at once: they held copies of the same objects.
    let ring = sorted(ids.clone());
    let k = rng.below(ring.len());
    let victims = [ring[k], ring[(k + 1) % ring.len()]];
    let shared = files
        .iter()
        .filter(|(name, _)| {
            let set = best_placed(key_of(name.as_bytes()), &ids, REPLICAS);
            victims.iter().all(|v| set.contains(v))
        })
        .count();
    let mut killed: Vec<Peer> = Vec::new();
    for victim in victims {
        let i = peers.iter().position(|p| p.id == victim).unwrap();
        let mut peer = peers.remove(i);
        peer.program.child.kill().expect("SIGKILL");
        killed.push(peer);
    }
    for peer in &mut killed {
        let status = peer.program.wait(REPLY);
        assert!(!status.success(), "{} exited with {status}", peer.id);
    }
    eprintln!("killed {victims:?}, which both held copies of {shared} files");
    let live: Vec<Id> = peers.iter().map(|p| p.id).collect();

    // The survivors report the dead to discovery.
    let killed_at = Instant::now();
    let mut listed = Vec::new();
    let reported = wait_until(REPAIR, || {
        listed = list_nodes(&mut discovery);
        listed == sorted(live.clone())
    });
    assert!(
        reported,
        "discovery still lists {listed:?}, want {:?}\n{}",
        sorted(live.clone()),
        logs(&peers)
    );
    eprintln!(
        "discovery lists the 10 live peers {:?} after the kill",
        killed_at.elapsed()
    );

    // Every file comes back byte for byte, from the best-placed live peer.
    let output = scratch.join("out");
    let mut attempts = 0;
    let deadline = Instant::now() + REPAIR;
    loop {
        attempts += 1;
        match retrieve_all(&store_path, &addr, &files, &output, &live) {
            Ok(()) => break,
            Err(why) if Instant::now() < deadline => {
                eprintln!("retrieval attempt {attempts}: {why}");
                thread::sleep(Duration::from_millis(500));
            }
            Err(why) => panic!(
                "retrieval after {attempts} attempts: {why}\n{}",
                logs(&peers)
            ),
        }
    }
    eprintln!(
        "all {FILES} files retrieved in {attempts} attempt(s), {:?} after the kill",
        killed_at.elapsed()
    );

    // Each is back on exactly its three best-placed live peers.
    if let Err(why) = poll(REPAIR, || check_replicas(&mut peers, &files)) {
        panic!(
            "replicas not repaired after {REPAIR:?}: {why}\n{}",
            logs(&peers)
        );
    }
    eprintln!(
        "replicas repaired {:?} after the kill; test took {:?}",
        killed_at.elapsed(),
        started.elapsed()
    );

    drop(killed);
    drop(peers);
    drop(discovery);
    drop(scratch);
}
