//! Tests of the store with its log: small records, the move between tiers, replay, damage,
//! rewriting, and the upgrade of a directory written before the log existed.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::log_format;
use super::tests::{assert_contained, is_corrupt, random_bytes, stored, stream, TestDir};
use super::*;
use crate::checksum::crc32;

const LOG: &str = "small.log";

fn open(dir: &TestDir) -> ObjectStore {
    ObjectStore::open(&dir.store_dir()).expect("open store")
}

fn open_unsynced(dir: &TestDir) -> ObjectStore {
    ObjectStore::open_with(&dir.store_dir(), false).expect("open store")
}

/// The record files under `objects`.
fn files(dir: &TestDir) -> usize {
    let mut n = 0;
    for key_dir in fs::read_dir(dir.store_dir().join(OBJECTS_DIR)).expect("objects") {
        n += fs::read_dir(key_dir.expect("entry").path())
            .expect("key dir")
            .count();
    }
    n
}

fn log_len(dir: &TestDir) -> u64 {
    fs::metadata(dir.store_dir().join(LOG)).expect("log").len()
}

fn names(store: &ObjectStore) -> Vec<Vec<u8>> {
    store
        .records()
        .expect("records")
        .into_iter()
        .map(|m| m.name)
        .collect()
}

#[test]
fn small_records_live_in_the_log_and_survive_reopening() {
    let dir = TestDir::new("log-roundtrip");
    let max = DEFAULT_SMALL_OBJECT_MAX;
    let sizes = [0, 1, 4, 1000, max - 1, max, max + 1, CHUNK_SIZE + 3];
    let put_all = |store: &ObjectStore| {
        for (i, size) in sizes.into_iter().enumerate() {
            let data = random_bytes(i as u64, size);
            let meta = stored(
                store
                    .put(format!("obj-{size}").as_bytes(), &data, 1)
                    .expect("put"),
            );
            assert_eq!((meta.size, meta.crc), (size as u64, crc32(&data)));
        }
        stored(store.delete(b"gone", 2).expect("tombstone"));
    };
    let check_all = |store: &ObjectStore| {
        for (i, size) in sizes.into_iter().enumerate() {
            let name = format!("obj-{size}");
            let data = random_bytes(i as u64, size);
            let (meta, got) = store.get(name.as_bytes()).expect("get");
            assert!(got == data, "{size} bytes differ");
            assert_eq!(meta.version, 1);
            let (streamed, chunks) = stream(store, name.as_bytes()).expect("stream");
            assert!(streamed == data);
            assert_eq!(chunks, size.div_ceil(CHUNK_SIZE), "chunks of {size} bytes");
        }
        assert!(matches!(store.get(b"gone"), Err(StoreError::NotFound)));
        assert!(
            store
                .meta(b"gone")
                .expect("meta")
                .expect("tombstone")
                .deleted
        );
        assert_eq!(store.records().expect("records").len(), sizes.len() + 1);
    };
    let store = open(&dir);
    put_all(&store);
    check_all(&store);
    assert_eq!(
        files(&dir),
        2,
        "only the objects above the threshold are files"
    );
    drop(store);
    let store = open(&dir);
    check_all(&store);
    assert_eq!(files(&dir), 2);
}

#[test]
fn the_newest_version_wins_across_tiers_and_removals_stay_removed() {
    let dir = TestDir::new("log-tiers");
    let store = open(&dir);
    let large = random_bytes(1, DEFAULT_SMALL_OBJECT_MAX + 10);
    stored(store.put(b"doc", b"small one", 1).expect("v1 small"));
    stored(store.put(b"doc", &large, 2).expect("v2 large"));
    assert_eq!(files(&dir), 1);
    assert!(store.get(b"doc").expect("get").1 == large);
    match store.put(b"doc", b"late", 1).expect("stale small") {
        Commit::Superseded(m) => assert_eq!(m.version, 2),
        other => panic!("{other:?}"),
    }
    stored(store.put(b"doc", b"small again", 3).expect("v3 small"));
    assert_eq!(
        files(&dir),
        0,
        "the older file goes once the log holds a newer record"
    );
    assert_eq!(store.get(b"doc").expect("get").1, b"small again");

    // A large record removed must not let the log's older one come back, even after a reopen.
    stored(store.put(b"doc", &large, 4).expect("v4 large"));
    assert!(store.remove(b"doc", 4).expect("remove"));
    assert_eq!(store.meta(b"doc").expect("meta"), None);
    stored(store.put(b"note", b"x", 7).expect("small"));
    assert!(
        !store.remove(b"note", 6).expect("stale remove"),
        "a newer version stays"
    );
    assert!(store.remove(b"note", 7).expect("remove"));
    drop(store);
    let store = open(&dir);
    assert!(
        store.records().expect("records").is_empty(),
        "{:?}",
        names(&store)
    );
    assert!(matches!(store.get(b"doc"), Err(StoreError::NotFound)));
}

/// The record file of `name` as `store` keeps it: its path and bytes.
fn record_file(store: &ObjectStore, name: &[u8]) -> (std::path::PathBuf, Vec<u8>) {
    let path = store.path_of(name).expect("path");
    let bytes = fs::read(&path).expect("record file");
    (path, bytes)
}

/// Puts a copy of a record file back where a crash would have left it.
fn leave_behind(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("key dir")).expect("key dir");
    fs::write(path, bytes).expect("left behind");
}

#[test]
fn a_name_a_crash_left_in_both_tiers_keeps_only_its_newer_record() {
    let dir = TestDir::new("log-both-tiers");
    let large = random_bytes(2, DEFAULT_SMALL_OBJECT_MAX + 10);

    // A file's commit cut short: the file (v2) published, the log's v1 not yet erased.
    let store = open(&dir);
    stored(store.put(b"grown", &large, 2).expect("v2 large"));
    let (path, newer) = record_file(&store, b"grown");
    assert!(store.remove(b"grown", 2).expect("remove"));
    stored(store.put(b"grown", b"small", 1).expect("v1 small"));
    leave_behind(&path, &newer);
    drop(store);
    let store = open(&dir);
    assert_eq!(
        store.meta(b"grown").expect("meta").map(|m| m.version),
        Some(2)
    );
    assert!(
        store.get(b"grown").expect("get").1 == large,
        "the file's newer data"
    );

    // A small commit cut short: the log's v4 durable, the file's v3 not yet removed.
    stored(store.put(b"shrunk", &large, 3).expect("v3 large"));
    let (path, older) = record_file(&store, b"shrunk");
    stored(store.put(b"shrunk", b"small", 4).expect("v4 small"));
    leave_behind(&path, &older);
    drop(store);
    let store = open(&dir);
    assert!(!path.exists(), "the older file goes when the store opens");
    assert_eq!(store.get(b"shrunk").expect("get").1, b"small");
    assert!(store.remove(b"shrunk", 4).expect("remove"));
    assert_eq!(
        store.meta(b"shrunk").expect("meta"),
        None,
        "removing the newer record does not bring the older back"
    );
    assert!(matches!(store.get(b"shrunk"), Err(StoreError::NotFound)));
}

/// Where the log's entries end: after its last byte that is not zero (the space written
/// ahead of the entries is zeros; the entries here end in letters).
fn entries_end(dir: &TestDir) -> u64 {
    let bytes = fs::read(dir.store_dir().join(LOG)).expect("log");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

#[test]
fn a_write_cut_short_is_cut_off_and_the_log_goes_on() {
    let dir = TestDir::new("log-torn");
    let store = open(&dir);
    stored(store.put(b"a", b"first", 1).expect("put"));
    stored(store.put(b"b", b"second", 1).expect("put"));
    drop(store);
    let end = entries_end(&dir);
    let meta = RecordMeta {
        name: b"c".to_vec(),
        key: key_of(b"c"),
        size: 5,
        version: 1,
        crc: crc32(b"third"),
        deleted: false,
    };
    let entry = log_format::encode_record(&meta, b"third");
    for cut in 1..entry.len() {
        let log = OpenOptions::new()
            .write(true)
            .open(dir.store_dir().join(LOG))
            .expect("log");
        log.write_all_at(&entry[..cut], end).expect("write");
        drop(log);
        let store = open(&dir);
        assert_eq!(
            entries_end(&dir),
            end,
            "cut at {cut}: the torn bytes are gone"
        );
        let listed: BTreeSet<_> = names(&store).into_iter().collect();
        assert_eq!(
            listed,
            BTreeSet::from([b"a".to_vec(), b"b".to_vec()]),
            "cut at {cut}"
        );
    }
    let store = open(&dir);
    stored(store.put(b"c", b"third", 1).expect("put after the cut"));
    drop(store);
    assert_eq!(open(&dir).get(b"c").expect("get").1, b"third");
}

#[test]
fn bytes_after_the_space_written_ahead_are_kept_aside() {
    let dir = TestDir::new("log-aside");
    let store = open(&dir);
    stored(store.put(b"a", b"first", 1).expect("put"));
    drop(store);
    let path = dir.store_dir().join(LOG);
    let far = fs::metadata(&path).expect("log").len() + 2 * MAX_SMALL_OBJECT as u64;
    let log = OpenOptions::new().write(true).open(&path).expect("log");
    log.write_all_at(b"stray bytes", far).expect("write");
    drop(log);
    let store = open(&dir);
    assert_eq!(store.get(b"a").expect("get").1, b"first");
    let aside: Vec<_> = fs::read_dir(dir.store_dir())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with("small.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept = fs::read(dir.store_dir().join(&aside[0])).expect("aside");
    assert!(kept.ends_with(b"stray bytes"));
}

#[test]
fn a_damaged_entry_is_refused_and_the_others_still_served() {
    let dir = TestDir::new("log-damage");
    let store = open(&dir);
    stored(store.put(b"victim", b"precious bytes", 1).expect("put"));
    stored(store.put(b"healthy", b"fine", 1).expect("put"));
    let path = dir.store_dir().join(LOG);
    let mut bytes = fs::read(&path).expect("log");
    let at = bytes
        .windows(b"precious".len())
        .position(|w| w == b"precious")
        .expect("the data is in the log");
    bytes[at] ^= 0x01;
    fs::write(&path, &bytes).expect("damage");
    assert!(
        is_corrupt(&store.get(b"victim")),
        "a damaged entry is never handed out"
    );
    assert!(is_corrupt(&store.reader(b"victim")));
    assert_eq!(store.get(b"healthy").expect("get").1, b"fine");
    drop(store);
    // Reopened: the damaged entry is skipped (logged), the one after it still served, and a
    // new write of the name takes its place.
    let store = open(&dir);
    assert!(matches!(store.get(b"victim"), Err(StoreError::NotFound)));
    assert_eq!(store.get(b"healthy").expect("get").1, b"fine");
    stored(store.put(b"victim", b"again", 2).expect("put"));
    assert_eq!(store.get(b"victim").expect("get").1, b"again");
}

#[test]
fn hostile_names_in_the_log_touch_no_path() {
    let dir = TestDir::new("log-hostile");
    let store = open(&dir);
    let hostile: Vec<Vec<u8>> = [
        &b"../../etc/passwd"[..],
        b"/abs",
        b"..",
        b"nul\0byte",
        b"\xff\xfe not utf-8",
    ]
    .iter()
    .map(|n| n.to_vec())
    .chain([vec![b'/'; MAX_NAME_LEN]])
    .collect();
    for (i, name) in hostile.iter().enumerate() {
        stored(
            store
                .put(name, &random_bytes(i as u64, 10), 1)
                .expect("put"),
        );
    }
    drop(store);
    let store = open(&dir);
    for (i, name) in hostile.iter().enumerate() {
        assert_eq!(store.get(name).expect("get").1, random_bytes(i as u64, 10));
    }
    assert_eq!(files(&dir), 0);
    assert_contained(&dir.root);
}

#[test]
fn the_log_is_rewritten_without_garbage_while_writers_go_on() {
    const WRITERS: u64 = 4;
    const ROUNDS: u64 = 60;
    let dir = TestDir::new("log-compact");
    let store = open_unsynced(&dir);
    let value =
        |w: u64, name: u64, version: u64| random_bytes(w * 1000 + name * 100 + version, 60_000);
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let store = &store;
            s.spawn(move || {
                for version in 1..=ROUNDS {
                    for name in 0..2 {
                        let n = format!("w{w}-{name}");
                        stored(
                            store
                                .put(n.as_bytes(), &value(w, name, version), version)
                                .expect("put"),
                        );
                        let (meta, data) = store.get(n.as_bytes()).expect("get");
                        assert_eq!(meta.version, version);
                        assert!(data == value(w, name, version));
                    }
                }
            });
        }
    });
    // 480 writes of 60 kB, 8 live: without a rewrite the log would be about 29 MB.
    let len = log_len(&dir);
    assert!(len < 12_000_000, "the log is {len} bytes: never rewritten");
    let check = |store: &ObjectStore| {
        for w in 0..WRITERS {
            for name in 0..2 {
                let (meta, data) = store.get(format!("w{w}-{name}").as_bytes()).expect("get");
                assert_eq!(meta.version, ROUNDS);
                assert!(data == value(w, name, ROUNDS));
            }
        }
        assert_eq!(store.records().expect("records").len(), 8);
    };
    check(&store);
    drop(store);
    check(&open(&dir));
    let leftovers: Vec<_> = fs::read_dir(dir.store_dir())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_str().is_some_and(|n| n.starts_with("small.log.")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Copies the directory tree at `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn a_directory_of_the_files_only_layout_is_served_and_its_small_files_moved() {
    let dir = TestDir::new("log-upgrade");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    copy_tree(&fixture, &dir.store_dir());
    assert_eq!(files(&dir), 6);
    let big: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let long = vec![b'/'; 600];
    let expected: [(&[u8], &[u8], u64); 5] = [
        (b"small.txt", b"four", 7),
        (b"tracker/0000002a", &[0, 0, 0, 42], 3),
        (b"big.bin", &big, 5),
        (b"../escape/\0nul", b"hostile", 2),
        (&long, b"long name", 4),
    ];
    for _ in 0..2 {
        let store = open(&dir);
        for (name, data, version) in expected {
            let (meta, got) = store.get(name).expect("get");
            assert!(got == data, "{:?}", String::from_utf8_lossy(name));
            assert_eq!(meta.version, version);
        }
        let gone = store.meta(b"gone.txt").expect("meta").expect("tombstone");
        assert!(gone.deleted && gone.version == 9);
        assert_eq!(store.records().expect("records").len(), 6);
        assert_eq!(files(&dir), 1, "only the large object stays a file");
    }
}
