//! What the example programs share: flag parsing, logging set-up and the command loop on
//! stdin. Each program includes it with `#[macro_use] mod common;` and uses the parts it
//! needs.
#![allow(dead_code)]

/// The usage lines of the security flags, for a program's help (a literal, for `concat!`).
#[allow(unused_macros)] // the demo and the simulator take no security flags
macro_rules! security_usage {
    () => {
        "  --key-file FILE  the cluster key, as `discovery --new-key FILE` wrote it
  --insecure       no key: no encryption, and anyone who can reach a port is a member"
    };
}

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Display;
use std::io::{self, BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process;
use std::str::FromStr;

use pastry::{ClusterKey, Security};

/// The command-line flags, read one at a time: `--flag VALUE` or `--flag=VALUE`; for a
/// program made with [`Args::with_words`], then the words after them.
///
/// `--help` (or `-h`) prints the usage and exits 0; a mistake prints it with the error to
/// stderr and exits 2.
pub struct Args {
    usage: &'static str,
    rest: std::vec::IntoIter<OsString>,
    /// The value written after `=` in the last flag, not yet taken.
    inline: Option<String>,
    /// For a program that takes words after its flags: those words, once reached.
    words: Option<Vec<OsString>>,
}

impl Args {
    /// The flags this program was started with; any other argument is a usage error.
    pub fn from_env(usage: &'static str) -> Args {
        Args {
            usage,
            rest: std::env::args_os().skip(1).collect::<Vec<_>>().into_iter(),
            inline: None,
            words: None,
        }
    }

    /// The flags this program was started with, then words: the first argument that is not a
    /// flag (or the one after `--`) and every argument after it, flag-like or not, taken as
    /// they are (file names need not be UTF-8). Read the flags with [`Args::next_flag`], then
    /// the words with [`Args::words`].
    pub fn with_words(usage: &'static str) -> Args {
        Args {
            words: Some(Vec::new()),
            ..Args::from_env(usage)
        }
    }

    /// The words after the flags (empty for a program without words, or when there are none).
    /// Call it once [`Args::next_flag`] has returned `None`.
    pub fn words(&mut self) -> Vec<OsString> {
        self.words.take().unwrap_or_default()
    }

    /// The next flag, or `None` when there are no more.
    pub fn next_flag(&mut self) -> Option<String> {
        if let Some(value) = self.inline.take() {
            self.fail(&format!("unexpected value {value:?}"));
        }
        let raw = self.rest.next()?;
        let takes_words = self.words.is_some();
        if takes_words && (raw == "--" || !raw.to_string_lossy().starts_with('-')) {
            // The words begin: keep them all, as they are.
            let words = self.words.get_or_insert_with(Vec::new);
            if raw != "--" {
                words.push(raw);
            }
            words.extend(self.rest.by_ref());
            return None;
        }
        let arg = raw
            .into_string()
            .unwrap_or_else(|raw| self.fail(&format!("unexpected argument {raw:?}")));
        if arg == "--help" || arg == "-h" {
            println!("{}", self.usage);
            process::exit(0);
        }
        if !arg.starts_with("--") {
            if takes_words {
                self.fail(&format!("unknown flag {arg}"));
            }
            self.fail(&format!("unexpected argument {arg:?}"));
        }
        match arg.split_once('=') {
            Some((flag, value)) => {
                self.inline = Some(value.to_string());
                Some(flag.to_string())
            }
            None => Some(arg),
        }
    }

    /// The value of `flag`, parsed with `FromStr`.
    pub fn value<T>(&mut self, flag: &str) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        self.value_with(flag, str::parse)
    }

    /// The value of `flag`, parsed with `parse`.
    pub fn value_with<T, E: Display>(
        &mut self,
        flag: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> T {
        let raw = match self.inline.take() {
            Some(inline) => inline,
            None => match self.rest.next().map(OsString::into_string) {
                Some(Ok(raw)) => raw,
                Some(Err(raw)) => self.fail(&format!("{flag} {raw:?}: not UTF-8")),
                None => self.fail(&format!("{flag} needs a value")),
            },
        };
        parse(&raw).unwrap_or_else(|e| self.fail(&format!("{flag} {raw}: {e}")))
    }

    /// Rejects a flag the program does not know.
    pub fn unknown(&self, flag: &str) -> ! {
        self.fail(&format!("unknown flag {flag}"))
    }

    /// Prints `message` and the usage to stderr and exits 2.
    pub fn fail(&self, message: &str) -> ! {
        eprintln!("error: {message}\n\n{}", self.usage);
        process::exit(2)
    }
}

/// The flags that choose who a program admits and talks to: `--key-file FILE` (the
/// cluster's key), `--insecure` (no key: anyone who reaches the port), and, for the discovery
/// node, `--new-key FILE` (make the cluster's key, then use it). One must be given.
#[derive(Default)]
pub struct SecurityFlags {
    key_file: Option<PathBuf>,
    new_key: Option<PathBuf>,
    insecure: bool,
}

impl SecurityFlags {
    /// Takes `flag` if it is a security flag (`--new-key` only when `new_key_allowed`).
    pub fn take(&mut self, flag: &str, args: &mut Args, new_key_allowed: bool) -> bool {
        match flag {
            "--key-file" => self.key_file = Some(args.value::<PathBuf>(flag)),
            "--new-key" if new_key_allowed => self.new_key = Some(args.value::<PathBuf>(flag)),
            "--insecure" => self.insecure = true,
            _ => return false,
        }
        true
    }

    /// The security chosen; a usage error unless exactly one choice was made. Says so on
    /// stderr when the choice is `--insecure`.
    pub fn security(self, args: &Args) -> Security {
        let chosen = [
            self.key_file.is_some(),
            self.new_key.is_some(),
            self.insecure,
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            args.fail("give exactly one of --key-file FILE and --insecure (or, for discovery, --new-key FILE)");
        }
        if let Some(path) = self.new_key {
            let key = ClusterKey::create_file(&path).unwrap_or_else(|e| {
                args.fail(&format!(
                    "--new-key {}: {}",
                    path.display(),
                    error_chain(&e)
                ))
            });
            eprintln!("wrote a new cluster key to {} (mode 0600)", path.display());
            return Security::Key(key);
        }
        if let Some(path) = self.key_file {
            return Security::Key(ClusterKey::from_file(&path).unwrap_or_else(|e| {
                args.fail(&format!(
                    "--key-file {}: {}",
                    path.display(),
                    error_chain(&e)
                ))
            }));
        }
        eprintln!(
            "warning: --insecure: no cluster key; connections are neither authenticated nor \
             encrypted, and anyone who can reach this program's port can read, change or \
             delete everything"
        );
        Security::Insecure
    }
}

/// Resolves `HOST:PORT` (an IP address or a name such as `localhost`), preferring IPv4.
pub fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| "no address found".to_string())
}

/// The address to listen on for `--host` and `--port`.
pub fn listen_addr(host: &str, port: u16) -> Result<SocketAddr, String> {
    if host.contains(':') && !host.starts_with('[') {
        // An IPv6 address: bracket it so that the port is not taken for part of it.
        resolve(&format!("[{host}]:{port}"))
    } else {
        resolve(&format!("{host}:{port}"))
    }
}

/// Logs to stderr at level `warn` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
}

/// Reads commands from stdin, one a line, and gives each to `run` as its first word and the
/// rest; blank lines are skipped, and a line that is not UTF-8 is reported and skipped. Stops
/// when `run` returns `false` or stdin ends. Returns whether every line could be read.
pub fn command_loop(run: impl FnMut(&str, &[&str]) -> bool) -> bool {
    prompted_command_loop(None, run)
}

/// [`command_loop`], printing `prompt` before each line when stdin is a terminal.
pub fn prompted_command_loop(
    prompt: Option<&str>,
    mut run: impl FnMut(&str, &[&str]) -> bool,
) -> bool {
    let prompt = prompt.filter(|_| io::stdin().is_terminal());
    let mut input = io::stdin().lock();
    let mut all_read = true;
    let mut raw = Vec::new();
    loop {
        if let Some(prompt) = prompt {
            let mut out = io::stdout().lock();
            let _ = write!(out, "{prompt}");
            let _ = out.flush();
        }
        raw.clear();
        match input.read_until(b'\n', &mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: reading stdin: {e}");
                return false;
            }
        }
        let Ok(line) = std::str::from_utf8(&raw) else {
            eprintln!("error: skipped a line that is not UTF-8");
            all_read = false;
            continue;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((command, rest)) = words.split_first() else {
            continue;
        };
        let go_on = run(command, rest);
        let _ = io::stdout().flush();
        if !go_on {
            break;
        }
    }
    all_read
}

/// `e` and each of its sources, joined by `: ` (the library's errors keep the operating
/// system's words in their source).
pub fn error_chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

/// An object name for one line of output: lossily decoded as UTF-8, with control characters
/// (a newline, say) escaped as in Rust source.
pub fn printable(name: &[u8]) -> String {
    let mut text = String::with_capacity(name.len());
    for c in String::from_utf8_lossy(name).chars() {
        if c.is_control() {
            text.extend(c.escape_debug());
        } else {
            text.push(c);
        }
    }
    text
}

/// Prints `line` to stdout and flushes it, so that a program reading this one's output sees it
/// at once.
pub fn say(line: impl Display) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `n` and `noun`, in the plural unless `n` is 1: `1 hop`, `2 hops`, `0 objects`.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}
