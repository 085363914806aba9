//! Nodes that crash (sockets closed with no goodbye), start together, or restart on their old
//! data: detection, repair, replication, and no data lost or brought back.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use pastry::{Client, Discovery, Error, Id, Node, NodeConfig, Rng, DEFAULT_REPLICAS};

const HALF: usize = pastry::overlay::DEFAULT_LEAF_HALF;
const K: usize = DEFAULT_REPLICAS;

/// Whether discovery lists exactly `nodes`.
fn discovery_lists(discovery: &Discovery, nodes: &[Node]) -> bool {
    let mut listed: Vec<Id> = discovery.peers().iter().map(|p| p.id).collect();
    let mut live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    listed.sort();
    live.sort();
    listed == live
}

/// Indexes (into `nodes`) of two nodes adjacent on the ring, larger index first.
fn adjacent_pair(nodes: &[Node], rng: &mut Rng) -> (usize, usize) {
    let mut by_id: Vec<usize> = (0..nodes.len()).collect();
    by_id.sort_by_key(|&i| nodes[i].id());
    let k = rng.below(by_id.len() - 1);
    (by_id[k].max(by_id[k + 1]), by_id[k].min(by_id[k + 1]))
}

#[test]
fn two_adjacent_crashes_lose_no_object_and_copies_are_restored() {
    let mut rng = Rng::seeded(64);
    // A crash inside one process keeps the page cache: syncing each of the 1,800 writes
    // would prove nothing here and cost most of the test's time.
    let config = NodeConfig {
        sync_writes: false,
        ..NodeConfig::new(key())
    };
    let mut net = Network::with_config(&random_ids(&mut rng, 64), &config);
    let mut objects = objects(&mut rng, 600);
    // Mostly small values: the point is their count, not their size.
    for data in objects.values_mut() {
        data.truncate(8 * 1024);
    }
    let client = Client::new(net.discovery.local_addr(), key());
    for (name, data) in &objects {
        client.put(name, data).unwrap();
    }
    let names: Vec<&String> = objects.keys().collect();
    placed_exactly(&net.nodes, &names, K).unwrap();

    let (a, b) = adjacent_pair(&net.nodes, &mut rng);
    let crashed = [net.nodes.remove(a), net.nodes.remove(b)];
    for node in &crashed {
        node.shutdown(); // no goodbye
    }
    assert_leaf_sets_settle(HALF, &net.nodes, "two adjacent crashes");
    check_tables(&net.nodes, HALF);
    check_lookups(&net.nodes, &mut rng, 2000);
    for (name, data) in &objects {
        assert_eq!(&client.get(name).unwrap().data, data, "{name}");
    }
    assert_settles(&net.nodes, &names, K);
    let (discovery, nodes) = (&net.discovery, &net.nodes);
    assert!(
        wait_until(Duration::from_secs(10), || discovery_lists(
            discovery, nodes
        )),
        "discovery still lists a crashed node"
    );
}

#[test]
fn thirty_two_nodes_started_together_settle() {
    let mut rng = Rng::seeded(32);
    let ids = random_ids(&mut rng, 32);
    let discovery = Discovery::start(loopback(), key()).unwrap();
    let addr = discovery.local_addr();
    let nodes: Vec<Node> = std::thread::scope(|s| {
        let joining: Vec<_> = ids
            .iter()
            .map(|&id| {
                s.spawn(move || {
                    let node = start_node(id);
                    node.join_discovery(addr).unwrap();
                    node
                })
            })
            .collect();
        joining.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_leaf_sets_settle(HALF, &nodes, "32 concurrent joins");
    check_tables(&nodes, HALF);
    check_lookups(&nodes, &mut rng, 2000);
    assert!(discovery_lists(&discovery, &nodes));
}

#[test]
fn a_restarted_holder_serves_its_objects_and_brings_no_deleted_one_back() {
    let mut rng = Rng::seeded(77);
    let root = std::env::temp_dir().join(format!("pastry-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ids = random_ids(&mut rng, 12);
    let dirs: Vec<_> = ids.iter().map(|id| root.join(id.to_string())).collect();
    let mut net = Network::with_dirs(&ids, &dirs);
    let client = Client::new(net.discovery.local_addr(), key());
    client.put("kept.txt", b"still here").unwrap();
    let doomed = client.put("doomed.txt", b"to be deleted").unwrap();

    // Crash a node that keeps a copy of the doomed object, then delete it while it is down.
    let victim_id = doomed.route.responsible().id;
    let at = net.nodes.iter().position(|n| n.id() == victim_id).unwrap();
    let victim = net.nodes.remove(at);
    let victim_dir = victim.data_dir().to_path_buf();
    victim.shutdown();
    drop(victim);
    assert_leaf_sets_settle(HALF, &net.nodes, "the crash");
    assert!(client.delete("doomed.txt").unwrap().existed);
    assert!(matches!(
        client.get("doomed.txt"),
        Err(Error::NotFound { .. })
    ));

    // It comes back on its old directory, which still holds the doomed object.
    let (discovery, nodes) = (&net.discovery, &net.nodes);
    assert!(wait_until(Duration::from_secs(10), || discovery_lists(
        discovery, nodes
    )));
    net.join_node(start_node_in(victim_id, Some(&victim_dir)));
    assert_leaf_sets_settle(HALF, &net.nodes, "the restart");
    let kept = String::from("kept.txt");
    assert_settles(&net.nodes, &[&kept], K);
    assert!(matches!(
        client.get("doomed.txt"),
        Err(Error::NotFound { .. })
    ));
    let restarted = net.nodes.last().unwrap();
    assert!(
        !restarted
            .objects()
            .unwrap()
            .iter()
            .any(|o| o.name == b"doomed.txt"),
        "the deleted object came back on the restarted node"
    );
    let via_restarted = Client::via_peer(restarted.info().addr, key());
    assert_eq!(via_restarted.get("kept.txt").unwrap().data, b"still here");
    drop(net);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_overlay_works_while_discovery_is_down_and_discovery_relearns_it() {
    let mut rng = Rng::seeded(404);
    let config = NodeConfig {
        maintenance_interval: Duration::from_millis(100),
        ..NodeConfig::new(key())
    };
    let mut net = Network::with_config(&random_ids(&mut rng, 10), &config);
    let addr = net.discovery.local_addr();
    net.discovery.shutdown();

    // Lookups do without it; a newcomer, which only discovery can certify, is refused by
    // the certified members until discovery is back.
    check_lookups(&net.nodes, &mut rng, 500);
    let newcomer = start_node_with(NodeConfig {
        id: Some(Id(rng.next_u64() as u16)),
        ..config.clone()
    });
    assert!(matches!(
        newcomer.join_peer(net.nodes[0].info().addr),
        Err(pastry::Error::Refused { .. })
    ));

    // Discovery restarted on the same address with its authority key relearns every live
    // node, then certifies the newcomer.
    net.discovery = net.restart_discovery(addr);
    let relearnt = |net: &Network| {
        let (discovery, nodes) = (&net.discovery, &net.nodes);
        wait_until(Duration::from_secs(20), || {
            discovery_lists(discovery, nodes)
        })
    };
    assert!(relearnt(&net), "discovery did not relearn the live nodes");
    newcomer
        .join_discovery(addr)
        .expect("joins through discovery");
    net.nodes.push(newcomer);
    assert_leaf_sets_settle(HALF, &net.nodes, "a join after discovery came back");
    check_lookups(&net.nodes, &mut rng, 500);
    assert!(relearnt(&net), "discovery did not list the newcomer");
}

#[test]
fn gets_never_see_wrong_bytes_while_nodes_join_leave_and_crash() {
    let mut rng = Rng::seeded(2024);
    let ids = random_ids(&mut rng, 40);
    let mut net = Network::new(&ids[..24]);
    let objects = objects(&mut rng, 120);
    let names: Vec<&String> = objects.keys().collect();
    let writer = Client::new(net.discovery.local_addr(), key());
    for (name, data) in &objects {
        writer.put(name, data).unwrap();
    }
    let discovery = net.discovery.local_addr();
    let stop = AtomicBool::new(false);
    let (good, retryable) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let client = Client::with_config(
                pastry::Entry::Discovery(discovery),
                pastry::ClientConfig {
                    retry_for: Duration::from_millis(500),
                    ..pastry::ClientConfig::new(key())
                },
            );
            let mut rng = Rng::seeded(9);
            for _ in 0..1_000_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = names[rng.below(names.len())];
                match client.get(name) {
                    Ok(f) => {
                        assert_eq!(&f.data, &objects[name], "{name}: wrong bytes");
                        good.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if e.is_retryable() => {
                        retryable.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("{name}: {e}"),
                }
                let key = Id(rng.next_u64() as u16);
                if let Err(e) = client.lookup(key) {
                    assert!(e.is_retryable(), "lookup {key}: {e}");
                }
            }
        });
        // Seeded churn: joins, graceful leaves and crashes, one at a time.
        let mut next_id = 24;
        for step in 0..16 {
            match step % 4 {
                0 | 2 if next_id < ids.len() => {
                    net.join(ids[next_id]);
                    next_id += 1;
                }
                1 => {
                    let node = net.nodes.remove(rng.below(net.nodes.len()));
                    node.leave().unwrap();
                    node.shutdown();
                }
                _ => {
                    let node = net.nodes.remove(rng.below(net.nodes.len()));
                    node.shutdown(); // crash
                    let nodes = &net.nodes;
                    assert!(wait_until(Duration::from_secs(30), || leaf_sets_settled(
                        HALF, nodes
                    )));
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    });
    assert!(good.load(Ordering::SeqCst) > 0);
    assert_leaf_sets_settle(HALF, &net.nodes, "the churn");
    check_tables(&net.nodes, HALF);
    check_lookups(&net.nodes, &mut rng, 1000);
    assert_settles(&net.nodes, &names, K);
    for (name, data) in &objects {
        assert_eq!(&writer.get(name).unwrap().data, data, "{name}");
    }
    eprintln!(
        "churn: {} good reads, {} retryable errors",
        good.load(Ordering::SeqCst),
        retryable.load(Ordering::SeqCst)
    );
}

#[test]
fn a_dead_routing_table_entry_is_replaced_from_another_node_of_its_row() {
    let mut rng = Rng::seeded(123);
    let mut net = Network::new(&random_ids(&mut rng, 48));
    // A node X that some node A holds in its routing table but not in its leaf set, where a
    // node A knows that shares A's first `row` digits holds another node in that cell.
    let mut found = None;
    'search: for a in &net.nodes {
        let known: Vec<Id> = a.routing_table().entries().map(|n| n.id).collect();
        for x in a.routing_table().entries() {
            let (row, col) = pastry::RoutingTable::cell_of(a.id(), x.id).unwrap();
            let helper_knows_another = net.nodes.iter().any(|p| {
                known.contains(&p.id())
                    && p.id() != x.id
                    && a.id().shared_prefix(p.id()) >= row
                    && p.routing_table()
                        .get(row, col)
                        .is_some_and(|e| e.id != x.id)
            });
            if !a.leaf_set().contains(x.id) && helper_knows_another {
                found = Some((a.id(), x.id, (row, col)));
                break 'search;
            }
        }
    }
    let (a_id, x_id, (row, col)) = found.expect("such a pair exists in 48 nodes");
    let at = net.nodes.iter().position(|n| n.id() == x_id).unwrap();
    net.nodes.remove(at).shutdown();
    let a = net.nodes.iter().find(|n| n.id() == a_id).unwrap();
    // A finds out when it next uses the entry: here, a lookup of X's own id.
    let _ = a.lookup(x_id);
    let entry = a
        .routing_table()
        .get(row, col)
        .expect("the cell was refilled");
    assert_ne!(entry.id, x_id);
    assert!(net.ids().contains(&entry.id), "{entry} is live");
}

#[test]
fn a_node_that_never_answers_is_routed_around_and_no_live_node_is_blamed() {
    let mut rng = Rng::seeded(77);
    let ids = random_ids(&mut rng, 40);
    // No maintenance: only lookups meet the silent node, and nothing would repair a live node
    // wrongly dropped.
    let config = NodeConfig {
        maintenance_interval: Duration::from_secs(3600),
        net: pastry::NetConfig {
            io_timeout: Duration::from_millis(200),
            ..pastry::NetConfig::with(key())
        },
        ..NodeConfig::new(key())
    };
    let net = Network::with_config(&ids, &config);
    // A certified node placed where it is responsible for `key`, which then stops answering:
    // its address accepts connections (the kernel does, from the backlog) and never answers.
    let mut key = Id(rng.next_u64() as u16);
    while ids.contains(&key) {
        key = Id(key.0.wrapping_add(1));
    }
    let ghost = start_node_with(NodeConfig {
        id: Some(key),
        ..config.clone()
    });
    ghost.join_discovery(net.discovery.local_addr()).unwrap();
    let at = ghost.info().addr;
    ghost.shutdown();
    let silent = std::net::TcpListener::bind(at).expect("its port again");
    let holds =
        |n: &Node| n.leaf_set().contains(key) || n.routing_table().entries().any(|e| e.id == key);
    assert!(net.nodes.iter().any(|n| n.leaf_set().contains(key)));
    let (far, near): (Vec<&Node>, Vec<&Node>) = net.nodes.iter().partition(|n| !holds(n));
    assert!(!far.is_empty(), "every node knows the silent one");

    // First from the nodes that do not know it: their lookups reach a node that does, which
    // must give up on it and try another way before the origin gives up on that node. Then
    // from every node, twice. Each lookup ends at the live responsible node.
    let expected = oracle_responsible(key, &ids);
    let check = |node: &Node| {
        let route = node
            .lookup(key)
            .unwrap_or_else(|e| panic!("from {}: {e}", node.id()));
        assert_eq!(route.responsible().id, expected, "from {}", node.id());
        assert!(route.path.iter().all(|n| n.id != key), "{route:?}");
        route
    };
    for node in &far {
        assert!(check(node).hops() >= 1, "{} is not responsible", node.id());
    }
    for _ in 0..2 {
        for node in far.iter().chain(&near) {
            check(node);
        }
    }
    // Every node holding the silent one in its leaf set forwarded to it twice, timed out twice,
    // and dropped it; a live node that merely waited on it was never taken for dead.
    for node in &net.nodes {
        assert!(!node.leaf_set().contains(key), "{} kept it", node.id());
    }
    let live_settled = net.nodes.iter().all(|n| {
        let leaf = n.leaf_set();
        let (cw, ccw) = oracle_leaf_set(n.id(), &ids, HALF);
        let kept = |side: &[pastry::NodeInfo]| -> Vec<Id> {
            side.iter().map(|m| m.id).filter(|id| *id != key).collect()
        };
        kept(leaf.cw()) == cw && kept(leaf.ccw()) == ccw
    });
    assert!(live_settled, "a live node was dropped from a leaf set");
    drop(silent);
}

#[test]
fn a_newcomer_handed_a_crashed_peer_joins_through_another() {
    let mut rng = Rng::seeded(78);
    // No maintenance: nobody notices the crashes and tells discovery, which goes on handing
    // the crashed peers out until the newcomer reports them.
    let config = NodeConfig {
        maintenance_interval: Duration::from_secs(3600),
        ..NodeConfig::new(key())
    };
    let mut net = Network::with_config(&random_ids(&mut rng, 3), &config);
    let crashed = [net.nodes.remove(0), net.nodes.remove(0)];
    for node in &crashed {
        node.shutdown(); // no goodbye
    }
    assert_eq!(
        net.discovery.peers().len(),
        3,
        "discovery lists the crashed peers"
    );
    // Two of the three peers discovery hands out are gone: a newcomer that gave up on its
    // first one would fail two times in three. It tries up to three.
    let newcomer = start_node_with(config.clone());
    newcomer
        .join_discovery(net.discovery.local_addr())
        .expect("joined through the live peer");
    let live = net.nodes[0].id();
    assert!(newcomer.leaf_set().contains(live));
    assert!(wait_until(Duration::from_secs(5), || {
        net.nodes[0].leaf_set().contains(newcomer.id())
    }));
    // Discovery lists the newcomer, and the live peer it joined through.
    let listed: Vec<Id> = net.discovery.peers().iter().map(|p| p.id).collect();
    assert!(listed.contains(&newcomer.id()) && listed.contains(&live));
}
