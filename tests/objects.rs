//! The object store on real loopback networks: placement, retrieval through any node,
//! migration on join and leave, hostile names, corruption, and bounded streaming.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use pastry::{key_of, Client, Error, Id, NodeConfig, Rng, CHUNK_SIZE};

/// Stores `count` objects in a 16-node network keeping `k` copies; checks placement and
/// reads every object back through every node in turn.
fn store_and_read_through_any_node(seed: u64, count: usize, k: usize) {
    let mut rng = Rng::seeded(seed);
    let config = NodeConfig {
        replicas: k,
        ..NodeConfig::new(key())
    };
    let net = Network::with_config(&random_ids(&mut rng, 16), &config);
    let objects = objects(&mut rng, count);
    let client = Client::new(net.discovery.local_addr(), key());
    for (name, data) in &objects {
        let stored = client.put(name, data).unwrap();
        assert_eq!(stored.key, key_of(name.as_bytes()));
        assert_eq!(stored.size, data.len() as u64);
        assert_eq!(
            stored.route.responsible().id,
            oracle_responsible(stored.key, &net.ids())
        );
    }
    let names: Vec<&String> = objects.keys().collect();
    // Every copy is written before the put returns.
    placed_exactly(&net.nodes, &names, k).unwrap();
    for (i, (name, data)) in objects.iter().enumerate() {
        let entry = &net.nodes[i % net.nodes.len()];
        let fetched = Client::via_peer(entry.info().addr, key())
            .get(name)
            .unwrap();
        assert_eq!(&fetched.data, data, "{name} through {}", entry.id());
        assert_eq!(fetched.route.path[0].id, entry.id());
    }
}

#[test]
fn five_hundred_objects_are_placed_on_their_responsible_node_and_read_through_any_node() {
    store_and_read_through_any_node(500, 500, 1);
}

#[test]
fn five_hundred_objects_keep_three_copies_each() {
    store_and_read_through_any_node(501, 500, 3);
}

#[test]
fn objects_follow_their_keys_through_joins_and_leaves_while_being_read() {
    let mut rng = Rng::seeded(1616);
    let ids = random_ids(&mut rng, 32);
    let mut net = Network::new(&ids[..16]);
    let objects = objects(&mut rng, 150);
    let names: Vec<&String> = objects.keys().collect();
    let writer = Client::new(net.discovery.local_addr(), key());
    for (name, data) in &objects {
        writer.put(name, data).unwrap();
    }

    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let discovery = net.discovery.local_addr();
    // Values rewritten during the churn, by name: the last write must win everywhere.
    let rewritten: std::sync::Mutex<BTreeMap<String, Vec<u8>>> = Default::default();
    std::thread::scope(|s| {
        s.spawn(|| {
            let client = Client::new(discovery, key());
            let mut rng = Rng::seeded(8);
            for round in 0..1_000_000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("rewritten-{}", rng.below(20));
                let value = format!("{name} round {round}").into_bytes();
                if let Err(e) = client.put(&name, &value) {
                    panic!("{name} could not be written during churn: {e}");
                }
                rewritten.lock().unwrap().insert(name, value);
            }
        });
        let reader = s.spawn(|| {
            let client = Client::new(discovery, key());
            let mut rng = Rng::seeded(7);
            // Bounded: the churn below ends well before this many reads.
            for _ in 0..1_000_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = names[rng.below(names.len())];
                match client.get(name) {
                    Ok(f) => assert_eq!(&f.data, &objects[name], "{name} read wrong bytes"),
                    Err(e) => panic!("{name} could not be read during churn: {e}"),
                }
                reads.fetch_add(1, Ordering::SeqCst);
            }
        });
        for &id in &ids[16..] {
            net.join(id);
        }
        for _ in 0..16 {
            let node = net.nodes.remove(0); // the original sixteen
            node.leave().unwrap();
            node.shutdown();
        }
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
    assert!(reads.load(Ordering::SeqCst) > 0, "the reader ran");
    let rewritten = rewritten.into_inner().unwrap();
    assert!(!rewritten.is_empty(), "the writer ran");
    let mut all: Vec<&String> = names.clone();
    all.extend(rewritten.keys());
    assert_settles(&net.nodes, &all, pastry::DEFAULT_REPLICAS);
    for (name, data) in objects.iter().chain(&rewritten) {
        assert_eq!(&writer.get(name).unwrap().data, data, "{name}");
    }
}

/// Two different names with the same key.
fn colliding_names() -> (String, String) {
    let mut seen: BTreeMap<Id, String> = BTreeMap::new();
    for i in 0..100_000 {
        let name = format!("file-{i}");
        if let Some(other) = seen.insert(key_of(name.as_bytes()), name.clone()) {
            return (other, name);
        }
    }
    unreachable!("a 16-bit digest collides within 100,000 names");
}

#[test]
fn names_sharing_a_key_are_kept_side_by_side() {
    let mut rng = Rng::seeded(2);
    let net = Network::new(&random_ids(&mut rng, 5));
    let client = Client::new(net.discovery.local_addr(), key());
    let (a, b) = colliding_names();
    assert_eq!(key_of(a.as_bytes()), key_of(b.as_bytes()));
    client.put(&a, b"first").unwrap();
    client.put(&b, b"second").unwrap();
    assert_eq!(client.get(&a).unwrap().data, b"first");
    assert_eq!(client.get(&b).unwrap().data, b"second");
    assert!(client.delete(&a).unwrap().existed);
    assert!(matches!(client.get(&a), Err(Error::NotFound { .. })));
    assert_eq!(client.get(&b).unwrap().data, b"second");
}

#[test]
fn objects_stream_through_positional_readers_and_writers() {
    let mut rng = Rng::seeded(4);
    let net = Network::new(&random_ids(&mut rng, 4));
    let client = Client::new(net.discovery.local_addr(), key());
    // Chunks of the reader's choosing (at most 1,000 bytes), across several record chunks.
    let data = bytes(&mut rng, 2 * CHUNK_SIZE + 12_345);
    let stored = client
        .put_with("streamed", data.len() as u64, |offset, buf| {
            let from = offset as usize;
            let n = buf.len().min(1000).min(data.len() - from);
            buf[..n].copy_from_slice(&data[from..from + n]);
            Ok(n)
        })
        .unwrap();
    let mut got = Vec::new();
    let retrieved = client
        .get_with("streamed", |offset, chunk| {
            got.truncate(offset as usize);
            got.extend_from_slice(chunk);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        (retrieved.size, retrieved.version),
        (data.len() as u64, stored.version)
    );
    assert!(got == data, "the bytes handed over differ from those put");

    // A reader that ends early, or fails, ends the put; nothing is stored.
    let short = client.put_with("short", 100, |offset, buf| {
        let n = buf.len().min(50usize.saturating_sub(offset as usize));
        buf[..n].fill(7);
        Ok(n)
    });
    assert!(matches!(short, Err(Error::Io { .. })), "{short:?}");
    let failing = client.put_with("short", 100, |_, _| Err(std::io::Error::other("disk gone")));
    assert!(matches!(failing, Err(Error::Io { .. })), "{failing:?}");
    assert!(matches!(client.get("short"), Err(Error::NotFound { .. })));

    // A writer's failure ends the get.
    let refused = client.get_with("streamed", |_, _| Err(std::io::Error::other("full")));
    assert!(matches!(refused, Err(Error::Io { .. })), "{refused:?}");
}

#[test]
fn hostile_names_stay_inside_the_data_directory() {
    let mut rng = Rng::seeded(3);
    let root = std::env::temp_dir().join(format!("pastry-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dirs: Vec<_> = (0..4).map(|i| root.join(format!("node{i}"))).collect();
    let net = Network::with_dirs(&random_ids(&mut rng, 4), &dirs);
    let client = Client::new(net.discovery.local_addr(), key());
    let long = "x".repeat(10_000);
    let names: Vec<&[u8]> = vec![
        b"../../etc/passwd",
        b"/abs",
        b"a/b",
        b"..",
        b".",
        b"nul\0byte",
        b"%2F..%2F",
        b"\xff\xfe not utf-8",
    ];
    for name in &names {
        client.put(name, name).unwrap();
        assert_eq!(client.get(name).unwrap().data, *name);
    }
    for refused in [&b""[..], long.as_bytes()] {
        match client.put(refused, b"x") {
            Err(Error::InvalidName { .. }) => {}
            other => panic!(
                "{} bytes: expected InvalidName, got {other:?}",
                refused.len()
            ),
        }
    }
    // Every file is below some node's directory, and nothing else was created.
    let mut outside = Vec::new();
    walk_files(&root, &mut |path| {
        if !dirs.iter().any(|d| path.starts_with(d)) {
            outside.push(path.to_path_buf());
        }
    });
    assert!(
        outside.is_empty(),
        "files outside the data dirs: {outside:?}"
    );
    drop(net);
    std::fs::remove_dir_all(&root).unwrap();
}

fn walk_files(dir: &std::path::Path, f: &mut dyn FnMut(&std::path::Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk_files(&path, f);
        } else {
            f(&path);
        }
    }
}

/// The file holding `name` in `node`'s data directory, if any.
fn file_of(node: &pastry::Node, name: &str) -> Option<std::path::PathBuf> {
    let mut files = Vec::new();
    walk_files(node.data_dir(), &mut |p| files.push(p.to_path_buf()));
    files
        .into_iter()
        .find(|p| p.to_string_lossy().contains(name))
}

/// Flips a bit inside the data of the record file at `file`.
fn damage(file: &std::path::Path) {
    let mut raw = std::fs::read(file).unwrap();
    let at = raw.len() - 1000; // inside the data
    raw[at] ^= 0x40;
    std::fs::write(file, &raw).unwrap();
}

#[test]
fn a_corrupt_copy_is_served_around_and_repaired_and_corrupt_everywhere_is_reported() {
    let mut rng = Rng::seeded(4);
    let net = Network::new(&random_ids(&mut rng, 4));
    let client = Client::new(net.discovery.local_addr(), key());
    let data = bytes(&mut rng, 3 * CHUNK_SIZE + 5);
    let stored = client.put("precious.dat", &data).unwrap();
    let responsible = stored.route.responsible().id;
    let holder = net.nodes.iter().find(|n| n.id() == responsible).unwrap();
    let file = file_of(holder, "precious").expect("the object's file");
    let sound = std::fs::read(&file).unwrap();

    // The responsible node's copy is damaged: the get is served from a sound copy, and the
    // damaged one is replaced by it.
    damage(&file);
    // Into a file first: the damaged copy's bytes already written are dropped, and the file
    // is written again from a sound copy.
    let out = holder.data_dir().with_extension("retrieved");
    client.retrieve_file("precious.dat", &out).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the retrieved file differs"
    );
    std::fs::remove_file(&out).unwrap();
    assert_eq!(client.get("precious.dat").unwrap().data, data);
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read(&file).ok()
            == Some(sound.clone())),
        "the responsible node's copy was not repaired"
    );
    assert_eq!(client.get("precious.dat").unwrap().data, data);

    // Every copy damaged: no bytes are handed out, and the error says why.
    for node in &net.nodes {
        if let Some(file) = file_of(node, "precious") {
            damage(&file);
        }
    }
    match client.get("precious.dat") {
        Err(Error::Corrupt { name, .. }) => assert_eq!(name, "precious.dat"),
        other => panic!("expected Corrupt, got {:?}", other.map(|f| f.data.len())),
    }
    match client.get("never-stored") {
        Err(Error::NotFound { name }) => assert_eq!(name, "never-stored"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn large_transfers_stream_in_bounded_chunks() {
    let mut rng = Rng::seeded(5);
    let net = Network::new(&random_ids(&mut rng, 3));
    let client = Client::new(net.discovery.local_addr(), key());
    let dir = std::env::temp_dir().join(format!("pastry-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("big.bin");
    let size = 40 * CHUNK_SIZE + 123;
    std::fs::write(&src, bytes(&mut rng, size)).unwrap();

    let stored = client.store_file(&src).unwrap();
    assert_eq!(stored.size, size as u64);
    let out = dir.join("copy.bin");
    let got = client.retrieve_file("big.bin", &out).unwrap();
    assert_eq!(got.size, size as u64);
    assert!(std::fs::read(&src).unwrap() == std::fs::read(&out).unwrap());

    // No frame, on any side, carried more than one chunk plus its framing.
    let bound = (CHUNK_SIZE + 64) as u64;
    assert!(
        client.stats().largest_frame <= bound,
        "{:?}",
        client.stats()
    );
    for node in &net.nodes {
        assert!(node.stats().largest_frame <= bound, "{:?}", node.stats());
    }
    assert!(
        client.stats().largest_frame >= CHUNK_SIZE as u64,
        "chunks were full"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn peers_configured_with_different_stream_windows_move_large_objects_between_them() {
    // Every pair of a node, the others and the client disagrees on the window: each sender
    // starts from the protocol's initial credit and learns its receiver's from the grants.
    let mut rng = Rng::seeded(25);
    let mut net = Network::new(&[]);
    for (id, window) in random_ids(&mut rng, 3)
        .into_iter()
        .zip([4 << 20, 256 << 10, 1])
    {
        let mut config = NodeConfig {
            id: Some(id),
            ..NodeConfig::new(key())
        };
        config.net.stream_window = window;
        net.join_node(common::start_node_with(config));
    }
    let client = Client::new(net.discovery.local_addr(), key());
    let data = bytes(&mut rng, 24 * CHUNK_SIZE + 5);
    // Three copies: the responsible node streams the object to the two others, each
    // checking its CRC as it comes.
    let stored = client.put("wide.bin", &data).unwrap();
    assert_settles(&net.nodes, &[&"wide.bin".to_string()], 3);
    for node in &net.nodes {
        let copy = node
            .objects()
            .unwrap()
            .into_iter()
            .find(|o| o.name == b"wide.bin");
        let copy = copy.expect("every node holds a copy");
        assert_eq!(
            (copy.size, copy.version),
            (data.len() as u64, stored.version)
        );
    }
    assert!(client.get("wide.bin").unwrap().data == data);
}

#[test]
fn a_client_that_does_not_sync_retrieves_the_same_bytes() {
    let mut rng = Rng::seeded(15);
    let net = Network::new(&random_ids(&mut rng, 3));
    let config = pastry::ClientConfig {
        sync_writes: false,
        ..pastry::ClientConfig::new(key())
    };
    let client = Client::with_config(pastry::Entry::Discovery(net.discovery.local_addr()), config);
    let dir = std::env::temp_dir().join(format!("pastry-nosync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("data.bin");
    let data = bytes(&mut rng, 3 * CHUNK_SIZE + 7);
    std::fs::write(&src, &data).unwrap();
    client.store_file(&src).unwrap();
    let out = dir.join("out.bin");
    let got = client.retrieve_file("data.bin", &out).unwrap();
    assert_eq!(got.size, data.len() as u64);
    assert!(std::fs::read(&out).unwrap() == data);
    // Nothing left beside it: the partial file was renamed into place.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["data.bin", "out.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_retrieval_leaves_no_partial_file() {
    let mut rng = Rng::seeded(12);
    let net = Network::new(&random_ids(&mut rng, 3));
    let client = Client::new(net.discovery.local_addr(), key());
    let data = bytes(&mut rng, 2 * CHUNK_SIZE);
    client.put("whole.bin", &data).unwrap();
    let dir = std::env::temp_dir().join(format!("pastry-part-{}", std::process::id()));
    let target = dir.join("a-directory");
    std::fs::create_dir_all(&target).unwrap();
    // Onto a directory: the rename fails after the whole object arrived.
    assert!(matches!(
        client.retrieve_file("whole.bin", &target),
        Err(Error::Io { .. })
    ));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("a-directory")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_slow_reader_of_a_large_object_holds_up_no_other_request_on_its_connection() {
    // One node: every request of the client goes over its one connection to it.
    let mut rng = Rng::seeded(21);
    let net = Network::new(&random_ids(&mut rng, 1));
    let client = Client::new(net.discovery.local_addr(), key());
    let big = bytes(&mut rng, 16 * CHUNK_SIZE);
    client.put("big", &big).unwrap();
    client.put("small", b"value").unwrap();
    // The reader of "big" pauses in the middle, its next chunks on their way: whoever reads
    // the connection for it meanwhile must not keep the small request's answer from it.
    const PAUSE: Duration = Duration::from_millis(1500);
    let paused = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut got = Vec::new();
            let retrieved = client.get_with("big", |offset, chunk| {
                if offset == CHUNK_SIZE as u64 && !paused.swap(true, Ordering::SeqCst) {
                    std::thread::sleep(PAUSE);
                }
                got.truncate(offset as usize);
                got.extend_from_slice(chunk);
                Ok(())
            });
            (retrieved, got)
        });
        assert!(
            wait_until(Duration::from_secs(10), || paused.load(Ordering::SeqCst)),
            "the large get never reached its second chunk"
        );
        let t = std::time::Instant::now();
        let small = client.get("small").unwrap();
        let took = t.elapsed();
        assert_eq!(small.data, b"value");
        assert!(
            took < PAUSE / 2,
            "a small get waited {took:?} while a large one's reader paused for {PAUSE:?}"
        );
        let (retrieved, got) = reader.join().unwrap();
        assert_eq!(retrieved.unwrap().size, big.len() as u64);
        assert!(got == big, "the large object's bytes differ");
    });
    // The connection still serves once the large get is done.
    assert_eq!(client.get("small").unwrap().data, b"value");
}
