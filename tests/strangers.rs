//! What a participant without the cluster key gets from any listener: a closed connection,
//! and nothing else. Members keep being served and no stored byte changes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use pastry::wire::{self, Message, RecordHead, Trailer};
use pastry::{
    Client, ClientConfig, ClusterKey, Connection, Entry, Error, Id, NetConfig, NodeInfo, Rng,
};

/// Sends `bytes` to `addr` as a stranger would, then reads until the listener closes the
/// connection; returns what it sent back (which must be nothing).
fn from_stranger(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("the listener accepts");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The listener may close before it has read all: a failed write is a closed connection.
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("{addr} kept a stranger's connection open: {e}"),
    }
}

/// Every kind of request a stranger could forge, as plaintext frames: each would change
/// the overlay, the registry or the objects if it were obeyed.
fn forgeries(victim: NodeInfo, name: &[u8]) -> Vec<Message> {
    let fake = NodeInfo {
        id: Id(victim.id.0.wrapping_add(1)),
        addr: "127.0.0.1:9".parse().unwrap(),
    };
    let head = |handoff| RecordHead {
        name: name.to_vec(),
        size: 0,
        version: u64::MAX / 2,
        deleted: true,
        handoff,
        request: 7,
        existed: false,
        relayed: false,
        direct: false,
    };
    vec![
        Message::Announce { node: fake },
        Message::Depart {
            node: victim,
            leaf_set: vec![],
        },
        Message::Record(head(false)),
        Message::Record(head(true)),
        Message::Pull { joiner: fake },
        Message::Register { node: fake },
        Message::Alive { node: fake },
        Message::JoinHop {
            joiner: fake,
            exclude: vec![],
        },
        Message::Route {
            key: victim.id,
            hops_left: 8,
            budget_ms: 1000,
        },
        Message::Get {
            name: name.to_vec(),
            direct: false,
        },
        Message::Delete {
            name: name.to_vec(),
            request: 9,
            relayed: false,
            direct: true,
        },
        Message::ListPeers,
        Message::Ping,
    ]
}

/// A relay between a member and `target` that keeps a copy of what the member sent.
fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&sent);
    thread::spawn(move || {
        let (mut member, _) = listener.accept().unwrap();
        let mut node = TcpStream::connect(target).unwrap();
        let (mut back_from, mut back_to) = (node.try_clone().unwrap(), member.try_clone().unwrap());
        let back = thread::spawn(move || {
            let _ = std::io::copy(&mut back_from, &mut back_to);
        });
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = member.read(&mut buf) {
            record.lock().unwrap().extend_from_slice(&buf[..n]);
            if node.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = node.shutdown(std::net::Shutdown::Both);
        let _ = back.join();
    });
    (addr, sent)
}

#[test]
fn strangers_get_only_a_closed_connection_and_change_nothing() {
    let mut rng = Rng::seeded(0x5e);
    let ids = random_ids(&mut rng, 6);
    let net = Network::new(&ids);
    let client = Client::new(net.discovery.local_addr(), key());
    let names: Vec<String> = (0..12).map(|i| format!("kept-{i}")).collect();
    for name in &names {
        client.put(name, name.as_bytes()).unwrap();
    }
    let holdings =
        |net: &Network| -> Vec<_> { net.nodes.iter().map(|n| n.objects().unwrap()).collect() };
    let before = holdings(&net);
    let peers_before = net.discovery.peers();

    // A member's session, recorded on the way: a get, then a delete of a name it made.
    let victim = net.nodes[0].info();
    let (proxy, recorded) = recording_proxy(victim.addr);
    let via_proxy = Client::with_config(
        Entry::Peer(proxy),
        ClientConfig {
            retry_for: Duration::from_millis(500),
            ..ClientConfig::new(key())
        },
    );
    let _ = via_proxy.get(&names[0]);
    let _ = via_proxy.lookup(Id(0x1234));
    drop(via_proxy);
    let captured = recorded.lock().unwrap().clone();
    assert!(captured.len() > 48, "the member's session was recorded");

    let mut ping = bytes::BytesMut::new();
    wire::encode(&Message::Ping, 1, Trailer::Crc, &mut ping);
    let mut huge = ping.to_vec();
    huge.truncate(wire::HEADER_LEN);
    huge[wire::HEADER_LEN - 4..].copy_from_slice(&(4u32 << 20).to_be_bytes());
    let mut attempts: Vec<(String, Vec<u8>)> = vec![
        (
            "random bytes".into(),
            (0..256).map(|_| rng.next_u64() as u8).collect(),
        ),
        ("a 4 MiB header".into(), huge),
        ("a member's session replayed".into(), captured),
    ];
    for forged in forgeries(victim, names[1].as_bytes()) {
        let mut frame = bytes::BytesMut::new();
        wire::encode(&forged, 1, Trailer::Crc, &mut frame);
        attempts.push((format!("a forged {}", forged.name()), frame.to_vec()));
    }
    let listeners = [
        victim.addr,
        net.nodes[3].info().addr,
        net.discovery.local_addr(),
    ];
    // All at once: each waits for its listener to give up on a handshake that never comes.
    thread::scope(|scope| {
        for (what, bytes) in &attempts {
            for &addr in &listeners {
                scope.spawn(move || {
                    let reply = from_stranger(addr, bytes);
                    // A session replayed to the listener it was recorded from is refused as
                    // already seen. Another listener has not seen it and, while it is fresh,
                    // sends the second handshake message, 48 bytes that open nothing: the
                    // replayer holds no ephemeral key to finish with.
                    let elsewhere = what.contains("replayed") && addr != victim.addr;
                    let allowed = if elsewhere { 48 } else { 0 };
                    assert!(
                        reply.len() <= allowed,
                        "{what} to {addr} was answered: {reply:?}"
                    );
                });
            }
        }
    });

    // Someone holding another key is no member either.
    let other_key = ClusterKey::generate().unwrap();
    let outsider = Client::with_config(
        Entry::Discovery(net.discovery.local_addr()),
        ClientConfig {
            retry_for: Duration::from_millis(300),
            ..ClientConfig::new(&other_key)
        },
    );
    assert!(outsider.get(&names[2]).is_err());
    assert!(matches!(
        outsider.put(&names[2], b"overwritten"),
        Err(Error::Refused { .. } | Error::Protocol { .. })
    ));

    // Members are served as before, and nothing changed.
    for name in &names {
        assert_eq!(client.get(name).unwrap().data, name.as_bytes(), "{name}");
    }
    assert_eq!(holdings(&net), before, "a stored byte changed");
    assert_eq!(net.discovery.peers(), peers_before, "the registry changed");
    check_lookups(&net.nodes, &mut rng, 100);
}

#[test]
fn thousands_of_idle_connections_from_one_address_hold_a_few_slots_and_close() {
    let ids = random_ids(&mut Rng::seeded(0x3a), 3);
    let net = Network::new(&ids);
    let node = &net.nodes[1];
    let addr = node.info().addr;
    // A member's connection made before the flood.
    let mut member = Connection::open(addr, &NetConfig::with(key())).unwrap();
    let flood: Vec<TcpStream> = (0..3000)
        .map(|_| TcpStream::connect(addr).expect("the kernel accepts"))
        .collect();
    // The node holds at most half its slots and its per-source share of them.
    let net_config = NetConfig::with(key());
    let cap = (net_config.max_connections / 2 + net_config.max_handshakes_per_source) as u64;
    assert!(
        wait_until(Duration::from_secs(20), || node.stats().accepted >= 3000),
        "accepted {}",
        node.stats().accepted
    );
    assert!(
        node.stats().open_connections <= cap,
        "{} connections held",
        node.stats().open_connections
    );
    // The member is served throughout.
    member.send(&Message::Ping).unwrap();
    assert!(matches!(member.recv(), Ok(Message::Pong { .. })));
    // Every one of them is closed without a byte.
    for mut s in flood {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a flood connection: {other:?}, {} bytes", buf.len()),
        }
    }
    // And new members are served again.
    let client = Client::new(net.discovery.local_addr(), key());
    client.put("after the flood", b"fine").unwrap();
    assert_eq!(client.get("after the flood").unwrap().data, b"fine");
}
