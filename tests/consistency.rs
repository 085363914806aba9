//! Copies that always agree: writes ordered by the responsible node, exact answers under
//! retries and departures, repair after every change, and deletion records collected without
//! letting a deleted object come back. The model-based test of racing writers is `model.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use pastry::store::ObjectStore;
use pastry::wire::{Message, RemoteCode};
use pastry::{key_of, Client, Connection, Error, Id, NetConfig, Node, NodeConfig, Rng};

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pastry-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `node` keeps a record of `name`, a deletion record included.
fn holds_record(node: &Node, name: &str) -> bool {
    let records = node.records().expect("records");
    records.iter().any(|r| r.name == name.as_bytes())
}

/// The same for the data directory of a node that is not running.
fn dir_has_record(dir: &Path, name: &str) -> bool {
    let store = ObjectStore::open(dir).expect("open the stopped node's store");
    store.meta(name.as_bytes()).expect("meta").is_some()
}

/// The names of `objects`, for the placement checks.
fn names_of(objects: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    objects.keys().collect()
}

/// `n` consecutive ids of `ids` on the ring, starting at a random one.
fn neighbours(rng: &mut Rng, ids: &[Id], n: usize) -> Vec<Id> {
    let mut ring = ids.to_vec();
    ring.sort();
    let start = rng.below(ring.len());
    (0..n).map(|i| ring[(start + i) % ring.len()]).collect()
}

fn take(nodes: &mut Vec<Node>, id: Id) -> Node {
    let at = nodes.iter().position(|n| n.id() == id).unwrap();
    nodes.remove(at)
}

#[test]
fn neighbours_leaving_or_crashing_at_once_leave_every_object_on_its_best_placed() {
    let mut rng = Rng::seeded(0x5e77);
    // (leaf half, copies, nodes leaving or crashing together, crash)
    let cases = [
        (2, 3, 3, false),
        (2, 3, 4, false),
        (3, 4, 4, false),
        (8, 3, 4, false),
        (8, 4, 3, false),
        (2, 3, 3, true),
        (3, 4, 3, true),
        (3, 4, 4, true),
        (8, 3, 3, true),
        (8, 4, 4, true),
    ];
    for (l, k, gone, crash) in cases {
        eprintln!("l={l} k={k}: {gone} neighbours, crash: {crash}");
        let mut net = Network::with_config(&random_ids(&mut rng, 20), &quick(l, k));
        let client = Client::new(net.discovery.local_addr(), key());
        let objects = objects(&mut rng, 30);
        for (name, data) in &objects {
            client.put(name, data).unwrap();
        }
        assert_settles(&net.nodes, &names_of(&objects), k);
        let before = net.ids();
        let victim_ids = neighbours(&mut rng, &before, gone);
        let victims: Vec<Node> = victim_ids
            .iter()
            .map(|&id| take(&mut net.nodes, id))
            .collect();
        let started = Instant::now();
        std::thread::scope(|s| {
            for v in &victims {
                s.spawn(move || {
                    if !crash {
                        v.leave().expect("leaves");
                    }
                    v.shutdown();
                });
            }
        });
        // A crash of every holder of an object may lose it (unless one of them copied it to
        // a survivor as it saw another go); nothing else may be lost.
        let (kept, lost): (Vec<&String>, Vec<&String>) = objects.keys().partition(|name| {
            !crash
                || !oracle_replicas(key_of(name.as_bytes()), &before, k)
                    .iter()
                    .all(|h| victim_ids.contains(h))
        });
        let mut last = String::new();
        let settled = wait_until(Duration::from_secs(30), || {
            let saved = lost.iter().filter(|n| !holders(&net.nodes, n).is_empty());
            let names: Vec<&String> = kept.iter().chain(saved).copied().collect();
            placed_exactly(&net.nodes, &names, k)
                .map_err(|e| last = e)
                .is_ok()
        });
        assert!(settled, "l={l} k={k}: objects did not settle: {last}");
        eprintln!(
            "l={l} k={k}: {gone} neighbours {} at once; every object back on its {k} best \
             placed after {:?} ({} lost with all their holders)",
            if crash { "crashed" } else { "left" },
            started.elapsed(),
            lost.len()
        );
        for name in kept {
            assert_eq!(&client.get(name).unwrap().data, &objects[name], "{name}");
        }
        if gone < k {
            assert!(lost.is_empty());
        }
    }
}

#[test]
fn placement_is_exact_for_every_replicas_value_through_joins_leaves_crashes_and_restarts() {
    let mut rng = Rng::seeded(0x91ace);
    let scratch = Scratch::new("placement");
    for l in [2usize, 3, 8] {
        let ks: Vec<usize> = if l == 8 {
            vec![1, 4, 8, 9]
        } else {
            (1..=l + 1).collect()
        };
        for k in ks {
            let ids = random_ids(&mut rng, 16);
            let config = quick(l, k);
            let dir = |id: Id| scratch.0.join(format!("{l}-{k}-{id}"));
            let mut net = Network::new(&[]);
            for &id in &ids {
                net.join_node(start_node_with(NodeConfig {
                    id: Some(id),
                    data_dir: Some(dir(id)),
                    ..config.clone()
                }));
            }
            let client = Client::new(net.discovery.local_addr(), key());
            let objects = objects(&mut rng, 20);
            for (name, data) in &objects {
                client.put(name, data).unwrap();
            }
            let names = names_of(&objects);
            let start_with = |id: Id| {
                start_node_with(NodeConfig {
                    id: Some(id),
                    data_dir: Some(dir(id)),
                    ..config.clone()
                })
            };
            assert_settles(&net.nodes, &names, k);
            // Two join.
            for id in random_ids(&mut rng, 2) {
                if !net.ids().contains(&id) {
                    net.join_node(start_with(id));
                }
            }
            assert_settles(&net.nodes, &names, k);
            // One leaves.
            let leaver = net.nodes.remove(rng.below(net.nodes.len()));
            leaver.leave().unwrap();
            leaver.shutdown();
            assert_settles(&net.nodes, &names, k);
            // One crashes and restarts on its directory.
            let crashed = net.nodes.remove(rng.below(net.nodes.len()));
            let crashed_id = crashed.id();
            crashed.shutdown();
            drop(crashed);
            if k > 1 {
                // With one copy, the crashed node's objects are away until it is back.
                assert_settles(&net.nodes, &names, k);
            }
            net.join_node(start_with(crashed_id));
            assert_settles(&net.nodes, &names, k);
            // Read once every node knows the restarted one. With one copy there is no other
            // holder to turn to while an object moves (the restarted node's first passes may
            // still move some), so a single copy is read once it is back in place; with more,
            // at once.
            assert_leaf_sets_settle(l, &net.nodes, "the restart");
            for (name, data) in &objects {
                let read = || client.get(name).map(|f| f.data);
                let got = if k == 1 {
                    // The first read that finds it: a second one could meet the object
                    // between its old holder and its new one.
                    let mut got = None;
                    let found = wait_until(Duration::from_secs(30), || {
                        got = read().ok();
                        got.is_some()
                    });
                    assert!(found, "l={l} k={k} {name}: {:?}", read().err());
                    got.unwrap_or_default()
                } else {
                    read().unwrap()
                };
                assert_eq!(&got, data, "l={l} k={k} {name}");
            }
            eprintln!("l={l} k={k}: placement exact after joins, a leave, a crash and a restart");
        }
    }
}

#[test]
fn replicas_above_leaf_half_plus_one_are_refused_with_a_clear_error() {
    let config = NodeConfig {
        leaf_half: 2,
        replicas: 4,
        ..NodeConfig::new(key())
    };
    match Node::start(config) {
        Err(Error::Config(why)) => assert!(why.contains("leaf_half + 1"), "{why}"),
        other => panic!(
            "expected a configuration error, got {:?}",
            other.map(|n| n.id())
        ),
    }
}

#[test]
fn deletes_and_puts_during_a_copy_holders_graceful_leave_answer_exactly() {
    let mut rng = Rng::seeded(0xde1);
    for round in 0..4 {
        let mut net = Network::with_config(&random_ids(&mut rng, 10), &quick(8, 3));
        let client = Client::new(net.discovery.local_addr(), key());
        let objects = objects(&mut rng, 40);
        for (name, data) in &objects {
            client.put(name, data).unwrap();
        }
        let names = names_of(&objects);
        assert_settles(&net.nodes, &names, 3);
        // The node keeping copies of the most objects without being responsible for them.
        let live = net.ids();
        let copies_kept = |id: Id| {
            names
                .iter()
                .filter(|n| {
                    let set = oracle_replicas(key_of(n.as_bytes()), &live, 3);
                    set[0] != id && set.contains(&id)
                })
                .count()
        };
        let leaver_id = *live.iter().max_by_key(|&&id| copies_kept(id)).unwrap();
        let leaver = take(&mut net.nodes, leaver_id);
        let (to_delete, to_rewrite) = names.split_at(names.len() / 2);
        std::thread::scope(|s| {
            s.spawn(|| {
                leaver.leave().expect("leaves");
            });
            for name in to_delete {
                let deleted = client.delete(name).unwrap();
                assert!(
                    deleted.existed,
                    "round {round}: delete of {name} said absent"
                );
            }
            for name in to_rewrite {
                let stored = client.put(name, format!("new {name}").as_bytes()).unwrap();
                assert!(stored.kept, "round {round}: {name}");
            }
        });
        leaver.shutdown();
        for name in to_delete {
            assert!(
                matches!(client.get(name), Err(Error::NotFound { .. })),
                "round {round}: {name} still readable"
            );
        }
        for name in to_rewrite {
            assert_eq!(
                client.get(name).unwrap().data,
                format!("new {name}").as_bytes()
            );
        }
        assert_settles(&net.nodes, to_rewrite, 3);
    }
}

/// Fills every connection slot of `node` (which serves at most `max`) with idle members'
/// connections and checks that one more is refused as busy; returns the connections, to be
/// held.
fn flood(node: &Node, max: u64) -> Vec<Connection> {
    let addr = node.info().addr;
    let net = NetConfig::with(key());
    // Its neighbours hold some of the slots already: fill the rest.
    let held: Vec<Connection> = (0..max)
        .map_while(|_| Connection::open(addr, &net).ok())
        .collect();
    assert!(!held.is_empty(), "no connection to {addr} was admitted");
    assert!(
        wait_until(Duration::from_secs(10), || node.stats().open_connections
            >= max),
        "{addr} serves {} connections",
        node.stats().open_connections
    );
    // Closed before its handshake ends: the caller takes it as busy.
    match Connection::open(addr, &net) {
        Err(Error::Refused {
            code: RemoteCode::Busy,
            ..
        }) => {}
        other => panic!("one more connection: {:?}", other.map(|c| c.peer())),
    }
    held
}

#[test]
fn a_busy_holder_does_not_stop_puts_gets_and_deletes_of_its_keys() {
    let mut rng = Rng::seeded(0xb5);
    let ids = random_ids(&mut rng, 8);
    let busy_id = ids[3];
    let mut net = Network::new(&[]);
    for &id in &ids {
        let mut config = quick(8, 3);
        config.id = Some(id);
        if id == busy_id {
            config.net = NetConfig {
                max_connections: 24,
                ..NetConfig::with(key())
            };
        }
        net.join_node(start_node_with(config));
    }
    let busy = net.nodes.iter().find(|n| n.id() == busy_id).unwrap();
    let name = (0..)
        .map(|i| format!("busy-{i}"))
        .find(|n| oracle_responsible(key_of(n.as_bytes()), &ids) == busy_id)
        .unwrap();
    let client = Client::new(net.discovery.local_addr(), key());
    client.put(&name, b"before").unwrap();
    // Its neighbours' pooled connections to it stay; no new one is taken.
    let held = flood(busy, 24);
    let fresh = Client::new(net.discovery.local_addr(), key());
    assert_eq!(fresh.get(&name).unwrap().data, b"before");
    let stored = fresh.put(&name, b"while busy").unwrap();
    assert!(stored.kept);
    assert_eq!(fresh.get(&name).unwrap().data, b"while busy");
    assert!(fresh.delete(&name).unwrap().existed);
    // A name it keeps a copy of, for another responsible node: writes do not wait for it.
    let copied = (0..)
        .map(|i| format!("copied-{i}"))
        .find(|n| {
            let set = oracle_replicas(key_of(n.as_bytes()), &ids, 3);
            set[0] != busy_id && set.contains(&busy_id)
        })
        .unwrap();
    for round in 0..3 {
        let value = format!("round {round}");
        assert!(fresh.put(&copied, value.as_bytes()).unwrap().kept);
        assert_eq!(fresh.get(&copied).unwrap().data, value.as_bytes());
    }
    assert!(fresh.delete(&copied).unwrap().existed);
    drop(held);
    assert!(matches!(client.get(&name), Err(Error::NotFound { .. })));
    assert!(matches!(client.get(&copied), Err(Error::NotFound { .. })));
}

#[test]
fn deletion_records_are_collected_and_a_holder_back_after_the_grace_brings_nothing_back() {
    let mut rng = Rng::seeded(0x70b);
    let scratch = Scratch::new("grace");
    let grace = Duration::from_millis(1500);
    let config = NodeConfig {
        tombstone_grace: grace,
        ..quick(8, 3)
    };
    let start = |id: Id| {
        start_node_with(NodeConfig {
            id: Some(id),
            data_dir: Some(scratch.0.join(id.to_string())),
            ..config.clone()
        })
    };
    let mut net = Network::new(&[]);
    for id in random_ids(&mut rng, 8) {
        net.join_node(start(id));
    }
    let client = Client::new(net.discovery.local_addr(), key());
    client.put("kept.txt", b"stays").unwrap();
    let doomed = client.put("doomed.txt", b"goes").unwrap();
    let kept = String::from("kept.txt");
    assert_settles(&net.nodes, &[&kept, &String::from("doomed.txt")], 3);

    // A holder of the doomed object crashes; the object is deleted meanwhile.
    let victim = take(&mut net.nodes, doomed.route.responsible().id);
    let (victim_id, victim_dir) = (victim.id(), victim.data_dir().to_path_buf());
    victim.shutdown();
    drop(victim);
    assert!(client.delete("doomed.txt").unwrap().existed);
    let deleted_at = Instant::now();

    // Every live holder collects the deletion record once the grace has passed.
    let collected = wait_until(Duration::from_secs(20), || {
        net.nodes.iter().all(|n| !holds_record(n, "doomed.txt"))
    });
    assert!(collected, "deletion records still kept");
    let took = deleted_at.elapsed();
    assert!(took >= grace, "collected after {took:?}, before the grace");
    eprintln!("deletion record collected everywhere {took:?} after the delete");

    // The holder comes back after an absence longer than the grace, with its old copy.
    assert!(dir_has_record(&victim_dir, "doomed.txt"));
    net.join_node(start(victim_id));
    let gone = wait_until(Duration::from_secs(10), || {
        net.nodes.iter().all(|n| !holds_record(n, "doomed.txt"))
    });
    assert!(gone, "the old copy was kept or spread");
    for _ in 0..5 {
        assert!(matches!(
            client.get("doomed.txt"),
            Err(Error::NotFound { .. })
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_settles(&net.nodes, &[&kept], 3);
    assert_eq!(client.get("kept.txt").unwrap().data, b"stays");
}

#[test]
fn a_retried_delete_hears_its_first_outcome_wherever_it_lands() {
    let mut rng = Rng::seeded(0x2e7);
    let net = Network::with_config(&random_ids(&mut rng, 6), &quick(8, 3));
    let client = Client::new(net.discovery.local_addr(), key());
    let stored = client.put("once", b"here").unwrap();
    let responsible = stored.route.responsible();
    let other = net
        .nodes
        .iter()
        .map(|n| n.info())
        .find(|n| n.id != responsible.id)
        .unwrap();
    let delete = |request: u64, to: std::net::SocketAddr| {
        tell(
            to,
            &Message::Delete {
                name: b"once".to_vec(),
                request,
                relayed: false,
                direct: false,
            },
        )
    };
    let first = delete(0xfeed, responsible.addr);
    let Message::Deleted {
        existed: true,
        version,
    } = first
    else {
        panic!("first delete: {first:?}");
    };
    // The same request again (its reply was lost, say): the same answer, nothing new done.
    assert_eq!(delete(0xfeed, responsible.addr), first);
    // Through another node (relayed to the responsible one): still the first answer.
    assert_eq!(delete(0xfeed, other.addr), first);
    // A new delete is a new write: the object is gone now.
    match delete(0xbeef, responsible.addr) {
        Message::Deleted {
            existed: false,
            version: v,
        } => assert!(v > version),
        other => panic!("second delete: {other:?}"),
    }
    // Every holder learnt the first outcome with its copy: asked directly, as a new
    // responsible node would be after a crash, each answers it.
    for node in &net.nodes {
        let holds = oracle_replicas(key_of(b"once"), &net.ids(), 3).contains(&node.id());
        if holds && node.id() != responsible.id {
            match delete(0xfeed, node.info().addr) {
                Message::Deleted {
                    existed: true,
                    version: v,
                } => assert_eq!(v, version),
                other => panic!("holder {}: {other:?}", node.id()),
            }
        }
    }
}
