//! The StoreData program: stores files in a Pastry overlay, retrieves and deletes them.
//!
//! ```text
//! cargo run --example store_data -- --discovery 127.0.0.1:4000 store notes.md photo.jpg
//! cargo run --example store_data -- --discovery 127.0.0.1:4000 retrieve notes.md copy.md
//! cargo run --example store_data -- --discovery 127.0.0.1:4000 delete notes.md
//! cargo run --example store_data -- --discovery 127.0.0.1:4000      # commands from stdin
//! ```
//!
//! It asks the discovery node for a random peer (or enters through `--peer`), computes the
//! 16-bit key of each name, looks it up from that peer and talks to the node at the end of the
//! route, which holds the object (or, for a name whose holders it met on an earlier command,
//! straight to the holder). For each command it prints the name and key, every hop of the
//! route and the holder.

#[macro_use]
mod common;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::{
    count, error_chain, init_logging, printable, prompted_command_loop, resolve, say, Args,
    SecurityFlags,
};
use pastry::{Client, Entry, Key, Route};

const USAGE: &str = concat!(
    "\
Usage: store_data (--discovery ADDR:PORT | --peer ADDR:PORT) (--key-file FILE | --insecure)
                  [COMMAND ARG...]

Stores files in a Pastry overlay under their base names, retrieves and deletes them.
With a command it runs that one and exits; without, it reads commands from stdin.

Options:
  --discovery ADDR:PORT  enter through a random peer the discovery node there names
  --peer ADDR:PORT       enter through the known peer there, without discovery
",
    security_usage!(),
    "
  -h, --help             print this help

Commands:
  store FILE...              store each file under its base name
  retrieve NAME [OUTPUT]     write the object NAME to OUTPUT (default: NAME in the
                             current directory; OUTPUT may be a directory)
  delete NAME                delete the object NAME
  help                       this list (stdin only)
  exit                       stop (stdin only; so does the end of input)

Each command prints the name and its key, every hop of the route (hop I: ID ADDR)
and the holder: `stored on ID ADDR (N bytes)`, `retrieved from ID ADDR (N bytes)
into PATH`, `deleted on ID ADDR (existed)` or `(absent)`. On stdin, words are
separated by white space, so names with spaces must be given as arguments.

Exit status: 0 if every command succeeded, 1 if any failed (errors on stderr),
2 for a usage error.

Logging: RUST_LOG=info (default warn), on stderr."
);

/// A command, parsed.
enum Command {
    Store(Vec<PathBuf>),
    Retrieve { name: OsString, output: PathBuf },
    Delete(OsString),
}

fn main() -> ExitCode {
    let mut args = Args::with_words(USAGE);
    let mut entry = None;
    let mut security = SecurityFlags::default();
    while let Some(flag) = args.next_flag() {
        if security.take(&flag, &mut args, false) {
            continue;
        }
        match flag.as_str() {
            "--discovery" | "--peer" if entry.is_some() => {
                args.fail("give one of --discovery and --peer, once")
            }
            "--discovery" => entry = Some(Entry::Discovery(args.value_with(&flag, resolve))),
            "--peer" => entry = Some(Entry::Peer(args.value_with(&flag, resolve))),
            _ => args.unknown(&flag),
        }
    }
    let words = args.words();
    let Some(entry) = entry else {
        args.fail("give --discovery ADDR:PORT or --peer ADDR:PORT");
    };
    init_logging();
    let client = Client::with_config(entry, pastry::ClientConfig::new(security.security(&args)));

    if let Some((command, rest)) = words.split_first() {
        let rest: Vec<&OsStr> = rest.iter().map(OsString::as_os_str).collect();
        let command = match parse(&command.to_string_lossy(), &rest) {
            Ok(command) => command,
            Err(message) => args.fail(&message),
        };
        return if run(&client, command) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let mut all_ok = true;
    let all_read = prompted_command_loop(Some("store_data> "), |command, rest| {
        let rest: Vec<&OsStr> = rest.iter().map(OsStr::new).collect();
        match (command, rest.as_slice()) {
            ("help", _) => say(USAGE),
            ("exit", []) => return false,
            ("exit", _) => {
                eprintln!("error: exit takes no arguments");
                all_ok = false;
            }
            _ => match parse(command, &rest) {
                Ok(command) => all_ok &= run(&client, command),
                Err(message) => {
                    eprintln!("error: {message}");
                    all_ok = false;
                }
            },
        }
        true
    });
    if all_ok && all_read {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Parses `command` and its arguments; a usage error is returned as its message.
fn parse(command: &str, args: &[&OsStr]) -> Result<Command, String> {
    match (command, args) {
        ("store", []) => Err("usage: store FILE...".into()),
        ("store", files) => Ok(Command::Store(files.iter().map(PathBuf::from).collect())),
        ("retrieve", [name]) => {
            let output = safe_file_name(name).map_err(|why| {
                format!("{why}: give an OUTPUT to retrieve {name:?} (retrieve NAME OUTPUT)")
            })?;
            Ok(Command::Retrieve {
                name: name.into(),
                output: output.into(),
            })
        }
        ("retrieve", [name, output]) => {
            let mut output = PathBuf::from(output);
            if output.is_dir() {
                let file = safe_file_name(name).map_err(|why| {
                    format!("{why}: give a file, not a directory, as OUTPUT for {name:?}")
                })?;
                output.push(file);
            }
            Ok(Command::Retrieve {
                name: name.into(),
                output,
            })
        }
        ("retrieve", _) => Err("usage: retrieve NAME [OUTPUT]".into()),
        ("delete", [name]) => Ok(Command::Delete(name.into())),
        ("delete", _) => Err("usage: delete NAME".into()),
        ("exit" | "help", _) => Err(format!("{command} is a command for stdin only")),
        _ => Err(format!("unknown command {command:?}")),
    }
}

/// `name` as the name of a file in the current directory, if it is a safe one: not empty, not
/// `.` or `..`, and without a path separator (a name is whatever some client stored, so it
/// must not pick where the file lands).
fn safe_file_name(name: &OsStr) -> Result<&OsStr, &'static str> {
    let text = name.to_string_lossy();
    if text.is_empty() || text == "." || text == ".." {
        Err("the name is not a file name")
    } else if text.chars().any(std::path::is_separator) {
        Err("the name contains a path separator")
    } else {
        Ok(name)
    }
}

/// Runs `command`, printing what it did or the error; returns whether all of it succeeded.
fn run(client: &Client, command: Command) -> bool {
    match command {
        Command::Store(files) => {
            let mut all_ok = true;
            for file in files {
                all_ok &= store(client, &file);
            }
            all_ok
        }
        Command::Retrieve { name, output } => retrieve(client, &name, &output),
        Command::Delete(name) => delete(client, &name),
    }
}

fn store(client: &Client, file: &Path) -> bool {
    let name = file.file_name().unwrap_or(file.as_os_str());
    match client.store_file(file) {
        Ok(stored) => {
            show_route(name, stored.key, &stored.route);
            let holder = stored.route.responsible();
            // A store overtaken by a newer one of the same name says so.
            let overtaken = if stored.kept {
                ""
            } else {
                ", overtaken by a newer write"
            };
            say(format_args!(
                "stored on {} {} ({}{overtaken})",
                holder.id,
                holder.addr,
                count(stored.size, "byte")
            ));
            true
        }
        Err(e) => failed("store", file.as_os_str(), &e),
    }
}

fn retrieve(client: &Client, name: &OsStr, output: &Path) -> bool {
    match client.retrieve_file(name.as_encoded_bytes(), output) {
        Ok(retrieved) => {
            show_route(name, retrieved.key, &retrieved.route);
            let holder = retrieved.route.responsible();
            say(format_args!(
                "retrieved from {} {} ({}) into {}",
                holder.id,
                holder.addr,
                count(retrieved.size, "byte"),
                output.display()
            ));
            true
        }
        Err(e) => failed("retrieve", name, &e),
    }
}

fn delete(client: &Client, name: &OsStr) -> bool {
    match client.delete(name.as_encoded_bytes()) {
        Ok(deleted) => {
            show_route(name, deleted.key, &deleted.route);
            let holder = deleted.route.responsible();
            let what = if deleted.existed { "existed" } else { "absent" };
            say(format_args!(
                "deleted on {} {} ({what})",
                holder.id, holder.addr
            ));
            true
        }
        Err(e) => failed("delete", name, &e),
    }
}

/// Prints `NAME: key KEY`, then `hop I: ID ADDR` for every node on the route.
fn show_route(name: &OsStr, key: Key, route: &Route) {
    say(format_args!(
        "{}: key {key}",
        printable(name.as_encoded_bytes())
    ));
    for (i, hop) in route.path.iter().enumerate() {
        say(format_args!("hop {i}: {} {}", hop.id, hop.addr));
    }
}

/// Reports a failed command on stderr; returns `false`.
fn failed(command: &str, what: &OsStr, e: &pastry::Error) -> bool {
    eprintln!(
        "error: {command} {}: {}",
        printable(what.as_encoded_bytes()),
        error_chain(e)
    );
    false
}
