//! Section 5: small values.

use super::*;

pub(crate) fn small_values(ctx: &mut Ctx) {
    let n = 64;
    let samples = ctx.opts.pick(1000, 100);
    ctx.report.note(format!(
        "`Client::put` and `Client::get` of a 4-byte value under {samples} distinct names, \
         through a {n}-node network, by one client entering through discovery (it keeps its \
         entry peer). Requests per operation: the client's own count (`Client::stats().sent`: \
         one request to the holder when the client has met it, else a refused guess, the \
         lookup sent to the entry peer and one request to the holder) plus the hops the \
         entry peer and those after it forwarded the lookup, plus for a put the holder's \
         round of copies to the other holders (sent side by side: one round trip). \
         The raw round trip (one established connection) is measured before, between and after \
         the puts and gets. Each copy is one entry appended to the holder's store log, so a \
         second baseline, measured in the same run on the same disk, is the raw disk work a \
         copy costs: for a put, append a 37-byte record to a file (and `fdatasync` it when \
         writes are synced: one raw sync of this disk); for a get, read it back at its offset \
         (`pread`). Expected = requests × raw RTT + disk ops in sequence × raw disk op \
         (1: a put's copies are written side by side, the holder's among them; 1 for a get)."
    ));
    ctx.report.table(&[
        "Configuration",
        "Operation",
        "p50",
        "p99",
        "Requests/op",
        "Raw RTT p50",
        "Raw disk op p50",
        "p50 ÷ raw RTT",
        "p50 ÷ (requests × raw RTT)",
        "p50 ÷ expected",
    ]);
    for profile in [Profile::Default, Profile::NoSync] {
        let lead = vec![profile.describe().into()];
        let Ok(net) = ctx.nets.get_or_report(n, profile, &mut ctx.report, lead) else {
            continue;
        };
        let client = profile.client(net.discovery.local_addr());
        let value = [1u8, 2, 3, 4];
        let names: Vec<String> = (0..samples)
            .map(|i| format!("small-{}-{i}", profile.name()))
            .collect();
        for name in names.iter().take(20) {
            let _ = client.put(format!("warm-{name}"), &value); // connections to the holders
        }
        // An operation answers with the hops its lookup was forwarded beyond the entry peer:
        // requests too, made by the peers rather than the client.
        let timed = |op: &dyn Fn(&str) -> Result<usize, String>| {
            let sent = client.stats().sent;
            let mut forwarded = 0;
            let mut times = Vec::with_capacity(samples);
            let mut error = None;
            for name in &names {
                let t = Instant::now();
                match op(name) {
                    Ok(hops) => {
                        times.push(t.elapsed());
                        forwarded += hops;
                    }
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            let requests = (client.stats().sent - sent + forwarded as u64) as f64 / samples as f64;
            sort(&mut times);
            (times, requests, error)
        };
        let sync = profile == Profile::Default;
        let fs_dir = ctx.root.join(format!("file-baseline-{}", profile.name()));
        let (file_write, file_read) = raw_log_ops(&fs_dir, samples.min(300), sync);
        let _ = fs::remove_dir_all(&fs_dir);
        // Raw round trips before, between and after, so that they share the machine's state.
        let mut raw = raw_rtts(&ctx.raw[0], 2000);
        let put = timed(&|name| {
            client
                .put(name, &value)
                .map(|stored| stored.route.hops())
                .map_err(|e| e.to_string())
        });
        raw.extend(raw_rtts(&ctx.raw[0], 2000));
        let get = timed(&|name| match client.get(name) {
            Ok(f) if f.data == value => Ok(f.route.hops()),
            Ok(_) => Err("wrong value".into()),
            Err(e) => Err(e.to_string()),
        });
        raw.extend(raw_rtts(&ctx.raw[0], 2000));
        sort(&mut raw);
        let rtt = pct(&raw, 50.0);
        // The holder versions a put, then writes its copy and the other holders' side by side:
        // one file op in sequence, and one more round trip (holder to holders) when there are
        // copies besides its own.
        let copies = 1.0;
        let put = (
            put.0,
            put.1 + if DEFAULT_REPLICAS > 1 { 1.0 } else { 0.0 },
            put.2,
        );
        for (op, (times, requests, error), file_op, copies) in [
            ("put", put, file_write, copies),
            ("get", get, file_read, copies),
        ] {
            if times.is_empty() {
                let e = error.unwrap_or_default();
                ctx.report.row(vec![
                    profile.describe().into(),
                    op.into(),
                    format!("failed: {e}"),
                ]);
                continue;
            }
            let p50 = pct(&times, 50.0);
            let failed = match error {
                Some(e) => format!(" ({} failed: {e})", samples - times.len()),
                None => String::new(),
            };
            ctx.report.row(vec![
                profile.describe().into(),
                op.into(),
                format!("{}{failed}", fmt_dur(p50)),
                fmt_dur(pct(&times, 99.0)),
                format!("{requests:.2}"),
                fmt_dur(rtt),
                fmt_dur(file_op),
                format!("{:.1}", secs(p50) / secs(rtt)),
                format!("{:.2}", secs(p50) / (requests * secs(rtt))),
                format!(
                    "{:.2}",
                    secs(p50) / (requests * secs(rtt) + copies * secs(file_op))
                ),
            ]);
        }
    }
}
