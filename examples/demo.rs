//! A whole Pastry network in one process, on loopback: the first thing to run.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! It starts a discovery node and `--nodes` peers (default 16) on 127.0.0.1, joins them one
//! after another, looks up a few keys from random peers and prints each route, checking that
//! it ends at the peer the brute-force rule names. Then it stores three files through a
//! client (a small text, a longer text and a few MiB of pseudo-random bytes), checking that
//! each lands on the responsible peer, retrieves them and compares the bytes, and puts, gets
//! and deletes a small value. Then a quarter of the peers leave gracefully, handing their
//! objects over (the holder of the big file first, so that a hand-over is always shown), the
//! lookups run again and the files are retrieved again. It exits non-zero if any check fails,
//! and removes the files it made.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::{init_logging, Args};
use pastry::{
    key_of, responsible, Client, ClusterKey, Discovery, Error, Id, Key, Node, NodeConfig, Rng,
};

const USAGE: &str = "\
Usage: demo [--nodes N] [--seed N]

Starts a discovery node and N peers in this process on 127.0.0.1, routes lookups
through them, stores three files and a small value through a client and reads
them back, makes a quarter of the peers leave (the holder of the biggest file
first), then routes the lookups and retrieves the files again. Exits non-zero if
a lookup does not end at the responsible peer, an object is not held there, or
its bytes come back different.

Options:
  --nodes N    number of peers (default 16)
  --seed N     seed for the peer ids and the random choices (default: random)
  -h, --help   print this help

Logging: RUST_LOG=info (default warn), on stderr.";

/// Names whose keys are looked up, then the names of the files stored.
const NAMES: [&str; 3] = ["hello.txt", "notes.md", "photo.jpg"];
/// Size of the pseudo-random file (`photo.jpg`).
const BIG_FILE: usize = 3 * 1024 * 1024 + 12345;
/// How many random keys are looked up besides the names.
const RANDOM_KEYS: usize = 3;

fn main() -> ExitCode {
    let mut args = Args::from_env(USAGE);
    let mut nodes = 16usize;
    let mut seed = None;
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "--nodes" => nodes = args.value(&flag),
            "--seed" => seed = Some(args.value(&flag)),
            _ => args.unknown(&flag),
        }
    }
    if nodes == 0 || nodes > 4096 {
        args.fail("--nodes must be between 1 and 4096");
    }
    init_logging();
    let seed = seed.unwrap_or_else(|| Rng::from_entropy().next_u64());
    match run(nodes, seed) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("{failures} check(s) failed (seed {seed})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e} (seed {seed})");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo; returns how many checks failed.
fn run(count: usize, seed: u64) -> pastry::Result<usize> {
    let mut rng = Rng::seeded(seed);
    println!("libpastry demo: {count} peers on 127.0.0.1 (seed {seed})");
    // A key for this run only, in memory: every connection below proves it and is encrypted.
    let key = ClusterKey::generate()?;
    let discovery = Discovery::start("127.0.0.1:0".parse().expect("an address"), &key)?;
    println!("discovery listening on {}", discovery.local_addr());

    let mut nodes = Vec::with_capacity(count);
    for id in distinct_ids(&mut rng, count) {
        let node = Node::start(NodeConfig {
            id: Some(id),
            ..NodeConfig::new(&key)
        })?;
        node.join_discovery(discovery.local_addr())?;
        nodes.push(node);
    }
    println!("{count} peers joined one after another");
    show_network(&discovery);

    let mut keys: Vec<(Key, String)> = NAMES
        .iter()
        .map(|name| (key_of(name.as_bytes()), format!(" ({name})")))
        .collect();
    keys.extend((0..RANDOM_KEYS).map(|_| (Id(rng.next_u64() as u16), String::new())));

    println!("\nlookups, each from a random peer:");
    let mut failures = lookups(&nodes, &keys, &mut rng);

    // Removed when this function returns, however it returns.
    let dir = ScratchDir::new(seed)?;
    let files = make_files(&dir.path.join("in"), &mut rng)?;
    let client = Client::new(discovery.local_addr(), &key);
    println!(
        "\nstoring {} files from {} through a client (it enters at a peer discovery picks):",
        files.len(),
        dir.path.join("in").display()
    );
    failures += store_files(&client, &nodes, &files);
    println!("\nretrieving them into {}:", dir.path.join("out").display());
    let (failed, holders) = retrieve_files(&client, &nodes, &files, &dir.path.join("out"), None)?;
    failures += failed;
    println!("\na small value, as a key/value store:");
    failures += key_value(&client, &nodes);

    // The holder of the big file leaves first, so that a hand-over is always shown; the
    // others are drawn at random.
    let leaving = count / 4;
    let mut gone = Vec::with_capacity(leaving);
    let big_holder = holders.last().copied().flatten();
    for i in 0..leaving {
        let first = big_holder.and_then(|id| nodes.iter().position(|n| n.id() == id));
        let index = match first {
            Some(index) if i == 0 => index,
            _ => rng.below(nodes.len()),
        };
        let node = nodes.remove(index);
        node.leave()?;
        node.shutdown();
        gone.push(node.id().to_string());
    }
    if leaving == 0 {
        println!("\nno peer leaves: a quarter of {count} is none");
    } else {
        println!(
            "\n{leaving} peers left gracefully, the holder of {} first: {}",
            NAMES[NAMES.len() - 1],
            gone.join(" ")
        );
    }
    show_network(&discovery);
    if discovery.peers().len() != nodes.len() {
        println!("  WRONG: discovery should list {} peers", nodes.len());
        failures += 1;
    }

    println!("\nthe same lookups again:");
    failures += lookups(&nodes, &keys, &mut rng);

    println!(
        "\nretrieving the files again into {}:",
        dir.path.join("after").display()
    );
    let after = dir.path.join("after");
    failures += retrieve_files(&client, &nodes, &files, &after, Some(&holders))?.0;

    for node in &nodes {
        node.shutdown();
    }
    discovery.shutdown();
    drop(dir);
    if failures == 0 {
        println!(
            "\nevery lookup ended at the responsible peer, every object was held there and \
             came back intact; all stopped and the files removed"
        );
    }
    Ok(failures)
}

/// A directory for the demo's files, removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(seed: u64) -> pastry::Result<ScratchDir> {
        let name = format!("pastry-demo-{}-{seed:016x}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file the demo stores: its name, where it is, and its bytes.
struct File {
    name: &'static str,
    path: PathBuf,
    bytes: Vec<u8>,
}

/// Writes the files of [`NAMES`] into `dir`: two texts and pseudo-random bytes.
fn make_files(dir: &Path, rng: &mut Rng) -> pastry::Result<Vec<File>> {
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let notes: String = (1..=200)
        .map(|i| format!("{i}. a line of notes, kept in the overlay\n"))
        .collect();
    let mut random = Vec::with_capacity(BIG_FILE + 8);
    while random.len() < BIG_FILE {
        random.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    random.truncate(BIG_FILE);
    let contents = [
        b"hello from libpastry\n".to_vec(),
        notes.into_bytes(),
        random,
    ];
    let mut files = Vec::new();
    for (name, bytes) in NAMES.into_iter().zip(contents) {
        let path = dir.join(name);
        fs::write(&path, &bytes).map_err(|e| io_error(&path, e))?;
        files.push(File { name, path, bytes });
    }
    Ok(files)
}

/// The node responsible for `key` among `nodes`, by the brute-force rule.
fn expected_holder(nodes: &[Node], key: Key) -> Id {
    responsible(key, nodes.iter().map(Node::id)).expect("a live peer")
}

/// Whether the node `id` lists an object named `name`.
fn holds(nodes: &[Node], id: Id, name: &str) -> bool {
    nodes
        .iter()
        .find(|n| n.id() == id)
        .and_then(|n| n.objects().ok())
        .is_some_and(|objects| objects.iter().any(|o| o.name == name.as_bytes()))
}

/// The route as `a -> b -> c (N hops)`.
fn show_route(route: &pastry::Route) -> String {
    let path: Vec<String> = route.path.iter().map(|n| n.id.to_string()).collect();
    let hops = route.hops();
    format!(
        "{} ({hops} hop{})",
        path.join(" -> "),
        if hops == 1 { "" } else { "s" }
    )
}

/// Stores each file, checking that it lands on the responsible node and that the node lists
/// it. Returns how many checks failed.
fn store_files(client: &Client, nodes: &[Node], files: &[File]) -> usize {
    let mut failures = 0;
    for file in files {
        match client.store_file(&file.path) {
            Ok(stored) => {
                let holder = stored.route.responsible().id;
                let expected = expected_holder(nodes, key_of(file.name.as_bytes()));
                let verdict = if holder != expected {
                    failures += 1;
                    format!("WRONG: {expected} is responsible")
                } else if !holds(nodes, holder, file.name) {
                    failures += 1;
                    format!("WRONG: {holder} does not list it")
                } else if stored.size != file.bytes.len() as u64 {
                    failures += 1;
                    format!("WRONG: {} bytes stored", stored.size)
                } else {
                    "ok".to_string()
                };
                println!(
                    "  {} ({} bytes, key {}): {}, stored on {holder}  {verdict}",
                    file.name,
                    file.bytes.len(),
                    stored.key,
                    show_route(&stored.route)
                );
            }
            Err(e) => {
                failures += 1;
                println!("  {}: FAILED: {e}", file.name);
            }
        }
    }
    failures
}

/// Retrieves each file into `out`, checking the holder and comparing the bytes with the
/// original. With the holders of an earlier retrieval, says which objects moved. Returns how
/// many checks failed, and the holders.
fn retrieve_files(
    client: &Client,
    nodes: &[Node],
    files: &[File],
    out: &Path,
    before: Option<&[Option<Id>]>,
) -> pastry::Result<(usize, Vec<Option<Id>>)> {
    fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    let mut failures = 0;
    let mut holders = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let path = out.join(file.name);
        let retrieved = client.retrieve_file(file.name, &path).and_then(|r| {
            let bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
            Ok((r, bytes))
        });
        match retrieved {
            Ok((retrieved, bytes)) => {
                let holder = retrieved.route.responsible().id;
                holders.push(Some(holder));
                let expected = expected_holder(nodes, retrieved.key);
                let verdict = if holder != expected {
                    failures += 1;
                    format!("WRONG: {expected} is responsible")
                } else if bytes != file.bytes {
                    failures += 1;
                    "WRONG: the bytes differ from the original".to_string()
                } else {
                    "same as the original  ok".to_string()
                };
                let moved = match before.and_then(|b| b[i]) {
                    Some(old) if old != holder => format!(" (handed over from {old})"),
                    Some(_) => " (same holder)".to_string(),
                    None => String::new(),
                };
                println!(
                    "  {}: {}, {} bytes from {holder}{moved}, {verdict}",
                    file.name,
                    show_route(&retrieved.route),
                    retrieved.size
                );
            }
            Err(e) => {
                failures += 1;
                holders.push(None);
                println!("  {}: FAILED: {e}", file.name);
            }
        }
    }
    Ok((failures, holders))
}

/// Puts a small value, gets it back, deletes it and checks it is gone, the way the key/value
/// store of a DHT is used. Returns how many checks failed.
fn key_value(client: &Client, nodes: &[Node]) -> usize {
    const NAME: &str = "greeting";
    const VALUE: &[u8] = b"hello, pastry";
    let expected = expected_holder(nodes, key_of(NAME.as_bytes()));
    let mut failures = 0;
    let mut check = |ok: bool, what: String| {
        let verdict = if ok {
            "ok"
        } else {
            failures += 1;
            "WRONG"
        };
        println!("  {what}  {verdict}");
    };
    match client.put(NAME, VALUE) {
        Ok(stored) => {
            let holder = stored.route.responsible().id;
            check(
                holder == expected,
                format!(
                    "put {NAME} = {:?} (key {}) on {holder}",
                    String::from_utf8_lossy(VALUE),
                    stored.key
                ),
            );
        }
        Err(e) => check(false, format!("put {NAME}: {e}")),
    }
    match client.get(NAME) {
        Ok(got) => check(
            got.data == VALUE && got.route.responsible().id == expected,
            format!(
                "get {NAME} from {}: {:?}",
                got.route.responsible().id,
                String::from_utf8_lossy(&got.data)
            ),
        ),
        Err(e) => check(false, format!("get {NAME}: {e}")),
    }
    match client.delete(NAME) {
        Ok(deleted) => check(
            deleted.existed,
            format!(
                "delete {NAME} on {}: {}",
                deleted.route.responsible().id,
                if deleted.existed { "existed" } else { "absent" }
            ),
        ),
        Err(e) => check(false, format!("delete {NAME}: {e}")),
    }
    match client.get(NAME) {
        Err(Error::NotFound { .. }) => check(true, format!("get {NAME} again: not found")),
        Err(e) => check(false, format!("get {NAME} again: {e}")),
        Ok(got) => check(
            false,
            format!("get {NAME} again: still there, {} bytes", got.data.len()),
        ),
    }
    failures
}

/// `n` different random ids.
fn distinct_ids(rng: &mut Rng, n: usize) -> Vec<Id> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let id = Id(rng.next_u64() as u16);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Prints the ids discovery lists, in ring order.
fn show_network(discovery: &Discovery) {
    let peers = discovery.peers();
    let ids: Vec<String> = peers.iter().map(|p| p.id.to_string()).collect();
    println!("network ({} peers): {}", peers.len(), ids.join(" "));
}

/// Looks up each key from a random node, prints the route and checks where it ends against
/// the brute-force rule over the live ids. Returns how many checks failed.
fn lookups(nodes: &[Node], keys: &[(Key, String)], rng: &mut Rng) -> usize {
    let live: Vec<Id> = nodes.iter().map(Node::id).collect();
    let mut failures = 0;
    for (key, label) in keys {
        let from = &nodes[rng.below(nodes.len())];
        let expected = responsible(*key, live.iter().copied()).expect("a live peer");
        match from.lookup(*key) {
            Ok(route) => {
                let path: Vec<String> = route.path.iter().map(|n| n.id.to_string()).collect();
                let verdict = if route.responsible().id == expected {
                    "ok".to_string()
                } else {
                    failures += 1;
                    format!("WRONG: {expected} is responsible")
                };
                println!(
                    "  key {key}{label} from {}: {} ({} hop{})  {verdict}",
                    from.id(),
                    path.join(" -> "),
                    route.hops(),
                    if route.hops() == 1 { "" } else { "s" }
                );
            }
            Err(e) => {
                failures += 1;
                println!("  key {key}{label} from {}: FAILED: {e}", from.id());
            }
        }
    }
    failures
}
