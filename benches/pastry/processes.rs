//! Section 10: 1,000 nodes with the default configuration as several processes, as they would
//! be deployed: one process may open only so many descriptors (20,000 here), and a node
//! holds one connection per peer it talks to. The benchmark program starts copies of itself
//! (`--child-nodes`), each running its share of the nodes, all joined through one discovery
//! node in this process.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::*;

/// How long one process's nodes may take to start and join.
const CHILD_DEADLINE: Duration = Duration::from_secs(600);

pub(crate) fn processes(ctx: &mut Ctx) {
    let (total, per_process): (usize, usize) = ctx.opts.pick((1000, 100), (100, 50));
    ctx.nets.current = None; // its descriptors and threads are not this section's
    let procs = total.div_ceil(per_process);
    ctx.report.note(format!(
        "{total} nodes configured `NodeConfig::new(key)` (data directories aside) in {procs} \
         processes of {per_process}, started one process after another and joined through one \
         discovery node in the benchmark's process; the process may open {} files. Each \
         process's figures are read from /proc once its nodes have joined and three seconds \
         have passed. Then a client puts and gets 200 small values through discovery.",
        fd_limit()
    ));
    ctx.report.table(&[
        "Nodes",
        "Processes",
        "Build (s)",
        "Members at discovery",
        "Threads per process (max)",
        "Descriptors per process (max)",
        "RSS per node",
        "Puts / gets that succeeded",
    ]);
    let name = format!("{total} nodes start and join as {procs} processes");
    match run(ctx, total, per_process) {
        Ok(r) => {
            let ok = r.members == total && r.values_ok == (200, 200);
            ctx.report.row(vec![
                total.to_string(),
                procs.to_string(),
                format!("{:.1}", r.build.as_secs_f64()),
                r.members.to_string(),
                r.threads.to_string(),
                r.fds.to_string(),
                format!("{:.0} KiB", r.rss_kb as f64 / total as f64),
                format!("{} / {}", r.values_ok.0, r.values_ok.1),
            ]);
            let measured = format!(
                "{} members in {:.0} s; at most {} descriptors in a process",
                r.members,
                r.build.as_secs_f64(),
                r.fds
            );
            ctx.report.check(name, measured, ok);
        }
        Err(e) => {
            ctx.report
                .row(vec![total.to_string(), procs.to_string(), e.clone()]);
            ctx.report.check(name, e, false);
        }
    }
}

struct Outcome {
    build: Duration,
    members: usize,
    threads: usize,
    fds: usize,
    rss_kb: u64,
    values_ok: (usize, usize),
}

/// A child process and the pipe whose end tells it to stop.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        // Bounded: polled until the child has left gracefully or the deadline passed.
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(ctx: &mut Ctx, total: usize, per_process: usize) -> Result<Outcome, String> {
    let dir = ctx.root.join("processes");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key_file = dir.join("cluster.key");
    key().save(&key_file).map_err(|e| e.to_string())?;
    let discovery = Discovery::start("127.0.0.1:0".parse().unwrap(), key().clone())
        .map_err(|e| format!("discovery does not start: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let seed = ctx.rng.next_u64();
    let t0 = Instant::now();
    let mut running = Vec::new();
    let (mut threads, mut fds, mut rss_kb) = (0, 0, 0);
    for (index, first) in (0..total).step_by(per_process).enumerate() {
        let count = per_process.min(total - first);
        let mut child = Command::new(&exe)
            .arg("--child-nodes")
            .args([count.to_string(), first.to_string(), total.to_string()])
            .arg(seed.to_string())
            .arg(discovery.local_addr().to_string())
            .arg(&key_file)
            .arg(dir.join(format!("p{index}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        running.push(Running { child, stdin });
        let line = read_line_within(stdout, CHILD_DEADLINE)?;
        let fields: Vec<u64> = line
            .strip_prefix("ready ")
            .ok_or_else(|| format!("process {index}: {line}"))?
            .split(' ')
            .filter_map(|f| f.parse().ok())
            .collect();
        let [t, f, r] = fields[..] else {
            return Err(format!("process {index}: {line}"));
        };
        threads = threads.max(t as usize);
        fds = fds.max(f as usize);
        rss_kb += r;
        eprintln!(
            "  process {index}: {count} nodes joined; {t} threads, {f} descriptors ({:.0} s in all)",
            t0.elapsed().as_secs_f64()
        );
    }
    let build = t0.elapsed();
    let members = discovery.peers().len();
    let values_ok = put_and_get(&discovery, 200);
    drop(running);
    let _ = fs::remove_dir_all(&dir);
    Ok(Outcome {
        build,
        members,
        threads,
        fds,
        rss_kb,
        values_ok,
    })
}

/// The first line `stdout` gives within `deadline`, read on a thread of its own.
fn read_line_within(
    stdout: Option<std::process::ChildStdout>,
    deadline: Duration,
) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        let mut line = String::new();
        let read = match stdout {
            Some(out) => BufReader::new(out).read_line(&mut line).map(|_| ()),
            None => Ok(()),
        };
        let _ = tx.send(read.map(|()| line.trim().to_string()));
    });
    match rx.recv_timeout(deadline) {
        Ok(read) => {
            let _ = reader.join();
            read.map_err(|e| format!("reading a process's output: {e}"))
        }
        Err(e) => Err(format!("no word from a process: {e}")),
    }
}

/// Puts and gets `count` small values through a client of `discovery`: how many of each
/// succeeded.
fn put_and_get(discovery: &Discovery, count: usize) -> (usize, usize) {
    let client = Profile::Default.client(discovery.local_addr());
    let name = |i: usize| format!("processes-{i:04}");
    let puts = (0..count)
        .filter(|&i| client.put(name(i), name(i).as_bytes()).is_ok())
        .count();
    let gets = (0..count)
        .filter(|&i| {
            client
                .get(name(i))
                .is_ok_and(|e| e.data == name(i).as_bytes())
        })
        .count();
    (puts, gets)
}

/// The child's side: `--child-nodes COUNT FIRST TOTAL SEED DISCOVERY KEY_FILE DIR` starts
/// nodes FIRST.. FIRST+COUNT of TOTAL distinct ids drawn from SEED, joins each through
/// DISCOVERY, prints `ready THREADS DESCRIPTORS RSS_KB`, and leaves when its input ends.
pub(crate) fn child(args: &[String]) -> ! {
    let code = match child_nodes(args) {
        Ok(()) => 0,
        Err(e) => {
            println!("failed: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn child_nodes(args: &[String]) -> Result<(), String> {
    let [count, first, total, seed, discovery, key_file, dir] = args else {
        return Err(format!("expected 7 arguments, got {args:?}"));
    };
    let number = |s: &String| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
    let (count, first, total) = (number(count)?, number(first)?, number(total)?);
    let discovery: SocketAddr = discovery.parse().map_err(|e| format!("{discovery}: {e}"))?;
    let key = pastry::ClusterKey::from_file(Path::new(key_file)).map_err(|e| e.to_string())?;
    let ids = distinct_ids(number(seed)?, total as usize);
    let mut nodes = Vec::new();
    for (i, id) in ids
        .iter()
        .enumerate()
        .skip(first as usize)
        .take(count as usize)
    {
        let config = NodeConfig {
            id: Some(*id),
            data_dir: Some(PathBuf::from(dir).join(i.to_string())),
            ..NodeConfig::new(key.clone())
        };
        let node = Node::start(config).map_err(|e| format!("node {i}: {e}"))?;
        node.join_discovery(discovery)
            .map_err(|e| format!("node {i} joins: {e}"))?;
        nodes.push(node);
    }
    thread::sleep(Duration::from_secs(3));
    let r = Resources::now();
    println!("ready {} {} {}", r.threads, r.fds, r.rss_kb);
    // Stays until the parent closes its input (or goes away); then stops at once, as a
    // crash would: the network goes with it.
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
    drop(nodes);
    Ok(())
}

/// `total` distinct ids drawn from `seed`: every process draws the same list.
fn distinct_ids(seed: u64, total: usize) -> Vec<Id> {
    let mut rng = Rng::seeded(seed);
    let mut used = std::collections::HashSet::new();
    let mut ids = Vec::with_capacity(total);
    // Bounded: each pass adds an id or draws again, and 65,536 ids exist.
    while ids.len() < total.min(1 << 16) {
        let id = Id(rng.next_u64() as u16);
        if used.insert(id) {
            ids.push(id);
        }
    }
    ids
}
