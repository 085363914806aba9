//! What a client and a member node holding valid credentials can and cannot do as
//! themselves (DESIGN.md section 9): each forgery is refused, and the honest nodes' tables,
//! the stored bytes and discovery's list stay as they were.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::client::Client;
use crate::net::{Connection, NetConfig};
use crate::wire::{Message, RecordHead, RemoteCode};
use crate::{ClusterKey, Discovery};

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(key: &ClusterKey, id: u16, leaf_half: usize) -> NodeConfig {
    NodeConfig {
        id: Some(Id(id)),
        leaf_half,
        replicas: 3.min(leaf_half + 1),
        maintenance_interval: Duration::from_millis(100),
        ..NodeConfig::new(key)
    }
}

/// A discovery node and nodes of `ids` joined through it.
fn cluster(key: &ClusterKey, ids: &[u16], leaf_half: usize) -> (Discovery, Vec<Node>) {
    let discovery = Discovery::start(localhost(), key).unwrap();
    let nodes = ids
        .iter()
        .map(|&id| {
            let node = Node::start(config(key, id, leaf_half)).unwrap();
            node.join_discovery(discovery.local_addr()).unwrap();
            node
        })
        .collect();
    (discovery, nodes)
}

/// `msg` sent by `node` as itself: on its own connection, introduced with its identity.
fn as_node(node: &Node, to: SocketAddr, msg: &Message) -> Message {
    answer_or_refusal(node.inner.pool.call(to, msg), msg)
}

/// The answer, or the refusal as the message it came in.
fn answer_or_refusal(answer: crate::Result<Message>, msg: &Message) -> Message {
    answer.unwrap_or_else(|e| match e {
        crate::Error::Refused { code, message, .. } => Message::Error { code, message },
        other => panic!("{msg:?}: {other}"),
    })
}

/// A whole record `head` with no data, sent by `node` as itself.
fn record_as_node(node: &Node, to: SocketAddr, head: RecordHead) -> Message {
    let (answered, answer) = std::sync::mpsc::channel();
    let then = Box::new(move |a| {
        let _ = answered.send(a); // on a thread of the crew: no panic there
    });
    let wait = Duration::from_secs(30);
    let msg = Message::Record(head.clone());
    (node.inner.pool).send_record_then(to, head, bytes::Bytes::new(), wait, then);
    let answer = answer
        .recv_timeout(2 * wait)
        .expect("an answer or a failure");
    answer_or_refusal(answer, &msg)
}

/// `msgs` sent by a holder of `key`, each on a connection of its own, each answered.
fn as_client(key: &ClusterKey, to: SocketAddr, msgs: &[Message]) -> Vec<Message> {
    msgs.iter()
        .map(|msg| {
            let mut conn = Connection::open(to, &NetConfig::with(key)).unwrap();
            conn.request(msg).unwrap();
            if let Message::Record(_) = msg {
                conn.send(&Message::RecordEnd { crc: 0 }).unwrap();
            }
            conn.recv().expect("a reply")
        })
        .collect()
}

fn head(name: &[u8], version: u64, handoff: bool) -> RecordHead {
    RecordHead {
        name: name.to_vec(),
        size: 0,
        version,
        deleted: true,
        handoff,
        request: 0,
        existed: false,
        relayed: false,
        direct: false,
    }
}

fn refused(reply: &Message) -> bool {
    matches!(
        reply,
        Message::Error {
            code: RemoteCode::BadRequest | RemoteCode::NotResponsible,
            ..
        }
    )
}

/// What every node's tables hold, and discovery's list.
fn tables(discovery: &Discovery, nodes: &[Node]) -> (Vec<Vec<NodeInfo>>, Vec<NodeInfo>) {
    let tables = nodes
        .iter()
        .map(|n| {
            let mut known = n.leaf_set().members();
            known.extend(n.routing_table().entries());
            known.sort_by_key(|n| (n.id, n.addr));
            known
        })
        .collect();
    (tables, discovery.peers())
}

/// Waits (bounded) until the nodes' tables stop changing, and returns them.
fn settled(discovery: &Discovery, nodes: &[Node]) -> (Vec<Vec<NodeInfo>>, Vec<NodeInfo>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = tables(discovery, nodes);
    let mut still = 0;
    while still < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = tables(discovery, nodes);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

#[test]
fn a_client_reads_and_writes_but_cannot_act_as_a_node() {
    let key = ClusterKey::generate().unwrap();
    let (discovery, nodes) = cluster(&key, &[0x1000, 0x5000, 0x9000, 0xd000], 4);
    let client_key = key.client_key();
    let client = Client::new(discovery.local_addr(), &client_key);
    let stored = client.put("kept", b"the bytes").unwrap();
    let before = settled(&discovery, &nodes);
    let victim = nodes[1].info();
    let fake = NodeInfo {
        id: Id(0x5001),
        addr: nodes[0].info().addr,
    };
    let holder = stored.route.responsible();
    let forged = [
        Message::Announce { node: fake },
        Message::Depart {
            node: victim,
            leaf_set: vec![fake],
        },
        Message::Exchange {
            node: victim,
            leaf_set: vec![fake],
        },
        Message::JoinHop {
            joiner: fake,
            exclude: vec![],
        },
        Message::Pull { joiner: fake },
        Message::Holds { records: vec![] },
        Message::Cell { row: 0, col: 1 },
        Message::Replicas { key: victim.id },
        Message::Record(head(b"kept", u64::MAX / 4, true)),
        Message::Delete {
            name: b"kept".to_vec(),
            request: 0,
            relayed: true,
            direct: false,
        },
        Message::Hello {
            node: fake,
            key: nodes[0].public_key(),
            cert: None,
            proof: Box::new([0; 64]),
        },
        // A request in an envelope is judged as if it came bare.
        Message::Vouched {
            certs: vec![],
            message: Box::new(Message::Depart {
                node: victim,
                leaf_set: vec![],
            }),
        },
        Message::Vouched {
            certs: vec![],
            message: Box::new(Message::Cell { row: 0, col: 1 }),
        },
    ];
    for target in [holder.addr, victim.addr] {
        for (msg, reply) in forged.iter().zip(as_client(&client_key, target, &forged)) {
            assert!(refused(&reply), "{msg:?} to {target}: {reply:?}");
        }
    }
    let at_discovery = [
        Message::Register { node: fake },
        Message::Alive { node: victim },
        Message::Joined { id: fake.id },
        Message::Deregister { node: victim },
        Message::Suspect { node: victim },
    ];
    let replies = as_client(&client_key, discovery.local_addr(), &at_discovery);
    for (msg, reply) in at_discovery.iter().zip(replies) {
        assert!(refused(&reply), "{msg:?}: {reply:?}");
    }
    // Even with the cluster key itself, a client that never proved an identity is one.
    for (msg, reply) in forged.iter().zip(as_client(&key, holder.addr, &forged)) {
        assert!(refused(&reply), "{msg:?} with the cluster key: {reply:?}");
    }
    assert_eq!(
        settled(&discovery, &nodes),
        before,
        "tables and discovery unchanged"
    );
    assert_eq!(client.get("kept").unwrap().data, b"the bytes");
    assert_eq!(client.get("kept").unwrap().version, stored.version);
    // What a client is for still works.
    assert!(client.put("more", b"x").unwrap().kept);
    assert!(client.delete("more").unwrap().existed);
}

#[test]
fn a_node_speaks_for_itself_only() {
    let key = ClusterKey::generate().unwrap();
    let ids = [
        0x1000, 0x2000, 0x3000, 0x4000, 0x8000, 0x9000, 0xa000, 0xb000,
    ];
    let (discovery, nodes) = cluster(&key, &ids, 1);
    let client = Client::new(discovery.local_addr(), key.client_key());
    // A name held around 0x9000-0xa000, far from the member that forges.
    let name = (0..)
        .map(|i| format!("far-{i}"))
        .find(|n| (0x9000..0x9800).contains(&crate::key_of(n.as_bytes()).0))
        .unwrap();
    let stored = client.put(&name, b"honest").unwrap();
    let before = settled(&discovery, &nodes);
    let liar = &nodes[0]; // 0x1000
    let victim = nodes[4].info(); // 0x8000
    let holder = stored.route.responsible();
    let ghost = NodeInfo {
        id: Id(0x9001),
        addr: liar.info().addr,
    };
    let refusals_before = nodes[4].inner.credentials.refusals();
    let forged = [
        Message::Announce { node: ghost },
        // Re-pointing the victim's id to the liar's address.
        Message::Announce {
            node: NodeInfo {
                id: victim.id,
                addr: liar.info().addr,
            },
        },
        Message::Depart {
            node: victim,
            leaf_set: vec![],
        },
        Message::Exchange {
            node: victim,
            leaf_set: vec![],
        },
        Message::JoinHop {
            joiner: ghost,
            exclude: vec![],
        },
        Message::Pull { joiner: ghost },
        Message::Vouched {
            certs: vec![],
            message: Box::new(Message::Depart {
                node: victim,
                leaf_set: vec![],
            }),
        },
    ];
    for target in [victim.addr, holder.addr] {
        for msg in &forged {
            let reply = as_node(liar, target, msg);
            assert!(refused(&reply), "{msg:?} to {target}: {reply:?}");
        }
    }
    // Each refusal is counted, and logged once per sender and kind of request: the same
    // forgeries again are refused as before and logged no more.
    let once = nodes[4].inner.credentials.refusals();
    let kinds: std::collections::HashSet<&str> = forged.iter().map(Message::name).collect();
    assert!(
        once.0 >= refusals_before.0 + forged.len() as u64,
        "{once:?}"
    );
    assert!(once.1 > refusals_before.1 && once.1 <= refusals_before.1 + kinds.len());
    for msg in &forged {
        assert!(refused(&as_node(liar, victim.addr, msg)));
    }
    let twice = nodes[4].inner.credentials.refusals();
    assert!(twice.0 >= once.0 + forged.len() as u64, "{twice:?}");
    assert_eq!(twice.1, once.1, "logged once");
    // Its own pull is refused too where it is no neighbour: it would copy others' objects.
    let pull = as_node(
        liar,
        holder.addr,
        &Message::Pull {
            joiner: liar.info(),
        },
    );
    assert!(refused(&pull), "{pull:?}");
    // A hand-off overwriting the object, from a node that is no neighbour of the holder.
    let overwrite = record_as_node(
        liar,
        holder.addr,
        head(name.as_bytes(), stored.version + 1, true),
    );
    assert!(refused(&overwrite), "{overwrite:?}");
    // An exchange as itself naming an uncertified node: the liar is heard, the ghost not.
    let told = as_node(
        liar,
        victim.addr,
        &Message::Exchange {
            node: liar.info(),
            leaf_set: vec![ghost],
        },
    );
    assert!(!refused(&told), "{told:?}");
    // Discovery: another id, another's reminder, departure or join.
    let at_discovery = [
        Message::Register { node: ghost },
        Message::Register { node: victim },
        Message::Alive { node: victim },
        Message::Deregister { node: victim },
        Message::Joined { id: victim.id },
    ];
    for msg in &at_discovery {
        let reply = as_node(liar, discovery.local_addr(), msg);
        assert!(refused(&reply), "{msg:?}: {reply:?}");
    }
    // Many ids at once: none is given.
    for id in 0x4100..0x4140u16 {
        let node = NodeInfo {
            id: Id(id),
            addr: liar.info().addr,
        };
        let reply = as_node(liar, discovery.local_addr(), &Message::Register { node });
        assert!(refused(&reply), "{id:04x}: {reply:?}");
    }
    assert_eq!(
        settled(&discovery, &nodes),
        before,
        "tables and discovery unchanged"
    );
    let got = client.get(&name).unwrap();
    assert_eq!(
        (got.data.as_slice(), got.version),
        (&b"honest"[..], stored.version)
    );
    for node in &nodes {
        assert!(node.is_joined());
    }
}

#[test]
fn versions_far_ahead_are_refused_and_the_owner_keeps_writing() {
    let key = ClusterKey::generate().unwrap();
    let (discovery, nodes) = cluster(&key, &[0x1000, 0x5000, 0x9000, 0xd000], 8);
    let client = Client::new(discovery.local_addr(), &key);
    let first = client.put("clock", b"one").unwrap();
    let holder = first.route.responsible();
    // A neighbour of the holder, whose clock runs far ahead.
    let neighbour = nodes.iter().find(|n| n.id() != holder.id).unwrap();
    let two_days = 2 * 24 * 3600 * 1_000_000_000u64;
    for version in [u64::MAX, u64::MAX - 1, first.version + two_days] {
        for deleted in [true, false] {
            let head = RecordHead {
                deleted,
                ..head(b"clock", version, true)
            };
            match record_as_node(neighbour, holder.addr, head) {
                Message::Error {
                    code: RemoteCode::BadVersion,
                    ..
                } => {}
                other => panic!("version {version}: {other:?}"),
            }
        }
    }
    let second = client.put("clock", b"two").unwrap();
    assert!(second.kept && second.version > first.version);
    assert!(second.version < first.version + crate::MAX_VERSION_AHEAD.as_nanos() as u64);
    assert_eq!(client.get("clock").unwrap().data, b"two");
    assert!(client.delete("clock").unwrap().existed);
}

#[test]
fn a_certificate_from_another_discovery_is_refused() {
    let key = ClusterKey::generate().unwrap();
    let (discovery, nodes) = cluster(&key, &[0x1000, 0x9000], 4);
    let before = settled(&discovery, &nodes);
    // Same cluster key, another discovery: its node is certified by another authority.
    let (_other, strangers) = cluster(&key, &[0x5000], 4);
    let stranger = &strangers[0];
    for target in &nodes {
        let reply = as_node(
            stranger,
            target.info().addr,
            &Message::Exchange {
                node: stranger.info(),
                leaf_set: vec![],
            },
        );
        assert!(refused(&reply), "{reply:?}");
    }
    assert_eq!(settled(&discovery, &nodes), before);
}

#[test]
fn a_restarted_node_keeps_its_identity_and_a_new_key_cannot_take_a_live_id() {
    let key = ClusterKey::generate().unwrap();
    let (discovery, nodes) = cluster(&key, &[0x1000], 4);
    let dir = std::env::temp_dir().join(format!("pastry-trust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || {
        let node = Node::start(NodeConfig {
            data_dir: Some(dir.clone()),
            ..config(&key, 0x7000, 4)
        })
        .unwrap();
        node.join_discovery(discovery.local_addr()).unwrap();
        node
    };
    let first = start();
    let identity = first.public_key();
    // A new node with a new key cannot take the live node's id.
    let squatter = Node::start(config(&key, 0x7000, 4)).unwrap();
    assert_ne!(squatter.public_key(), identity);
    assert!(matches!(
        squatter.join_discovery(discovery.local_addr()),
        Err(crate::Error::IdInUse(Id(0x7000)))
    ));
    // Stopped without leaving (discovery not told), then restarted on its directory: the
    // same identity, and its id back at once.
    first.shutdown();
    let again = start();
    assert_eq!(again.public_key(), identity);
    assert!(again.is_joined());
    assert!(discovery.peers().contains(&again.info()));
    drop(nodes);
    again.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The live id best placed for `key` among `ids`.
fn responsible_of(key: Id, ids: &[u16]) -> Id {
    let ids: Vec<Id> = ids.iter().map(|&i| Id(i)).collect();
    crate::responsible(key, ids).expect("a live node")
}

#[test]
fn a_certified_node_that_answers_routes_with_nonsense_is_routed_around_then_dropped() {
    let key = ClusterKey::generate().unwrap();
    let mut rng = crate::Rng::seeded(31);
    let mut ids: Vec<u16> = Vec::new();
    while ids.len() < 12 {
        let id = rng.next_u64() as u16;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let (discovery, nodes) = cluster(&key, &ids, 4);
    let someone = nodes[0].info();
    // A route longer than any allowed, and an empty one.
    let too_long = Message::Routed {
        path: vec![someone; 300],
        replicas: vec![],
    };
    let empty = Message::Routed {
        path: vec![],
        replicas: vec![],
    };
    for reply in [too_long, empty] {
        let mut ghost_id = Id(rng.next_u64() as u16);
        while ids.contains(&ghost_id.0) {
            ghost_id = Id(ghost_id.0.wrapping_add(1));
        }
        // A member certified by discovery, joined where it is responsible for its id, that
        // then answers every request with `reply`, on its address and with its identity.
        let ghost = Node::start(config(&key, ghost_id.0, 4)).unwrap();
        ghost.join_discovery(discovery.local_addr()).unwrap();
        let (addr, credentials) = (ghost.info().addr, Arc::clone(&ghost.inner.credentials));
        ghost.shutdown();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let handler: crate::net::Handler = {
            let answered = Arc::clone(&answered);
            Arc::new(move |_request, _session| {
                answered.fetch_add(1, Ordering::SeqCst);
                reply.clone()
            })
        };
        let listener = crate::net::Server::bind(addr).expect("its port again");
        let counters = Arc::new(Counters::default());
        let mut liar = crate::net::Server::start(
            "liar",
            listener,
            NetConfig::with(&key),
            handler,
            counters,
            Some(credentials),
        )
        .unwrap();
        let expected = responsible_of(ghost_id, &ids);
        for _ in 0..2 {
            for node in &nodes {
                let route = node
                    .lookup(ghost_id)
                    .unwrap_or_else(|e| panic!("from {}: {e}", node.id()));
                assert_eq!(route.responsible().id, expected, "from {}", node.id());
                assert!(route.path.iter().all(|n| n.id != ghost_id), "{route:?}");
            }
        }
        assert!(
            answered.load(Ordering::SeqCst) > 0,
            "the liar was never asked"
        );
        // Found out by every node that holds it next to the key: dropped (bounded wait, as
        // maintenance meets it too).
        let deadline = Instant::now() + Duration::from_secs(20);
        while nodes.iter().any(|n| n.leaf_set().contains(ghost_id)) && Instant::now() < deadline {
            for node in &nodes {
                let _ = node.lookup(ghost_id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for node in &nodes {
            assert!(
                !node.leaf_set().contains(ghost_id),
                "{} kept the liar",
                node.id()
            );
        }
        // The nodes still serve: a lookup of another key is answered as before.
        let other = Id(ghost_id.0.wrapping_add(0x8000));
        let route = nodes[1].lookup(other).unwrap();
        assert_eq!(route.responsible().id, responsible_of(other, &ids));
        liar.shutdown();
    }
}

#[test]
fn a_registration_whose_address_answers_late_is_busy_and_one_nothing_answers_is_refused() {
    let key = ClusterKey::generate().unwrap();
    let discovery = Discovery::start(localhost(), &key).unwrap();
    // A node that claims to be reached at `addr`, where it is not.
    let claiming = |id: u16, addr: SocketAddr| {
        Node::start(NodeConfig {
            advertise: Some(addr),
            ..config(&key, id, 4)
        })
        .unwrap()
    };
    // Connections there are taken by the kernel, and nothing ever answers on them: a
    // machine too loaded to answer in time looks the same to discovery.
    let silent = std::net::TcpListener::bind(localhost()).unwrap();
    let late = claiming(0x3001, silent.local_addr().unwrap());
    let register = |node: &Node| {
        let msg = Message::Register { node: node.info() };
        as_node(node, discovery.local_addr(), &msg)
    };
    let reply = register(&late);
    assert!(
        matches!(
            &reply,
            Message::Error { code: RemoteCode::Busy, message } if message.contains("try again")
        ),
        "{reply:?}"
    );
    let closed = std::net::TcpListener::bind(localhost()).unwrap();
    let nowhere = claiming(0x3002, closed.local_addr().unwrap());
    drop(closed);
    let reply = register(&nowhere);
    assert!(refused(&reply), "{reply:?}");
    assert!(discovery.peers().is_empty(), "{:?}", discovery.peers());
    // A node at its own address is taken.
    let member = Node::start(config(&key, 0x3000, 4)).unwrap();
    member.join_discovery(discovery.local_addr()).unwrap();
    assert_eq!(discovery.peers(), vec![member.info()]);
    drop(silent);
}
