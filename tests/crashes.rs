//! Nodes that crash (sockets closed with no goodbye): detection, repair, and no data lost.

mod common;

use std::time::Duration;

use common::*;
use pastry::{Id, Node, Rng};

const HALF: usize = pastry::overlay::DEFAULT_LEAF_HALF;

/// Whether every node's leaf set equals the oracle's over the live nodes.
fn leaf_sets_settled(nodes: &[Node]) -> bool {
    let live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    nodes.iter().all(|n| {
        let leaf = n.leaf_set();
        let (cw, ccw) = oracle_leaf_set(n.id(), &live, HALF);
        leaf.cw().iter().map(|m| m.id).eq(cw) && leaf.ccw().iter().map(|m| m.id).eq(ccw)
    })
}

#[test]
fn two_adjacent_crashes_are_repaired() {
    let mut rng = Rng::seeded(64);
    let mut net = Network::new(&random_ids(&mut rng, 64));
    // Two neighbours on the ring.
    let mut by_id: Vec<usize> = (0..net.nodes.len()).collect();
    by_id.sort_by_key(|&i| net.nodes[i].id());
    let k = rng.below(by_id.len() - 1);
    let (a, b) = (by_id[k].max(by_id[k + 1]), by_id[k].min(by_id[k + 1]));
    let crashed = [net.nodes.remove(a), net.nodes.remove(b)];
    for node in &crashed {
        node.shutdown(); // no goodbye
    }
    let discovery = &net.discovery;
    let nodes = &net.nodes;
    assert!(
        wait_until(Duration::from_secs(20), || leaf_sets_settled(nodes)),
        "leaf sets did not settle after the crash of {} and {}",
        crashed[0].id(),
        crashed[1].id()
    );
    check_tables(nodes, HALF);
    check_lookups(nodes, &mut rng, 2000);
    let live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut listed: Vec<Id> = discovery.peers().iter().map(|p| p.id).collect();
            listed.sort();
            let mut want = live.clone();
            want.sort();
            listed == want
        }),
        "discovery still lists a crashed node"
    );
}
