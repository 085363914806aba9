//! A server's threads do not grow with its connections: one reactor watches them all, and a
//! handler thread is busy only while a request is being answered. Alone in its own test
//! binary, so that the threads counted are this test's.

mod common;

use std::time::{Duration, Instant};

use common::thread_count as threads;

use pastry::wire::Message;
use pastry::{Connection, NetConfig, Node, NodeConfig};

#[test]
fn threads_stay_the_same_however_many_connections_are_open() {
    let key = pastry::ClusterKey::generate().unwrap();
    // Handler threads are bounded by the configuration, whatever the connections: a
    // request that comes while the last one's thread is still finishing may start another.
    const WORKERS: usize = 4;
    let mut config = NodeConfig::new(&key);
    config.net.max_workers = WORKERS;
    let node = Node::start(config).unwrap();
    node.create().unwrap();
    let addr = node.info().addr;
    let net = NetConfig::with(&key);
    let ping = |conn: &mut Connection| {
        conn.send(&Message::Ping).unwrap();
        let reply = conn.recv();
        assert!(matches!(reply, Ok(Message::Pong { .. })), "{reply:?}");
    };
    // One connection first, so that the threads a first request starts are counted.
    let mut first = Connection::open(addr, &net).unwrap();
    ping(&mut first);
    let before = threads();
    let mut open = Vec::new();
    for _ in 0..300 {
        let mut conn = Connection::open(addr, &net).unwrap();
        ping(&mut conn);
        open.push(conn);
    }
    let with_300 = threads();
    assert_eq!(node.stats().open_connections, 301);
    // A thread per connection would have added 300; handler threads are at most WORKERS.
    assert!(
        with_300 <= before + WORKERS,
        "{before} threads with 1 connection, {with_300} with 301"
    );
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.stats().open_connections != 1 {
        assert!(Instant::now() < deadline, "{:?}", node.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first connection still serves, a new request on a new stream.
    first.request(&Message::Ping).unwrap();
    assert!(matches!(first.recv(), Ok(Message::Pong { .. })));
}
