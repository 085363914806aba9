//! The example programs as separate processes: a discovery node and eight peers on loopback,
//! driven through their stdin and read through their stdout, and the StoreData program run
//! against them, checked against the oracle.
//!
//! The programs are the example binaries cargo puts in `target/<profile>/examples/`: plain
//! `cargo test` builds them; `cargo test --all-targets` and `cargo test --test programs` do not.

mod common;

use std::path::PathBuf;

use common::programs::{
    arg, list_nodes, programs, reports, sorted, start_discovery, start_peers, Finished, Program,
    ScratchDir, REPLY, STARTUP,
};
use common::{oracle_responsible, random_ids, wait_until};
use pastry::{key_of, Id, Rng};

#[test]
fn help_prints_usage_and_bad_flags_are_refused() {
    let paths = programs(["discovery", "peer", "demo", "store_data"]);
    for path in &paths {
        let mut help = Program::start(path, &["--help"]);
        let out = help.rest(REPLY).join("\n");
        assert!(help.wait(REPLY).success(), "{} --help fails", help.name);
        assert!(out.starts_with("Usage:"), "{}: {out}", help.name);

        let mut bad = Program::start(path, &["--no-such-flag"]);
        assert_eq!(bad.wait(REPLY).code(), Some(2), "{}", bad.name);
        assert!(wait_until(REPLY, || bad.stderr().contains("unknown flag")));
    }
}

#[test]
fn discovery_and_eight_peers_as_processes() {
    let [discovery_path, peer_path] = programs(["discovery", "peer"]);
    let (mut discovery, addr) = start_discovery(&discovery_path);

    let ids = random_ids(&mut Rng::seeded(0x9e6d), 8);
    let mut peers = start_peers(&peer_path, &addr, &ids, None);
    assert_eq!(list_nodes(&mut discovery), sorted(ids.clone()));

    // Lookups from each peer end at the node the oracle names, starting at that peer.
    let mut rng = Rng::seeded(7);
    let mut keys = vec![key_of(b"hello.txt"), key_of(b"notes.md")];
    keys.extend(random_ids(&mut rng, 6));
    for (i, &key) in keys.iter().enumerate() {
        let peer = &mut peers[i % ids.len()];
        let (responsible, hops) = peer.lookup(key);
        assert!(
            hops[0].starts_with(&format!("hop 0: {} ", peer.id)),
            "{hops:?}"
        );
        assert_eq!(responsible, oracle_responsible(key, &ids), "key {key}");
    }

    // Bad input is reported on stderr and the peer carries on.
    let peer = &mut peers[0].program;
    peer.send("lookup not-hex");
    peer.send("frobnicate");
    peer.send("id");
    assert!(peer.line(REPLY).starts_with(&ids[0].to_string()));
    assert!(wait_until(REPLY, || {
        let err = peer.stderr();
        err.contains("invalid identifier") && err.contains("unknown command")
    }));

    // One peer leaves: discovery lists the others, and lookups route around it.
    let gone = peers.remove(3);
    let gone_id = gone.id;
    gone.exit();
    let live: Vec<Id> = ids.iter().copied().filter(|&i| i != gone_id).collect();
    assert_eq!(list_nodes(&mut discovery), sorted(live.clone()));
    for (i, &key) in keys.iter().chain([&gone_id]).enumerate() {
        let (responsible, _) = peers[i % live.len()].lookup(key);
        assert_eq!(responsible, oracle_responsible(key, &live), "key {key}");
    }

    // The others leave one by one, the last at the end of its input.
    let last = peers.pop().unwrap();
    for peer in peers {
        peer.exit();
    }
    last.end_input();
    assert!(list_nodes(&mut discovery).is_empty());
    // The end of its input stops discovery.
    discovery.close_stdin();
    assert!(discovery.wait(REPLY).success());
}

#[test]
fn store_data_stores_retrieves_and_deletes_files_on_eight_peers() {
    // Dropped last: every program is killed before its directory goes.
    let scratch = ScratchDir::new("programs");
    let [discovery_path, peer_path, store_path] = programs(["discovery", "peer", "store_data"]);
    let (mut discovery, addr) = start_discovery(&discovery_path);

    let ids = random_ids(&mut Rng::seeded(0x570e), 8);
    let mut peers = start_peers(&peer_path, &addr, &ids, Some(&scratch));
    assert_eq!(list_nodes(&mut discovery), sorted(ids.clone()));

    // The files: empty, a little text, and about 3 MiB of pseudo-random bytes.
    let input = scratch.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = Rng::seeded(0xf11e);
    let mut random = Vec::new();
    while random.len() < 3 * 1024 * 1024 + 1001 {
        random.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("hello.txt", b"hello from the programs test\n".to_vec()),
        ("random.bin", random),
    ];
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| input.join(name)).collect();
    for ((_, bytes), path) in files.iter().zip(&paths) {
        std::fs::write(path, bytes).unwrap();
    }
    let holder_of = |name: &str| oracle_responsible(key_of(name.as_bytes()), &ids);

    // Store all three in one run: each lands on the node the oracle names.
    let mut args = vec!["--discovery", &addr, "store"];
    args.extend(paths.iter().map(|p| arg(p)));
    let stored = Program::member(&store_path, &args).run_to_end(STARTUP);
    assert!(
        stored.status.success(),
        "store exited with {}; stderr:\n{}",
        stored.status,
        stored.program.stderr()
    );
    let stored = reports(&stored.stdout, "stored on");
    assert_eq!(stored.len(), files.len(), "{stored:?}");
    for ((name, bytes), report) in files.iter().zip(&stored) {
        assert_eq!(report.name, *name);
        assert_eq!(report.key, key_of(name.as_bytes()), "{name}");
        assert_eq!(report.holder, holder_of(name), "holder of {name}");
        assert_eq!(report.hops.last(), Some(&report.holder), "{report:?}");
        assert!(report.hops.iter().all(|h| ids.contains(h)), "{report:?}");
        assert_eq!(report.tail, format!("({} bytes)", bytes.len()), "{name}");
    }

    // The holder of each lists it, with its size.
    for (name, bytes) in &files {
        let holder = holder_of(name);
        let peer = peers.iter_mut().find(|p| p.id == holder).unwrap();
        let listed = peer.list_files();
        let entry = (
            key_of(name.as_bytes()),
            bytes.len() as u64,
            name.to_string(),
        );
        assert!(listed.contains(&entry), "{holder} lists {listed:?}");
    }

    // Each comes back byte for byte, through discovery and through a known peer.
    let output = scratch.join("out");
    std::fs::create_dir_all(&output).unwrap();
    for (i, (name, bytes)) in files.iter().enumerate() {
        let out = output.join(name);
        let entry = if i % 2 == 0 {
            ["--discovery", addr.as_str()]
        } else {
            ["--peer", peers[i].addr.as_str()]
        };
        let args = [&entry[..], &["retrieve", name, arg(&out)]].concat();
        let retrieved = Program::member(&store_path, &args).run_to_end(STARTUP);
        assert!(
            retrieved.status.success(),
            "retrieve {name} exited with {}; stderr:\n{}",
            retrieved.status,
            retrieved.program.stderr()
        );
        let report = &reports(&retrieved.stdout, "retrieved from")[0];
        assert_eq!(report.holder, holder_of(name), "{name}");
        assert_eq!(
            report.tail,
            format!("({} bytes) into {}", bytes.len(), out.display())
        );
        assert!(std::fs::read(&out).unwrap() == *bytes, "{name} differs");
    }

    // Delete one: the holder had it, lists it no more, and retrieving it fails (exit 1).
    let gone = "hello.txt";
    let deleted =
        Program::member(&store_path, &["--discovery", &addr, "delete", gone]).run_to_end(REPLY);
    assert!(deleted.status.success(), "{}", deleted.program.stderr());
    let report = &reports(&deleted.stdout, "deleted on")[0];
    assert_eq!(
        (report.holder, report.tail.as_str()),
        (holder_of(gone), "(existed)")
    );
    let peer = peers.iter_mut().find(|p| p.id == holder_of(gone)).unwrap();
    assert!(peer.list_files().iter().all(|(_, _, n)| n != gone));
    let out = output.join("deleted-copy");
    let missing = Program::member(
        &store_path,
        &["--discovery", &addr, "retrieve", gone, arg(&out)],
    )
    .run_to_end(REPLY);
    assert_eq!(missing.status.code(), Some(1), "{:?}", missing.stdout);
    assert!(missing.stdout.is_empty(), "{:?}", missing.stdout);
    assert!(wait_until(REPLY, || missing
        .program
        .stderr()
        .contains("error: retrieve hello.txt: no object named")));
    assert!(!out.exists(), "a failed retrieval left {}", out.display());

    // Without OUTPUT, a name that is not a plain file name is refused as a usage error.
    let refused =
        Program::member(&store_path, &["--discovery", &addr, "retrieve", "../x"]).run_to_end(REPLY);
    assert_eq!(refused.status.code(), Some(2));

    // Commands from stdin: the exit status says whether all of them succeeded.
    let mut session = Program::member(&store_path, &["--discovery", &addr]);
    let copy = output.join("again.bin");
    session.send(&format!("retrieve random.bin {}", arg(&copy)));
    let lines = session.lines_until(REPLY, |l| l.starts_with("retrieved from"));
    assert_eq!(
        reports(&lines, "retrieved from")[0].holder,
        holder_of("random.bin")
    );
    session.send("frobnicate");
    session.send("exit");
    assert_eq!(session.wait(REPLY).code(), Some(1));
    assert!(wait_until(REPLY, || session
        .stderr()
        .contains("unknown command")));
    assert!(std::fs::read(&copy).unwrap() == files[2].1);

    drop(peers);
    drop(discovery);
    drop(scratch);
}

#[test]
fn a_line_that_is_not_utf8_is_reported_and_skipped_and_counts_are_singular_for_one() {
    let scratch = ScratchDir::new("utf8");
    let [discovery_path, peer_path, store_path] = programs(["discovery", "peer", "store_data"]);
    let (mut discovery, addr) = start_discovery(&discovery_path);
    let mut peers = start_peers(&peer_path, &addr, &[Id(0x1000)], Some(&scratch));

    // discovery goes on after the bad line, and says "1 node".
    discovery.send_bytes(b"list-nodes \xff\n");
    assert_eq!(list_nodes(&mut discovery), vec![Id(0x1000)]);
    assert!(wait_until(REPLY, || discovery
        .stderr()
        .contains("not UTF-8")));

    // The peer goes on too; alone, it is responsible for every key in 0 hops, then a second
    // peer makes a lookup of its key from the first take 1 hop.
    let peer = &mut peers[0];
    peer.program.send_bytes(b"\xc3\x28 lookup\n");
    let (holder, _) = peer.lookup(Id(0x1000));
    assert_eq!(holder, Id(0x1000));
    assert!(wait_until(REPLY, || peer
        .program
        .stderr()
        .contains("not UTF-8")));
    let second = start_peers(&peer_path, &addr, &[Id(0x9000)], Some(&scratch));
    peers[0].program.send("lookup 9000");
    let lines = peers[0]
        .program
        .lines_until(REPLY, |l| l.starts_with("responsible:"));
    assert!(lines.last().unwrap().ends_with("(1 hop)"), "{lines:?}");
    assert_eq!(peers[0].list_files().len(), 0);

    // store_data runs the commands after the bad line, then exits 1 for it.
    let file = scratch.join("one.txt");
    std::fs::write(&file, b"x").unwrap();
    let mut store = Program::member(&store_path, &["--discovery", addr.as_str()]);
    store.send_bytes(b"store \xff\xfe\n");
    store.send(&format!("store {}", arg(&file)));
    store.close_stdin();
    let Finished {
        status,
        stdout,
        program,
    } = store.run_to_end(REPLY);
    assert_eq!(status.code(), Some(1), "{}", program.stderr());
    assert!(
        program.stderr().contains("not UTF-8"),
        "{}",
        program.stderr()
    );
    let stored = stdout.iter().find(|l| l.starts_with("stored on")).unwrap();
    assert!(stored.ends_with("(1 byte)"), "{stored}");
    drop(second);
}

#[test]
fn a_new_key_is_made_by_discovery_and_nothing_runs_without_a_choice() {
    let [discovery_path, peer_path, store_path] = programs(["discovery", "peer", "store_data"]);
    // No key and no --insecure: a usage error, naming the choices.
    for path in [&discovery_path, &peer_path, &store_path] {
        let mut unset = Program::start(path, &["--port", "0"]);
        if path == &store_path {
            unset = Program::start(path, &["--discovery", "127.0.0.1:9", "delete", "x"]);
        }
        assert_eq!(unset.wait(REPLY).code(), Some(2), "{}", unset.name);
        assert!(wait_until(REPLY, || unset.stderr().contains("--key-file")));
    }

    let dir = ScratchDir::new("new-key");
    let key = dir.join("cluster.key");
    let mut discovery = Program::start(&discovery_path, &["--port", "0", "--new-key", arg(&key)]);
    let line = discovery.line(STARTUP);
    let addr = line
        .strip_prefix("discovery listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 65, "64 hex digits and a newline");
    }
    // An existing key is never overwritten.
    let mut again = Program::start(&discovery_path, &["--port", "0", "--new-key", arg(&key)]);
    assert_eq!(again.wait(REPLY).code(), Some(2));

    let mut peer = Program::start(
        &peer_path,
        &["--key-file", arg(&key), "--discovery", &addr, "--port", "0"],
    );
    assert!(peer.line(STARTUP).starts_with("peer "));
    let file = dir.join("note.txt");
    std::fs::write(&file, b"kept").unwrap();
    let stored = Program::start(
        &store_path,
        &[
            "--key-file",
            arg(&key),
            "--discovery",
            &addr,
            "store",
            arg(&file),
        ],
    )
    .run_to_end(STARTUP);
    assert!(stored.status.success(), "{:?}", stored.stdout);
    // Without the key, nothing is served; --insecure says what it means.
    let mut open = Program::start(
        &store_path,
        &["--insecure", "--discovery", &addr, "delete", "note.txt"],
    );
    assert!(
        !open.wait(STARTUP).success(),
        "a program without the key was served"
    );
    assert!(open.stderr().contains("warning: --insecure"));
    peer.close_stdin();
    discovery.close_stdin();
    assert!(peer.wait(STARTUP).success());
    assert!(discovery.wait(STARTUP).success());
}
