//! A store killed with SIGKILL in the middle of grouped commits: every write it acknowledged
//! is there after a restart, and no record is torn.
//!
//! The writer is this test binary run again as a child process (the ignored test
//! `writer_child`, told where to write by an environment variable): 8 threads overwrite
//! their names with growing versions, small values (in the log) and some large ones (files),
//! printing a line after each write the store acknowledged. The parent kills it once enough
//! writes are acknowledged, then reopens the store and checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pastry::store::{Commit, ObjectStore, StoreError, DEFAULT_SMALL_OBJECT_MAX};

const DIR_VAR: &str = "PASTRY_STORE_CRASH_DIR";
const THREADS: u64 = 8;
const NAMES_PER_THREAD: u64 = 16;
/// Acknowledged writes before the kill.
const KILL_AFTER: usize = 3_000;
const DEADLINE: Duration = Duration::from_secs(120);

/// The data of `name` at `version`: its size alone says which tier it lives in (one write in
/// 16 is larger than the log takes).
fn value(name: &str, version: u64) -> Vec<u8> {
    let seed = name
        .bytes()
        .fold(version, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let len = if version % 16 == 0 {
        DEFAULT_SMALL_OBJECT_MAX + 100 + (seed % 1000) as usize
    } else {
        4 + (seed % 60) as usize
    };
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
#[ignore = "run by `a_killed_store_keeps_every_acknowledged_write` as its child process"]
fn writer_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let store = ObjectStore::open(Path::new(&dir)).expect("open");
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                // Runs until the parent kills the process (bounded by the parent's deadline).
                for version in 1..u64::MAX {
                    for n in 0..NAMES_PER_THREAD {
                        let name = format!("t{t}-n{n}");
                        let data = value(&name, version);
                        match store.put(name.as_bytes(), &data, version).expect("put") {
                            Commit::Stored(_) => println!("acked {name} {version}"),
                            other => panic!("{name} {version}: {other:?}"),
                        }
                    }
                }
            });
        }
    });
}

#[test]
fn a_killed_store_keeps_every_acknowledged_write() {
    let dir = scratch("store-crash");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read");
        let Some(rest) = line.strip_prefix("acked ") else {
            continue;
        };
        let (name, version) = rest.split_once(' ').expect("name and version");
        acked.insert(name.to_string(), version.parse().expect("version"));
        count += 1;
        if count == KILL_AFTER || started.elapsed() > DEADLINE {
            break;
        }
    }
    // SIGKILL: nothing in the writer runs after it, not even its buffers' flush.
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(
        count >= KILL_AFTER,
        "the writer acknowledged only {count} writes"
    );

    let store = ObjectStore::open(&dir).expect("reopen after the kill");
    for (name, &version) in &acked {
        let (meta, data) = store
            .get(name.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            meta.version >= version,
            "{name}: acknowledged version {version}, found {}",
            meta.version
        );
        assert!(
            data == value(name, meta.version),
            "{name}: wrong bytes at {}",
            meta.version
        );
    }
    // Every record there, acknowledged or not, is whole.
    for meta in store.records().expect("records") {
        let name = String::from_utf8(meta.name.clone()).expect("our names");
        match store.get(&meta.name) {
            Ok((_, data)) => assert!(data == value(&name, meta.version), "{name} torn"),
            Err(StoreError::NotFound) => assert!(meta.deleted),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pastry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
