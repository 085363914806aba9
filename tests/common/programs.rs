//! Running the example programs as processes: finding them, driving them through stdin,
//! reading their stdout and stderr, and parsing what `discovery`, `peer` and `store_data` say.
//!
//! The programs are the example binaries cargo puts in `target/<profile>/examples/`: plain
//! `cargo test` builds them; `cargo test --test NAME` alone does not (run
//! `cargo build --examples` first). They log at `pastry=info` to stderr, shown when a test
//! fails; set `RUST_LOG` (say `pastry=debug`) to change that.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use pastry::Id;

/// How long a program may take to start, or a peer to join.
pub const STARTUP: Duration = Duration::from_secs(20);
/// How long a program may take to answer a command or to exit.
pub const REPLY: Duration = Duration::from_secs(10);

/// The paths of the example programs `names` (`discovery`, `peer`, `store_data`, `demo`),
/// checking that they are built.
pub fn programs<const N: usize>(names: [&str; N]) -> [PathBuf; N] {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps")
        .join("examples");
    names.map(|name| {
        let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "{} is not built: run plain `cargo test` (or `cargo build --examples` first)",
            path.display()
        );
        path
    })
}

/// A file holding this process's cluster key ([`super::key`]), as `discovery --new-key`
/// writes one, for the programs the tests start.
pub fn key_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        // In the build's own scratch directory: nothing removes a static's file at exit,
        // and one left in the system's temporary directory per test process piles up.
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("pastry-test-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        super::key().save(&path).expect("a key file");
        path
    })
}

/// A running program. Dropping it kills the process, so a failing test leaves none behind.
pub struct Program {
    /// The program's file name and arguments, for messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines of stdout, read by a thread; closed when stdout ends.
    stdout: Receiver<String>,
    /// All of stderr so far, read by a thread; shown when a test fails.
    stderr: Arc<Mutex<String>>,
}

/// What one run of a program to its end gave.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub program: Program,
}

impl Program {
    /// Starts the program at `path` as a member of the tests' cluster: `--key-file` with
    /// this process's key, then `args`.
    pub fn member(path: &Path, args: &[&str]) -> Program {
        let key = key_file().to_str().expect("a UTF-8 temporary path");
        let with_key: Vec<&str> = ["--key-file", key]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        Program::start(path, &with_key)
    }

    /// Starts the program at `path` with `args`, logging at `RUST_LOG` or else `pastry=info`.
    pub fn start(path: &Path, args: &[&str]) -> Program {
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

    /// All of stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Writes `line` to stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: write {line:?}: {e}", self.name));
    }

    /// Writes raw bytes to stdin (a line that is not UTF-8, say).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: write {bytes:?}: {e}", self.name));
    }

    /// Closes stdin: the program sees the end of its input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the process (SIGKILL on Unix) without waiting for it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()
    }

    /// The next line of stdout, waiting at most `within`.
    pub fn line(&self, within: Duration) -> String {
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
    pub fn lines_until(&self, within: Duration, last: impl Fn(&str) -> bool) -> Vec<String> {
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
    pub fn rest(&self, within: Duration) -> Vec<String> {
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
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
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

    /// Runs to its end with no more input: its stdout, which it must close within `within`,
    /// and its exit status, which must follow within `REPLY`.
    pub fn run_to_end(mut self, within: Duration) -> Finished {
        self.close_stdin();
        let stdout = self.rest(within);
        let status = self.wait(REPLY);
        Finished {
            status,
            stdout,
            program: self,
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `discovery` on a port the OS chooses; returns it and the address it listens on.
pub fn start_discovery(path: &Path) -> (Program, String) {
    let discovery = Program::member(path, &["--port", "0"]);
    let first = discovery.line(STARTUP);
    let addr = first
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (discovery, addr)
}

/// A directory under the system's temporary directory, unique to this run; removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `pastry-LABEL-PID-NANOS` in the temporary directory.
    pub fn new(label: &str) -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("pastry-{label}-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    pub fn join(&self, part: &str) -> PathBuf {
        self.0.join(part)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `path` as an argument (the temporary directory has a UTF-8 path in every test set-up).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A started `peer` program, its id and the address it listens on.
pub struct Peer {
    pub id: Id,
    pub addr: String,
    pub program: Program,
}

impl Peer {
    /// Starts the `peer` program at `path` with `id`, on a loopback port the OS chooses,
    /// joining through `discovery`, keeping its objects in `data_dir` if given; checks its
    /// `peer ID listening on 127.0.0.1:PORT` line.
    pub fn start(path: &Path, discovery: &str, id: Id, data_dir: Option<&Path>) -> Peer {
        let id_arg = id.to_string();
        let mut args = vec!["--discovery", discovery, "--port", "0", "--id", &id_arg];
        if let Some(dir) = data_dir {
            args.extend(["--data-dir", arg(dir)]);
        }
        let program = Program::member(path, &args);
        let line = program.line(STARTUP);
        let addr = line
            .strip_prefix(&format!("peer {id} listening on "))
            .filter(|addr| addr.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("{}: {line:?}", program.name))
            .to_string();
        Peer { id, addr, program }
    }

    /// Looks up `key`; returns the responsible id and the hop lines.
    pub fn lookup(&mut self, key: Id) -> (Id, Vec<String>) {
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

    /// The objects it holds: (key, size, name), checking its `<n> objects` line.
    pub fn list_files(&mut self) -> Vec<(Id, u64, String)> {
        self.program.send("list-files");
        let mut lines = self
            .program
            .lines_until(REPLY, |l| l.ends_with(" objects") || l == "1 object");
        let count = lines.pop().unwrap();
        assert_eq!(count, plural(lines.len(), "object"), "{}", self.id);
        lines
            .iter()
            .map(|l| {
                // KEY SIZE NAME
                let mut words = l.splitn(3, ' ');
                let (key, size, name) = (words.next(), words.next(), words.next());
                match (
                    key.and_then(|k| k.parse().ok()),
                    size.and_then(|s| s.parse().ok()),
                    name,
                ) {
                    (Some(key), Some(size), Some(name)) => (key, size, name.to_string()),
                    _ => panic!("{}: bad list-files line {l:?}", self.id),
                }
            })
            .collect()
    }

    /// Sends `exit`; checks that the peer says `left` and exits with status 0.
    pub fn exit(mut self) {
        self.program.send("exit");
        self.check_left();
    }

    /// Closes stdin; checks that the peer says `left` and exits with status 0.
    pub fn end_input(mut self) {
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

/// Starts a peer for each of `ids`, one after another, each joined before the next starts;
/// each keeps its objects in `peer-ID` under `data` if given.
pub fn start_peers(
    path: &Path,
    discovery: &str,
    ids: &[Id],
    data: Option<&ScratchDir>,
) -> Vec<Peer> {
    ids.iter()
        .map(|&id| {
            let dir = data.map(|scratch| scratch.join(&format!("peer-{id}")));
            Peer::start(path, discovery, id, dir.as_deref())
        })
        .collect()
}

/// The ids discovery lists, checking its `<n> nodes` line.
pub fn list_nodes(discovery: &mut Program) -> Vec<Id> {
    discovery.send("list-nodes");
    let mut lines = discovery.lines_until(REPLY, |l| l.ends_with(" nodes") || l == "1 node");
    let count = lines.pop().unwrap();
    assert_eq!(count, plural(lines.len(), "node"));
    lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// `1 node`, `2 nodes`: the programs' counts, written from the README.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn sorted(mut ids: Vec<Id>) -> Vec<Id> {
    ids.sort();
    ids
}

/// One object as `store_data` reports it: `NAME: key KEY`, `hop I: ID ADDR` lines, then a
/// line about the holder, such as `stored on ID ADDR (N bytes)`.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub key: Id,
    pub hops: Vec<Id>,
    pub holder: Id,
    /// The holder line after `<verb> ID ADDR `.
    pub tail: String,
}

/// Splits `store_data`'s output into reports; `verb` starts the holder lines (`stored on`).
pub fn reports(lines: &[String], verb: &str) -> Vec<Report> {
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
