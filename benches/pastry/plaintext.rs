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
    // Times of [store, retrieve] for each network, and the process's processor time in each.
    let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut cpu = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for round in 0..ROUNDS {
        for i in [round % 2, 1 - round % 2] {
            let (net, times, cpu) = (&nets[i], &mut times[i], &mut cpu[i]);
            let client = net.profile.client(net.discovery.local_addr());
            let (t, c) = (Instant::now(), process_cpu());
            let stored = client.store_file(src);
            let store_time = t.elapsed();
            let store_cpu = process_cpu().saturating_sub(c);
            let (t, c) = (Instant::now(), process_cpu());
            let fetched = stored.and_then(|_| client.retrieve_file("object-large", &out));
            let fetch_time = t.elapsed();
            let fetch_cpu = process_cpu().saturating_sub(c);
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
            cpu[0].push(store_cpu);
            cpu[1].push(fetch_cpu);
        }
    }
    drop(nets);
    let cipher = cipher_time(size);
    ctx.report.note(format!(
        "Processor time is the whole process's (user and system) while the operation ran: \
         client, nodes and their reactors, the medians. The cipher alone: sealing and \
         opening {} in records of {} bytes with AES-256-GCM (`ring`, as the connections \
         do), on one thread, took {:.0} ms: work an encrypted transfer cannot leave out, \
         done by the same {} processors as everything else here.",
        fmt_bytes(size),
        CIPHER_RECORD,
        secs(cipher) * 1e3,
        thread::available_parallelism().map_or(0, |n| n.get())
    ));
    ctx.report.table(&[
        "Operation",
        "Encrypted MiB/s",
        "Plaintext MiB/s",
        "Raw stream MiB/s",
        "Encrypted ÷ raw",
        "Plaintext ÷ raw",
        "Encrypted ÷ plaintext",
        "Target ≥ 1",
        "Processor ms: encrypted, plaintext",
    ]);
    let rate = |v: &mut Vec<Duration>| {
        sort(v);
        size as f64 / secs(pct(v, 50.0)) / MIB as f64
    };
    let ms = |v: &mut Vec<Duration>| {
        sort(v);
        secs(pct(v, 50.0)) * 1e3
    };
    let raw = raw_rate / MIB as f64;
    let [[enc_store, enc_fetch], [plain_store, plain_fetch]] = &mut times;
    let [[enc_store_cpu, enc_fetch_cpu], [plain_store_cpu, plain_fetch_cpu]] = &mut cpu;
    for (op, enc, plain, enc_cpu, plain_cpu) in [
        (
            "store",
            rate(enc_store),
            rate(plain_store),
            ms(enc_store_cpu),
            ms(plain_store_cpu),
        ),
        (
            "retrieve",
            rate(enc_fetch),
            rate(plain_fetch),
            ms(enc_fetch_cpu),
            ms(plain_fetch_cpu),
        ),
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
            format!("{enc_cpu:.0}, {plain_cpu:.0}"),
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

/// Plaintext bytes of a full record on an encrypted connection: Noise's largest message less
/// the tag.
const CIPHER_RECORD: usize = 65_519;

/// Processor time (here, wall time on one thread) of sealing and opening `size` bytes in
/// full records with AES-256-GCM, as an encrypted connection's two ends do: a 1 MiB buffer
/// sealed and opened over and over, as a transfer's reads are.
fn cipher_time(size: u64) -> Duration {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let Ok(key) = UnboundKey::new(&AES_256_GCM, &[7; 32]) else {
        return Duration::ZERO;
    };
    let key = LessSafeKey::new(key);
    let mut buf = vec![0x5a_u8; MIB as usize];
    let mut counter = 0u64;
    let t = Instant::now();
    for _ in 0..size.div_ceil(MIB) {
        for record in buf.chunks_mut(CIPHER_RECORD) {
            let mut nonce = [0; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            counter += 1;
            // Each record's one nonce, for its sealing and its opening.
            let once = || Nonce::assume_unique_for_key(nonce);
            let sealed = key.seal_in_place_separate_tag(once(), Aad::empty(), record);
            let opened = sealed.and_then(|tag| {
                key.open_in_place_separate_tag(once(), Aad::empty(), tag, record, 0..)
                    .map(|_| ())
            });
            assert!(opened.is_ok(), "a record sealed here opens");
        }
    }
    std::hint::black_box(&buf);
    t.elapsed()
}
