//! The discovery node: tracks the live peers, refuses an identifier already in use, and hands
//! a random joined peer to newcomers and clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::id::{Id, NodeInfo};
use crate::net::{Counters, Handler, NetConfig, Pool, Server};
use crate::rng::Rng;
use crate::wire::{Message, RemoteCode};

/// A running discovery node. Dropping it shuts it down.
///
/// `Send + Sync`: share it by reference or in an `Arc`.
pub struct Discovery {
    registry: Arc<Registry>,
    server: Mutex<Option<Server>>,
    local_addr: SocketAddr,
}

/// The peers discovery knows of, by id.
struct Registry {
    entries: Mutex<BTreeMap<Id, Entry>>,
    rng: Mutex<Rng>,
    /// To ask a registered node whether it is still alive when its id is claimed again.
    pool: Pool,
}

#[derive(Clone, Copy)]
struct Entry {
    node: NodeInfo,
    /// Only joined peers are handed out: a joining one cannot route yet.
    joined: bool,
    /// When it registered or was last heard of.
    since: Instant,
}

/// How long a registration may stay unfinished before its id is free again (the node
/// joining crashed, or gave up without withdrawing).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long discovery waits for a registered node to answer a ping when its id is claimed
/// again: a live node on loopback or a LAN answers in well under this.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

impl Discovery {
    /// Starts a discovery node on `addr` (port 0: the OS chooses) with default socket settings.
    pub fn start(addr: SocketAddr) -> Result<Discovery> {
        Discovery::start_with(addr, NetConfig::default())
    }

    /// Starts a discovery node on `addr` with the given socket settings.
    pub fn start_with(addr: SocketAddr, net: NetConfig) -> Result<Discovery> {
        let counters = Arc::new(Counters::default());
        let registry = Arc::new(Registry {
            entries: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(Rng::from_entropy()),
            pool: Pool::new(net.clone(), Arc::clone(&counters)),
        });
        let listener = Server::bind(addr)?;
        let handler: Handler = {
            let registry = Arc::clone(&registry);
            Arc::new(move |request, _peer| registry.handle(request))
        };
        let server = Server::start("pastry-discovery", listener, net, handler, counters)?;
        let local_addr = server.local_addr();
        log::info!("discovery listening on {local_addr}");
        Ok(Discovery {
            registry,
            server: Mutex::new(Some(server)),
            local_addr,
        })
    }

    /// The address discovery listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peers that have finished joining, sorted by id.
    pub fn peers(&self) -> Vec<NodeInfo> {
        self.registry.joined()
    }

    /// Stops the server and joins its threads. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        let server = self.server.lock().take();
        if let Some(mut server) = server {
            server.shutdown();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Registry {
    fn handle(&self, request: Message) -> Message {
        match request {
            Message::Register { node } => self.register(node),
            Message::Joined { id } => match self.entries.lock().get_mut(&id) {
                Some(entry) => {
                    entry.joined = true;
                    log::info!("discovery: {} joined", entry.node);
                    Message::Ack
                }
                None => error(RemoteCode::NotFound, format!("{id} is not registered")),
            },
            Message::Deregister { node } => {
                let mut entries = self.entries.lock();
                if entries
                    .get(&node.id)
                    .is_some_and(|e| e.node.addr == node.addr)
                {
                    entries.remove(&node.id);
                    log::info!("discovery: {node} left");
                }
                Message::Ack
            }
            Message::Alive { node } => self.alive(node),
            Message::RandomPeer => Message::Peer {
                peer: self.random_joined(),
            },
            Message::ListPeers => Message::Peers {
                peers: self.joined(),
            },
            other => error(
                RemoteCode::BadRequest,
                format!("discovery does not answer {}", other.name()),
            ),
        }
    }

    fn register(&self, node: NodeInfo) -> Message {
        let mut entries = self.entries.lock();
        let now = Instant::now();
        entries.retain(|_, e| e.joined || now.duration_since(e.since) < JOIN_TIMEOUT);
        // While the first node of the overlay is still joining, a second one would find no
        // peer and start an overlay of its own: it waits instead.
        let any_joined = entries.values().any(|e| e.joined);
        let another_joining = entries.values().any(|e| !e.joined && e.node.id != node.id);
        if !any_joined && another_joining {
            return error(
                RemoteCode::Busy,
                "the first node is still joining: try again shortly".into(),
            );
        }
        let holder = entries.get(&node.id).map(|e| e.node);
        if let Some(held) = holder.filter(|held| held.addr != node.addr) {
            // A holder that crashed is replaced at once, so that a restarted node (on a new
            // port) rejoins without waiting for the others to notice the crash. The lock is
            // not held while asking.
            drop(entries);
            if self.is_alive(held) {
                return error(
                    RemoteCode::IdInUse,
                    format!("{} is already used by {}", node.id, held.addr),
                );
            }
            log::info!("discovery: {held} is gone; its id goes to {node}");
            entries = self.entries.lock();
            if entries.get(&node.id).is_some_and(|e| e.node != held) {
                return error(
                    RemoteCode::IdInUse,
                    format!("{} was just claimed by another node", node.id),
                );
            }
        }
        // New, repeated by the same joining node, or claimed again from the holder's own
        // address (the holder itself, restarted).
        entries.insert(
            node.id,
            Entry {
                node,
                joined: false,
                since: now,
            },
        );
        drop(entries);
        log::info!("discovery: {node} is joining");
        Message::Peer {
            peer: self.random_joined(),
        }
    }

    /// A joined node says it is alive: known, or relearnt after discovery restarted.
    /// Whether `node` answers a ping as itself.
    fn is_alive(&self, node: NodeInfo) -> bool {
        let reply = self
            .pool
            .call_within(node.addr, &Message::Ping, PING_TIMEOUT);
        matches!(reply, Ok(Message::Pong { node: n }) if n.id == node.id)
    }

    fn alive(&self, node: NodeInfo) -> Message {
        let mut entries = self.entries.lock();
        match entries.get(&node.id) {
            Some(e) if e.node.addr != node.addr => error(
                RemoteCode::IdInUse,
                format!("{} is already used by {}", node.id, e.node.addr),
            ),
            _ => {
                let entry = Entry {
                    node,
                    joined: true,
                    since: Instant::now(),
                };
                if entries.insert(node.id, entry).is_none() {
                    log::info!("discovery: relearnt {node}");
                }
                Message::Ack
            }
        }
    }

    fn joined(&self) -> Vec<NodeInfo> {
        let entries = self.entries.lock();
        entries
            .values()
            .filter(|e| e.joined)
            .map(|e| e.node)
            .collect()
    }

    fn random_joined(&self) -> Option<NodeInfo> {
        let joined = self.joined();
        let i = self.rng.lock().below(joined.len());
        joined.get(i).copied()
    }
}

fn error(code: RemoteCode, message: String) -> Message {
    Message::Error { code, message }
}

/// Talks to a discovery node from a node or a client.
pub(crate) struct DiscoveryLink<'a> {
    pub pool: &'a Pool,
    pub addr: SocketAddr,
}

impl DiscoveryLink<'_> {
    /// Registers `node` as joining; returns a joined peer to join through, if any.
    pub fn register(&self, node: NodeInfo) -> Result<Option<NodeInfo>> {
        match self.pool.call(self.addr, &Message::Register { node }) {
            Ok(Message::Peer { peer }) => Ok(peer),
            Ok(other) => Err(self.unexpected("Peer", &other)),
            Err(Error::Refused {
                code: RemoteCode::IdInUse,
                ..
            }) => Err(Error::IdInUse(node.id)),
            Err(e) => Err(e),
        }
    }

    /// Registers `node`, waiting (up to [`JOIN_TIMEOUT`]) while the overlay's first node is
    /// still joining.
    pub fn register_patiently(&self, node: NodeInfo) -> Result<Option<NodeInfo>> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            match self.register(node) {
                Err(Error::Refused {
                    code: RemoteCode::Busy,
                    ..
                }) if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Tells discovery that `id` has finished joining.
    pub fn joined(&self, id: Id) -> Result<()> {
        self.ack(&Message::Joined { id })
    }

    /// Tells discovery that `node` is alive and joined.
    pub fn alive(&self, node: NodeInfo) -> Result<()> {
        self.ack(&Message::Alive { node })
    }

    /// Tells discovery that `node` has left.
    pub fn deregister(&self, node: NodeInfo) -> Result<()> {
        self.ack(&Message::Deregister { node })
    }

    /// A random joined peer, if any.
    pub fn random_peer(&self) -> Result<Option<NodeInfo>> {
        match self.pool.call(self.addr, &Message::RandomPeer)? {
            Message::Peer { peer } => Ok(peer),
            other => Err(self.unexpected("Peer", &other)),
        }
    }

    /// Every joined peer, sorted by id.
    pub fn peers(&self) -> Result<Vec<NodeInfo>> {
        match self.pool.call(self.addr, &Message::ListPeers)? {
            Message::Peers { peers } => Ok(peers),
            other => Err(self.unexpected("Peers", &other)),
        }
    }

    fn ack(&self, request: &Message) -> Result<()> {
        match self.pool.call(self.addr, request)? {
            Message::Ack => Ok(()),
            other => Err(self.unexpected("Ack", &other)),
        }
    }

    fn unexpected(&self, wanted: &str, got: &Message) -> Error {
        Error::unexpected_reply(self.addr, wanted, got)
    }
}
