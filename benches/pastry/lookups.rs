//! Sections 1 and 2: lookup latency and lookup throughput.

use super::*;

pub(crate) fn lookup_latency(ctx: &mut Ctx) {
    let runs: Vec<(usize, Profile)> = ctx.opts.pick(
        vec![
            (16, Profile::Default),
            (64, Profile::Default),
            (64, Profile::NoPool),
            (256, Profile::Default),
            (256, Profile::NoPool),
            (256, Profile::Large),
        ],
        vec![
            (16, Profile::Default),
            (64, Profile::Default),
            (64, Profile::NoPool),
        ],
    );
    let samples = ctx.opts.pick(3000, 300);
    ctx.report.note(format!(
        "{samples} timed lookups per row, each for a random key from a random node, after \
         untimed ones that open the pooled connections (rounds of N until one opens fewer than \
         N / 50 connections: each node then holds connections to the nodes of its tables, as \
         in a network that has been running). A lookup's first step is local; each \
         hop is one request. The raw round trips are interleaved with the lookups (10 rounds \
         of {} lookups, then 500 raw round trips on one established connection and 500 on one \
         of {RAW_CONNS} established connections picked at random, like a lookup that reaches \
         a different node's thread at each hop), so that both see the same machine state and \
         maintenance traffic. Lookups are forwarded hop by hop, so a hop is a request from \
         one node to the next over a connection it keeps. 64 and 256 nodes are also measured \
         with `pool_per_peer: 0` (no connection kept: every request opens its own), the \
         setting with which 1,000 nodes fit in one process under the descriptor limit \
         (section 7); the target is checked for the default configuration.",
        samples / 10
    ));
    ctx.report.table(&[
        "Nodes",
        "Configuration",
        "Lookup p50",
        "Lookup mean",
        "Lookup p99",
        "Mean hops",
        "Raw RTT p50",
        "Raw RTT p99",
        "Raw RTT p50, random of 64",
        "p50 ÷ (hops × RTT)",
        "p50 ÷ (hops × RTT of random of 64)",
        "Target ≤ 1.5",
        "After: threads / descriptors / nodes discovery lists",
    ]);
    for (n, profile) in runs {
        let mut rng = Rng::seeded(ctx.rng.next_u64());
        let lead = vec![n.to_string(), profile.describe().into()];
        let net = match ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) {
            Ok(net) => net,
            Err(e) => {
                // The target is the library's as configured by default; the other rows show
                // what a configuration for scale costs.
                if n >= 64 && profile == Profile::Default {
                    ctx.report.check(
                        format!(
                            "Lookup p50 ≤ 1.5 × mean hops × raw RTT, {n} nodes, {}",
                            profile.describe()
                        ),
                        format!("network does not start: {e}"),
                        false,
                    );
                }
                continue;
            }
        };
        warm_up(net, &mut rng);
        let mut l = Lookups::default();
        let (mut raw, mut fan) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            l.extend(random_lookups(net, samples / 10, &mut rng));
            raw.extend(raw_rtts(&ctx.raw[0], 500));
            fan.extend(raw_fan_out(&ctx.raw, 500, &mut rng));
        }
        let after = Resources::now();
        let listed = net.discovery.peers().len();
        sort(&mut l.latencies);
        sort(&mut raw);
        sort(&mut fan);
        let hops = mean_usize(&l.hops);
        let (p50, rtt) = (pct(&l.latencies, 50.0), pct(&raw, 50.0));
        let ratio = secs(p50) / (hops * secs(rtt));
        let met = ratio <= 1.5 && l.failures == 0 && l.wrong == 0;
        ctx.report.row(vec![
            n.to_string(),
            profile.describe().into(),
            format!("{}{}", fmt_dur(p50), failures_note(&l)),
            fmt_dur(mean_dur(&l.latencies)),
            fmt_dur(pct(&l.latencies, 99.0)),
            format!("{hops:.2}"),
            fmt_dur(rtt),
            fmt_dur(pct(&raw, 99.0)),
            fmt_dur(pct(&fan, 50.0)),
            format!("{ratio:.2}"),
            format!("{:.2}", secs(p50) / (hops * secs(pct(&fan, 50.0)))),
            yes_no(met),
            format!("{} / {} / {listed}", after.threads, after.fds),
        ]);
        if n >= 64 && profile == Profile::Default {
            ctx.report.check(
                format!(
                    "Lookup p50 ≤ 1.5 × mean hops × raw RTT, {n} nodes, {}",
                    profile.describe()
                ),
                format!(
                    "{} vs {hops:.2} × {} → {ratio:.2}×",
                    fmt_dur(p50),
                    fmt_dur(rtt)
                ),
                met,
            );
        }
    }
}

pub(crate) fn lookup_throughput(ctx: &mut Ctx) {
    let n = 64;
    let window = ctx
        .opts
        .pick(Duration::from_secs(3), Duration::from_millis(500));
    ctx.report.note(format!(
        "{n} nodes. Each caller is a thread doing lookups of random keys from random nodes for \
         {:.1} s in all; the raw rate is the same number of threads, each doing 64-byte round \
         trips on its own established connection for the same time. The two take turns, \
         {ROUNDS} rounds of {:.2} s each, so that both see the same state of the machine. A \
         lookup of h hops is h requests, so the like-for-like figure is hop requests per second \
         (lookups × mean hops) against raw requests per second. 2 cores are shared by callers \
         and servers. Beside the raw rate, taking turns with it, the same echo served by one \
         thread a processor waiting in epoll (the readiness-driven rate): what a server of a \
         fixed number of threads, as the issue asks a node to be, reaches here doing nothing \
         but echo. With the default configuration, that echo also over as many connections as \
         the nodes hold (each caller taking turns at random at its share of them), the \
         callers as many: the raw and readiness-driven rates use one connection a caller, \
         while lookups go over the nodes' thousand or more, which costs the kernel more for \
         each message (colder socket state, longer lookups of the socket a segment is for).",
        window.as_secs_f64(),
        (window / ROUNDS).as_secs_f64()
    ));
    ctx.report.table(&[
        "Configuration",
        "Callers",
        "Lookups/s",
        "Mean hops",
        "Hop requests/s",
        "Raw requests/s",
        "Readiness-driven requests/s",
        "Lookups ÷ raw",
        "Hop requests ÷ raw",
        "Readiness-driven ÷ raw",
        "Hop requests ÷ readiness-driven",
        "Readiness-driven over the nodes' connections: connections, requests/s",
        "Hop requests ÷ that",
        "After: threads / descriptors / nodes discovery lists",
    ]);
    for profile in [Profile::Default, Profile::NoPool] {
        let seed = ctx.rng.next_u64();
        let lead = vec![profile.describe().into()];
        let Ok(net) = ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) else {
            continue;
        };
        let mut rng = Rng::seeded(seed);
        warm_up(net, &mut rng);
        // As many connections to the echo as the nodes hold (two sockets each, both in this
        // process), at most the descriptors a process may spare for them.
        let spread = match profile {
            Profile::Default => {
                let held = count_sockets().saturating_sub(ctx.base_sockets) / 2;
                warm_connections(ctx.ready_addr, held.min(SPREAD_MOST), 2)
            }
            _ => Vec::new(),
        };
        for callers in [1usize, 4, 16, TARGET_CALLERS] {
            let done = Concurrent::default();
            let (mut raw_trips, mut ready_trips, mut spread_trips) = (0.0, 0.0, 0.0);
            let round = window / ROUNDS;
            for r in 0..ROUNDS {
                let part = concurrent_lookups(net, callers, round, seed ^ u64::from(r));
                done.add(&part);
                raw_trips += raw_rate(&ctx.raw[..callers], round) * round.as_secs_f64();
                ready_trips += raw_rate(&ctx.ready[..callers], round) * round.as_secs_f64();
                if !spread.is_empty() {
                    spread_trips += spread_rate(&spread, callers, round) * round.as_secs_f64();
                }
            }
            let raw = raw_trips / window.as_secs_f64();
            let ready = ready_trips / window.as_secs_f64();
            // The echo over the nodes' connections, when measured: how many, its rate.
            let spread_echo =
                (!spread.is_empty()).then(|| (spread.len(), spread_trips / window.as_secs_f64()));
            let after = Resources::now();
            let listed = net.discovery.peers().len();
            let lookups = done.lookups.into_inner();
            let per_s = lookups as f64 / window.as_secs_f64();
            let mean_hops = done.hops.into_inner() as f64 / lookups.max(1) as f64;
            let ratio = per_s * mean_hops / raw;
            let mut failed = String::new();
            let (wrong, failures) = (done.wrong.into_inner(), done.failures.into_inner());
            if wrong > 0 {
                failed += &format!(" ({wrong} ended at the wrong node)");
            }
            if failures > 0 {
                failed += &format!(" ({failures} failed)");
            }
            ctx.report.row(vec![
                profile.describe().into(),
                callers.to_string(),
                format!("{per_s:.0}{failed}"),
                format!("{mean_hops:.2}"),
                format!("{:.0}", per_s * mean_hops),
                format!("{raw:.0}"),
                format!("{ready:.0}"),
                format!("{:.3}", per_s / raw),
                format!("{ratio:.2}"),
                format!("{:.2}", ready / raw),
                format!("{:.2}", per_s * mean_hops / ready),
                spread_echo.map_or("–".into(), |(k, rate)| format!("{k}, {rate:.0}")),
                spread_echo.map_or("–".into(), |(_, rate)| {
                    format!("{:.2}", per_s * mean_hops / rate)
                }),
                // The nodes' descriptors: not the echo's connections, two sockets each.
                format!(
                    "{} / {} / {listed}",
                    after.threads,
                    after.fds.saturating_sub(2 * spread.len())
                ),
            ]);
            if callers == TARGET_CALLERS && profile == Profile::Default {
                ctx.report.check(
                    format!(
                        "Lookups/s × mean hops ≥ 0.6 × raw requests/s, {callers} callers, \
                         {n} nodes, {}",
                        profile.describe()
                    ),
                    format!(
                        "{:.0} vs {raw:.0} → {ratio:.2} (the readiness-driven echo: {ready:.0}, \
                         {:.2} of raw{})",
                        per_s * mean_hops,
                        ready / raw,
                        spread_echo.map_or(String::new(), |(k, rate)| format!(
                            "; over the nodes' {k} connections: {rate:.0}, hop requests \
                             {:.2} of it",
                            per_s * mean_hops / rate
                        ))
                    ),
                    ratio >= 0.6,
                );
            }
        }
    }
}

/// Most connections the echo over the nodes' connections is given: both their ends are in
/// this process, beside the nodes' own descriptors.
const SPREAD_MOST: usize = 4096;

/// The callers of the throughput target (issue 12: "lookups/s with 32 callers").
const TARGET_CALLERS: usize = 32;

/// Rounds a throughput window is split into, the lookups and the raw round trips taking
/// turns (as the latency rounds of Section 1 do): on a shared machine a rate measured
/// seconds after another can see a different machine.
const ROUNDS: u32 = 6;

/// What concurrent callers did in a window.
#[derive(Default)]
pub(crate) struct Concurrent {
    pub(crate) lookups: AtomicU64,
    pub(crate) hops: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Lookups that ended at a node other than the live node closest to the key.
    pub(crate) wrong: AtomicU64,
}

impl Concurrent {
    /// Counts `other`'s lookups in with these.
    fn add(&self, other: &Concurrent) {
        for (sum, part) in [
            (&self.lookups, &other.lookups),
            (&self.hops, &other.hops),
            (&self.failures, &other.failures),
            (&self.wrong, &other.wrong),
        ] {
            sum.fetch_add(part.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// `callers` threads doing lookups for `window`.
pub(crate) fn concurrent_lookups(
    net: &Net,
    callers: usize,
    window: Duration,
    seed: u64,
) -> Concurrent {
    let done = Concurrent::default();
    let deadline = Instant::now() + window;
    thread::scope(|s| {
        for c in 0..callers {
            let done = &done;
            s.spawn(move || {
                let mut rng = Rng::seeded(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9));
                while Instant::now() < deadline {
                    let key = Id(rng.next_u64() as u16);
                    match net.random_node(&mut rng).lookup(key) {
                        Ok(route) => {
                            done.lookups.fetch_add(1, Ordering::Relaxed);
                            done.hops.fetch_add(route.hops() as u64, Ordering::Relaxed);
                            if !net.is_responsible(key, route.responsible().id) {
                                done.wrong.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            done.failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    done
}
