//! The discovery node: tracks the live peers, refuses an identifier already in use, and hands
//! a random joined peer to newcomers and clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::compact::Tracker;
use crate::error::Result;
use crate::id::{Id, NodeInfo};
use crate::net::{Counters, Handler, NetConfig, Pool, Security, Server};
use crate::protocol::registry::{Heartbeat, Registration, Registry};
use crate::rng::Rng;
use crate::wire::{Message, RemoteCode};

/// A running discovery node. Dropping it shuts it down.
///
/// `Send + Sync`: share it by reference or in an `Arc`.
pub struct Discovery {
    registrar: Arc<Registrar>,
    server: Mutex<Option<Server>>,
    local_addr: SocketAddr,
    net: NetConfig,
    /// The tracker seed's tracker, when started.
    tracker: Mutex<Option<Tracker>>,
}

/// The registry behind the server: the pure rules, and what carrying them out needs.
struct Registrar {
    registry: Mutex<Registry>,
    rng: Mutex<Rng>,
    /// To ask a registered node whether it is still alive when its id is claimed again.
    pool: Pool,
}

/// How long discovery waits for a registered node to answer a ping when its id is claimed
/// again: a live node on loopback or a LAN answers in well under this.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// The connection limit of a discovery node started with default settings: every node of
/// the overlay keeps a connection to it between its reminders, so it serves many more than
/// a node does (a node's default is 2,048), within a 20,000-descriptor process limit.
pub const DISCOVERY_MAX_CONNECTIONS: usize = 8192;

impl Discovery {
    /// Starts a discovery node on `addr` (port 0: the OS chooses) with default socket settings
    /// (but [`DISCOVERY_MAX_CONNECTIONS`]), admitting holders of the cluster key given (or
    /// anyone, with [`Security::Insecure`]).
    ///
    /// [`Security::Insecure`]: crate::Security::Insecure
    pub fn start(addr: SocketAddr, security: impl Into<Security>) -> Result<Discovery> {
        let net = NetConfig {
            max_connections: DISCOVERY_MAX_CONNECTIONS,
            ..NetConfig::with(security)
        };
        Discovery::start_with(addr, net)
    }

    /// Starts a discovery node on `addr` with the given socket settings.
    pub fn start_with(addr: SocketAddr, net: NetConfig) -> Result<Discovery> {
        let counters = Arc::new(Counters::default());
        let registrar = Arc::new(Registrar {
            registry: Mutex::new(Registry::new()),
            rng: Mutex::new(Rng::from_entropy()),
            pool: Pool::new(net.clone(), Arc::clone(&counters)),
        });
        let listener = Server::bind(addr)?;
        let handler: Handler = {
            let registrar = Arc::clone(&registrar);
            Arc::new(move |request, _peer| registrar.handle(request))
        };
        let server = Server::start("pastry-discovery", listener, net.clone(), handler, counters)?;
        registrar.pool.read_through(server.reactor(), None);
        let local_addr = server.local_addr();
        log::info!("discovery listening on {local_addr}");
        Ok(Discovery {
            registrar,
            server: Mutex::new(Some(server)),
            local_addr,
            net,
            tracker: Mutex::new(None),
        })
    }

    /// Serves the tracker seed's tracker on `addr` ([`crate::compact`]): for a 32-bit key, the
    /// port of the compact listener of the node responsible for it. Plaintext and
    /// unauthenticated, for programs written to that protocol. Returns the address it
    /// listens on; replaces a tracker started before.
    pub fn start_tracker(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let live = {
            let registrar = Arc::clone(&self.registrar);
            Arc::new(move || registrar.registry.lock().joined_peers())
        };
        let ask = {
            let registrar = Arc::clone(&self.registrar);
            Arc::new(move |node: NodeInfo| {
                match registrar.pool.call(node.addr, &Message::CompactPort) {
                    Ok(Message::CompactPortIs { port }) => Some(u16::try_from(port).unwrap_or(0)),
                    Ok(other) => {
                        log::debug!("tracker: {node} answered {} to CompactPort", other.name());
                        None
                    }
                    Err(e) => {
                        log::debug!("tracker: {node} did not say its compact port: {e}");
                        None
                    }
                }
            })
        };
        let tracker = Tracker::start(addr, &self.net, live, ask)?;
        let local = tracker.local_addr();
        log::info!("discovery: tracker on {local}");
        *self.tracker.lock() = Some(tracker);
        Ok(local)
    }

    /// Where the tracker listens, if started.
    pub fn tracker_addr(&self) -> Option<SocketAddr> {
        self.tracker.lock().as_ref().map(Tracker::local_addr)
    }

    /// The address discovery listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peers that have finished joining, sorted by id.
    pub fn peers(&self) -> Vec<NodeInfo> {
        self.registrar.registry.lock().joined_peers()
    }

    /// Stops the server and joins its threads. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        drop(self.tracker.lock().take());
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

impl Registrar {
    /// Answers one request: the registry decides, this carries out what it asks.
    fn handle(&self, request: Message) -> Message {
        let now = Instant::now();
        match request {
            Message::Register { node } => self.register(node, now),
            Message::Joined { id } => match self.registry.lock().joined(id) {
                Some(node) => {
                    log::info!("discovery: {node} joined");
                    Message::Ack
                }
                None => error(RemoteCode::NotFound, format!("{id} is not registered")),
            },
            Message::Deregister { node } => {
                if self.registry.lock().deregister(node) {
                    log::info!("discovery: {node} left");
                }
                Message::Ack
            }
            // Checked with the node itself: the reporter may only be cut off from it.
            Message::Suspect { node } => {
                let held = self.registry.lock().holds(node);
                if held && !self.is_alive(node) && self.registry.lock().deregister(node) {
                    log::info!("discovery: {node} is dead");
                }
                Message::Ack
            }
            Message::Alive { node } => match self.registry.lock().heartbeat(node, now) {
                Heartbeat::Noted => Message::Ack,
                Heartbeat::HeldBy(held) => in_use(node.id, held),
            },
            Message::RandomPeer => Message::Peer {
                peer: self.random_joined(),
            },
            Message::ListPeers => Message::Peers {
                peers: self.registry.lock().joined_peers(),
            },
            other => error(
                RemoteCode::BadRequest,
                format!("discovery does not answer {}", other.name()),
            ),
        }
    }

    fn register(&self, node: NodeInfo, now: Instant) -> Message {
        let decided = self.registry.lock().register(node, now);
        let accepted = match decided {
            Registration::Accepted => true,
            Registration::FirstStillJoining => {
                return error(
                    RemoteCode::Busy,
                    "the first node is still joining: try again shortly".into(),
                )
            }
            // A holder that crashed is replaced at once, so that a restarted node (on a new
            // port) rejoins without waiting for the others to notice the crash. The lock is
            // not held while asking.
            Registration::AskHolder(held) if self.is_alive(held) => return in_use(node.id, held),
            Registration::AskHolder(held) => {
                log::info!("discovery: {held} is gone; its id goes to {node}");
                self.registry.lock().holder_gone(node, held, now)
            }
        };
        if !accepted {
            return error(
                RemoteCode::IdInUse,
                format!("{} was just claimed by another node", node.id),
            );
        }
        log::info!("discovery: {node} is joining");
        Message::Peer {
            peer: self.random_joined(),
        }
    }

    /// Whether `node` answers a ping as itself.
    fn is_alive(&self, node: NodeInfo) -> bool {
        let reply = self
            .pool
            .call_within(node.addr, &Message::Ping, PING_TIMEOUT);
        matches!(reply, Ok(Message::Pong { node: n }) if n.id == node.id)
    }

    fn random_joined(&self) -> Option<NodeInfo> {
        let pick = self.rng.lock().next_u64();
        self.registry.lock().joined_peer(pick)
    }
}

fn in_use(id: Id, held: NodeInfo) -> Message {
    error(
        RemoteCode::IdInUse,
        format!("{id} is already used by {}", held.addr),
    )
}

fn error(code: RemoteCode, message: String) -> Message {
    Message::Error { code, message }
}
