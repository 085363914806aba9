//! Section 4, continued: the encrypted path against the plaintext one, the same code in the
//! same run, so that what encryption costs a large transfer is measured rather than compared
//! with figures of another run (and another machine).

use super::*;

/// Store-then-retrieve rounds through each network, the two taking turns (each going first
/// in every other round, so that neither always follows the other's writes to the disk).
const ROUNDS: usize = 6;

/// Stores and retrieves `src` (`size` bytes) through two networks of `nodes` nodes that differ
/// only in their connections, and checks that the encrypted one is at least as fast.
pub(crate) fn encrypted_against_plaintext(
    ctx: &mut Ctx,
    nodes: usize,
    src: &Path,
    size: u64,
    raw_rate: f64,
) {
    let (enc, plain) = (Profile::NoSyncOneCopy, Profile::PlainOneCopy);
    ctx.report.note(format!(
        "Encrypted against plaintext: the same {} object stored and retrieved {ROUNDS} times \
         through each of two {nodes}-node networks that differ only in their connections, \
         {} (Noise handshake, AES-256-GCM records) and {}, the two taking turns, each first \
         in every other round; the medians. \
         Unsynced and one copy, so that the disk and the copies weigh least. Both as a ratio \
         to the raw stream above, measured in this run.",
        fmt_bytes(size),
        enc.describe(),
        plain.describe()
    ));
    ctx.nets.current = None; // its threads and sockets freed first
    let mut nets = Vec::new();
    for profile in [enc, plain] {
        let dir = ctx.root.join(format!("vs-{}", profile.name()));
        match Net::build(nodes, profile, &dir, ctx.rng.next_u64()) {
            Ok(net) => nets.push(net),
            Err(e) => {
                ctx.report
                    .note(format!("{} did not start: {e}", profile.describe()));
                return;
            }
        }
    }
    let out = ctx.root.join("object-vs-out");
    // Times of [store, retrieve] for each network.
    let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for round in 0..ROUNDS {
        for i in [round % 2, 1 - round % 2] {
            let (net, times) = (&nets[i], &mut times[i]);
            let client = net.profile.client(net.discovery.local_addr());
            let t = Instant::now();
            let stored = client.store_file(src);
            let store_time = t.elapsed();
            let t = Instant::now();
            let fetched = stored.and_then(|_| client.retrieve_file("object-large", &out));
            let fetch_time = t.elapsed();
            let same = fetched.is_ok() && files_equal(src, &out);
            let _ = fs::remove_file(&out);
            if !same {
                let why = fetched
                    .err()
                    .map_or("bytes differ".into(), |e| e.to_string());
                ctx.report
                    .note(format!("{}: failed: {why}", net.profile.describe()));
                return;
            }
            times[0].push(store_time);
            times[1].push(fetch_time);
        }
    }
    drop(nets);
    ctx.report.table(&[
        "Operation",
        "Encrypted MiB/s",
        "Plaintext MiB/s",
        "Raw stream MiB/s",
        "Encrypted ÷ raw",
        "Plaintext ÷ raw",
        "Encrypted ÷ plaintext",
        "Target ≥ 1",
    ]);
    let rate = |v: &mut Vec<Duration>| {
        sort(v);
        size as f64 / secs(pct(v, 50.0)) / MIB as f64
    };
    let raw = raw_rate / MIB as f64;
    let [[enc_store, enc_fetch], [plain_store, plain_fetch]] = &mut times;
    for (op, enc, plain) in [
        ("store", rate(enc_store), rate(plain_store)),
        ("retrieve", rate(enc_fetch), rate(plain_fetch)),
    ] {
        let ratio = enc / plain;
        ctx.report.row(vec![
            op.into(),
            format!("{enc:.0}"),
            format!("{plain:.0}"),
            format!("{raw:.0}"),
            format!("{:.2}", enc / raw),
            format!("{:.2}", plain / raw),
            format!("{ratio:.2}"),
            yes_no(ratio >= 1.0),
        ]);
        ctx.report.check(
            format!(
                "{op} of {} encrypted at least as fast as plaintext, as ratios to the raw \
                 stream of the same run",
                fmt_bytes(size)
            ),
            format!(
                "{:.2} vs {:.2} ({enc:.0} vs {plain:.0} MiB/s) → {ratio:.2}",
                enc / raw,
                plain / raw
            ),
            ratio >= 1.0,
        );
    }
}
