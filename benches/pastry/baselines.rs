//! The raw baselines every figure is set beside: loopback TCP and plain files.

use super::*;

/// An echo server: every connection gets a thread that answers each 64-byte request with it.
pub(crate) fn start_echo_server() -> SocketAddr {
    serve_forever(|mut s| {
        let mut buf = [0u8; RAW_MSG];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                return;
            }
        }
    })
}

/// An echo server served the way a node is, by a fixed number of threads driven by readiness
/// rather than a thread per connection: one thread a processor, each waiting in an epoll of its
/// own on the connections given to it in turn, answering whatever a connection holds. It does
/// nothing else (no framing, routing, records or cipher), so its rate is what any design
/// served by readiness can reach on this machine, a floor beneath a node's.
pub(crate) fn start_readiness_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a baseline server");
    let addr = listener.local_addr().expect("its address");
    let threads = thread::available_parallelism().map_or(2, usize::from);
    let polls: Vec<i32> = (0..threads)
        .map(|_| {
            // SAFETY: epoll_create1 takes no pointers.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            assert!(
                fd >= 0,
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            );
            thread::spawn(move || readiness_echo(fd));
            fd
        })
        .collect();
    thread::spawn(move || {
        for (i, stream) in listener.incoming().flatten().enumerate() {
            let _ = stream.set_nodelay(true);
            // Blocking sockets, watched level-triggered: a read follows readiness and so never
            // waits, and a reply of a few bytes always has room.
            let fd = std::os::fd::IntoRawFd::into_raw_fd(stream);
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd as u64,
            };
            // SAFETY: `event` outlives the call; `fd` is an open socket this server owns.
            unsafe { libc::epoll_ctl(polls[i % polls.len()], libc::EPOLL_CTL_ADD, fd, &mut event) };
        }
    });
    addr
}

/// One thread of [`start_readiness_echo_server`]: waits on `poll` and echoes what comes.
fn readiness_echo(poll: i32) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `events` has room for the 64 events asked for.
        let ready = unsafe { libc::epoll_wait(poll, events.as_mut_ptr(), 64, -1) };
        for event in &events[..usize::try_from(ready).unwrap_or(0)] {
            let fd = event.u64 as i32;
            // SAFETY: `buf` is valid for its length; `fd` stays open while it is watched.
            let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(got) = usize::try_from(got) else {
                continue;
            };
            if got == 0 {
                // SAFETY: the peer is gone; closing also takes the socket out of the poll.
                unsafe { libc::close(fd) };
                continue;
            }
            // SAFETY: the first `got` bytes of `buf` were just read.
            unsafe { libc::send(fd, buf.as_ptr().cast(), got, libc::MSG_NOSIGNAL) };
        }
    }
}

/// A sink: every connection gets a thread that reads to the end, then answers the byte count.
pub(crate) fn start_sink_server() -> SocketAddr {
    serve_forever(|mut s| {
        let mut buf = vec![0u8; MIB as usize];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => total += k as u64,
                Err(_) => return,
            }
        }
        let _ = s.write_all(&total.to_le_bytes());
    })
}

pub(crate) fn serve_forever(conn: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a baseline server");
    let addr = listener.local_addr().expect("its address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            thread::spawn(move || conn(stream));
        }
    });
    addr
}

/// `count` established, warmed-up connections to the echo server at `addr`, opened once at the
/// start so that a network that later runs out of descriptors cannot take the baseline down.
pub(crate) fn raw_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    warm_connections(addr, count, 200)
}

/// `count` established connections to the echo server at `addr`, each warmed up by `trips`
/// round trips.
pub(crate) fn warm_connections(addr: SocketAddr, count: usize, trips: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let s = connect_raw(addr);
            let mut buf = [7u8; RAW_MSG];
            for _ in 0..trips {
                (&s).write_all(&buf).unwrap();
                (&s).read_exact(&mut buf).unwrap();
            }
            s
        })
        .collect()
}

pub(crate) fn connect_raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to a baseline server");
    s.set_nodelay(true).expect("TCP_NODELAY");
    s
}

/// `count` timed 64-byte round trips on an established connection, sorted.
pub(crate) fn raw_rtts(s: &TcpStream, count: usize) -> Vec<Duration> {
    timed_round_trips(count, || s)
}

/// `count` timed 64-byte round trips, each on one of `conns` picked at random, sorted.
pub(crate) fn raw_fan_out(conns: &[TcpStream], count: usize, rng: &mut Rng) -> Vec<Duration> {
    timed_round_trips(count, || &conns[rng.below(conns.len())])
}

/// `count` timed 64-byte round trips, each on the connection `pick` gives, sorted.
fn timed_round_trips<'a>(count: usize, mut pick: impl FnMut() -> &'a TcpStream) -> Vec<Duration> {
    let mut buf = [7u8; RAW_MSG];
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            let mut s = pick();
            let t = Instant::now();
            s.write_all(&buf).unwrap();
            s.read_exact(&mut buf).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

/// Round trips per second of `conns.len()` threads, each on its own connection, for `window`.
pub(crate) fn raw_rate(conns: &[TcpStream], window: Duration) -> f64 {
    spread_rate(conns, conns.len(), window)
}

/// Round trips per second of `callers` threads for `window`, each taking turns at random at
/// its share of `conns` (caller `i` those at `i`, `i + callers`, ...): as many requests in
/// flight as callers, spread over every connection.
pub(crate) fn spread_rate(conns: &[TcpStream], callers: usize, window: Duration) -> f64 {
    let total = AtomicU64::new(0);
    let go = AtomicBool::new(false);
    thread::scope(|sc| {
        for first in 0..callers.min(conns.len()) {
            let (total, go) = (&total, &go);
            let share: Vec<&TcpStream> = conns.iter().skip(first).step_by(callers).collect();
            sc.spawn(move || {
                let mut rng = Rng::seeded(first as u64 + 1);
                let mut buf = [7u8; RAW_MSG];
                while !go.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                let deadline = Instant::now() + window;
                let mut done = 0;
                while Instant::now() < deadline {
                    let mut s = share[rng.below(share.len())];
                    s.write_all(&buf).unwrap();
                    s.read_exact(&mut buf).unwrap();
                    done += 1;
                }
                total.fetch_add(done, Ordering::Relaxed);
            });
        }
        thread::sleep(Duration::from_millis(20)); // every caller started
        go.store(true, Ordering::Release);
    });
    total.into_inner() as f64 / window.as_secs_f64()
}

/// Time to push `size` bytes through a fresh loopback connection until the reader has them all.
pub(crate) fn raw_stream(addr: SocketAddr, size: u64) -> Duration {
    let chunk = vec![0x5au8; MIB as usize];
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let mut s = connect_raw(addr);
        let t = Instant::now();
        let mut left = size;
        while left > 0 {
            let k = left.min(MIB) as usize;
            s.write_all(&chunk[..k]).unwrap();
            left -= k as u64;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = [0u8; 8];
        s.read_exact(&mut got).unwrap();
        assert_eq!(u64::from_le_bytes(got), size);
        best = best.min(t.elapsed());
    }
    best
}

/// Writes `size` bytes of a non-repeating pattern.
pub(crate) fn write_pattern_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(MIB as usize, fs::File::create(path)?);
    let mut rng = Rng::seeded(size);
    let mut block = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let k = left.min(MIB) as usize;
        f.write_all(&block[..k])?;
        left -= k as u64;
    }
    f.flush()
}

/// The raw disk work of a small put and get on `dir`'s file system, as the store's log does
/// it: p50 of appending a 37-byte record to one file (and `fdatasync` when `sync`), and of
/// reading one back at its offset (`pread`).
pub(crate) fn raw_log_ops(dir: &Path, count: usize, sync: bool) -> (Duration, Duration) {
    use std::os::unix::fs::FileExt;
    fs::create_dir_all(dir).expect("create the log baseline's directory");
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(dir.join("log"))
        .expect("create the log");
    let record = [0x5au8; 37];
    let mut writes = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        log.write_all(&record).expect("append");
        if sync {
            log.sync_data().expect("fdatasync");
        }
        writes.push(t.elapsed());
    }
    let mut reads = Vec::with_capacity(count);
    let mut buf = [0u8; 37];
    for i in 0..count {
        let t = Instant::now();
        log.read_exact_at(&mut buf, (i * record.len()) as u64)
            .expect("pread");
        reads.push(t.elapsed());
    }
    sort(&mut writes);
    sort(&mut reads);
    (pct(&writes, 50.0), pct(&reads, 50.0))
}

/// The raw disk work of a synced put's copies when every holder shares this disk, as in a
/// network in one process: p50 of `copies` threads each appending a 37-byte record to a file
/// of its own and syncing it, at the same moment, until the last is done.
pub(crate) fn raw_concurrent_syncs(dir: &Path, count: usize, copies: usize) -> Duration {
    fs::create_dir_all(dir).expect("create the sync baseline's directory");
    let logs: Vec<fs::File> = (0..copies)
        .map(|i| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("log-{i}")))
                .expect("create a log")
        })
        .collect();
    let barrier = std::sync::Barrier::new(copies + 1);
    let mut rounds = Vec::with_capacity(count);
    thread::scope(|s| {
        for mut log in &logs {
            let barrier = &barrier;
            s.spawn(move || {
                for _ in 0..count {
                    barrier.wait();
                    log.write_all(&[0x5au8; 37]).expect("append");
                    log.sync_data().expect("fdatasync");
                    barrier.wait();
                }
            });
        }
        for _ in 0..count {
            barrier.wait();
            let t = Instant::now();
            barrier.wait();
            rounds.push(t.elapsed());
        }
    });
    sort(&mut rounds);
    pct(&rounds, 50.0)
}

/// Time to copy the file at `src` to `dst` through a fresh loopback TCP connection: one thread
/// reads the file and sends it, another receives it into a new file (not synced).
pub(crate) fn raw_file_stream(src: &Path, dst: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let t = Instant::now();
    let receiver = {
        let dst = dst.to_path_buf();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut out = fs::File::create(&dst).expect("create the copy");
            std::io::copy(&mut s, &mut out).expect("receive");
        })
    };
    let mut s = connect_raw(addr);
    let mut f = fs::File::open(src).expect("open the source");
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let k = f.read(&mut buf).expect("read the source");
        if k == 0 {
            break;
        }
        s.write_all(&buf[..k]).expect("send");
    }
    drop(s);
    receiver.join().expect("receiver");
    let took = t.elapsed();
    let _ = fs::remove_file(dst);
    took
}

/// MiB/s of CRC-32/ISO-HDLC over the file at `path` (read into memory first): with the crc
/// crate's default byte-at-a-time table, with its 16-byte table, and with crc32fast (as the
/// library computes it).
pub(crate) fn crc_rates(path: &Path) -> (f64, f64, f64) {
    let data = fs::read(path).expect("read the source file");
    let mib = data.len() as f64 / MIB as f64;
    let bytewise = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let t = Instant::now();
    let a = bytewise.checksum(&data);
    let rate_bytewise = mib / secs(t.elapsed());
    let sliced = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
    let t = Instant::now();
    let b = sliced.checksum(&data);
    let rate_sliced = mib / secs(t.elapsed());
    let t = Instant::now();
    let c = crc32fast::hash(&data);
    let rate_folded = mib / secs(t.elapsed());
    assert_eq!(a, b);
    assert_eq!(a, c);
    (rate_bytewise, rate_sliced, rate_folded)
}

pub(crate) fn files_equal(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let ka = read_full(&mut fa, &mut ba);
        let kb = read_full(&mut fb, &mut bb);
        if ka != kb || ba[..ka] != bb[..kb] {
            return false;
        }
        if ka == 0 {
            return true;
        }
    }
}

pub(crate) fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}
