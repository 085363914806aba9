//! Shared helpers for the integration tests: loopback networks and the brute-force oracle.
#![allow(dead_code)]

pub mod programs;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use pastry::wire::Message;
use pastry::{
    key_of, ClusterKey, Connection, Discovery, Id, NetConfig, Node, NodeConfig, NodeInfo, Rng,
    CHUNK_SIZE,
};

/// Threads of this process now (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc is mounted")
        .count()
}

/// Shows the library's logs when `RUST_LOG` is set (`RUST_LOG=pastry=debug cargo test ...`).
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// This test process's cluster key, made once: every network a test starts holds it.
pub fn key() -> &'static ClusterKey {
    static KEY: std::sync::OnceLock<ClusterKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| ClusterKey::generate().expect("random key"))
}

/// 127.0.0.1 with a port the OS chooses.
pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Distinct random ids from a seeded generator.
pub fn random_ids(rng: &mut Rng, n: usize) -> Vec<Id> {
    let mut ids: Vec<Id> = Vec::with_capacity(n);
    while ids.len() < n {
        let id = Id(rng.next_u64() as u16);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Fast maintenance, so that repairs settle in a fraction of a test's time.
pub fn quick(leaf_half: usize, replicas: usize) -> NodeConfig {
    NodeConfig {
        leaf_half,
        replicas,
        maintenance_interval: Duration::from_millis(100),
        ..NodeConfig::new(key())
    }
}

/// Starts a node with `id` on loopback.
pub fn start_node(id: Id) -> Node {
    start_node_in(id, None)
}

/// Starts a node with `id` on loopback, keeping its objects in `dir`.
pub fn start_node_in(id: Id, dir: Option<&std::path::Path>) -> Node {
    start_node_with(NodeConfig {
        id: Some(id),
        data_dir: dir.map(|d| d.to_path_buf()),
        ..NodeConfig::new(key())
    })
}

/// Starts a node with `config`.
pub fn start_node_with(config: NodeConfig) -> Node {
    Node::start(config).expect("node starts")
}

/// A discovery node on `addr` signing with the authority key of `seed`.
fn start_discovery(addr: SocketAddr, seed: [u8; 32]) -> Discovery {
    let net = NetConfig {
        max_connections: pastry::DISCOVERY_MAX_CONNECTIONS,
        ..NetConfig::with(key())
    };
    let authority = pastry::Identity::from_seed(seed).expect("a key");
    Discovery::start_with_authority(addr, net, authority).expect("discovery starts")
}

/// The `k` live ids best placed for `key` (the nodes that keep its copies), best first.
pub fn oracle_replicas(key: Id, live: &[Id], k: usize) -> Vec<Id> {
    let dist = |a: Id| {
        let d = a.0.wrapping_sub(key.0);
        d.min(key.0.wrapping_sub(a.0))
    };
    let mut ids = live.to_vec();
    ids.sort_by(|a, b| dist(*a).cmp(&dist(*b)).then(b.0.cmp(&a.0)));
    ids.truncate(k);
    ids
}

/// A discovery node and nodes joined through it one after another.
pub struct Network {
    pub discovery: Discovery,
    pub nodes: Vec<Node>,
    /// Discovery's authority key, to restart it with.
    authority: [u8; 32],
}

impl Network {
    pub fn new(ids: &[Id]) -> Network {
        init_logging();
        let mut authority = [0u8; 32];
        for b in authority.iter_mut() {
            *b = Rng::from_entropy().next_u64() as u8;
        }
        let discovery = start_discovery(loopback(), authority);
        let mut net = Network {
            discovery,
            nodes: Vec::new(),
            authority,
        };
        for &id in ids {
            net.join(id);
        }
        net
    }

    /// A network of nodes started with `config` and the given ids.
    pub fn with_config(ids: &[Id], config: &NodeConfig) -> Network {
        let mut net = Network::new(&[]);
        for &id in ids {
            net.join_node(start_node_with(NodeConfig {
                id: Some(id),
                ..config.clone()
            }));
        }
        net
    }

    /// A network whose node `i` keeps its objects in `dirs[i]`.
    pub fn with_dirs(ids: &[Id], dirs: &[std::path::PathBuf]) -> Network {
        let mut net = Network::new(&[]);
        for (&id, dir) in ids.iter().zip(dirs) {
            net.join_node(start_node_in(id, Some(dir)));
        }
        net
    }

    /// A discovery node on `addr` with this network's authority key, as after a restart.
    pub fn restart_discovery(&self, addr: SocketAddr) -> Discovery {
        start_discovery(addr, self.authority)
    }

    pub fn join(&mut self, id: Id) {
        self.join_node(start_node(id));
    }

    pub fn join_node(&mut self, node: Node) {
        let id = node.id();
        node.join_discovery(self.discovery.local_addr())
            .unwrap_or_else(|e| panic!("{id} joins: {e}"));
        self.nodes.push(node);
    }

    pub fn ids(&self) -> Vec<Id> {
        self.nodes.iter().map(|n| n.id()).collect()
    }
}

/// The expected leaf set of `own` among `live`: (clockwise, counter-clockwise), nearest first.
pub fn oracle_leaf_set(own: Id, live: &[Id], half: usize) -> (Vec<Id>, Vec<Id>) {
    let others: Vec<Id> = live.iter().copied().filter(|&i| i != own).collect();
    let mut cw = others.clone();
    cw.sort_by_key(|i| i.0.wrapping_sub(own.0));
    cw.truncate(half);
    let mut ccw = others;
    ccw.sort_by_key(|i| own.0.wrapping_sub(i.0));
    ccw.truncate(half);
    (cw, ccw)
}

/// The live id closest to `key` on the ring, ties to the larger id.
pub fn oracle_responsible(key: Id, live: &[Id]) -> Id {
    let dist = |a: Id| {
        let d = a.0.wrapping_sub(key.0);
        d.min(key.0.wrapping_sub(a.0))
    };
    *live
        .iter()
        .min_by(|a, b| dist(**a).cmp(&dist(**b)).then(b.0.cmp(&a.0)))
        .expect("a live node")
}

/// Asserts that every node's leaf set equals the oracle's and every routing-table entry fits
/// its cell and is live.
pub fn check_tables(nodes: &[Node], half: usize) {
    let live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    for node in nodes {
        let leaf = node.leaf_set();
        let ids = |side: &[NodeInfo]| side.iter().map(|n| n.id).collect::<Vec<_>>();
        let (cw, ccw) = oracle_leaf_set(node.id(), &live, half);
        assert_eq!(ids(leaf.cw()), cw, "clockwise leaf set of {}", node.id());
        assert_eq!(
            ids(leaf.ccw()),
            ccw,
            "counter-clockwise leaf set of {}",
            node.id()
        );
        let table = node.routing_table();
        for row in 0..4 {
            for (col, cell) in table.row(row).iter().enumerate() {
                if let Some(entry) = cell {
                    assert_eq!(
                        node.id().shared_prefix(entry.id),
                        row,
                        "row of {entry} at {}",
                        node.id()
                    );
                    assert_eq!(
                        entry.id.digit(row),
                        col,
                        "column of {entry} at {}",
                        node.id()
                    );
                }
            }
        }
    }
}

/// Whether every node's leaf set (of `half` a side) equals the oracle's over the live nodes.
pub fn leaf_sets_settled(half: usize, nodes: &[Node]) -> bool {
    let live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    nodes.iter().all(|n| {
        let leaf = n.leaf_set();
        let (cw, ccw) = oracle_leaf_set(n.id(), &live, half);
        leaf.cw().iter().map(|m| m.id).eq(cw) && leaf.ccw().iter().map(|m| m.id).eq(ccw)
    })
}

/// Waits (30 s at most) until the leaf sets settle; fails naming `what` came before.
pub fn assert_leaf_sets_settle(half: usize, nodes: &[Node], what: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || leaf_sets_settled(half, nodes)),
        "leaf sets did not settle after {what}"
    );
}

/// Runs `lookups` lookups of random keys from random nodes; asserts each ends at the
/// responsible node. Returns the mean hop count.
pub fn check_lookups(nodes: &[Node], rng: &mut Rng, lookups: usize) -> f64 {
    let live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    let mut hops = 0usize;
    for _ in 0..lookups {
        let key = Id(rng.next_u64() as u16);
        let from = &nodes[rng.below(nodes.len())];
        let route = from
            .lookup(key)
            .unwrap_or_else(|e| panic!("lookup {key} from {}: {e}", from.id()));
        assert_eq!(route.path[0].id, from.id());
        assert_eq!(
            route.responsible().id,
            oracle_responsible(key, &live),
            "lookup {key} from {} took {:?}",
            from.id(),
            route.path
        );
        hops += route.hops();
    }
    hops as f64 / lookups as f64
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pseudo-random bytes.
pub fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Objects of varied sizes: mostly small, some of a few chunks, a few of several MiB.
pub fn objects(rng: &mut Rng, n: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let size = match i % 100 {
                0 => 1 + rng.below(3 << 20),
                1..=9 => rng.below(3 * CHUNK_SIZE),
                10 => 0,
                _ => rng.below(4096),
            };
            (format!("object-{i}.bin"), bytes(rng, size))
        })
        .collect()
}

/// The ids of the nodes holding `name`, sorted.
pub fn holders(nodes: &[Node], name: &str) -> Vec<Id> {
    let mut ids: Vec<Id> = nodes
        .iter()
        .filter(|n| {
            n.objects()
                .unwrap()
                .iter()
                .any(|o| o.name == name.as_bytes())
        })
        .map(|n| n.id())
        .collect();
    ids.sort();
    ids
}

/// Whether every object sits on its `k` replica holders and nowhere else (so no node holds
/// anything it should not).
pub fn placed_exactly(nodes: &[Node], names: &[&String], k: usize) -> Result<(), String> {
    let live: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    // Each node's objects, listed once.
    let mut held: BTreeMap<Vec<u8>, Vec<Id>> = BTreeMap::new();
    for node in nodes {
        for o in node.objects().unwrap() {
            let keepers = oracle_replicas(o.key, &live, k);
            if !keepers.contains(&node.id()) {
                return Err(format!(
                    "{} holds {:?} (key {}), kept by {keepers:?}",
                    node.id(),
                    String::from_utf8_lossy(&o.name),
                    o.key
                ));
            }
            held.entry(o.name).or_default().push(node.id());
        }
    }
    if held.len() != names.len() {
        return Err(format!("{} names held, {} stored", held.len(), names.len()));
    }
    for name in names {
        let mut want = oracle_replicas(key_of(name.as_bytes()), &live, k);
        want.sort();
        let mut got = held.get(name.as_bytes()).cloned().unwrap_or_default();
        got.sort();
        if got != want {
            return Err(format!("{name} is on {got:?}, not on {want:?}"));
        }
    }
    Ok(())
}

pub fn assert_settles(nodes: &[Node], names: &[&String], k: usize) {
    let mut last = String::new();
    let settled = wait_until(Duration::from_secs(30), || {
        match placed_exactly(nodes, names, k) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(settled, "objects did not settle: {last}");
}

/// Sends `msg` to `addr` on a connection of its own, as any member could, and returns the
/// reply.
pub fn tell(addr: SocketAddr, msg: &Message) -> Message {
    let mut conn = Connection::open(addr, &NetConfig::with(key())).expect("connect");
    conn.send(msg).expect("send");
    conn.recv()
        .unwrap_or_else(|e| panic!("no reply from {addr}: {e}"))
}
