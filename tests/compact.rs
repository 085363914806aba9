//! The tracker seed's protocol on a loopback network: a client written from the formats in
//! `pastry::compact` (raw sockets and bytes, none of the library's client code) asks the
//! tracker for a key's port and inserts, looks up and deletes through the compact listeners;
//! the same entries through `Client`; bad input; and nodes joining, leaving and crashing
//! while it runs.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use pastry::compact::format::{name_of, Op, Reply, Request, Status, MESSAGE_LEN};
use pastry::{key_of, responsible, Client, Error, Id, NodeConfig, Rng};

/// How long the client keeps retrying a request while the network changes.
const RETRY_FOR: Duration = Duration::from_secs(20);

/// A network whose nodes serve the compact protocol, with a tracker at discovery.
fn network(ids: &[Id], config: NodeConfig) -> (Network, SocketAddr) {
    let config = NodeConfig {
        compact_listen: Some(loopback()),
        ..config
    };
    let net = Network::with_config(ids, &config);
    let tracker = net.discovery.start_tracker(loopback()).expect("tracker");
    (net, tracker)
}

/// A client of the seed's system: the tracker's connection, and one per compact port.
struct SeedClient {
    tracker_addr: SocketAddr,
    tracker: Option<TcpStream>,
    nodes: HashMap<u16, TcpStream>,
}

impl SeedClient {
    fn new(tracker_addr: SocketAddr) -> SeedClient {
        SeedClient {
            tracker_addr,
            tracker: None,
            nodes: HashMap::new(),
        }
    }

    fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(stream)
    }

    /// The port the tracker names for `key`.
    fn port_of(&mut self, key: u32) -> std::io::Result<u16> {
        if self.tracker.is_none() {
            self.tracker = Some(Self::connect(self.tracker_addr)?);
        }
        let tracker = self.tracker.as_mut().unwrap();
        let asked = tracker.write_all(&key.to_be_bytes()).and_then(|()| {
            let mut reply = [0u8; 4];
            tracker.read_exact(&mut reply).map(|()| reply)
        });
        match asked {
            Ok(reply) => {
                let port = u32::from_be_bytes(reply);
                assert!(
                    port <= 0xffff,
                    "the high 16 bits of a tracker reply are zero"
                );
                Ok(port as u16)
            }
            Err(e) => {
                self.tracker = None;
                Err(e)
            }
        }
    }

    /// One request at the node the tracker names; `Err` when that fails at the socket level.
    fn once(&mut self, request: Request) -> std::io::Result<Reply> {
        let port = self.port_of(request.key)?;
        if port == 0 {
            return Err(std::io::Error::other("the tracker knows no node"));
        }
        let stream = match self.nodes.entry(port) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Self::connect(SocketAddr::from(([127, 0, 0, 1], port)))?)
            }
        };
        let answered = stream.write_all(&request.encode()).and_then(|()| {
            let mut reply = [0u8; MESSAGE_LEN];
            stream.read_exact(&mut reply).map(|()| reply)
        });
        match answered {
            Ok(reply) => Ok(Reply::decode(&reply).expect("a status of 0, 1 or 2")),
            Err(e) => {
                self.nodes.remove(&port);
                Err(e)
            }
        }
    }

    /// A request, asked again (of the tracker, then the node) while the network changes
    /// under it: a node gone, or a failure the overlay reports while it repairs.
    fn ask(&mut self, op: Op, key: u32, value: u32) -> Reply {
        let request = Request {
            op: Some(op),
            key,
            value,
        };
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match self.once(request) {
                Ok(reply) if reply.status != Status::Failed => return reply,
                outcome => assert!(
                    Instant::now() < deadline,
                    "{op:?} {key:#x} still fails after {RETRY_FOR:?}: {outcome:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Keys whose names are 4 printable bytes, and a value for each.
fn entries(rng: &mut Rng, n: usize) -> Vec<(u32, u32)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    // Bounded: 26^4 names, far more than any n asked here.
    while out.len() < n {
        let name: [u8; 4] = std::array::from_fn(|_| b'a' + (rng.next_u64() % 26) as u8);
        let key = u32::from_be_bytes(name);
        if seen.insert(key) {
            out.push((key, rng.next_u64() as u32));
        }
    }
    out
}

#[test]
fn a_seed_client_stores_reads_and_deletes_a_thousand_keys() {
    let mut rng = Rng::seeded(31);
    let ids = random_ids(&mut rng, 6);
    let (net, tracker) = network(&ids, NodeConfig::new(key()));
    let mut client = SeedClient::new(tracker);
    let entries = entries(&mut rng, 1000);

    // The tracker names the compact port of the responsible node.
    for &(key, _) in entries.iter().take(50) {
        let id = responsible(key_of(&name_of(key)), ids.iter().copied()).unwrap();
        let node = net.nodes.iter().find(|n| n.id() == id).unwrap();
        assert_eq!(
            client.port_of(key).unwrap(),
            node.compact_addr().unwrap().port()
        );
    }
    for &(key, value) in &entries {
        let reply = client.ask(Op::Insert, key, value);
        assert_eq!(
            (reply.status, reply.key, reply.value),
            (Status::Ok, key, value)
        );
    }
    for &(key, value) in &entries {
        let reply = client.ask(Op::Lookup, key, 0);
        assert_eq!((reply.status, reply.value), (Status::Ok, value), "{key:#x}");
    }
    // The same entries through the object store's own client: names and values big-endian.
    let store = Client::new(net.discovery.local_addr(), key());
    for &(key, value) in entries.iter().step_by(10) {
        let got = store.get(name_of(key)).unwrap();
        assert_eq!(got.data, value.to_be_bytes());
    }
    for &(key, value) in entries.iter().step_by(2) {
        let reply = client.ask(Op::Delete, key, 0);
        assert_eq!((reply.status, reply.value), (Status::Ok, value), "{key:#x}");
    }
    for (i, &(key, value)) in entries.iter().enumerate() {
        let reply = client.ask(Op::Lookup, key, 0);
        let want = if i % 2 == 0 {
            (Status::NotFound, 0)
        } else {
            (Status::Ok, value)
        };
        assert_eq!((reply.status, reply.value), want, "{key:#x}");
    }
    let (key, _) = entries[0];
    assert_eq!(client.ask(Op::Delete, key, 0).status, Status::NotFound);
    assert!(matches!(
        store.get(name_of(key)),
        Err(Error::NotFound { .. })
    ));
}

/// Reads until the peer closes (or the read times out): what it sent meanwhile.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

#[test]
fn bad_compact_input_gets_the_documented_answer_and_the_node_serves_on() {
    let mut rng = Rng::seeded(32);
    let ids = random_ids(&mut rng, 3);
    let mut config = NodeConfig::new(key());
    config.net.io_timeout = Duration::from_millis(500);
    let (net, _tracker) = network(&ids, config);
    let addr = net.nodes[0].compact_addr().unwrap();
    let connect = || TcpStream::connect(addr).unwrap();

    // A type above 3: status 2 with the key, then the connection is closed.
    let mut stream = connect();
    stream.write_all(&[4, 0, 0, 0, 9, 0, 0, 0, 1]).unwrap();
    assert_eq!(read_to_close(&mut stream), [2, 0, 0, 0, 9, 0, 0, 0, 0]);

    // Do nothing: status 0 with the key, and the connection serves on.
    let mut stream = connect();
    stream.write_all(&[3, 0, 0, 0, 7, 1, 2, 3, 4]).unwrap();
    let mut reply = [0u8; MESSAGE_LEN];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0, 0, 0, 0, 7, 0, 0, 0, 0]);
    stream.write_all(&[1, 0, 0, 0, 7, 0, 0, 0, 0]).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], Status::NotFound as u8);

    // A short message, then silence past the I/O timeout: closed without an answer.
    let mut stream = connect();
    stream.write_all(&[0, 0, 0]).unwrap();
    assert_eq!(read_to_close(&mut stream), Vec::<u8>::new());

    // A connection closed halfway through a request: nothing is stored.
    let mut stream = connect();
    stream.write_all(&[0, 0, 0, 0, 8, 0, 0]).unwrap();
    drop(stream);

    // An object under a compact name that is not a 4-byte value: lookup refuses it.
    let store = Client::new(net.discovery.local_addr(), key());
    store.put(name_of(0x0102_0304), b"five!").unwrap();
    let mut stream = connect();
    stream.write_all(&[1, 1, 2, 3, 4, 0, 0, 0, 0]).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [2, 1, 2, 3, 4, 0, 0, 0, 0]);

    // The node serves on: a new connection stores and reads.
    let mut stream = connect();
    stream.write_all(&[0, 0, 0, 0, 8, 0, 0, 0, 42]).unwrap();
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0, 0, 0, 0, 8, 0, 0, 0, 42]);
    assert_eq!(store.get(name_of(8)).unwrap().data, 42u32.to_be_bytes());
}

#[test]
fn the_seed_protocol_keeps_every_entry_while_nodes_join_leave_and_crash() {
    let mut rng = Rng::seeded(33);
    let ids = random_ids(&mut rng, 10);
    let (mut net, tracker) = network(&ids[..6], quick(8, 3));
    let mut client = SeedClient::new(tracker);
    let entries = entries(&mut rng, 300);
    let config = NodeConfig {
        compact_listen: Some(loopback()),
        ..quick(8, 3)
    };
    for (i, &(key, value)) in entries.iter().enumerate() {
        // The network changes under the writes: two joins, a leave, a crash.
        match i {
            50 | 150 => net.join_node(start_node_with(NodeConfig {
                id: Some(ids[6 + i / 100]),
                ..config.clone()
            })),
            100 => net.nodes.remove(1).leave().unwrap(),
            200 => drop(net.nodes.remove(2)), // a crash: no leave
            _ => {}
        }
        let reply = client.ask(Op::Insert, key, value);
        assert_eq!(reply.status, Status::Ok);
    }
    for &(key, value) in &entries {
        let reply = client.ask(Op::Lookup, key, 0);
        assert_eq!((reply.status, reply.value), (Status::Ok, value), "{key:#x}");
    }
}
