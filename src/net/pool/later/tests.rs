//! Calls whose answers no thread waits for, against a server of the crate's own.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Error;
use crate::net::{Counters, NetConfig, Pool, Server};
use crate::wire::Message;

/// A server whose handler answers [`Message::Ack`] once `gate` lets it (at most 10 s).
fn gated_server(gate: &Arc<Mutex<()>>) -> Server {
    let gate = Arc::clone(gate);
    let handler: crate::net::Handler = Arc::new(move |_, _| {
        // Held by the test until it lets the answers go.
        let _pass = gate.try_lock_for(Duration::from_secs(10));
        Message::Ack
    });
    let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = NetConfig::with(crate::ClusterKey::from_bytes([9; 32]));
    let counters = Arc::new(Counters::default());
    Server::start("later", listener, config, handler, counters, None).unwrap()
}

fn pool() -> Arc<Pool> {
    let config = NetConfig::with(crate::ClusterKey::from_bytes([9; 32]));
    Arc::new(Pool::new(config, Arc::new(Counters::default())))
}

/// Makes a call whose answer is sent to `tx`, with the moment it came.
fn call(
    pool: &Arc<Pool>,
    server: &Server,
    wait: Duration,
    tx: &mpsc::Sender<(crate::Result<Message>, Instant)>,
) {
    let tx = tx.clone();
    let then = Box::new(move |result| {
        let _ = tx.send((result, Instant::now()));
    });
    pool.call_then(server.local_addr(), Message::Ping, wait, then);
}

#[test]
fn many_calls_are_in_flight_from_one_thread_and_each_answer_comes_to_its_own() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock();
    let server = gated_server(&gate);
    let pool = pool();
    let (tx, rx) = mpsc::channel();
    for _ in 0..32 {
        call(&pool, &server, Duration::from_secs(10), &tx);
    }
    // Every call returned with its answer still held back by the server.
    assert!(
        rx.try_recv().is_err(),
        "an answer before the server gave any"
    );
    let released = Instant::now();
    drop(held);
    for _ in 0..32 {
        let (result, at) = rx.recv_timeout(Duration::from_secs(10)).expect("an answer");
        assert_eq!(result.unwrap(), Message::Ack);
        assert!(at >= released);
    }
    assert!(rx.try_recv().is_err(), "each call answered once");
}

#[test]
fn an_answer_that_does_not_come_in_time_fails_as_a_timeout_and_the_connection_serves_on() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock();
    let server = gated_server(&gate);
    let pool = pool();
    let (tx, rx) = mpsc::channel();
    let sent = Instant::now();
    call(&pool, &server, Duration::from_millis(200), &tx);
    let (result, at) = rx.recv_timeout(Duration::from_secs(10)).expect("a failure");
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    let waited = at - sent;
    assert!(
        waited >= Duration::from_millis(200),
        "failed early: {waited:?}"
    );
    drop(held);
    // The late answer is dropped; the next call on the same connection is answered.
    call(&pool, &server, Duration::from_secs(10), &tx);
    let (result, _) = rx.recv_timeout(Duration::from_secs(10)).expect("an answer");
    assert_eq!(result.unwrap(), Message::Ack);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "one answer a call"
    );
}

#[test]
fn answers_expected_on_a_connection_that_closes_fail_long_before_their_deadline() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock();
    let mut server = gated_server(&gate);
    let pool = pool();
    let (tx, rx) = mpsc::channel();
    for _ in 0..4 {
        call(&pool, &server, Duration::from_secs(60), &tx);
    }
    let closing = std::thread::scope(|s| {
        // The server's shutdown waits for its handlers, held at the gate: let them go once
        // it has closed the connections.
        let shutdown = s.spawn(|| server.shutdown());
        let mut failed = 0;
        for _ in 0..4 {
            let (result, _) = rx.recv_timeout(Duration::from_secs(10)).expect("a failure");
            failed += usize::from(result.is_err());
        }
        drop(held);
        shutdown.join().unwrap();
        failed
    });
    assert_eq!(closing, 4, "every call failed with its connection");
}
