//! Real loopback networks: joins, lookups and graceful leaves checked against the oracle.

mod common;

use common::*;
use pastry::{Error, Id, Node, NodeConfig, Rng};

const HALF: usize = pastry::overlay::DEFAULT_LEAF_HALF;

fn grown_network(seed: u64, n: usize) -> (Network, Rng) {
    let mut rng = Rng::seeded(seed);
    let ids = random_ids(&mut rng, n);
    (Network::new(&ids), rng)
}

#[test]
fn networks_of_1_2_3_and_16_nodes_route_to_the_responsible_node() {
    for (seed, n) in [(1, 1), (2, 2), (3, 3), (16, 16)] {
        let (net, mut rng) = grown_network(seed, n);
        check_tables(&net.nodes, HALF);
        check_lookups(&net.nodes, &mut rng, 2000);
        let mut listed: Vec<Id> = net.discovery.peers().iter().map(|p| p.id).collect();
        let mut ids = net.ids();
        listed.sort();
        ids.sort();
        assert_eq!(listed, ids);
    }
}

#[test]
fn sixty_four_nodes_route_in_few_hops_and_survive_a_quarter_leaving() {
    let (mut net, mut rng) = grown_network(64, 64);
    check_tables(&net.nodes, HALF);
    let mean = check_lookups(&net.nodes, &mut rng, 2000);
    eprintln!("mean hops at 64 nodes: {mean:.3}");
    let bound = (64f64).log(16.0) + 0.5;
    assert!(mean <= bound, "mean hops {mean} above {bound}");

    for _ in 0..16 {
        let i = rng.below(net.nodes.len());
        let node = net.nodes.remove(i);
        node.leave().expect("leaves");
        node.shutdown();
    }
    check_tables(&net.nodes, HALF);
    check_lookups(&net.nodes, &mut rng, 2000);
    // Lookups that met a departed node in a routing table dropped it, and nothing else.
    check_tables(&net.nodes, HALF);
    let mut listed: Vec<Id> = net.discovery.peers().iter().map(|p| p.id).collect();
    let mut ids = net.ids();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "discovery lists exactly the live nodes");
}

#[test]
fn an_id_in_use_is_refused_and_changes_nothing() {
    let (net, mut rng) = grown_network(7, 8);
    let taken = net.nodes[3].id();
    let before: Vec<_> = net
        .nodes
        .iter()
        .map(|n| (n.leaf_set(), n.routing_table()))
        .collect();

    let twin = start_node(taken);
    match twin.join_discovery(net.discovery.local_addr()) {
        Err(Error::IdInUse(id)) => assert_eq!(id, taken),
        other => panic!("expected IdInUse, got {other:?}"),
    }
    assert!(!twin.is_joined());
    // Nor through a peer: the certified members refuse a node discovery did not certify.
    match twin.join_peer(net.nodes[0].info().addr) {
        Err(Error::Refused { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!twin.is_joined());

    let after: Vec<_> = net
        .nodes
        .iter()
        .map(|n| (n.leaf_set(), n.routing_table()))
        .collect();
    assert!(before == after, "tables changed after a refused join");
    assert_eq!(net.discovery.peers().len(), 8);
    assert!(net.discovery.peers().contains(&net.nodes[3].info()));
    check_lookups(&net.nodes, &mut rng, 200);
}

#[test]
fn nodes_join_through_a_known_peer_without_discovery() {
    let mut rng = Rng::seeded(99);
    let ids = random_ids(&mut rng, 12);
    let first = start_node(ids[0]);
    first.create().unwrap();
    let mut nodes = vec![first];
    for &id in &ids[1..] {
        let node = start_node(id);
        let via = nodes[rng.below(nodes.len())].info().addr;
        node.join_peer(via).unwrap();
        nodes.push(node);
    }
    check_tables(&nodes, HALF);
    check_lookups(&nodes, &mut rng, 300);
    // Without discovery, the overlay itself notices an id in use.
    let twin = start_node(ids[5]);
    match twin.join_peer(nodes[0].info().addr) {
        Err(Error::IdInUse(id)) => assert_eq!(id, ids[5]),
        other => panic!("expected IdInUse, got {other:?}"),
    }
    assert!(!twin.is_joined());
}

#[test]
fn joining_twice_or_looking_up_before_joining_is_an_error() {
    let node = Node::start(NodeConfig::new(key())).unwrap();
    assert!(matches!(node.lookup(Id(1)), Err(Error::NotJoined(_))));
    node.create().unwrap();
    assert!(matches!(node.create(), Err(Error::AlreadyJoined(_))));
    assert_eq!(node.lookup(Id(1)).unwrap().responsible().id, node.id());
}

#[test]
fn lookups_reuse_connections_instead_of_opening_one_per_message() {
    let mut rng = Rng::seeded(21);
    let ids = random_ids(&mut rng, 64);
    // No maintenance traffic: every connection opened below is a lookup's.
    let config = NodeConfig {
        maintenance_interval: std::time::Duration::from_secs(3600),
        ..NodeConfig::new(key())
    };
    let net = Network::with_config(&ids, &config);
    let opened = || -> Vec<u64> { net.nodes.iter().map(|n| n.stats().opened).collect() };
    let before = opened();
    for _ in 0..2000 {
        let origin = &net.nodes[rng.below(net.nodes.len())];
        let key = Id(rng.next_u64() as u16);
        let route = origin.lookup(key).unwrap();
        assert_eq!(route.responsible().id, oracle_responsible(key, &ids));
    }
    // Lookups are forwarded hop by hop: a node connects only to nodes of its own tables, once
    // each, however many lookups pass through it. (An origin asking every hop itself would
    // connect to most of the network.)
    for ((node, before), after) in net.nodes.iter().zip(before).zip(opened()) {
        let tables = node.leaf_set().members().len() + node.routing_table().entries().count();
        assert!(
            tables < ids.len() - 1,
            "the tables of {} hold everyone",
            node.id()
        );
        assert!(
            after - before <= tables as u64,
            "{} opened {} connections, {tables} nodes in its tables",
            node.id(),
            after - before
        );
    }
}

/// The cells of `own`'s routing table that some id of `live` fits, and whether each entry of
/// `table` is live: the problems found, for a failure message.
fn table_problems(own: Id, table: &pastry::RoutingTable, live: &[Id]) -> Vec<String> {
    let mut problems = Vec::new();
    for row in 0..4 {
        for col in 0..16 {
            let fits =
                |id: &Id| *id != own && own.shared_prefix(*id) == row && id.digit(row) == col;
            let fillable = live.iter().any(fits);
            match table.get(row, col) {
                Some(entry) if !live.contains(&entry.id) => problems.push(format!(
                    "{own}: ({row}, {col}) holds {} which is gone",
                    entry.id
                )),
                None if fillable => problems.push(format!("{own}: ({row}, {col}) empty")),
                _ => {}
            }
        }
    }
    problems
}

#[test]
fn routing_tables_fill_every_fillable_cell_and_drop_departed_and_crashed_nodes() {
    let mut rng = Rng::seeded(40);
    let config = NodeConfig {
        leaf_half: 2,
        replicas: 2,
        maintenance_interval: std::time::Duration::from_millis(100),
        ..NodeConfig::new(key())
    };
    let mut net = Network::with_config(&random_ids(&mut rng, 44), &config);
    // Two leave gracefully, two crash.
    for _ in 0..2 {
        let node = net.nodes.remove(rng.below(net.nodes.len()));
        node.leave().expect("leaves");
        node.shutdown();
    }
    for _ in 0..2 {
        net.nodes.remove(rng.below(net.nodes.len())).shutdown();
    }
    let live = net.ids();
    assert_eq!(live.len(), 40);
    let mut last = Vec::new();
    let settled = wait_until(std::time::Duration::from_secs(30), || {
        last = net
            .nodes
            .iter()
            .flat_map(|n| table_problems(n.id(), &n.routing_table(), &live))
            .collect();
        last.is_empty()
    });
    assert!(settled, "routing tables did not settle: {last:?}");
    check_tables(&net.nodes, 2);
    // ceil(log16 40) + 1 = 3.
    let bound = (40f64).log(16.0).ceil() as usize + 1;
    for _ in 0..2000 {
        let key = Id(rng.next_u64() as u16);
        let from = &net.nodes[rng.below(net.nodes.len())];
        let route = from.lookup(key).unwrap();
        assert_eq!(route.responsible().id, oracle_responsible(key, &live));
        assert!(
            route.hops() <= bound,
            "{} hops: {:?}",
            route.hops(),
            route.path
        );
    }
}
