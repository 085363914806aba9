//! Building the library and the C and C++ programs for the tests that run them
//! (`c_programs.rs`, `c_install.rs`), and running those programs with a time limit.
//!
//! `cargo test` does not build `libpastry.a` or `libpastry.so` for integration tests, so the
//! first test to need them runs `cargo build --lib` (the cargo running the tests) into a
//! target directory of its own under `CARGO_TARGET_TMPDIR`, once per test program. It needs
//! a C compiler `cc` and a C++ compiler `c++` on `PATH`; without them the tests fail.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long a program may run. The network programs take about 12 s, 10 of them waiting for
/// a client to give up on an unreachable discovery node.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

pub const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"];
pub const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"];
/// The sanitizers' flags: every finding is fatal, and frames are kept for its report.
pub const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
];

/// How a program is linked to the library.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    /// `libpastry.a`, and the system libraries Rust's standard library needs.
    Static,
    /// As `Static`, the program built with AddressSanitizer and UndefinedBehaviorSanitizer
    /// (any finding ends it with a failure).
    Sanitized,
    /// `libpastry.so`, found at run time through an rpath.
    Dynamic,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Link::Static => "static",
            Link::Sanitized => "sanitized",
            Link::Dynamic => "dynamic",
        })
    }
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where this test puts what it compiles and the files it writes.
pub fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-programs");
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// The directory holding `libpastry.a` and `libpastry.so`, freshly built: the first call
/// builds them, the others wait for it and share its result.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(build_library) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `cargo build --lib` into a target directory of its own, so as not to wait for the
/// lock the outer cargo may hold on `target/`.
pub fn build_library() -> Result<PathBuf, String> {
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
    // Programs record the SONAME, libpastry.so.MAJOR, which `make install` links to the
    // library; cargo makes no such link in its target directory.
    let soname = dir.join(concat!("libpastry.so.", env!("CARGO_PKG_VERSION_MAJOR")));
    let _ = std::fs::remove_file(&soname);
    std::os::unix::fs::symlink("libpastry.so", &soname)
        .map_err(|e| format!("cannot link {}: {e}", soname.display()))?;
    eprintln!("built the library in {:.1?}", started.elapsed());
    Ok(dir)
}

/// Runs a compiler command; fails with its diagnostics, or clearly if it is missing.
pub fn run_compiler(mut command: Command, what: &str) {
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
pub fn compiler_for(source: &Path) -> Command {
    let mut command = compiler(source);
    command.arg("-I").arg(root().join("include"));
    command
}

/// The compiler and flags for a source file, with no include directory.
pub fn compiler(source: &Path) -> Command {
    let cxx = source.extension() == Some(OsStr::new("cpp"));
    let mut command = Command::new(if cxx { "c++" } else { "cc" });
    command.args(if cxx { CXX_FLAGS } else { C_FLAGS });
    command
}

/// Compiles and links `examples/<source>` (such as `c/network.c`); returns the program.
pub fn compile(source: &str, link: Link) -> PathBuf {
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
        Link::Sanitized => {
            command
                .args(SANITIZE)
                .arg(lib.join("libpastry.a"))
                .args(["-lpthread", "-ldl", "-lm"])
        }
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
pub struct Run {
    pub name: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Everything it printed, to show when a check fails.
    pub fn transcript(&self) -> String {
        format!(
            "{} ({}):\n--- stdout\n{}--- stderr\n{}",
            self.name, self.status, self.stdout, self.stderr
        )
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts that it exited 0 and that its last line of stdout starts with `last`.
    pub fn assert_success(&self, last: &str) {
        assert!(self.status.success(), "{}", self.transcript());
        let line = self.stdout.lines().last().unwrap_or_default();
        assert!(line.starts_with(last), "{}", self.transcript());
    }
}

/// Reads all of a pipe on a thread, so that a chatty program never blocks on it.
pub fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    let mut pipe = pipe.expect("a piped stream");
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A program started by [`start`]. Dropping it kills the process, so a failing test leaves
/// none behind.
pub struct Running {
    name: String,
    child: Child,
    started: Instant,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: Option<thread::JoinHandle<String>>,
}

/// Starts `program` with `args`, its output read by threads.
pub fn start<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Running {
    let mut command = Command::new(program);
    command.args(args);
    start_command(command)
}

/// Starts a program's command, its output read by threads.
pub fn start_command(mut command: Command) -> Running {
    let program = PathBuf::from(command.get_program());
    let started = Instant::now();
    let mut child = command
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
    pub fn finish(&mut self) -> Run {
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
pub fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Run {
    start(program, args).finish()
}

/// Compiles `source` linked statically and dynamically, runs both at once, and checks that
/// each exits 0 with a last line starting with `last`.
pub fn run_both_ways(source: &str, last: &str) {
    let programs = [Link::Static, Link::Dynamic].map(|link| compile(source, link));
    let mut running = programs.map(|program| start(&program, &[] as &[&str]));
    for program in &mut running {
        program.finish().assert_success(last);
    }
}
