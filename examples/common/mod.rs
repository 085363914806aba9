//! What the example programs share: flag parsing, logging set-up and the command loop on
//! stdin. Each program includes it with `mod common;` and uses the parts it needs.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process;
use std::str::FromStr;

/// The command-line flags, read one at a time: `--flag VALUE` or `--flag=VALUE`.
///
/// `--help` (or `-h`) prints the usage and exits 0; a mistake prints it with the error to
/// stderr and exits 2.
pub struct Args {
    usage: &'static str,
    rest: std::vec::IntoIter<String>,
    /// The value written after `=` in the last flag, not yet taken.
    inline: Option<String>,
}

impl Args {
    /// The flags this program was started with.
    pub fn from_env(usage: &'static str) -> Args {
        let rest: Vec<String> = std::env::args().skip(1).collect();
        Args {
            usage,
            rest: rest.into_iter(),
            inline: None,
        }
    }

    /// The next flag, or `None` when there are no more.
    pub fn next_flag(&mut self) -> Option<String> {
        if let Some(value) = self.inline.take() {
            self.fail(&format!("unexpected value {value:?}"));
        }
        let arg = self.rest.next()?;
        if arg == "--help" || arg == "-h" {
            println!("{}", self.usage);
            process::exit(0);
        }
        if !arg.starts_with("--") {
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
        let Some(raw) = self.inline.take().or_else(|| self.rest.next()) else {
            self.fail(&format!("{flag} needs a value"));
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
/// rest; blank lines are skipped. Stops when `run` returns `false` or stdin ends.
pub fn command_loop(mut run: impl FnMut(&str, &[&str]) -> bool) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
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
}

/// Prints `line` to stdout and flushes it, so that a program reading this one's output sees it
/// at once.
pub fn say(line: impl Display) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
