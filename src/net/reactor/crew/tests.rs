//! The crew's bound and its refusals, through a server and connections of the crate's own.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::net::{Connection, Counters, Handler, NetConfig, Server};
use crate::wire::{Message, RemoteCode};

fn test_key() -> crate::ClusterKey {
    crate::ClusterKey::from_bytes([9; 32])
}

/// A server whose handler answers `Ping` at once and holds `Ack` requests until `gate`
/// gives it a go; `started` hears of each held request.
fn gated_server(max_workers: usize) -> (Server, mpsc::Sender<()>, mpsc::Receiver<()>, NetConfig) {
    let (release, gate) = mpsc::channel::<()>();
    let (tell, started) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let tell = Arc::new(Mutex::new(tell));
    let handler: Handler = Arc::new(move |request, _| {
        if request == Message::Ack {
            let _ = tell.lock().send(());
            let _ = gate.lock().recv_timeout(Duration::from_secs(10));
        }
        Message::Ack
    });
    let config = NetConfig {
        max_workers,
        ..NetConfig::with(test_key())
    };
    let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let counters = Arc::new(Counters::default());
    let server = Server::start("crew", listener, config.clone(), handler, counters, None).unwrap();
    (server, release, started, config)
}

/// Sends `server` an `Ack`, which its handler holds, and once it is held a `Ping` on another
/// connection: the two connections, their replies still to come.
fn held_and_other(
    server: &Server,
    config: &NetConfig,
    started: &mpsc::Receiver<()>,
) -> (Connection, Connection) {
    let mut held = Connection::open(server.local_addr(), config).unwrap();
    held.request(&Message::Ack).unwrap();
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut other = Connection::open(server.local_addr(), config).unwrap();
    other.request(&Message::Ping).unwrap();
    (held, other)
}

#[test]
fn a_request_beyond_its_servers_bound_is_refused_busy_at_once() {
    let (server, release, started, config) = gated_server(1);
    // The server's one request in service (`max_workers: 1`) is held: another is refused,
    // not queued behind it, however many threads the crew could start.
    let (mut held, mut other) = held_and_other(&server, &config, &started);
    match other.recv() {
        Ok(Message::Error { code, .. }) => assert_eq!(code, RemoteCode::Busy),
        reply => panic!("expected a busy refusal, got {reply:?}"),
    }
    release.send(()).unwrap();
    assert_eq!(held.recv().unwrap(), Message::Ack);
    // With the thread free again, requests are served. (The reply can arrive a moment
    // before its thread counts itself free: a busy refusal in that moment is allowed.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        other.request(&Message::Ping).unwrap();
        match other.recv().unwrap() {
            Message::Ack => break,
            Message::Error { code, .. }
                if code == RemoteCode::Busy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            reply => panic!("expected the ping served, got {reply:?}"),
        }
    }
}

#[test]
fn requests_at_once_are_served_by_as_many_threads_as_allowed() {
    let (server, release, started, config) = gated_server(3);
    let mut conns: Vec<Connection> = (0..3)
        .map(|_| Connection::open(server.local_addr(), &config).unwrap())
        .collect();
    for conn in &mut conns {
        conn.request(&Message::Ack).unwrap();
    }
    // All three held at once: three threads serve while another leads.
    for _ in 0..3 {
        started.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    for _ in 0..3 {
        release.send(()).unwrap();
    }
    for conn in &mut conns {
        assert_eq!(conn.recv().unwrap(), Message::Ack);
    }
}

#[test]
fn a_leader_held_by_a_request_that_never_says_it_waits_is_relieved() {
    // The held handler waits on a channel, which no hook announces: the leader serving it
    // keeps the lead until the watch hands it on, and then the other request is read.
    let (server, release, started, config) = gated_server(2);
    let (mut held, mut other) = held_and_other(&server, &config, &started);
    assert_eq!(
        other.recv().unwrap(),
        Message::Ack,
        "served while the other is held"
    );
    release.send(()).unwrap();
    assert_eq!(held.recv().unwrap(), Message::Ack);
}

#[test]
fn a_leader_waiting_on_a_peer_for_its_request_still_has_others_served() {
    // `relay` passes an `Ack` on to `held`, which holds it: the thread serving it waits on a
    // connection its own crew reads, leading meanwhile. A `Ping` that comes then is
    // served at once, not after the held request.
    let (held, release, started, config) = gated_server(4);
    let counters = Arc::new(Counters::default());
    let pool = Arc::new(crate::net::Pool::new(config.clone(), Arc::clone(&counters)));
    let to = held.local_addr();
    let relaying = Arc::clone(&pool);
    let handler: Handler = Arc::new(move |request, _| match request {
        Message::Ack => relaying.call(to, &Message::Ack).unwrap_or(Message::Ping),
        _ => Message::Ack,
    });
    let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let relay = Server::start("relay", listener, config.clone(), handler, counters, None).unwrap();
    pool.read_through(relay.reactor(), None);
    let mut waiting = Connection::open(relay.local_addr(), &config).unwrap();
    // The first opens the relay's connection to `held` (connecting hands the lead on).
    for release_at_once in [true, false] {
        waiting.request(&Message::Ack).unwrap();
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        if release_at_once {
            release.send(()).unwrap();
            assert_eq!(waiting.recv().unwrap(), Message::Ack);
        }
    }
    let mut other = Connection::open(relay.local_addr(), &config).unwrap();
    for _ in 0..20 {
        other.request(&Message::Ping).unwrap();
        assert_eq!(other.recv().unwrap(), Message::Ack);
    }
    release.send(()).unwrap();
    assert_eq!(waiting.recv().unwrap(), Message::Ack, "the relayed answer");
}
