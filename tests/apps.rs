//! The Common API on loopback networks: messages routed to keys reach the responsible node,
//! `forward` sees every hop and may change or stop a message, requests bring replies back,
//! `update` follows the leaf set; and the two example applications in `examples/apps/`: a
//! counter service and publish/subscribe across joins, leaves and a crash.

mod common;
#[path = "../examples/apps/counter.rs"]
mod counter;
#[path = "../examples/apps/pubsub.rs"]
mod pubsub;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use pastry::{Application, Discovery, Id, Key, Node, NodeConfig, NodeInfo, Rng};

/// A network whose nodes are shared (applications hold them weakly).
struct Shared {
    discovery: Discovery,
    nodes: Vec<Arc<Node>>,
}

impl Shared {
    fn new(ids: &[Id]) -> Shared {
        init_logging();
        let discovery = Discovery::start(loopback(), key()).expect("discovery starts");
        let mut net = Shared {
            discovery,
            nodes: Vec::new(),
        };
        for &id in ids {
            net.join(id);
        }
        net
    }

    fn join(&mut self, id: Id) -> Arc<Node> {
        let node = Arc::new(start_node_with(NodeConfig {
            id: Some(id),
            ..quick(8, 3)
        }));
        node.join_discovery(self.discovery.local_addr())
            .expect("node joins");
        self.nodes.push(Arc::clone(&node));
        node
    }

    fn ids(&self) -> Vec<Id> {
        self.nodes.iter().map(|n| n.id()).collect()
    }
}

/// An application that records what it sees, and answers a request with its node's id.
struct Recorder {
    me: NodeInfo,
    /// (message, next hop) for every forward.
    forwarded: Mutex<Vec<(Vec<u8>, Id)>>,
    delivered: Mutex<Vec<Vec<u8>>>,
    updates: Mutex<Vec<(Id, bool)>>,
    /// Stops messages that start with this byte.
    stop_on: Option<u8>,
}

impl Application for Recorder {
    fn deliver(&self, _key: Key, message: &[u8]) -> Vec<u8> {
        self.delivered.lock().push(message.to_vec());
        self.me.id.0.to_be_bytes().to_vec()
    }

    fn forward(&self, _key: Key, message: &mut Vec<u8>, next: NodeInfo) -> bool {
        self.forwarded.lock().push((message.clone(), next.id));
        if self.stop_on.is_some() && message.first() == self.stop_on.as_ref() {
            return false;
        }
        // Marks the message, so that the next node sees the change.
        message.push(b'+');
        true
    }

    fn update(&self, node: NodeInfo, joined: bool) {
        self.updates.lock().push((node.id, joined));
    }
}

fn recorders(net: &Shared, stop_on: Option<u8>) -> Vec<Arc<Recorder>> {
    net.nodes
        .iter()
        .map(|node| {
            let app = Arc::new(Recorder {
                me: node.info(),
                forwarded: Mutex::default(),
                delivered: Mutex::default(),
                updates: Mutex::default(),
                stop_on,
            });
            node.register_app("recorder", app.clone());
            app
        })
        .collect()
}

#[test]
fn routed_messages_reach_the_responsible_node_and_forward_sees_every_hop() {
    let mut rng = Rng::seeded(41);
    let net = Shared::new(&random_ids(&mut rng, 24));
    let apps = recorders(&net, None);
    let ids = net.ids();
    for i in 0..200u32 {
        let key = Id(rng.next_u64() as u16);
        let from = &net.nodes[rng.next_u64() as usize % net.nodes.len()];
        let message = format!("m{i}").into_bytes();
        let routed = if i % 2 == 0 {
            from.route("recorder", key, &message).unwrap()
        } else {
            from.request("recorder", key, &message).unwrap()
        };
        let responsible = oracle_responsible(key, &ids);
        let last = routed.path.last().unwrap().id;
        assert!(routed.delivered);
        assert_eq!(last, responsible, "message {i} to {key}");
        assert_eq!(routed.path[0].id, from.id());
        if i % 2 == 1 {
            assert_eq!(routed.reply, responsible.0.to_be_bytes());
        } else {
            assert!(routed.reply.is_empty());
        }
        // Every node but the last forwarded it to the next one, each seeing the marks of
        // the nodes before; the last delivered it with every mark.
        let app_of = |id: Id| &apps[net.nodes.iter().position(|n| n.id() == id).unwrap()];
        for (hop, pair) in routed.path.windows(2).enumerate() {
            let mut seen = message.clone();
            seen.extend(std::iter::repeat_n(b'+', hop));
            let forwarded = app_of(pair[0].id).forwarded.lock();
            assert!(
                forwarded.contains(&(seen, pair[1].id)),
                "message {i}: no forward at hop {hop} to {}",
                pair[1].id
            );
        }
        let mut end = message.clone();
        end.extend(std::iter::repeat_n(b'+', routed.path.len() - 1));
        assert!(app_of(last).delivered.lock().contains(&end), "message {i}");
    }
}

#[test]
fn forward_may_stop_a_message_and_update_follows_the_leaf_set() {
    let mut rng = Rng::seeded(42);
    let mut net = Shared::new(&random_ids(&mut rng, 8));
    let apps = recorders(&net, Some(b'!'));
    // Stopped by the sender's own forward, unless it is the responsible node itself.
    let from = &net.nodes[0];
    let key = (0..=u16::MAX)
        .map(Id)
        .find(|k| oracle_responsible(*k, &net.ids()) != from.id())
        .unwrap();
    let stopped = from.route("recorder", key, b"!stop").unwrap();
    assert!(!stopped.delivered);
    assert_eq!(stopped.path.len(), 1);
    assert!(apps.iter().all(|a| a.delivered.lock().is_empty()));

    // A node not running the application refuses to deliver its messages.
    let bare = net.join(Id(rng.next_u64() as u16));
    let to_bare = bare.id();
    assert!(bare.route("recorder", to_bare, b"x").is_err());

    // Every node whose leaf set took the newcomer was told so, within a few rounds.
    let told = |apps: &[Arc<Recorder>], id: Id, joined: bool| {
        apps.iter()
            .filter(|a| a.updates.lock().contains(&(id, joined)))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || told(&apps, to_bare, true)
            == apps.len()),
        "{} of {} nodes heard of the join",
        told(&apps, to_bare, true),
        apps.len()
    );
    bare.leave().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || told(&apps, to_bare, false)
            == apps.len()),
        "{} of {} nodes heard of the leave",
        told(&apps, to_bare, false),
        apps.len()
    );
}

#[test]
fn the_counter_service_counts_every_increment_once() {
    let mut rng = Rng::seeded(43);
    let net = Shared::new(&random_ids(&mut rng, 10));
    let services: Vec<_> = net
        .nodes
        .iter()
        .map(|n| counter::Counters::register(n))
        .collect();
    let values: Vec<u64> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let nodes = &net.nodes;
                s.spawn(move || {
                    (0..25)
                        .map(|i| counter::increment(&nodes[(t * 3 + i) % nodes.len()], "hits"))
                        .collect::<pastry::Result<Vec<u64>>>()
                        .unwrap()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let distinct: HashSet<u64> = values.iter().copied().collect();
    assert_eq!(distinct, (1..=100).collect::<HashSet<u64>>());
    // The count lives at the responsible node only.
    let holder = oracle_responsible(pastry::key_of(b"hits"), &net.ids());
    for (node, service) in net.nodes.iter().zip(&services) {
        assert_eq!(service.held(), usize::from(node.id() == holder));
    }
}

#[test]
fn pubsub_delivers_every_publish_to_every_live_subscriber_across_joins_leaves_and_a_crash() {
    let mut rng = Rng::seeded(44);
    let ids = random_ids(&mut rng, 20);
    let mut net = Shared::new(&ids[..16]);
    let mut apps: Vec<_> = net.nodes.iter().map(pubsub::PubSub::start).collect();
    let topic = "news";
    // Every other node subscribes.
    for app in apps.iter().step_by(2) {
        app.subscribe(topic).unwrap();
    }
    let subscribed = |i: usize| i % 2 == 0;
    let mut round = 0;
    // Publishes until every live subscriber has the same payload (the tree mends within a
    // few refreshes), and checks that no one else got it.
    let mut deliver_to_all = |apps: &[Arc<pubsub::PubSub>], live: &dyn Fn(usize) -> bool| {
        let reached = |payload: &[u8]| {
            (0..apps.len())
                .filter(|&i| subscribed(i) && live(i))
                .all(|i| apps[i].received(topic, payload))
        };
        let mut payloads = Vec::new();
        let done = wait_until(Duration::from_secs(15), || {
            round += 1;
            let payload = format!("round {round}").into_bytes();
            let publisher = (round * 7) % apps.len();
            let publisher = (0..apps.len())
                .map(|k| (publisher + k) % apps.len())
                .find(|&k| live(k))
                .unwrap();
            let _ = apps[publisher].publish(topic, &payload);
            payloads.push(payload);
            payloads.iter().any(|p| reached(p))
        });
        assert!(done, "no publish reached every live subscriber");
        for (i, app) in apps.iter().enumerate() {
            if !subscribed(i) {
                assert!(payloads.iter().all(|p| !app.received(topic, p)));
            }
        }
    };
    deliver_to_all(&apps, &|_| true);

    // Four nodes join, two of them subscribers; then publishes reach them too.
    for &id in &ids[16..] {
        let node = net.join(id);
        let app = pubsub::PubSub::start(&node);
        if subscribed(apps.len()) {
            app.subscribe(topic).unwrap();
        }
        apps.push(app);
    }
    deliver_to_all(&apps, &|_| true);

    // The topic's root leaves gracefully, and another node crashes.
    let root = oracle_responsible(pastry::key_of(topic.as_bytes()), &net.ids());
    let left = net.nodes.iter().position(|n| n.id() == root).unwrap();
    net.nodes[left].leave().unwrap();
    apps[left].stop();
    let crashed = (left + 1) % net.nodes.len();
    apps[crashed].stop();
    net.nodes[crashed].shutdown(); // a crash: no leave
    let gone = [left, crashed];
    deliver_to_all(&apps, &|i| !gone.contains(&i));

    for app in &apps {
        app.stop();
    }
}
