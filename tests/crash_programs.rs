//! Peers that crash, as processes: twelve `peer` programs hold 200 files stored by one
//! `store_data` run; two neighbours on the ring are killed with SIGKILL. The others must
//! notice, tell discovery, re-replicate the lost copies onto the best-placed live peers, and
//! serve every file back byte for byte.
//!
//! The programs are the example binaries cargo puts in `target/<profile>/examples/`: plain
//! `cargo test` builds them; `cargo test --test crash_programs` alone does not (run
//! `cargo build --examples` first). The peers log at `pastry=info` to stderr, shown when the
//! test fails; set `RUST_LOG` (say `pastry=debug`) to change that.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::programs::{
    arg, list_nodes, programs, reports, sorted, start_discovery, start_peers, Finished, Peer,
    Program, ScratchDir, REPLY,
};
use common::{random_ids, wait_until};
use pastry::{key_of, Id, Rng};

/// How long one `store_data` run over all the files may take.
const ALL_FILES: Duration = Duration::from_secs(120);
/// How long the overlay may take to notice the crashes and repair itself.
const REPAIR: Duration = Duration::from_secs(30);

const PEERS: usize = 12;
const FILES: usize = 200;
/// Copies kept of each object.
const REPLICAS: usize = 3;

/// The last lines of every peer's stderr, for a failure message.
fn logs(peers: &[Peer]) -> String {
    let mut text = String::new();
    for peer in peers {
        let err = peer.program.stderr();
        let lines: Vec<&str> = err.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        text.push_str(&format!(
            "--- peer {} stderr (last {}):\n",
            peer.id,
            tail.len()
        ));
        for line in tail {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The oracle: the `k` live ids best placed for `key` (the nodes that keep its copies), best
/// first: by ring distance to the key, ties to the larger id.
fn best_placed(key: Id, live: &[Id], k: usize) -> Vec<Id> {
    let distance = |id: Id| {
        let cw = id.0.wrapping_sub(key.0);
        cw.min(key.0.wrapping_sub(id.0))
    };
    let mut ids = live.to_vec();
    ids.sort_by(|a, b| distance(*a).cmp(&distance(*b)).then(b.cmp(a)));
    ids.truncate(k);
    ids
}

/// Retrieves every file with one interactive `store_data` session into `output` and checks
/// each against its original and its holder against the oracle over `live`.
fn retrieve_all(
    store_data: &Path,
    discovery: &str,
    files: &[(String, Vec<u8>)],
    output: &Path,
    live: &[Id],
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(output);
    std::fs::create_dir_all(output).unwrap();
    let mut session = Program::member(store_data, &["--discovery", discovery]);
    for (name, _) in files {
        session.send(&format!("retrieve {name} {}", arg(&output.join(name))));
    }
    session.send("exit");
    let Finished {
        status,
        stdout,
        program: session,
    } = session.run_to_end(ALL_FILES);
    if !status.success() {
        let err = session.stderr();
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        return Err(format!(
            "store_data exited with {status}; {} errors:\n{}",
            errors.len(),
            errors.join("\n")
        ));
    }
    let retrieved = reports(&stdout, "retrieved from");
    if retrieved.len() != files.len() {
        return Err(format!("{} files retrieved", retrieved.len()));
    }
    for ((name, bytes), report) in files.iter().zip(&retrieved) {
        assert_eq!(&report.name, name, "retrieval reports out of order");
        let best = best_placed(key_of(name.as_bytes()), live, 1)[0];
        if report.holder != best {
            let holder = report.holder;
            return Err(format!("{name} retrieved from {holder}, not {best}"));
        }
        let copy = std::fs::read(output.join(name)).map_err(|e| format!("{name}: {e}"))?;
        if copy != *bytes {
            return Err(format!("{name} differs from the original"));
        }
    }
    Ok(())
}

/// Checks that every file is held by exactly its `REPLICAS` best-placed peers, with its size;
/// returns the first few discrepancies.
fn check_replicas(peers: &mut [Peer], files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let live: Vec<Id> = peers.iter().map(|p| p.id).collect();
    let mut held: BTreeMap<String, Vec<Id>> = BTreeMap::new();
    for peer in peers.iter_mut() {
        for (_key, size, name) in peer.list_files() {
            let expected = files.iter().find(|(n, _)| *n == name).map(|(_, b)| b.len());
            if expected != Some(size as usize) {
                return Err(format!("{} holds {name} with {size} bytes", peer.id));
            }
            held.entry(name).or_default().push(peer.id);
        }
    }
    let wrong: Vec<String> = files
        .iter()
        .filter_map(|(name, _)| {
            let want = sorted(best_placed(key_of(name.as_bytes()), &live, REPLICAS));
            let got = sorted(held.get(name).cloned().unwrap_or_default());
            (got != want).then(|| format!("{name}: held by {got:?}, want {want:?}"))
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        let first: Vec<&str> = wrong.iter().take(10).map(String::as_str).collect();
        Err(format!(
            "{} files misplaced, such as:\n{}",
            wrong.len(),
            first.join("\n")
        ))
    }
}

/// Polls `check` until it passes or `limit` passes; then, its last complaint.
fn poll(limit: Duration, mut check: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    let passed = wait_until(limit, || match check() {
        Ok(()) => true,
        Err(why) => {
            last = why;
            thread::sleep(Duration::from_millis(200));
            false
        }
    });
    if passed {
        Ok(())
    } else {
        Err(last)
    }
}

#[test]
fn store_data_survives_two_peers_killed_with_sigkill() {
    let started = Instant::now();
    // Declared first, dropped last: every program is killed before its directory goes.
    let scratch = ScratchDir::new("crash");
    let [discovery_path, peer_path, store_path] = programs(["discovery", "peer", "store_data"]);
    let (mut discovery, addr) = start_discovery(&discovery_path);

    let mut rng = Rng::seeded(0xc4a5);
    let ids = random_ids(&mut rng, PEERS);
    let mut peers = start_peers(&peer_path, &addr, &ids, Some(&scratch));
    assert_eq!(list_nodes(&mut discovery), sorted(ids.clone()));

    // 200 files of 1 to 4 KiB of pseudo-random bytes, stored in one run.
    let input = scratch.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..FILES)
        .map(|i| {
            let len = 1024 + rng.below(3 * 1024 + 1);
            let bytes = (0..len).map(|_| rng.next_u64() as u8).collect();
            (format!("file-{i:03}.bin"), bytes)
        })
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| input.join(name)).collect();
    for ((_, bytes), path) in files.iter().zip(&paths) {
        std::fs::write(path, bytes).unwrap();
    }
    let mut args = vec!["--discovery", addr.as_str(), "store"];
    args.extend(paths.iter().map(|p| arg(p)));
    let Finished {
        status,
        stdout,
        program: store,
    } = Program::member(&store_path, &args).run_to_end(ALL_FILES);
    assert!(
        status.success(),
        "store exited with {status}; stderr:\n{}",
        store.stderr()
    );
    let stored = reports(&stdout, "stored on");
    assert_eq!(stored.len(), FILES);
    for ((name, _), report) in files.iter().zip(&stored) {
        assert_eq!(&report.name, name);
        let best = best_placed(key_of(name.as_bytes()), &ids, 1)[0];
        assert_eq!(report.holder, best, "holder of {name}");
    }
    if let Err(why) = poll(REPAIR, || check_replicas(&mut peers, &files)) {
        panic!("before the kill: {why}\n{}", logs(&peers));
    }

    // Two neighbours on the ring die at once: they held copies of the same objects.
    let ring = sorted(ids.clone());
    let k = rng.below(ring.len());
    let victims = [ring[k], ring[(k + 1) % ring.len()]];
    let shared = files
        .iter()
        .filter(|(name, _)| {
            let set = best_placed(key_of(name.as_bytes()), &ids, REPLICAS);
            victims.iter().all(|v| set.contains(v))
        })
        .count();
    let mut killed: Vec<Peer> = Vec::new();
    for victim in victims {
        let i = peers.iter().position(|p| p.id == victim).unwrap();
        let mut peer = peers.remove(i);
        peer.program.kill().expect("SIGKILL");
        killed.push(peer);
    }
    for peer in &mut killed {
        let status = peer.program.wait(REPLY);
        assert!(!status.success(), "{} exited with {status}", peer.id);
    }
    eprintln!("killed {victims:?}, which both held copies of {shared} files");
    let live: Vec<Id> = peers.iter().map(|p| p.id).collect();

    // The survivors report the dead to discovery.
    let killed_at = Instant::now();
    let mut listed = Vec::new();
    let reported = wait_until(REPAIR, || {
        listed = list_nodes(&mut discovery);
        listed == sorted(live.clone())
    });
    assert!(
        reported,
        "discovery still lists {listed:?}, want {:?}\n{}",
        sorted(live.clone()),
        logs(&peers)
    );
    eprintln!(
        "discovery lists the 10 live peers {:?} after the kill",
        killed_at.elapsed()
    );

    // Every file comes back byte for byte, from the best-placed live peer.
    let output = scratch.join("out");
    let mut attempts = 0;
    let deadline = Instant::now() + REPAIR;
    loop {
        attempts += 1;
        match retrieve_all(&store_path, &addr, &files, &output, &live) {
            Ok(()) => break,
            Err(why) if Instant::now() < deadline => {
                eprintln!("retrieval attempt {attempts}: {why}");
                thread::sleep(Duration::from_millis(500));
            }
            Err(why) => panic!(
                "retrieval after {attempts} attempts: {why}\n{}",
                logs(&peers)
            ),
        }
    }
    eprintln!(
        "all {FILES} files retrieved in {attempts} attempt(s), {:?} after the kill",
        killed_at.elapsed()
    );

    // Each is back on exactly its three best-placed live peers.
    if let Err(why) = poll(REPAIR, || check_replicas(&mut peers, &files)) {
        panic!(
            "replicas not repaired after {REPAIR:?}: {why}\n{}",
            logs(&peers)
        );
    }
    eprintln!(
        "replicas repaired {:?} after the kill; test took {:?}",
        killed_at.elapsed(),
        started.elapsed()
    );

    drop(killed);
    drop(peers);
    drop(discovery);
    drop(scratch);
}

#[test]
fn a_peer_killed_and_restarted_at_once_with_its_id_and_directory_rejoins_at_the_first_try() {
    let scratch = ScratchDir::new("restart");
    let [discovery_path, peer_path, store_path] = programs(["discovery", "peer", "store_data"]);
    let (mut discovery, addr) = start_discovery(&discovery_path);
    let ids = random_ids(&mut Rng::seeded(0x4e57), 6);
    let mut peers = start_peers(&peer_path, &addr, &ids, Some(&scratch));
    let file = scratch.join("kept.txt");
    std::fs::write(&file, b"kept through the restart").unwrap();
    let Finished { status, .. } = Program::member(
        &store_path,
        &["--discovery", addr.as_str(), "store", arg(&file)],
    )
    .run_to_end(REPLY);
    assert!(status.success());

    for round in 0..3 {
        let victim = peers.remove(round);
        let (id, old_addr) = (victim.id, victim.addr.clone());
        let mut program = victim.program;
        program.kill().expect("SIGKILL");
        assert!(!program.wait(REPLY).success());
        // At once, before anyone noticed the crash: the same id on its old directory.
        let killed = Instant::now();
        let dir = scratch.join(&format!("peer-{id}"));
        let back = Peer::start(&peer_path, &addr, id, Some(&dir));
        let rejoined = killed.elapsed();
        eprintln!("round {round}: {id} rejoined {rejoined:?} after the kill");
        assert!(rejoined < Duration::from_secs(1), "took {rejoined:?}");
        assert_ne!(back.addr, old_addr);
        peers.push(back);
        let mut want = ids.clone();
        want.sort();
        assert_eq!(list_nodes(&mut discovery), want);
        // Every peer routes the restarted id to it, at its new address.
        let routed = wait_until(REPAIR, || peers.iter_mut().all(|p| p.lookup(id).0 == id));
        assert!(routed, "lookups of {id} do not reach it");
    }
    let out = scratch.join("out.txt");
    let Finished {
        status, program, ..
    } = Program::member(
        &store_path,
        &[
            "--discovery",
            addr.as_str(),
            "retrieve",
            "kept.txt",
            arg(&out),
        ],
    )
    .run_to_end(REPLY);
    assert!(status.success(), "{}", program.stderr());
    assert_eq!(std::fs::read(&out).unwrap(), b"kept through the restart");
}
