//! Section 9: libpastry beside OpenDHT, a widely used DHT, measured in the same run.
//!
//! The shared harness runs N OpenDHT nodes in one Python process on loopback and prints one
//! `RESULT {json}` line; here the same figures (put and get latency, gets per second with 32
//! in flight, memory per formed node) are measured for N libpastry nodes in this process, the
//! two taking turns at each N so that both see the same machine.

use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;

use super::*;

const PYTHON: &str = "/usr/bin/python3";
/// Gets in flight for the throughput figure, as the harness's `--conc`.
const IN_FLIGHT: usize = 32;
/// The harness bounds itself (480 s by default); this only catches a hung interpreter.
const PEER_LIMIT: Duration = Duration::from_secs(600);

type Measured = Result<Figures, String>;

/// One implementation's figures at one N: latencies in ms, memory in KiB per node.
struct Figures {
    put: (f64, f64),
    get: (f64, f64),
    gets_per_s: f64,
    kb_formed: f64,
    kb_after: f64,
    threads: f64,
    /// Puts completed per second with 32 in flight, where measured.
    puts_per_s: Option<f64>,
    /// Operations that failed or did not find their value, if any; how long OpenDHT formed.
    remarks: String,
}

/// Our puts without syncing, and the disk's raw sync, beside the synced ones (64 nodes).
struct Unsynced {
    put_p50_ms: f64,
    puts_per_s: f64,
    raw_sync_ms: f64,
    /// One sync on each of `DEFAULT_REPLICAS` files of this disk at once, until the last.
    raw_syncs_ms: f64,
}

pub(crate) fn opendht(ctx: &mut Ctx) {
    let sizes = ctx.opts.pick(vec![64, 256], vec![64]);
    let ops = ctx.opts.pick(1000, 200);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/opendht/opendht_bench.py");
    // Puts in flight: the one phase the shared harness lacks, on its helpers.
    let puts_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/opendht_puts.py");
    let missing = peer_missing(&script);
    ctx.report.note(format!(
        "OpenDHT 2.4 (C++, through Debian's python3-opendht) runs in its own process \
         (`opendht_bench.py --bootstrap single`: rate limiter off, every node joining through \
         node 0); libpastry in this one with `NodeConfig::new(key)` (encrypted, default pool, \
         {DEFAULT_REPLICAS} copies), every node joining through the discovery node, which hands \
         out a random joined peer. The two take turns at each N. Both: {ops} sequential puts of \
         4-byte values under keys \"0000\"…, issued through node 1; sequential gets of the \
         same keys through node N/2; the keys shuffled and got through node N-1 with \
         {IN_FLIGHT} in flight (completed per second; ours counts only gets that returned the \
         value). A libpastry node has no put or get of its own: ours go through a `Client` in \
         this process entering at that node (`Entry::Peer`), which sends each request \
         straight to the node it believes responsible (among those its lookups met) and \
         routes it from that node when it has met none or that one refuses; before timing, \
         each client makes 2N untimed gets of absent names, so that it has met the nodes and \
         holds connections to them as a running one would, and the nodes do the warm-up \
         lookups of section 1. The notes give the client's requests per operation. Our values are written to disk \
         and synced before a put is acknowledged (`sync_writes: true`, the default); OpenDHT \
         keeps values in memory only. Memory per formed node: process RSS once the network \
         has formed (OpenDHT: a 15 s window; ours: built, then 3 s), minus RSS before any \
         node started, divided by N; \"after\": the same once the workload has run. Threads \
         per node: OpenDHT's process's at the end ÷ N; ours, those the network added ÷ N."
    ));
    if let Some(why) = &missing {
        ctx.report
            .note(format!("OpenDHT is not measured in this run: {why}."));
    }
    ctx.report.table(&[
        "Implementation",
        "Nodes",
        "Put p50",
        "Put p99",
        "Get p50",
        "Get p99",
        "Gets/s, 32 in flight",
        "Puts/s, 32 in flight",
        "Memory per formed node",
        "Memory per node after",
        "Threads per node",
        "Get p50: OpenDHT ÷ ours",
        "Gets/s: ours ÷ OpenDHT",
        "Memory: ours ÷ OpenDHT",
        "Notes",
    ]);
    let mut puts_note = None;
    for n in sizes {
        ctx.nets.current = None; // no other network may run beside either implementation
        let mut theirs = missing
            .clone()
            .map_or_else(|| run_peer(&script, n, ops), Err);
        if let Ok(t) = theirs.as_mut() {
            t.puts_per_s = (n == 64)
                .then(|| run_puts_peer(&puts_script, n, ops))
                .transpose()
                .unwrap_or_else(|e| {
                    t.remarks += &format!("; puts in flight not measured: {e}");
                    None
                });
        }
        row(ctx, "OpenDHT", n, &theirs, None);
        let ours = measure_ours(ctx, n, ops);
        ctx.nets.current = None;
        row(ctx, "libpastry", n, &ours, theirs.as_ref().ok());
        check(ctx, n, &ours, &theirs);
        if n == 64 {
            let unsynced = measure_unsynced(ctx, n, ops);
            ctx.nets.current = None;
            puts_note = check_puts(ctx, n, &ours, &theirs, &unsynced);
        }
    }
    // After the table, which a note would end.
    if let Some(note) = puts_note {
        ctx.report.note(note);
    }
}

/// Runs the put phase for `n` OpenDHT nodes: puts completed per second with 32 in flight.
fn run_puts_peer(script: &Path, n: usize, ops: usize) -> Result<f64, String> {
    eprintln!("  OpenDHT: {n} nodes, {ops} puts in flight");
    let out = Command::new(PYTHON)
        .arg(script)
        .args(["--nodes", &n.to_string(), "--ops", &ops.to_string()])
        .args(["--conc", &IN_FLIGHT.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {PYTHON}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or(format!("no result line ({})", out.status))?;
    let ok = json_number(json, "put_tput_ok").unwrap_or(0.0) as usize;
    if ok < ops {
        return Err(format!("{ok} of {ops} puts ok"));
    }
    json_number(json, "put_tput_ops_s").ok_or("no put_tput_ops_s in its result".into())
}

/// Puts through node 1 of a fresh network that does not sync: sequential p50, and completed
/// per second with 32 in flight; and this disk's raw sync, measured just after.
fn measure_unsynced(ctx: &mut Ctx, n: usize, ops: usize) -> Result<Unsynced, String> {
    let root = ctx.root.join("raw-sync");
    let net = ctx.nets.get(n, Profile::NoSync)?;
    let client = Client::with_config(
        Entry::Peer(net.nodes[1].info().addr),
        ClientConfig::new(key()),
    );
    for w in 0..2 * n {
        let _ = client.get(format!("warm-1-{w}"));
    }
    let mut times = Vec::with_capacity(ops);
    for i in 0..ops {
        let t = Instant::now();
        if client
            .put(format!("u{i:04}"), &(i as u32).to_be_bytes())
            .is_ok()
        {
            times.push(t.elapsed());
        }
    }
    sort(&mut times);
    let puts_per_s = puts_in_flight(&client, "uf", ops);
    let (raw_sync, _) = raw_log_ops(&root, 300, true);
    let raw_syncs = raw_concurrent_syncs(&root, 300, DEFAULT_REPLICAS);
    let _ = fs::remove_dir_all(&root);
    if times.len() < ops {
        return Err(format!("{} of {ops} unsynced puts ok", times.len()));
    }
    Ok(Unsynced {
        put_p50_ms: secs(pct(&times, 50.0)) * 1e3,
        puts_per_s,
        raw_sync_ms: secs(raw_sync) * 1e3,
        raw_syncs_ms: secs(raw_syncs) * 1e3,
    })
}

/// Puts of `ops` 4-byte values under fresh names, 32 in flight through `client`: completed
/// (and acknowledged) per second.
fn puts_in_flight(client: &Client, prefix: &str, ops: usize) -> f64 {
    let (next, stored) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let t = Instant::now();
    thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                if client
                    .put(format!("{prefix}{i:04}"), &(i as u32).to_be_bytes())
                    .is_ok()
                {
                    stored.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    stored.into_inner() as f64 / t.elapsed().as_secs_f64()
}

/// The check that a synced put's p50 is within `disk` plus `network` (all in ms).
fn synced_within(what: String, put: f64, disk: f64, network: f64) -> (String, String, bool) {
    let ms = |x: f64| fmt_dur(Duration::from_secs_f64(x / 1e3));
    (
        format!("Synced put p50 ≤ {what}"),
        format!(
            "{} vs {} + {} = {}",
            ms(put),
            ms(disk),
            ms(network),
            ms(disk + network)
        ),
        put <= disk + network,
    )
}

fn check_puts(
    ctx: &mut Ctx,
    n: usize,
    ours: &Measured,
    theirs: &Measured,
    unsynced: &Result<Unsynced, String>,
) -> Option<String> {
    let ms = |x: f64| fmt_dur(Duration::from_secs_f64(x / 1e3));
    let (o, t, u) = match (ours, theirs, unsynced) {
        (Ok(o), Ok(t), Ok(u)) => (o, t, u),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            ctx.report.check(
                format!("Puts beside OpenDHT, {n} nodes"),
                format!("not measured: {e}"),
                false,
            );
            return None;
        }
    };
    let note = format!(
        "Puts at {n} nodes: ours synced {} p50 and {:.0}/s with {IN_FLIGHT} in flight; ours \
         unsynced (`sync_writes: false`, a network of its own) {} p50 and {:.0}/s; \
         this disk's raw sync (append 37 bytes and `fdatasync`, p50) {}, and {} for \
         {DEFAULT_REPLICAS} such syncs at once on files of their own until the last is done \
         (the disk work of one synced put here, where every holder shares this disk); OpenDHT \
         {} p50 and {}/s.",
        ms(o.put.0),
        o.puts_per_s.unwrap_or(f64::NAN),
        ms(u.put_p50_ms),
        u.puts_per_s,
        ms(u.raw_sync_ms),
        ms(u.raw_syncs_ms),
        ms(t.put.0),
        t.puts_per_s
            .map_or("not measured".into(), |r| format!("{r:.0}")),
    );
    let rate = o.puts_per_s.unwrap_or(0.0) / t.puts_per_s.unwrap_or(f64::INFINITY);
    let checks = [
        (
            format!("Unsynced put p50 ≥ 10× faster than OpenDHT's put p50, {n} nodes"),
            format!(
                "{} vs {} → {:.1}×",
                ms(u.put_p50_ms),
                ms(t.put.0),
                t.put.0 / u.put_p50_ms
            ),
            t.put.0 / u.put_p50_ms >= 10.0,
        ),
        synced_within(
            format!("one raw sync + the network's share (unsynced p50), {n} nodes"),
            o.put.0,
            u.raw_sync_ms,
            u.put_p50_ms,
        ),
        synced_within(
            format!(
                "{DEFAULT_REPLICAS} raw syncs at once on this disk + the network's share, \
                 {n} nodes (every holder shares one disk here)"
            ),
            o.put.0,
            u.raw_syncs_ms,
            u.put_p50_ms,
        ),
        (
            format!("Puts/s with {IN_FLIGHT} in flight (synced) ≥ 25× OpenDHT's, {n} nodes"),
            format!(
                "{:.0} vs {} → {rate:.1}×",
                o.puts_per_s.unwrap_or(f64::NAN),
                t.puts_per_s.map_or("—".into(), |r| format!("{r:.0}"))
            ),
            rate >= 25.0,
        ),
    ];
    for (target, measured, met) in checks {
        ctx.report.check(target, measured, met);
    }
    Some(note)
}

/// Why the harness cannot run here, if it cannot.
fn peer_missing(script: &Path) -> Option<String> {
    let mut import = Command::new(PYTHON);
    import.args(["-c", "import opendht"]).stderr(Stdio::null());
    if !script.is_file() {
        Some(format!("{} is missing", script.display()))
    } else if !import.status().is_ok_and(|s| s.success()) {
        Some("python3-opendht is not installed (`import opendht` fails)".into())
    } else {
        None
    }
}

/// Runs the harness for `n` nodes and reads its result line.
fn run_peer(script: &Path, n: usize, ops: usize) -> Measured {
    eprintln!("  OpenDHT: {n} nodes, {ops} operations");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .args(["--nodes", &n.to_string(), "--ops", &ops.to_string()])
        .args(["--conc", &IN_FLIGHT.to_string(), "--bootstrap", "single"])
        .stdout(Stdio::piped()) // its stderr (a traceback if it fails) goes to ours
        .spawn()
        .map_err(|e| format!("cannot start {PYTHON}: {e}"))?;
    // Read its output meanwhile, so that a full pipe cannot stall it.
    let mut pipe = child.stdout.take().ok_or("no pipe from the harness")?;
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if t0.elapsed() > PEER_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {} s", PEER_LIMIT.as_secs()));
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("cannot wait for the harness: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let Some(json) = out.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        return Err(format!("no result line ({status}; its errors are above)"));
    };
    let num = |field: &str| json_number(json, field).ok_or(format!("no {field} in its result"));
    let ok = ["put_ok", "get_ok", "tput_ok"].map(|f| num(f).unwrap_or(0.0) as usize);
    Ok(Figures {
        put: (num("put_p50_ms")?, num("put_p99_ms")?),
        get: (num("get_p50_ms")?, num("get_p99_ms")?),
        gets_per_s: num("tput_ops_s")?,
        kb_formed: num("rss_node_kb_formed")?,
        kb_after: num("rss_node_kb")?,
        threads: num("threads")? / n as f64,
        puts_per_s: None,
        remarks: format!(
            "{}formed in {:.1} s",
            shortfalls(ops, ok),
            json_number(json, "formed_s").unwrap_or(f64::NAN)
        ),
    })
}

/// The number after `"field":` in a flat JSON object; `None` when absent or `null`.
fn json_number(json: &str, field: &str) -> Option<f64> {
    let at = json.find(&format!("\"{field}\":"))? + field.len() + 3;
    let rest = json[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// The same figures for a freshly built libpastry network of `n` nodes.
fn measure_ours(ctx: &mut Ctx, n: usize, ops: usize) -> Measured {
    let mut rng = Rng::seeded(ctx.rng.next_u64());
    let net = ctx.nets.get(n, Profile::Default)?;
    let (before, settled) = (net.before, net.settled);
    let per_node = |kb: u64| (kb as f64 - before.rss_kb as f64) / n as f64;
    warm_up(net, &mut rng);
    let client_at = |i: usize| {
        let client = Client::with_config(
            Entry::Peer(net.nodes[i].info().addr),
            ClientConfig::new(key()),
        );
        for w in 0..2 * n {
            let _ = client.get(format!("warm-{i}-{w}")); // absent: reaches every holder
        }
        client
    };
    let keys: Vec<String> = (0..ops).map(|i| format!("{i:04}")).collect();
    let value = |i: usize| (i as u32).to_be_bytes();
    // Sequential operations on the keys: the sorted times of those that succeeded.
    let timed = |op: &dyn Fn(usize) -> bool| {
        let mut times = Vec::with_capacity(ops);
        for i in 0..ops {
            let t = Instant::now();
            if op(i) {
                times.push(t.elapsed());
            }
        }
        sort(&mut times);
        times
    };
    // Requests a client sent per operation while `run` ran `ops` of them.
    let per_op = |client: &Client, run: &dyn Fn() -> Vec<Duration>| {
        let sent = client.stats().sent;
        let times = run();
        let per_op = (client.stats().sent - sent) as f64 / ops as f64;
        (times, per_op)
    };
    let putter = client_at(1);
    let (puts, put_requests) = per_op(&putter, &|| {
        timed(&|i| putter.put(&keys[i], &value(i)).is_ok())
    });
    let getter = client_at(n / 2);
    let (gets, get_requests) = per_op(&getter, &|| {
        timed(&|i| matches!(getter.get(&keys[i]), Ok(f) if f.data == value(i)))
    });
    let mut order: Vec<usize> = (0..ops).collect();
    for i in (1..ops).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let reader = client_at(n - 1);
    let (next, found) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let t = Instant::now();
    thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            // Each takes the next key until none is left: 32 gets in flight throughout.
            s.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if matches!(reader.get(&keys[i]), Ok(f) if f.data == value(i)) {
                        found.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let (took, found) = (t.elapsed(), found.into_inner());
    let puts_per_s = puts_in_flight(&putter, "p", ops);
    let after = Resources::now();
    let ms = |v: &[Duration], p| secs(pct(v, p)) * 1e3;
    Ok(Figures {
        put: (ms(&puts, 50.0), ms(&puts, 99.0)),
        get: (ms(&gets, 50.0), ms(&gets, 99.0)),
        gets_per_s: found as f64 / took.as_secs_f64(),
        kb_formed: per_node(settled.rss_kb),
        kb_after: per_node(after.rss_kb),
        threads: (settled.threads as f64 - before.threads as f64) / n as f64,
        puts_per_s: Some(puts_per_s),
        remarks: format!(
            "{}the client's requests per put {put_requests:.2}, per get {get_requests:.2}",
            shortfalls(ops, [puts.len(), gets.len(), found])
        ),
    })
}

/// Which operations fell short of `ops` successes: puts, gets, gets in flight.
fn shortfalls(ops: usize, ok: [usize; 3]) -> String {
    let mut text = String::new();
    for (ok, what) in ok.into_iter().zip(["puts", "gets", "gets in flight"]) {
        if ok < ops {
            text += &format!("{what}: {ok} of {ops} ok; ");
        }
    }
    text
}

fn row(ctx: &mut Ctx, name: &str, n: usize, f: &Measured, base: Option<&Figures>) {
    let mut cells = vec![name.to_string(), n.to_string()];
    let f = match f {
        Ok(f) => f,
        Err(e) => {
            cells.push(format!("not measured: {e}"));
            return ctx.report.row(cells);
        }
    };
    let ms = |x: f64| fmt_dur(Duration::from_secs_f64(x / 1e3));
    cells.extend([
        ms(f.put.0),
        ms(f.put.1),
        ms(f.get.0),
        ms(f.get.1),
        format!("{:.0}", f.gets_per_s),
        f.puts_per_s.map_or("—".into(), |r| format!("{r:.0}")),
        format!("{:.0} KiB", f.kb_formed),
        format!("{:.0} KiB", f.kb_after),
        format!("{:.1}", f.threads),
    ]);
    cells.extend(match base {
        Some(b) => [
            format!("{:.1}", b.get.0 / f.get.0),
            format!("{:.1}", f.gets_per_s / b.gets_per_s),
            format!("{:.2}", f.kb_formed / b.kb_formed),
        ],
        None => ["—".into(), "—".into(), "—".into()],
    });
    cells.push(f.remarks.clone());
    ctx.report.row(cells);
}

fn check(ctx: &mut Ctx, n: usize, ours: &Measured, theirs: &Measured) {
    let targets = [
        format!("Get p50 ≥ 30× faster than OpenDHT's, {n} nodes"),
        format!("Gets/s with {IN_FLIGHT} in flight ≥ 25× OpenDHT's, {n} nodes"),
        format!("Memory per formed node ≤ OpenDHT's, {n} nodes"),
    ];
    let (measured, met) = match (ours, theirs) {
        (Ok(o), Ok(t)) => {
            let (get, rate) = (t.get.0 / o.get.0, o.gets_per_s / t.gets_per_s);
            let measured = [
                format!("{:.3} ms vs {:.3} ms → {get:.1}×", o.get.0, t.get.0),
                format!("{:.0} vs {:.0} → {rate:.1}×", o.gets_per_s, t.gets_per_s),
                format!("{:.0} KiB vs {:.0} KiB", o.kb_formed, t.kb_formed),
            ];
            (
                measured,
                [get >= 30.0, rate >= 25.0, o.kb_formed <= t.kb_formed],
            )
        }
        (Err(e), _) | (_, Err(e)) => ([(); 3].map(|_| format!("not measured: {e}")), [false; 3]),
    };
    for ((target, measured), met) in targets.into_iter().zip(measured).zip(met) {
        ctx.report.check(target, measured, met);
    }
}
