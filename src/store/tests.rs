//! Tests of the whole store on a real file system, each in its own temporary directory.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

use super::*;
use crate::checksum::crc32;

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory unique to one test, removed when dropped (also when the test fails).
pub(super) struct TestDir {
    pub(super) root: PathBuf,
}

impl TestDir {
    pub(super) fn new(tag: &str) -> TestDir {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("pastry-store-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create test dir");
        TestDir { root }
    }

    /// Where the store lives: one level down, so the test can check nothing lands beside it.
    pub(super) fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The store with every non-empty object kept as a file: these tests look at the files.
    /// (`log_tests.rs` runs the store with its log.)
    fn open(&self) -> ObjectStore {
        let options = StoreOptions {
            small_object_max: 0,
            ..StoreOptions::default()
        };
        ObjectStore::open_options(&self.store_dir(), options).expect("open store")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(super) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Streams the record of `name`, checking every chunk's size; returns the data and chunk count.
pub(super) fn stream(store: &ObjectStore, name: &[u8]) -> Result<(Vec<u8>, usize), StoreError> {
    let mut reader = store.reader(name)?;
    let (mut data, mut chunks) = (Vec::new(), 0);
    while let Some(chunk) = reader.read_chunk()? {
        assert!(
            !chunk.is_empty() && chunk.len() <= CHUNK_SIZE,
            "chunk of {}",
            chunk.len()
        );
        data.extend_from_slice(chunk);
        chunks += 1;
    }
    assert!(reader.read_chunk()?.is_none(), "stays at the end");
    Ok((data, chunks))
}

pub(super) fn stored(commit: Commit) -> RecordMeta {
    match commit {
        Commit::Stored(meta) => meta,
        other => panic!("expected Stored, got {other:?}"),
    }
}

pub(super) fn is_corrupt<T>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Corrupt { .. }))
}

fn tmp_entries(dir: &TestDir) -> usize {
    fs::read_dir(dir.store_dir().join(TMP_DIR))
        .expect("read tmp")
        .count()
}

#[test]
fn round_trip_at_chunk_boundaries() {
    let dir = TestDir::new("roundtrip");
    let store = dir.open();
    let sizes = [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        3 * CHUNK_SIZE + 7,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let name = format!("obj-{size}");
        let data = random_bytes(i as u64 + 1, size);
        let meta = stored(store.put(name.as_bytes(), &data, 1).expect("put"));
        assert_eq!(meta.size, size as u64);
        assert_eq!(meta.key, key_of(name.as_bytes()));
        assert_eq!(meta.crc, crc32(&data));

        let (got_meta, got) = store.get(name.as_bytes()).expect("get");
        assert_eq!(got_meta, meta);
        assert!(got == data, "get of {size} bytes differs");

        let (streamed, chunks) = stream(&store, name.as_bytes()).expect("stream");
        assert!(streamed == data, "stream of {size} bytes differs");
        assert_eq!(chunks, size.div_ceil(CHUNK_SIZE), "chunks for {size} bytes");
    }
}

#[test]
fn writes_in_odd_pieces_give_the_same_record() {
    let dir = TestDir::new("pieces");
    let store = dir.open();
    let data = random_bytes(9, 2 * CHUNK_SIZE + 5);
    let mut w = store.writer(b"pieces", 4, false).expect("writer");
    for piece in data.chunks(7777) {
        w.write(piece).expect("write");
    }
    let meta = stored(w.finish().expect("finish"));
    assert_eq!(meta.crc, crc32(&data));
    assert!(store.get(b"pieces").expect("get").1 == data);
}

/// Two names with the same key, found by brute force.
fn names_sharing_a_key() -> (Vec<u8>, Vec<u8>) {
    let mut seen: HashMap<Key, Vec<u8>> = HashMap::new();
    for i in 0.. {
        let name = format!("name-{i}").into_bytes();
        if let Some(prev) = seen.insert(key_of(&name), name.clone()) {
            return (prev, name);
        }
    }
    unreachable!("the loop only ends by returning")
}

#[test]
fn names_sharing_a_key_live_side_by_side() {
    let dir = TestDir::new("samekey");
    let store = dir.open();
    let (a, b) = names_sharing_a_key();
    assert_eq!(key_of(&a), key_of(&b));
    let (data_a, data_b) = (random_bytes(1, 1000), random_bytes(2, 2000));
    stored(store.put(&a, &data_a, 1).expect("put a"));
    stored(store.put(&b, &data_b, 1).expect("put b"));

    assert_eq!(store.get(&a).expect("get a").1, data_a);
    assert_eq!(store.get(&b).expect("get b").1, data_b);
    let names: Vec<_> = store
        .records()
        .expect("records")
        .into_iter()
        .map(|m| m.name)
        .collect();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(names, expected);
    let key_dir = dir
        .store_dir()
        .join(OBJECTS_DIR)
        .join(key_of(&a).to_string());
    assert_eq!(fs::read_dir(key_dir).expect("key dir").count(), 2);
}

/// Every path under `dir`, files and directories, depth first.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        out.push(path.clone());
        if fs::symlink_metadata(&path).expect("metadata").is_dir() {
            walk(&path, out);
        }
    }
}

/// Asserts that everything under `root` is the store's own layout and nothing else.
pub(super) fn assert_contained(root: &Path) {
    let top: Vec<_> = fs::read_dir(root)
        .expect("root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(top, ["store"], "nothing may appear beside the store");
    let mut paths = Vec::new();
    walk(&root.join("store"), &mut paths);
    for path in paths {
        let rel = path.strip_prefix(root.join("store")).expect("inside");
        let parts: Vec<_> = rel.iter().map(|p| p.to_str().expect("ascii")).collect();
        let meta = fs::symlink_metadata(&path).expect("metadata");
        let ok = match parts.as_slice() {
            ["objects"] | ["tmp"] => meta.is_dir(),
            ["small.log"] => meta.is_file(),
            ["objects", key] => {
                meta.is_dir() && key.len() == 4 && u16::from_str_radix(key, 16).is_ok()
            }
            ["objects", _, file] => meta.is_file() && !file.starts_with('.'),
            _ => false,
        };
        assert!(ok, "unexpected path {}", path.display());
    }
}

#[test]
fn hostile_names_stay_inside_the_store() {
    let dir = TestDir::new("hostile");
    let store = dir.open();
    let mut good: Vec<Vec<u8>> = [
        &b"../../etc/passwd"[..],
        b"/abs",
        b"a/b",
        b"..",
        b".",
        b".hidden",
        b"nul\0byte",
        b"%2F",
        b"\xff\xfe\x80 not utf-8",
        b"~tilde",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    let long = vec![b'/'; 4000];
    good.push(long.clone());
    for bad in [Vec::new(), vec![b'x'; 10_000], vec![b'x'; MAX_NAME_LEN + 1]] {
        let r = store.put(&bad, b"data", 1);
        assert!(
            matches!(r, Err(StoreError::InvalidName { .. })),
            "{} bytes: {r:?}",
            bad.len()
        );
        assert!(matches!(
            store.get(&bad),
            Err(StoreError::InvalidName { .. })
        ));
    }

    for (i, name) in good.iter().enumerate() {
        let data = random_bytes(i as u64, 100 + i);
        stored(store.put(name, &data, 1).expect("put"));
        assert_eq!(store.get(name).expect("get").1, data, "name {name:?}");
    }
    assert!(
        name::file_name(&long).starts_with('~'),
        "the long name is shortened"
    );

    let listed: BTreeSet<_> = store
        .records()
        .expect("records")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, good.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(tmp_entries(&dir), 0);
    assert_contained(&dir.root);
}

#[test]
fn corruption_is_detected_never_returned() {
    let dir = TestDir::new("corrupt");
    let store = dir.open();
    let data = random_bytes(5, 1000);
    stored(store.put(b"healthy", b"fine", 1).expect("put"));
    stored(store.put(b"victim", &data, 1).expect("put"));
    let path = store.path_of(b"victim").expect("path");
    let original = fs::read(&path).expect("read file");
    let data_start = format::header_len(b"victim".len()) as usize;

    type Damage = fn(&mut Vec<u8>, usize);
    let damages: [(&str, Damage); 6] = [
        ("flip a data byte", |f, start| f[start + 500] ^= 0x01),
        ("flip a version byte", |f, _| f[15] ^= 0x80),
        ("flip a name byte", |f, _| f[format::FIXED_LEN] ^= 0x20),
        ("truncate by one", |f, _| {
            f.pop();
        }),
        ("append a byte", |f, _| f.push(0)),
        ("truncate inside the header", |f, _| f.truncate(10)),
    ];
    for (what, damage) in damages {
        let mut bytes = original.clone();
        damage(&mut bytes, data_start);
        fs::write(&path, &bytes).expect("write damage");
        let got = store.get(b"victim");
        assert!(is_corrupt(&got), "{what}: {got:?}");
        assert!(is_corrupt(&stream(&store, b"victim")), "{what}: streamed");
        let listed = store.records().expect("records survive damage");
        assert!(listed.iter().any(|m| m.name == b"healthy"), "{what}");
    }

    // A wrong length is seen when the reader opens, before any byte is handed out.
    fs::write(&path, &original[..original.len() - 1]).expect("write damage");
    assert!(is_corrupt(&store.reader(b"victim")), "shorter file");
    let mut longer = original.clone();
    longer.push(0);
    fs::write(&path, &longer).expect("write damage");
    assert!(is_corrupt(&store.reader(b"victim")), "longer file");

    // A data flip passes the open-time checks: the stream itself must catch it at the end.
    let mut bytes = original.clone();
    bytes[data_start] ^= 0xff;
    fs::write(&path, &bytes).expect("write damage");
    let mut reader = store.reader(b"victim").expect("header is fine");
    assert!(reader.read_chunk().expect("the one chunk").is_some());
    assert!(is_corrupt(&reader.read_chunk()));
    assert!(is_corrupt(&reader.read_chunk()), "stays failed");

    // A newer write repairs a damaged record.
    fs::write(&path, &original[..20]).expect("write damage");
    stored(store.put(b"victim", b"new", 2).expect("put over damage"));
    assert_eq!(store.get(b"victim").expect("get").1, b"new");
}

#[test]
fn every_single_flip_and_truncation_is_corrupt() {
    let dir = TestDir::new("exhaustive");
    let store = dir.open();
    stored(store.put(b"small", &random_bytes(3, 40), 9).expect("put"));
    let path = store.path_of(b"small").expect("path");
    let original = fs::read(&path).expect("read");
    for i in 0..original.len() {
        let mut bytes = original.clone();
        bytes[i] ^= 0x04;
        fs::write(&path, &bytes).expect("write");
        let got = store.get(b"small");
        assert!(is_corrupt(&got), "flip at {i}: {got:?}");
        store.records().expect("records");
    }
    for len in 0..original.len() {
        fs::write(&path, &original[..len]).expect("write");
        let got = store.get(b"small");
        assert!(is_corrupt(&got), "truncated to {len}: {got:?}");
        store.records().expect("records");
    }
}

#[test]
fn newest_version_wins() {
    let dir = TestDir::new("versions");
    let store = dir.open();
    let name = b"doc";
    stored(store.put(name, b"five", 5).expect("put v5"));
    match store.put(name, b"three", 3).expect("put v3") {
        Commit::Superseded(m) => assert_eq!(m.version, 5),
        other => panic!("v3 over v5: {other:?}"),
    }
    assert_eq!(store.get(name).expect("get").1, b"five");
    assert!(
        matches!(store.put(name, b"again", 5), Ok(Commit::Superseded(_))),
        "equal version"
    );

    let tomb = stored(store.delete(name, 7).expect("tombstone v7"));
    assert!(tomb.deleted && tomb.size == 0);
    assert!(matches!(store.get(name), Err(StoreError::NotFound)));
    assert!(matches!(store.reader(name), Err(StoreError::NotFound)));
    let meta = store
        .meta(name)
        .expect("meta")
        .expect("tombstone is listed");
    assert!(meta.deleted);
    assert_eq!(meta.version, 7);

    match store.put(name, b"six", 6).expect("put v6") {
        Commit::Superseded(m) => assert!(m.deleted && m.version == 7),
        other => panic!("v6 over tombstone v7: {other:?}"),
    }
    stored(store.put(name, b"eight", 8).expect("put v8"));
    assert_eq!(store.get(name).expect("get v8").1, b"eight");

    assert!(
        !store.remove(name, 7).expect("stale remove"),
        "stale version removes nothing"
    );
    assert_eq!(store.get(name).expect("still there").1, b"eight");
    assert!(store.remove(name, 8).expect("remove"));
    assert_eq!(store.meta(name).expect("meta"), None);
    assert!(!store.remove(name, 8).expect("remove again"));
    assert!(matches!(store.get(name), Err(StoreError::NotFound)));
    assert!(store.records().expect("records").is_empty());
}

/// A file replaced by a newer version is gone from the store's directories at once (an
/// exchange leaves it in `tmp` until removed), while a reader that opened it reads it whole.
#[test]
fn a_replaced_file_is_removed_and_its_reader_reads_on() {
    let dir = TestDir::new("replaced");
    let store = dir.open();
    let name = b"large";
    let old = random_bytes(1, 3 * CHUNK_SIZE + 17);
    let new = random_bytes(2, 2 * CHUNK_SIZE + 5);
    stored(store.put(name, &old, 1).expect("put v1"));
    let mut reader = store.reader(name).expect("reader of v1");
    let first = reader
        .read_chunk()
        .expect("first chunk")
        .expect("data")
        .to_vec();

    stored(store.put(name, &new, 2).expect("put v2"));
    assert_eq!(tmp_entries(&dir), 0, "the displaced file is removed");
    let mut files = Vec::new();
    walk(&dir.store_dir().join("objects"), &mut files);
    assert_eq!(
        files.iter().filter(|p| p.is_file()).count(),
        1,
        "one file for the name: {files:?}"
    );
    assert_eq!(stream(&store, name).expect("read v2").0, new);

    let mut read = first;
    while let Some(chunk) = reader.read_chunk().expect("read on") {
        read.extend_from_slice(chunk);
    }
    assert!(read == old, "the reader of v1 reads v1 whole");
}

#[test]
fn crash_leftovers_are_cleaned_up() {
    let dir = TestDir::new("leftovers");
    drop(dir.open());
    let stray = dir.store_dir().join(TMP_DIR).join("1234-5.tmp");
    fs::write(&stray, b"half a record").expect("write stray");
    let store = dir.open();
    assert!(!stray.exists(), "open removes leftover temp files");

    let mut w = store.writer(b"abandoned", 1, false).expect("writer");
    w.write(&random_bytes(1, 5000)).expect("write");
    assert_eq!(tmp_entries(&dir), 1, "the write goes to tmp");
    drop(w);
    assert_eq!(
        tmp_entries(&dir),
        0,
        "dropping the writer removes its temp file"
    );
    assert_eq!(store.meta(b"abandoned").expect("meta"), None);
    assert!(store.records().expect("records").is_empty());

    let mut w = store.writer(b"tomb", 1, true).expect("tombstone writer");
    assert!(matches!(w.write(b"x"), Err(StoreError::TombstoneData)));
    drop(w);
    assert_eq!(tmp_entries(&dir), 0);
}

#[test]
fn concurrent_writers_newest_wins() {
    const THREADS: u64 = 8;
    let dir = TestDir::new("concurrent");
    let store = dir.open();
    let payload = |v: u64| random_bytes(v, CHUNK_SIZE + 1000 * v as usize);
    for round in 0..4 {
        let name = format!("contended-{round}");
        let barrier = Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for v in 1..=THREADS {
                let (store, barrier, name) = (&store, &barrier, &name);
                s.spawn(move || {
                    let data = payload(v);
                    barrier.wait();
                    let mut w = store.writer(name.as_bytes(), v, false).expect("writer");
                    for piece in data.chunks(4096) {
                        w.write(piece).expect("write");
                    }
                    match w.finish().expect("finish") {
                        Commit::Stored(m) => assert_eq!(m.version, v),
                        Commit::Superseded(m) => assert!(m.version > v),
                    }
                });
            }
        });
        let (meta, data) = store.get(name.as_bytes()).expect("get");
        assert_eq!(meta.version, THREADS, "round {round}");
        assert!(data == payload(THREADS), "round {round}: intact data");
    }
    assert_eq!(store.records().expect("records").len(), 4);
    assert_eq!(tmp_entries(&dir), 0);
}

#[test]
fn a_shortened_name_clash_keeps_the_existing_record() {
    let dir = TestDir::new("clash");
    let store = dir.open();
    let first = vec![b'/'; 3000];
    let mut second = first.clone();
    second.push(b'x');
    stored(store.put(&first, b"first", 1).expect("put first"));
    // Fake a clash: put the first name's file where the second name's file would go.
    let target = store.path_of(&second).expect("path");
    fs::create_dir_all(target.parent().expect("key dir")).expect("mkdir");
    fs::copy(store.path_of(&first).expect("path"), &target).expect("copy");

    let r = store.put(&second, b"second", 2);
    assert!(matches!(r, Err(StoreError::NameClash { .. })), "{r:?}");
    assert!(matches!(store.get(&second), Err(StoreError::NotFound)));
    assert_eq!(store.meta(&second).expect("meta"), None);
    assert!(!store.remove(&second, 1).expect("remove"));
    assert!(target.exists(), "the existing file is kept");
    assert_eq!(tmp_entries(&dir), 0);
    let names: Vec<_> = store
        .records()
        .expect("records")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, [first], "the misplaced copy is not listed");
}

#[test]
fn records_skip_stray_entries() {
    let dir = TestDir::new("stray");
    let store = dir.open();
    stored(store.put(b"real", b"data", 3).expect("put"));
    let objects = dir.store_dir().join(OBJECTS_DIR);
    fs::write(objects.join("junk.txt"), b"junk").expect("stray file");
    fs::create_dir(objects.join("zzzz")).expect("stray dir");
    fs::create_dir(objects.join("ABCD")).expect("upper-case key dir");
    fs::create_dir_all(objects.join("0123").join("sub")).expect("nested dir");
    fs::write(objects.join("0123").join("garbage"), b"PSTR\x01").expect("garbage");
    let records = store.records().expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, b"real");
    assert_eq!(records[0].version, 3);
}
