//! Bad input from a member (a holder of the cluster key, inside the encrypted channel)
//! closes only the connection that sent it; the node keeps serving everyone else. What a
//! stranger without the key gets is in `strangers.rs`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::*;
use pastry::wire::{self, Message, RemoteCode, Trailer};
use pastry::{Connection, NetConfig, Node, NodeConfig, Rng};

/// A member's connection to `addr`.
fn member(addr: std::net::SocketAddr) -> Connection {
    Connection::open(addr, &NetConfig::with(key())).expect("a member connects")
}

/// Reads the reply on `conn`, which must be an error with `code`, and then the end of the
/// connection.
fn assert_error_then_closed(mut conn: Connection, code: RemoteCode) {
    match conn.recv() {
        Ok(Message::Error { code: got, .. }) => assert_eq!(got, code),
        other => panic!("expected an error reply, got {other:?}"),
    }
    assert!(conn.recv().is_err(), "the connection stayed open");
}

/// Reads until the peer closes; returns what it sent. Fails the test if it stays open.
fn read_until_closed(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("connection was not closed: {e}"),
    }
}

#[test]
fn garbage_closes_that_connection_and_the_node_serves_on() {
    let mut rng = Rng::seeded(5);
    let ids = random_ids(&mut rng, 6);
    let net = Network::new(&ids);
    let target = net.nodes[2].info().addr;

    // A healthy client connection opened before the garbage arrives.
    let healthy = pastry_client_ping(target);

    let mut junk = Vec::new();
    for _ in 0..64 {
        junk.push(rng.next_u64() as u8);
    }
    junk[0] = 0x00; // not the magic byte
    let mut bad = member(target);
    bad.send_bytes(&junk).unwrap();
    assert_error_then_closed(bad, RemoteCode::BadRequest);

    // A frame declaring a 4 GiB payload is refused from its header alone.
    let mut huge = member(target);
    let header = [
        wire::MAGIC,
        wire::VERSION,
        10,
        0,
        0,
        0,
        1,
        0xff,
        0xff,
        0xff,
        0xff,
    ];
    assert_eq!(header.len(), wire::HEADER_LEN);
    huge.send_bytes(&header).unwrap();
    assert_error_then_closed(huge, RemoteCode::BadRequest);

    // A frame whose trailer is not the zero a sealed connection's frames carry is refused.
    let mut frame = bytes::BytesMut::new();
    wire::encode(&Message::Ping, 1, Trailer::Zero, &mut frame);
    let last = frame.len() - 1;
    frame[last] ^= 1;
    let mut flipped = member(target);
    flipped.send_bytes(&frame).unwrap();
    assert_error_then_closed(flipped, RemoteCode::BadRequest);

    // The old connection still works, and so does the overlay.
    drop(healthy);
    pastry_client_ping(target);
    check_lookups(&net.nodes, &mut rng, 200);
}

/// Opens a member's connection, pings, checks the pong; returns the connection still open.
fn pastry_client_ping(addr: std::net::SocketAddr) -> Connection {
    let mut conn = member(addr);
    conn.send(&Message::Ping).unwrap();
    match conn.recv() {
        Ok(Message::Pong { .. }) => conn,
        other => panic!("expected Pong, got {other:?}"),
    }
}

#[test]
fn a_connection_over_the_limit_is_refused_and_the_rest_are_served() {
    let node = Node::start(NodeConfig {
        net: NetConfig {
            max_connections: 2,
            ..NetConfig::with(key())
        },
        ..NodeConfig::new(key())
    })
    .unwrap();
    node.create().unwrap();
    let addr = node.info().addr;
    let first = pastry_client_ping(addr);
    let second = pastry_client_ping(addr);
    // Closed during its handshake: the caller takes it as busy.
    match Connection::open(addr, &NetConfig::with(key())) {
        Err(pastry::Error::Refused {
            code: RemoteCode::Busy,
            ..
        }) => {}
        other => panic!("a third connection: {:?}", other.map(|c| c.peer())),
    }
    drop(first);
    // Once a slot frees up, a new connection is served again.
    assert!(wait_until(Duration::from_secs(10), || {
        std::panic::catch_unwind(|| pastry_client_ping(addr)).is_ok()
    }));
    drop(second);
}

#[test]
fn requests_a_node_does_not_serve_get_a_clear_refusal() {
    let node = Node::start(NodeConfig::new(key())).unwrap();
    let addr = node.info().addr;
    // Not joined yet: routing requests are refused, pings answered.
    let route = Message::Route {
        key: pastry::Id(1),
        hops_left: 8,
        budget_ms: 1000,
    };
    match tell(addr, &route) {
        Message::Error { code, .. } => assert_eq!(code, RemoteCode::NotJoined),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_record_stream_out_of_step_is_refused_and_stores_nothing() {
    let mut rng = Rng::seeded(8);
    let net = Network::new(&random_ids(&mut rng, 3));
    let name = b"sneaky".to_vec();
    let holder = net
        .nodes
        .iter()
        .find(|n| n.id() == oracle_responsible(pastry::key_of(&name), &net.ids()))
        .unwrap();
    let head = wire::RecordHead {
        name: name.clone(),
        size: 10,
        version: 0,
        deleted: false,
        handoff: false,
        request: 0,
        existed: false,
        relayed: false,
        direct: false,
    };
    let mut frames = bytes::BytesMut::new();
    wire::encode(&Message::Record(head), 1, Trailer::Zero, &mut frames);
    for _ in 0..3 {
        wire::encode_chunk(&[], 1, Trailer::Zero, &mut frames); // no data: a stream that never ends
    }
    let mut conn = member(holder.info().addr);
    conn.send_bytes(&frames).unwrap();
    match conn.recv() {
        Ok(Message::Error { code, .. }) => assert_eq!(code, RemoteCode::Corrupt),
        other => panic!("expected an error reply, got {other:?}"),
    }
    // The request is given up; the connection and its other requests are not.
    assert_eq!(conn.recv().unwrap(), Message::Cancel);
    conn.request(&Message::Ping).unwrap();
    assert!(matches!(conn.recv(), Ok(Message::Pong { .. })));
    assert!(holder.objects().unwrap().is_empty(), "nothing was stored");
    // The node serves on.
    pastry_client_ping(holder.info().addr);
}

#[test]
fn a_route_out_of_hops_is_unroutable_and_the_largest_budget_is_served() {
    let mut rng = Rng::seeded(9);
    let ids = random_ids(&mut rng, 6);
    let net = Network::new(&ids);
    let node = &net.nodes[0];
    // A key some other node is responsible for.
    let key = (0..=u16::MAX)
        .map(pastry::Id)
        .find(|k| oracle_responsible(*k, &ids) != node.id())
        .unwrap();
    let ask = |hops_left: u8, budget_ms: u32| {
        let route = Message::Route {
            key,
            hops_left,
            budget_ms,
        };
        tell(node.info().addr, &route)
    };
    // No hop left to take: refused, not forwarded.
    match ask(0, 1000) {
        Message::Error { code, .. } => assert_eq!(code, RemoteCode::Unroutable),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The largest budget the wire carries is taken (capped by the node's own), not refused.
    match ask(u8::MAX, u32::MAX) {
        Message::Routed { path, .. } => {
            assert_eq!(path.first().map(|n| n.id), Some(node.id()));
            assert_eq!(
                path.last().map(|n| n.id),
                Some(oracle_responsible(key, &ids))
            );
        }
        other => panic!("expected a route, got {other:?}"),
    }
}

#[test]
fn tricklers_and_huge_headers_are_cut_off_at_the_io_timeout_and_the_node_serves_on() {
    let io_timeout = Duration::from_millis(600);
    let node = Node::start(NodeConfig {
        net: NetConfig {
            io_timeout,
            max_connections: 8,
            ..NetConfig::with(key())
        },
        ..NodeConfig::new(key())
    })
    .unwrap();
    node.create().unwrap();
    let addr = node.info().addr;
    let mut ping = bytes::BytesMut::new();
    wire::encode(&Message::Ping, 1, Trailer::Zero, &mut ping);
    let mut huge = bytes::BytesMut::new();
    wire::encode(
        &Message::Chunk {
            data: bytes::Bytes::from(vec![0u8; 4 << 20]),
        },
        1,
        Trailer::Zero,
        &mut huge,
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Six connections that would hold every thread for good, a byte every 150 ms (the idle
    // timeout, 60 s, never runs out): members trickling a ping, or a 4 MiB frame's header and
    // a few bytes, inside the channel; and strangers trickling a ping where the handshake
    // should be.
    let attackers: Vec<_> = (0..6)
        .map(|i| {
            let bytes = if i % 3 == 1 {
                huge[..16].to_vec()
            } else {
                ping.to_vec()
            };
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let started = Instant::now();
                if i % 3 == 2 {
                    let mut s = TcpStream::connect(addr).unwrap();
                    for b in bytes {
                        if stop.load(Ordering::SeqCst) || s.write_all(&[b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(150));
                    }
                    assert!(read_until_closed(s).is_empty(), "a stranger was answered");
                } else {
                    let mut conn = member(addr);
                    for b in bytes {
                        if stop.load(Ordering::SeqCst) || conn.send_bytes(&[b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(150));
                    }
                    // Cut off: nothing more, or a last word, then the end.
                    let mut ended = false;
                    for _ in 0..2 {
                        if conn.recv().is_err() {
                            ended = true;
                            break;
                        }
                    }
                    assert!(ended, "a trickling member was served");
                }
                // The node must have closed it long before the idle timeout.
                started.elapsed()
            })
        })
        .collect();
    // Meanwhile everyone else is served.
    for _ in 0..5 {
        drop(pastry_client_ping(addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    for a in attackers {
        let took = a.join().unwrap();
        assert!(took < Duration::from_secs(10), "held for {took:?}");
    }
    stop.store(true, Ordering::SeqCst);
    drop(pastry_client_ping(addr));
}
