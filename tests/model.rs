//! A model-based test of the object store: racing writers put and delete a few names while
//! nodes join, leave and crash (seeded); once the network settles, every name's copies are
//! identical and on its best placed, the last write in the responsible node's order is what
//! a get returns, and every delete's `existed` is true to that order. A failure prints the
//! seed; `PASTRY_MODEL_SEED=N cargo test --test model` repeats a run's choices.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use pastry::{key_of, Client, Error, Id, NodeConfig, Rng};

/// One acknowledged (or failed) operation of the model-based test.
#[derive(Clone, Debug)]
enum Op {
    Put {
        data: Vec<u8>,
        version: u64,
        kept: bool,
    },
    Delete {
        version: u64,
        existed: bool,
    },
    Failed,
}

#[test]
fn racing_writers_under_churn_leave_identical_copies_of_the_last_write_with_exact_answers() {
    let seed: u64 = std::env::var("PASTRY_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("model seed {seed} (set PASTRY_MODEL_SEED to repeat another)");
    let mut rng = Rng::seeded(seed);
    let k = 3;
    let config = quick(3, k);
    let mut net = Network::with_config(&random_ids(&mut rng, 12), &config);
    let names: Vec<String> = (0..4).map(|i| format!("raced-{i}")).collect();
    let log: Mutex<BTreeMap<String, Vec<Op>>> = Mutex::new(BTreeMap::new());
    let stop = AtomicBool::new(false);
    let discovery = net.discovery.local_addr();
    let writers: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
    std::thread::scope(|s| {
        for (w, &wseed) in writers.iter().enumerate() {
            let (log, stop, names) = (&log, &stop, &names);
            s.spawn(move || {
                let mut rng = Rng::seeded(wseed);
                let client = Client::new(discovery, key());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 2000 {
                    n += 1;
                    let name = &names[rng.below(names.len())];
                    let op = if rng.below(3) == 0 {
                        match client.delete(name) {
                            Ok(d) => Op::Delete {
                                version: d.version,
                                existed: d.existed,
                            },
                            Err(_) => Op::Failed,
                        }
                    } else {
                        let data = format!("writer {w} op {n}").into_bytes();
                        match client.put(name, &data) {
                            Ok(st) => Op::Put {
                                data,
                                version: st.version,
                                kept: st.kept,
                            },
                            Err(_) => Op::Failed,
                        }
                    };
                    log.lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_default()
                        .push(op);
                }
            });
        }
        // Churn: a join, a graceful leave, a crash, in a seeded order, while they write.
        let mut churn = Rng::seeded(seed ^ 0xc4);
        for step in 0..6 {
            std::thread::sleep(Duration::from_millis(150));
            match (step + churn.below(3)) % 3 {
                0 => {
                    let id = Id(churn.next_u64() as u16);
                    if !net.ids().contains(&id) {
                        net.join_node(start_node_with(NodeConfig {
                            id: Some(id),
                            ..config.clone()
                        }));
                    }
                }
                1 if net.nodes.len() > 8 => {
                    let node = net.nodes.remove(churn.below(net.nodes.len()));
                    let _ = node.leave();
                    node.shutdown();
                }
                _ if net.nodes.len() > 8 => {
                    net.nodes.remove(churn.below(net.nodes.len())).shutdown();
                }
                _ => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let log = log.into_inner().unwrap();
    let client = Client::new(discovery, key());
    let live = net.ids();
    let (mut checked_existed, mut checked_final) = (0, 0);
    for name in &names {
        let ops = log.get(name).cloned().unwrap_or_default();
        // Every holder settles on the same record, and only the best placed hold it.
        let mut last = String::new();
        let agreed = wait_until(Duration::from_secs(30), || {
            let want = oracle_replicas(key_of(name.as_bytes()), &live, k);
            let mut seen: Vec<(Id, Option<(u64, u32)>)> = Vec::new();
            for node in &net.nodes {
                let rec = node
                    .objects()
                    .unwrap()
                    .into_iter()
                    .find(|o| o.name == name.as_bytes())
                    .map(|o| (o.version, o.crc));
                if rec.is_some() || want.contains(&node.id()) {
                    seen.push((node.id(), rec));
                }
            }
            let holders: Vec<Id> = seen.iter().filter(|s| s.1.is_some()).map(|s| s.0).collect();
            let same = seen.windows(2).all(|w| w[0].1 == w[1].1);
            let placed = holders.is_empty() || {
                let (mut h, mut w) = (holders.clone(), want.clone());
                h.sort();
                w.sort();
                h == w
            };
            last = format!("{seen:?}, want {want:?}");
            same && placed
        });
        assert!(agreed, "seed {seed}: copies of {name} disagree: {last}");
        // Versions are unique per write.
        let mut versions: Vec<u64> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Put { version, .. } => Some(*version),
                _ => None,
            })
            .collect();
        let before = versions.len();
        versions.sort();
        versions.dedup();
        assert_eq!(
            versions.len(),
            before,
            "seed {seed}: {name}: two puts share a version"
        );
        if ops.iter().any(|o| matches!(o, Op::Failed)) {
            continue; // an unknown outcome: the order cannot be checked exactly
        }
        // In the responsible node's order (by version): each delete's `existed` says whether
        // the write just before it was a put that took effect, and the last write is what a
        // get returns.
        let mut ordered: Vec<&Op> = ops.iter().collect();
        ordered.sort_by_key(|o| match o {
            Op::Put { version, .. } | Op::Delete { version, .. } => *version,
            Op::Failed => 0,
        });
        for pair in ordered.windows(2) {
            let before_was_put = match pair[0] {
                Op::Put { kept: true, .. } => true,
                Op::Delete { .. } => false,
                _ => continue, // a put overtaken by a newer one left nothing
            };
            if let Op::Delete { existed, version } = pair[1] {
                assert_eq!(
                    *existed, before_was_put,
                    "seed {seed}: {name}: delete at {version} after {:?}",
                    pair[0]
                );
                checked_existed += 1;
            }
        }
        let got = client.get(name);
        match (ordered.last(), &got) {
            (Some(Op::Put { data, .. }), Ok(f)) => assert_eq!(&f.data, data, "seed {seed}: {name}"),
            (Some(Op::Delete { .. }) | None, Err(Error::NotFound { .. })) => {}
            (last, got) => panic!(
                "seed {seed}: {name}: last write {last:?}, read {:?}",
                got.as_ref().map(|f| f.version)
            ),
        }
        checked_final += 1;
    }
    eprintln!(
        "seed {seed}: {checked_final} names checked to the last write, {checked_existed} deletes' answers"
    );
    assert!(
        checked_final >= 2 && checked_existed >= 20,
        "too few writes succeeded to check"
    );
}
