//! Section 4: store and retrieve of large objects.

use super::*;

pub(crate) fn store(ctx: &mut Ctx) {
    let nodes = 16;
    let size = ctx.opts.pick(256 * MIB, 32 * MIB);
    let big = ctx.opts.pick(1024 * MIB, 128 * MIB);
    ctx.report.note(format!(
        "A {} object stored with `Client::store_file` and retrieved with \
         `Client::retrieve_file` (file to file, streamed) through a {nodes}-node network, \
         beside a raw loopback TCP stream of the same size measured in the same run. A store \
         goes to the responsible node, which streams it to its disk, then copies it to the \
         other holders (default 3 copies), so the wire carries copies × size, the holder's \
         part after the client's; the `sync_writes: true` default fsyncs each copy, \
         and the client's (`ClientConfig::sync_writes`, set like the nodes') the retrieved \
         file. Files live on the same disk as the nodes' data.",
        fmt_bytes(size)
    ));
    // More than the section's transfers hold in the page cache at once.
    let primed = ctx.opts.pick(6 * 1024 * MIB, 512 * MIB);
    ctx.report.note(format!(
        "Before the section, {} of memory is touched once and freed (`prime_memory`): this \
         machine's host backs a page of its memory on first use, which made the first files \
         written into the page cache several times slower than any after them and the \
         transfers' rates depend on what ran before.",
        fmt_bytes(primed)
    ));
    prime_memory(primed as usize);
    let src = ctx.root.join("object-large");
    write_pattern_file(&src, size).expect("write the source file");
    let raw = raw_stream(ctx.sink, size);
    let raw_rate = size as f64 / secs(raw);
    let (crc_bytewise, crc_sliced, crc_folded) = crc_rates(&src);
    let file_copy = raw_file_stream(&src, &ctx.root.join("object-raw-copy"));
    ctx.report.note(format!(
        "For reference, in the same run over the same file: CRC-32/ISO-HDLC with the crc \
         crate's byte-at-a-time table (`Crc::<u32>`) {crc_bytewise:.0} MiB/s, with its 16-byte \
         table (`Crc::<u32, Table<16>>`) {crc_sliced:.0} MiB/s, with the crc32fast crate's \
         carry-less multiply folding, as the library computes it, {crc_folded:.0} MiB/s; a raw \
         file-to-file copy over \
         loopback TCP (read the file in 1 MiB blocks, send, receive, write a new file, no \
         fsync) {:.0} MiB/s.",
        size as f64 / MIB as f64 / secs(file_copy)
    ));
    ctx.report.table(&[
        "Configuration",
        "Operation",
        "Time",
        "Object MiB/s",
        "Wire MiB/s (copies × size)",
        "Raw stream MiB/s",
        "Object ÷ raw",
        "Target ≥ 0.70",
    ]);
    let profiles = [
        (Profile::Default, 3u64),
        (Profile::NoSync, 3),
        (Profile::NoSyncOneCopy, 1),
    ];
    for (profile, copies) in profiles {
        let lead = vec![profile.describe().into()];
        let Ok(net) = ctx
            .nets
            .get_or_report(nodes, profile, &mut ctx.report, lead)
        else {
            continue;
        };
        let client = profile.client(net.discovery.local_addr());
        let out = ctx.root.join("object-out");
        let t = Instant::now();
        let stored = client.store_file(&src);
        let store_time = t.elapsed();
        let t = Instant::now();
        let fetched = stored.as_ref().map_err(|e| e.to_string()).and_then(|_| {
            client
                .retrieve_file("object-large", &out)
                .map_err(|e| e.to_string())
        });
        let fetch_time = t.elapsed();
        let same = fetched.is_ok() && files_equal(&src, &out);
        let _ = fs::remove_file(&out);
        for (op, time, ok, wire_copies) in [
            ("store", store_time, stored.is_ok(), copies),
            ("retrieve", fetch_time, same, 1),
        ] {
            if !ok {
                let why = match (&stored, &fetched) {
                    (Err(e), _) => e.to_string(),
                    (_, Err(e)) => e.clone(),
                    _ => "retrieved bytes differ".into(),
                };
                ctx.report.row(vec![
                    profile.describe().into(),
                    op.into(),
                    format!("failed: {why}"),
                ]);
                continue;
            }
            let rate = size as f64 / secs(time);
            let ratio = rate / raw_rate;
            ctx.report.row(vec![
                profile.describe().into(),
                op.into(),
                fmt_dur(time),
                format!("{:.0}", rate / MIB as f64),
                format!("{:.0}", rate * wire_copies as f64 / MIB as f64),
                format!("{:.0}", raw_rate / MIB as f64),
                format!("{ratio:.2}"),
                yes_no(ratio >= 0.7),
            ]);
            ctx.report.check(
                format!(
                    "{op} ≥ 70% of raw stream, {}, {}",
                    fmt_bytes(size),
                    profile.describe()
                ),
                format!(
                    "{:.0} vs {:.0} MiB/s → {:.0}%",
                    rate / MIB as f64,
                    raw_rate / MIB as f64,
                    ratio * 100.0
                ),
                ratio >= 0.7,
            );
        }
    }
    encrypted_against_plaintext(ctx, nodes, &src, size, raw_rate);
    let _ = fs::remove_file(&src);
    peak_memory(ctx, nodes, big);
}

/// Peak memory growth of the process while a `size` object is stored and retrieved.
pub(crate) fn peak_memory(ctx: &mut Ctx, nodes: usize, size: u64) {
    let src = ctx.root.join("object-huge");
    let out = ctx.root.join("object-huge-out");
    write_pattern_file(&src, size).expect("write the source file");
    let entry = match ctx.nets.get(nodes, Profile::NoSync) {
        Ok(net) => net.discovery.local_addr(),
        Err(e) => {
            ctx.report.note(format!("memory test failed: {e}"));
            return;
        }
    };
    let client = Profile::NoSync.client(entry);
    trim_heap();
    let rss_before = status_kb("VmRSS");
    let reset = reset_peak_rss();
    let t = Instant::now();
    let result = client
        .store_file(&src)
        .and_then(|_| client.retrieve_file("object-huge", &out));
    let took = t.elapsed();
    let hwm = status_kb("VmHWM");
    let growth_mib = hwm.saturating_sub(rss_before) as f64 / 1024.0;
    let same = result.is_ok() && files_equal(&src, &out);
    let _ = fs::remove_file(&src);
    let _ = fs::remove_file(&out);
    ctx.report.note(format!(
        "Peak memory: a {} object stored and retrieved through {nodes} nodes ({}, 3 copies) \
         in {:.1} s. The peak (VmHWM) was reset to the current RSS just before, by writing \
         \"5\" to /proc/self/clear_refs{}.",
        fmt_bytes(size),
        Profile::NoSync.describe(),
        took.as_secs_f64(),
        if reset {
            ""
        } else {
            " (which FAILED: the peak may be older)"
        },
    ));
    ctx.report.table(&[
        "Object",
        "RSS before",
        "Peak RSS during",
        "Peak growth",
        "Largest frame (client)",
        "Target ≤ 64 MiB",
    ]);
    let outcome = match &result {
        Err(e) => format!(" (failed: {e})"),
        Ok(_) if !same => " (retrieved bytes differ)".into(),
        Ok(_) => String::new(),
    };
    ctx.report.row(vec![
        format!("{}{outcome}", fmt_bytes(size)),
        format!("{:.0} MiB", rss_before as f64 / 1024.0),
        format!("{:.0} MiB", hwm as f64 / 1024.0),
        format!("{growth_mib:.1} MiB"),
        fmt_bytes(client.stats().largest_frame),
        yes_no(growth_mib <= 64.0 && same),
    ]);
    ctx.report.check(
        format!("Peak memory growth ≤ 64 MiB moving {}", fmt_bytes(size)),
        format!("{growth_mib:.1} MiB"),
        growth_mib <= 64.0 && same,
    );
}
