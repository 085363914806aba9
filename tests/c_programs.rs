//! The C and C++ programs in `examples/c` and `examples/cpp`, compiled with warnings as errors
//! against `include/pastry.h`, linked both statically (`libpastry.a`) and dynamically
//! (`libpastry.so`), and run on loopback with a time limit:
//!
//! - `network.c` and `network.cpp` run a whole network in-process and check it;
//! - `null_checks.c` calls every function of the header with NULL for each pointer argument
//!   (so linking it also shows that both libraries export every declared function);
//! - `store_data.c` stores, retrieves and deletes files on a network this test starts, with
//!   the network's cluster key read from a file this test writes.
//! - `abi.c` checks the version macros, options structs of other sizes and the log
//!   callback;
//! - `apps.c` runs an application of the Common API on every node of a network;
//! - `tracker_client.c`, written from the tracker seed's protocol alone, stores, reads and
//!   deletes 1,000 keys through the tracker and compact listeners of a network this test
//!   starts; `store_data.c` then reads the same entries;
//! - all but `store_data.c` and `tracker_client.c` are also built with AddressSanitizer and
//!   UndefinedBehaviorSanitizer and run clean.
//!
//! `c_build` builds the library for them.

mod c_build;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use c_build::*;
use pastry::{key_of, responsible, ClusterKey, Discovery, Id, Node, NodeConfig, Rng};

#[test]
fn the_header_compiles_alone_as_c11_and_as_cpp17() {
    for (file, what) in [("header.c", "C11"), ("header.cpp", "C++17")] {
        let source = scratch().join(file);
        std::fs::write(&source, "#include \"pastry.h\"\n").expect("write the source");
        let mut command = compiler_for(&source);
        command
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(scratch().join(format!("{file}.o")));
        run_compiler(command, &format!("include/pastry.h alone as {what}"));
    }
}

#[test]
fn network_c() {
    run_both_ways("c/network.c", "network: all checks passed");
}

#[test]
fn network_cpp() {
    run_both_ways("cpp/network.cpp", "network: all checks passed");
}

#[test]
fn null_checks_c() {
    run_both_ways("c/null_checks.c", "null_checks: all ");
}

#[test]
fn abi_c() {
    run_both_ways("c/abi.c", "abi: all ");
}

#[test]
fn apps_c() {
    run_both_ways("c/apps.c", "apps: all ");
}

/// The programs that need no network of this test's, built with the sanitizers and run
/// at once: each must pass its own checks with no finding (the sanitizers end a program
/// with a failure on the first).
#[test]
fn the_programs_run_clean_under_address_and_undefined_behaviour_sanitizers() {
    let sources = [
        ("c/network.c", "network: all checks passed"),
        ("cpp/network.cpp", "network: all checks passed"),
        ("c/null_checks.c", "null_checks: all "),
        ("c/abi.c", "abi: all "),
        ("c/apps.c", "apps: all "),
        ("cpp/hello.cpp", "hello: all checks passed"),
    ];
    let mut running: Vec<_> = sources
        .iter()
        .map(|(source, _)| start(&compile(source, Link::Sanitized), &[] as &[&str]))
        .collect();
    for (program, (_, last)) in running.iter_mut().zip(sources) {
        let run = program.finish();
        assert!(
            !run.stderr.contains("ERROR: AddressSanitizer")
                && !run.stderr.contains("runtime error:"),
            "{}",
            run.transcript()
        );
        run.assert_success(last);
    }
}

/// `tracker_client.c`, written from the protocol's description with POSIX sockets alone,
/// stores, reads and deletes 1,000 keys through the tracker and the compact listeners; the
/// entries it kept read back through `store_data` as objects.
#[test]
fn tracker_client_c_works_against_the_network_and_store_data_sees_its_entries() {
    let client = compile("c/tracker_client.c", Link::Static);
    let store_data = compile("c/store_data.c", Link::Static);
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // Unsynced writes: this is about the protocol, and 2,500 synced writes take long.
    let template = NodeConfig {
        compact_listen: Some(loopback),
        sync_writes: false,
        ..NodeConfig::new(key())
    };
    let (discovery, _nodes) = network_with(&[0x1111, 0x4444, 0x7777, 0xaaaa, 0xdddd], template);
    let tracker = discovery
        .start_tracker(loopback)
        .expect("tracker")
        .to_string();

    let ran = run(&client, &[tracker.as_str(), "run", "1000", "7"]);
    ran.assert_success("tracker_client: 1000 keys checked");
    let kept: Vec<(String, u32)> = ran
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("kept "))
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect();
    assert_eq!(kept.len(), 500, "{}", ran.transcript());

    let dir = scratch().join("tracker_client");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let key_file = write_key_file(&dir);
    let address = discovery.local_addr().to_string();
    for (name, value) in kept.iter().step_by(25) {
        let out = dir.join(name);
        let retrieved = run(
            &store_data,
            &[
                OsStr::new(&address),
                key_file.as_os_str(),
                OsStr::new("retrieve"),
                OsStr::new(name),
                out.as_os_str(),
            ],
        );
        assert!(retrieved.status.success(), "{}", retrieved.transcript());
        assert_eq!(std::fs::read(&out).unwrap(), value.to_be_bytes(), "{name}");
    }

    // One request at a time: a kept key's value, and a key never stored (status 1).
    let (name, value) = &kept[0];
    let key = u32::from_be_bytes(name.as_bytes().try_into().unwrap()).to_string();
    let looked = run(&client, &[tracker.as_str(), "lookup", key.as_str()]);
    assert!(looked.status.success(), "{}", looked.transcript());
    assert_eq!(looked.lines(), [format!("0 {key} {value}")]);
    let missing = run(&client, &[tracker.as_str(), "lookup", "12345"]);
    assert_eq!(missing.status.code(), Some(1), "{}", missing.transcript());
    assert_eq!(missing.lines(), ["1 12345 0"]);
}

#[test]
fn store_data_c_linked_statically() {
    store_data(Link::Static);
}

#[test]
fn store_data_c_linked_dynamically() {
    store_data(Link::Dynamic);
}

/// Pseudo-random bytes.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng::seeded(seed);
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// This test process's cluster key, made once: every network a test starts holds it.
fn key() -> &'static ClusterKey {
    static KEY: OnceLock<ClusterKey> = OnceLock::new();
    KEY.get_or_init(|| ClusterKey::generate().expect("random key"))
}

/// Writes [`key`] to `dir/cluster.key` as `ClusterKey::create_file` writes a key (one line of
/// 64 hex digits, mode 0600), for a C program to read with `pastry_security_from_key_file`;
/// returns the path. `create_file` itself would make a new key, which the network here does
/// not hold.
fn write_key_file(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.key");
    key().save(&path).expect("write the key file");
    path
}

/// A discovery node and nodes with `ids` joined through it, in this process.
fn network(ids: &[u16]) -> (Discovery, Vec<Node>) {
    network_with(ids, NodeConfig::new(key()))
}

/// As [`network`], the nodes started with `template` (its id aside).
fn network_with(ids: &[u16], template: NodeConfig) -> (Discovery, Vec<Node>) {
    let discovery =
        Discovery::start("127.0.0.1:0".parse().unwrap(), key()).expect("discovery starts");
    let nodes = ids
        .iter()
        .map(|&id| {
            let node = Node::start(NodeConfig {
                id: Some(Id(id)),
                ..template.clone()
            })
            .expect("node starts");
            node.join_discovery(discovery.local_addr())
                .expect("node joins");
            node
        })
        .collect();
    (discovery, nodes)
}

/// Stores two files with the C StoreData program on a network of four nodes started here,
/// retrieves them into new files, deletes one and fails to retrieve it.
fn store_data(link: Link) {
    let program = compile("c/store_data.c", link);

    let (discovery, nodes) = network(&[0x1234, 0x5678, 0x9abc, 0xdef0]);
    let address = discovery.local_addr().to_string();
    let holder_of = |name: &str| {
        let id = responsible(key_of(name.as_bytes()), nodes.iter().map(|n| n.id())).unwrap();
        let node = nodes.iter().find(|n| n.id() == id).unwrap();
        format!("{} {}", node.id(), node.info().addr)
    };

    let dir = scratch().join(format!("store_data-{link}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).expect("create the test directory");
    let key_file = write_key_file(&dir);
    // A small text and more than one chunk of bytes.
    let files = [
        ("notes.txt", b"Pastry, from C.\n".to_vec()),
        ("blob.bin", bytes(7, pastry::CHUNK_SIZE + 12_345)),
    ];
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).expect("write a file");
    }

    // Store both.
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new(&address),
        key_file.as_os_str(),
        OsStr::new("store"),
    ];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let stored = run(&program, &args);
    assert!(stored.status.success(), "{}", stored.transcript());
    let lines = stored.lines();
    for (name, _) in &files {
        let key_line = format!("{name}: key {}", key_of(name.as_bytes()));
        let at = lines
            .iter()
            .position(|l| *l == key_line)
            .unwrap_or_else(|| panic!("no line {key_line:?}; {}", stored.transcript()));
        let holder = lines[at + 1..]
            .iter()
            .find(|l| !l.starts_with("hop "))
            .unwrap_or_else(|| panic!("no holder for {name}; {}", stored.transcript()));
        assert_eq!(
            *holder,
            format!("stored on {}", holder_of(name)),
            "{}",
            stored.transcript()
        );
    }

    // Retrieve both into new files.
    for (name, data) in &files {
        let copy = dir.join("out").join(name);
        let retrieved = run(
            &program,
            &[
                OsStr::new(&address),
                key_file.as_os_str(),
                OsStr::new("retrieve"),
                OsStr::new(name),
                copy.as_os_str(),
            ],
        );
        retrieved.assert_success(&format!(
            "retrieved from {} into {}",
            holder_of(name),
            copy.display()
        ));
        let got = std::fs::read(&copy).expect("the retrieved file exists");
        assert!(&got == data, "{name}: the retrieved bytes differ");
    }

    // Delete one; retrieving it then fails, with the library's message.
    let deleted = run(
        &program,
        &[
            OsStr::new(&address),
            key_file.as_os_str(),
            OsStr::new("delete"),
            OsStr::new("notes.txt"),
        ],
    );
    deleted.assert_success(&format!("deleted on {} (existed)", holder_of("notes.txt")));
    let missing = dir.join("out").join("missing.txt");
    let failed = run(
        &program,
        &[
            OsStr::new(&address),
            key_file.as_os_str(),
            OsStr::new("retrieve"),
            OsStr::new("notes.txt"),
            missing.as_os_str(),
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", failed.transcript());
    assert!(
        failed
            .stderr
            .starts_with("error: notes.txt: no object with this name: "),
        "{}",
        failed.transcript()
    );
    assert!(!missing.exists(), "a failed retrieve left a file");

    // A usage error: no command.
    let usage = run(&program, &[OsStr::new(&address), key_file.as_os_str()]);
    assert_eq!(usage.status.code(), Some(2), "{}", usage.transcript());
    assert!(
        usage.stderr.starts_with("Usage: "),
        "{}",
        usage.transcript()
    );

    std::fs::remove_dir_all(&dir).expect("remove the test directory");
}

/// A C program that stores, retrieves and deletes from its main thread, under valgrind's
/// leak checker: the library leaves nothing definitely or possibly lost behind (it once left
/// 48 bytes of a thread's local state it started from the caller's thread).
#[test]
fn store_data_c_under_valgrind_loses_no_memory() {
    let program = compile("c/store_data.c", Link::Dynamic);
    let (discovery, nodes) = network(&[0x1111, 0x8888, 0xcccc]);
    let address = discovery.local_addr().to_string();
    let dir = scratch().join("valgrind");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let key_file = write_key_file(&dir);
    let file = dir.join("checked.txt");
    std::fs::write(&file, b"no leaks, please\n").expect("write a file");
    let copy = dir.join("copy.txt");
    let suppressions = format!(
        "--suppressions={}/tests/valgrind.supp",
        env!("CARGO_MANIFEST_DIR")
    );
    for args in [
        vec![OsStr::new("store"), file.as_os_str()],
        vec![
            OsStr::new("retrieve"),
            OsStr::new("checked.txt"),
            copy.as_os_str(),
        ],
        vec![OsStr::new("delete"), OsStr::new("checked.txt")],
    ] {
        let mut full: Vec<&OsStr> = vec![
            OsStr::new("--leak-check=full"),
            OsStr::new(&suppressions),
            OsStr::new("--errors-for-leak-kinds=definite,possible"),
            OsStr::new("--error-exitcode=99"),
            program.as_os_str(),
            OsStr::new(&address),
            key_file.as_os_str(),
        ];
        full.extend(args);
        let checked = run(Path::new("valgrind"), &full);
        assert!(checked.status.success(), "{}", checked.transcript());
    }
    assert_eq!(std::fs::read(&copy).unwrap(), b"no leaks, please\n");
    drop(nodes);
}
