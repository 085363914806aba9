//! The process and the machine: resources, limits, the commit, the time; and number formatting.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Resources {
    pub(crate) rss_kb: u64,
    pub(crate) threads: usize,
    pub(crate) fds: usize,
}

impl Resources {
    pub(crate) fn now() -> Resources {
        Resources {
            rss_kb: status_kb("VmRSS"),
            threads: count_dir("/proc/self/task"),
            fds: count_dir("/proc/self/fd"),
        }
    }
}

/// Sockets the process holds.
pub(crate) fn count_sockets() -> usize {
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            fs::read_link(fd.path()).is_ok_and(|to| to.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

pub(crate) fn count_dir(path: &str) -> usize {
    fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// A `kB` field of /proc/self/status.
pub(crate) fn status_kb(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    proc_kb(&status, field)
}

pub(crate) fn proc_kb(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Processor time the whole process has used so far, user and system: every node, client
/// and reactor of a benchmark runs in it.
pub(crate) fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::new(
            t.tv_sec.max(0) as u64,
            (t.tv_usec.max(0) as u32).saturating_mul(1000),
        )
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Resets VmHWM to the current RSS.
pub(crate) fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

extern "C" {
    /// glibc: returns freed heap memory to the system, so that RSS before a measurement does
    /// not include what an earlier network freed.
    fn malloc_trim(pad: usize) -> i32;
}

pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Touches `bytes` of fresh memory once and frees it. On a virtual machine whose memory the
/// host backs on first use, a page the guest never used costs a fault in the host the first
/// time (a 256 MiB file written into the page cache ran at 0.75 GB/s the first time and
/// 4.4–5 GB/s after, on this project's test machine): touched here, the pages a transfer's
/// files take from the page cache later measure the library, not the host's first faults.
pub(crate) fn prime_memory(bytes: usize) {
    const PAGE: usize = 4096;
    let mut block = vec![0u8; bytes];
    for at in (0..bytes).step_by(PAGE) {
        block[at] = 1;
    }
    std::hint::black_box(&block);
}

/// The open-file limit, read once (it cannot be read once descriptors have run out).
pub(crate) fn fd_limit() -> String {
    static LIMIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIMIT.get_or_init(read_fd_limit).clone()
}

pub(crate) fn read_fd_limit() -> String {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// The first three fields of /proc/loadavg.
pub(crate) fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The commit checked out, read from .git without running git.
pub(crate) fn git_commit() -> String {
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join(".git");
    let head = fs::read_to_string(git.join("HEAD")).unwrap_or_default();
    let head = head.trim();
    let hash = match head.strip_prefix("ref: ") {
        None => head.to_string(),
        Some(name) => fs::read_to_string(git.join(name))
            .map(|h| h.trim().to_string())
            .or_else(|_| {
                fs::read_to_string(git.join("packed-refs")).map(|packed| {
                    packed
                        .lines()
                        .find(|l| l.ends_with(name))
                        .and_then(|l| l.split_whitespace().next())
                        .unwrap_or_default()
                        .to_string()
                })
            })
            .unwrap_or_default(),
    };
    if hash.is_empty() {
        "unknown".into()
    } else {
        hash.chars().take(12).collect()
    }
}

pub(crate) fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = proc_kb(&meminfo, "MemTotal") as f64 / (1024.0 * 1024.0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem_gib:.1} GiB memory, Linux {}, open-file limit {}",
        kernel.trim(),
        fd_limit()
    )
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian calendar.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) fn sort(v: &mut [Duration]) {
    v.sort_unstable();
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn pct<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn mean_dur(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / (v.len().max(1) as u32)
}

pub(crate) fn mean_usize(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(crate) fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

pub(crate) fn fmt_bytes(b: u64) -> String {
    if b >= 1024 * MIB && b % (1024 * MIB) == 0 {
        format!("{} GiB", b / (1024 * MIB))
    } else if b >= MIB {
        format!("{:.0} MiB", b as f64 / MIB as f64)
    } else if b >= 1024 {
        format!("{:.0} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

pub(crate) fn yes_no(ok: bool) -> String {
    if ok { "yes" } else { "**no**" }.into()
}

pub(crate) fn failures_note(l: &Lookups) -> String {
    let mut note = String::new();
    if l.wrong > 0 {
        note = format!(" ({} ended at the wrong node)", l.wrong);
    }
    if let Some(e) = &l.first_error {
        note += &format!(" ({} failed, first: {e})", l.failures);
    }
    note
}
