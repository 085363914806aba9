//! The C and C++ programs in `examples/c` and `examples/cpp`, compiled with warnings as errors
//! against `include/pastry.h`, linked both statically (`libpastry.a`) and dynamically
//! (`libpastry.so`), and run on loopback with a time limit:
//!
//! - `network.c` and `network.cpp` run a whole network in-process and check it;
//! - `null_checks.c` calls every function of the header with NULL for each pointer argument
//!   (so linking it also shows that both libraries export every declared function);
//! - `store_data.c` stores, retrieves and deletes files on a network this test starts, with
//!   the network's cluster key read from a file this test writes.
//!
//! `cargo test` does not build `libpastry.a` or `libpastry.so` for integration tests, so the
//! first test to need them runs `cargo build --lib` (the cargo running the tests) into a
//! target directory of its own under `CARGO_TARGET_TMPDIR`, once per run. It needs a C
//! compiler `cc` and a C++ compiler `c++` on `PATH`; without them the tests fail.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use pastry::{key_of, responsible, ClusterKey, Discovery, Id, Node, NodeConfig, Rng};

/// How long a program may run. The network programs take about 12 s, 10 of them waiting for
/// a client to give up on an unreachable discovery node.
const RUN_LIMIT: Duration = Duration::from_secs(60);

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"];
const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"];

/// How a program is linked to the library.
#[derive(Clone, Copy, Debug)]
enum Link {
    /// `libpastry.a`, and the system libraries Rust's standard library needs.
    Static,
    /// `libpastry.so`, found at run time through an rpath.
    Dynamic,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Link::Static => "static",
            Link::Dynamic => "dynamic",
        })
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where this test puts what it compiles and the files it writes.
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-programs");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// The directory holding `libpastry.a` and `libpastry.so`, freshly built: the first call
/// builds them, the others wait for it and share its result.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(build_library) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `cargo build --lib` into a target directory of its own, so as not to wait for the
/// lock the outer cargo may hold on `target/`.
fn build_library() -> Result<PathBuf, String> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-abi");
    let started = Instant::now();
    let output = Command::new(env!("CARGO"))
        .args(["build", "--lib", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", env!("CARGO")))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build --lib failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let dir = target.join("debug");
    for lib in ["libpastry.a", "libpastry.so"] {
        if !dir.join(lib).is_file() {
            return Err(format!(
                "cargo build --lib made no {}",
                dir.join(lib).display()
            ));
        }
    }
    eprintln!("built the library in {:.1?}", started.elapsed());
    Ok(dir)
}

/// Runs a compiler command; fails with its diagnostics, or clearly if it is missing.
fn run_compiler(mut command: Command, what: &str) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{program}` to compile {what}: {e}. These tests need a C compiler \
             `cc` and a C++ compiler `c++` on PATH (gcc and g++, or clang and clang++)"
        )
    });
    assert!(
        output.status.success(),
        "{program} failed to compile {what} ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The compiler and flags for a source file: C11 or C++17, warnings as errors.
fn compiler_for(source: &Path) -> Command {
    let cxx = source.extension() == Some(OsStr::new("cpp"));
    let mut command = Command::new(if cxx { "c++" } else { "cc" });
    command
        .args(if cxx { CXX_FLAGS } else { C_FLAGS })
        .arg("-I")
        .arg(root().join("include"));
    command
}

/// Compiles and links `examples/<source>` (such as `c/network.c`); returns the program.
fn compile(source: &str, link: Link) -> PathBuf {
    let lib = lib_dir();
    let path = root().join("examples").join(source);
    let file = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('.', "-");
    let out = scratch().join(format!("{file}-{link}"));
    let mut command = compiler_for(&path);
    command.arg(&path).arg("-o").arg(&out);
    match link {
        Link::Static => command
            .arg(lib.join("libpastry.a"))
            .args(["-lpthread", "-ldl", "-lm"]),
        Link::Dynamic => command
            .arg(format!("-L{}", lib.display()))
            .arg("-lpastry")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            // An RPATH, not a RUNPATH: it wins over the LD_LIBRARY_PATH cargo sets for tests,
            // which can lead to an older libpastry.so of the outer build.
            .arg("-Wl,--disable-new-dtags"),
    };
    run_compiler(command, &format!("{source} ({link})"));
    out
}

/// What a program did.
struct Run {
    name: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Everything it printed, to show when a check fails.
    fn transcript(&self) -> String {
        format!(
            "{} ({}):\n--- stdout\n{}--- stderr\n{}",
            self.name, self.status, self.stdout, self.stderr
        )
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts that it exited 0 and that its last line of stdout starts with `last`.
    fn assert_success(&self, last: &str) {
        assert!(self.status.success(), "{}", self.transcript());
        let line = self.stdout.lines().last().unwrap_or_default();
        assert!(line.starts_with(last), "{}", self.transcript());
    }
}

/// Reads all of a pipe on a thread, so that a chatty program never blocks on it.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    let mut pipe = pipe.expect("a piped stream");
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A program started by [`start`]. Dropping it kills the process, so a failing test leaves
/// none behind.
struct Running {
    name: String,
    child: Child,
    started: Instant,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: Option<thread::JoinHandle<String>>,
}

/// Starts `program` with `args`, its output read by threads.
fn start<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Running {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Running {
        name: program.file_name().unwrap().to_string_lossy().into_owned(),
        stdout: Some(drain(child.stdout.take())),
        stderr: Some(drain(child.stderr.take())),
        child,
        started,
    }
}

impl Running {
    /// Waits for the program to exit; kills it and fails if it runs longer than
    /// [`RUN_LIMIT`].
    fn finish(&mut self) -> Run {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if self.started.elapsed() < RUN_LIMIT => {
                    thread::sleep(Duration::from_millis(20))
                }
                waited => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{}: {}; killed. stdout:\n{}\nstderr:\n{}",
                        self.name,
                        match waited {
                            Err(e) => format!("cannot wait for it: {e}"),
                            Ok(_) => format!("still running after {RUN_LIMIT:?}"),
                        },
                        self.stdout.take().unwrap().join().unwrap_or_default(),
                        self.stderr.take().unwrap().join().unwrap_or_default()
                    );
                }
            }
        };
        eprintln!("{} ran in {:.1?}", self.name, self.started.elapsed());
        Run {
            name: self.name.clone(),
            status,
            stdout: self.stdout.take().unwrap().join().expect("stdout reader"),
            stderr: self.stderr.take().unwrap().join().expect("stderr reader"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `program` with `args` to its end.
fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Run {
    start(program, args).finish()
}

/// Compiles `source` linked statically and dynamically, runs both at once, and checks that
/// each exits 0 with a last line starting with `last`.
fn run_both_ways(source: &str, last: &str) {
    let programs = [Link::Static, Link::Dynamic].map(|link| compile(source, link));
    let mut running = programs.map(|program| start(&program, &[] as &[&str]));
    for program in &mut running {
        program.finish().assert_success(last);
    }
}

#[test]
fn the_header_compiles_alone_as_c11_and_as_cpp17() {
    for (file, what) in [("header.c", "C11"), ("header.cpp", "C++17")] {
        let source = scratch().join(file);
        std::fs::write(&source, "#include \"pastry.h\"\n").expect("write the source");
        let mut command = compiler_for(&source);
        command
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(scratch().join(format!("{file}.o")));
        run_compiler(command, &format!("include/pastry.h alone as {what}"));
    }
}

#[test]
fn network_c() {
    run_both_ways("c/network.c", "network: all checks passed");
}

#[test]
fn network_cpp() {
    run_both_ways("cpp/network.cpp", "network: all checks passed");
}

#[test]
fn null_checks_c() {
    run_both_ways("c/null_checks.c", "null_checks: all ");
}

#[test]
fn store_data_c_linked_statically() {
    store_data(Link::Static);
}

#[test]
fn store_data_c_linked_dynamically() {
    store_data(Link::Dynamic);
}

/// Pseudo-random bytes.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng::seeded(seed);
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// This test process's cluster key, made once: every network a test starts holds it.
fn key() -> &'static ClusterKey {
    static KEY: OnceLock<ClusterKey> = OnceLock::new();
    KEY.get_or_init(|| ClusterKey::generate().expect("random key"))
}

/// Writes [`key`] to `dir/cluster.key` as `ClusterKey::create_file` writes a key (one line of
/// 64 hex digits, mode 0600), for a C program to read with `pastry_security_from_key_file`;
/// returns the path. `create_file` itself would make a new key, which the network here does
/// not hold.
fn write_key_file(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.key");
    key().save(&path).expect("write the key file");
    path
}

/// A discovery node and nodes with `ids` joined through it, in this process.
fn network(ids: &[u16]) -> (Discovery, Vec<Node>) {
    let discovery =
        Discovery::start("127.0.0.1:0".parse().unwrap(), key()).expect("discovery starts");
    let nodes = ids
        .iter()
        .map(|&id| {
            let node = Node::start(NodeConfig {
                id: Some(Id(id)),
                ..NodeConfig::new(key())
            })
            .expect("node starts");
            node.join_discovery(discovery.local_addr())
                .expect("node joins");
            node
        })
        .collect();
    (discovery, nodes)
}

/// Stores two files with the C StoreData program on a network of four nodes started here,
/// retrieves them into new files, deletes one and fails to retrieve it.
fn store_data(link: Link) {
    let program = compile("c/store_data.c", link);

    let (discovery, nodes) = network(&[0x1234, 0x5678, 0x9abc, 0xdef0]);
    let address = discovery.local_addr().to_string();
    let holder_of = |name: &str| {
        let id = responsible(key_of(name.as_bytes()), nodes.iter().map(|n| n.id())).unwrap();
        let node = nodes.iter().find(|n| n.id() == id).unwrap();
        format!("{} {}", node.id(), node.info().addr)
    };

    let dir = scratch().join(format!("store_data-{link}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).expect("create the test directory");
    let key_file = write_key_file(&dir);
    // A small text and more than one chunk of bytes.
    let files = [
        ("notes.txt", b"Pastry, from C.\n".to_vec()),
        ("blob.bin", bytes(7, pastry::CHUNK_SIZE + 12_345)),
    ];
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).expect("write a file");
    }

    // Store both.
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new(&address),
        key_file.as_os_str(),
        OsStr::new("store"),
    ];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let stored = run(&program, &args);
    assert!(stored.status.success(), "{}", stored.transcript());
    let lines = stored.lines();
    for (name, _) in &files {
        let key_line = format!("{name}: key {}", key_of(name.as_bytes()));
        let at = lines
            .iter()
            .position(|l| *l == key_line)
            .unwrap_or_else(|| panic!("no line {key_line:?}; {}", stored.transcript()));
        let holder = lines[at + 1..]
            .iter()
            .find(|l| !l.starts_with("hop "))
            .unwrap_or_else(|| panic!("no holder for {name}; {}", stored.transcript()));
        assert_eq!(
            *holder,
            format!("stored on {}", holder_of(name)),
            "{}",
            stored.transcript()
        );
    }

    // Retrieve both into new files.
    for (name, data) in &files {
        let copy = dir.join("out").join(name);
        let retrieved = run(
            &program,
            &[
                OsStr::new(&address),
                key_file.as_os_str(),
                OsStr::new("retrieve"),
                OsStr::new(name),
                copy.as_os_str(),
            ],
        );
        retrieved.assert_success(&format!(
            "retrieved from {} into {}",
            holder_of(name),
            copy.display()
        ));
        let got = std::fs::read(&copy).expect("the retrieved file exists");
        assert!(&got == data, "{name}: the retrieved bytes differ");
    }

    // Delete one; retrieving it then fails, with the library's message.
    let deleted = run(
        &program,
        &[
            OsStr::new(&address),
            key_file.as_os_str(),
            OsStr::new("delete"),
            OsStr::new("notes.txt"),
        ],
    );
    deleted.assert_success(&format!("deleted on {} (existed)", holder_of("notes.txt")));
    let missing = dir.join("out").join("missing.txt");
    let failed = run(
        &program,
        &[
            OsStr::new(&address),
            key_file.as_os_str(),
            OsStr::new("retrieve"),
            OsStr::new("notes.txt"),
            missing.as_os_str(),
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", failed.transcript());
    assert!(
        failed
            .stderr
            .starts_with("error: notes.txt: no object with this name: "),
        "{}",
        failed.transcript()
    );
    assert!(!missing.exists(), "a failed retrieve left a file");

    // A usage error: no command.
    let usage = run(&program, &[OsStr::new(&address), key_file.as_os_str()]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.transcript());
    assert!(
        usage.stderr.starts_with("Usage: "),
        "{}",
        usage.transcript()
    );

    std::fs::remove_dir_all(&dir).expect("remove the test directory");
}

/// A C program that stores, retrieves and deletes from its main thread, under valgrind's
/// leak checker: the library leaves nothing definitely or possibly lost behind (it once left
/// 48 bytes of a thread's local state it started from the caller's thread).
#[test]
fn store_data_c_under_valgrind_loses_no_memory() {
    let program = compile("c/store_data.c", Link::Dynamic);
    let (discovery, nodes) = network(&[0x1111, 0x8888, 0xcccc]);
    let address = discovery.local_addr().to_string();
    let dir = scratch().join("valgrind");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let key_file = write_key_file(&dir);
    let file = dir.join("checked.txt");
    std::fs::write(&file, b"no leaks, please\n").expect("write a file");
    let copy = dir.join("copy.txt");
    let suppressions = format!(
        "--suppressions={}/tests/valgrind.supp",
        env!("CARGO_MANIFEST_DIR")
    );
    for args in [
        vec![OsStr::new("store"), file.as_os_str()],
        vec![
            OsStr::new("retrieve"),
            OsStr::new("checked.txt"),
            copy.as_os_str(),
        ],
        vec![OsStr::new("delete"), OsStr::new("checked.txt")],
    ] {
        let mut full: Vec<&OsStr> = vec![
            OsStr::new("--leak-check=full"),
            OsStr::new(&suppressions),
            OsStr::new("--errors-for-leak-kinds=definite,possible"),
            OsStr::new("--error-exitcode=99"),
            program.as_os_str(),
            OsStr::new(&address),
            key_file.as_os_str(),
        ];
        full.extend(args);
        let checked = run(Path::new("valgrind"), &full);
        assert!(checked.status.success(), "{}", checked.transcript());
    }
    assert_eq!(std::fs::read(&copy).unwrap(), b"no leaks, please\n");
    drop(nodes);
}
