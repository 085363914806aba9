//! Shutdown joins every thread a node or discovery started (the process's crew, once the last
//! server stops). Alone in its own test binary, so
//! that no other test's threads are counted.

mod common;

use std::time::Duration;

use common::*;
use pastry::Rng;

#[test]
fn shutdown_joins_every_thread_and_frees_the_ports() {
    let before = thread_count();
    let mut rng = Rng::seeded(11);
    let ids = random_ids(&mut rng, 16);
    let net = Network::new(&ids);
    check_lookups(&net.nodes, &mut rng, 300);
    let during = thread_count();
    // The process's crews serve every node: threads run, but not the two or more a node
    // (its reactor's and its maintenance's) that a server had of its own.
    assert!(
        during > before && during < before + 2 * ids.len(),
        "16 servers run threads, fewer than two each: {before} -> {during}"
    );
    let addrs: Vec<_> = net.nodes.iter().map(|n| n.info().addr).collect();

    for node in &net.nodes[..4] {
        node.leave().unwrap();
    }
    drop(net); // drop shuts everything down
               // shutdown() returning means done: no thread may linger, not even briefly.
    assert_eq!(thread_count(), before, "threads left after shutdown");
    for addr in addrs {
        let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        assert!(refused.is_err(), "{addr} still accepts connections");
    }
}
