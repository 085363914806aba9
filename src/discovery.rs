//! The discovery node: tracks the live peers, refuses an identifier already in use, and hands
//! a random joined peer to newcomers and clients.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::compact::Tracker;
use crate::error::{Error, Result};
use crate::id::{Id, NodeInfo};
use crate::identity::{
    Certificate, Credentials, Identity, PeerIdentity, PublicKey, CERTIFICATE_VALIDITY,
};
use crate::net::{unix_ms, Counters, Handler, NetConfig, Pool, Security, Server, Session};
use crate::protocol::registry::{Claim, Heartbeat, Registration, Registry};
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
    /// The authority key that signs certificates, and how introductions are judged.
    credentials: Arc<Credentials>,
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

    /// Starts a discovery node on `addr` with the given socket settings, and a new
    /// authority key of its own, kept in memory: the certificates it issues are believed
    /// only while it runs. [`Discovery::start_with_authority`] keeps one across restarts.
    pub fn start_with(addr: SocketAddr, net: NetConfig) -> Result<Discovery> {
        Discovery::start_with_authority(addr, net, Identity::generate()?)
    }

    /// Starts a discovery node on `addr` with the given socket settings, signing node
    /// certificates with `authority` (see [`Identity::from_file`]). The nodes it certifies
    /// trust this key from then on: a discovery restarted with the same key goes on
    /// certifying them, one with another key is refused by them.
    pub fn start_with_authority(
        addr: SocketAddr,
        net: NetConfig,
        authority: Identity,
    ) -> Result<Discovery> {
        let counters = Arc::new(Counters::default());
        let credentials = Arc::new(Credentials::authority(authority));
        let registrar = Arc::new(Registrar {
            credentials: Arc::clone(&credentials),
            registry: Mutex::new(Registry::new()),
            rng: Mutex::new(Rng::from_entropy()),
            pool: Pool::new(net.clone(), Arc::clone(&counters)),
        });
        let listener = Server::bind(addr)?;
        let handler: Handler = {
            let registrar = Arc::clone(&registrar);
            Arc::new(move |request, session: &mut Session<'_>| {
                registrar.handle(request, session.peer())
            })
        };
        let server = Server::start(
            "pastry-discovery",
            listener,
            net.clone(),
            handler,
            counters,
            Some(credentials),
        )?;
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
            Arc::new(move || registrar.registry.lock().joined_peers(Instant::now()))
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

    /// The authority key with which it signs node certificates.
    pub fn authority(&self) -> PublicKey {
        self.registrar.credentials.public()
    }

    /// The address discovery listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The peers that have finished joining, sorted by id.
    pub fn peers(&self) -> Vec<NodeInfo> {
        self.registrar.registry.lock().joined_peers(Instant::now())
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
    /// Answers one request from `peer` (who its connection proved to be, if anyone): the
    /// registry decides, this carries out what it asks.
    fn handle(&self, request: Message, peer: Option<PeerIdentity>) -> Message {
        let now = Instant::now();
        match request {
            Message::RandomPeer => Message::Peer {
                peer: self.random_joined(now),
            },
            Message::ListPeers => Message::Peers {
                peers: self.registry.lock().joined_peers(now),
            },
            request => match peer {
                Some(peer) => self.handle_node(request, peer, now),
                None => error(
                    RemoteCode::BadRequest,
                    format!(
                        "{} needs a node that proved its key on the connection",
                        request.name()
                    ),
                ),
            },
        }
    }

    /// Answers a request only a node may send, from `peer`, and about itself only.
    fn handle_node(&self, request: Message, peer: PeerIdentity, now: Instant) -> Message {
        let about = match &request {
            Message::Register { node } | Message::Deregister { node } | Message::Alive { node } => {
                Some(*node)
            }
            Message::Joined { id } => Some(NodeInfo {
                id: *id,
                addr: peer.node.addr,
            }),
            _ => None,
        };
        if let Some(node) = about {
            if node != peer.node {
                return self.refuse(peer, &request, "a node speaks for itself only");
            }
        }
        match request {
            Message::Register { node } => self.register(node, peer, now),
            Message::Joined { id } => match self.registry.lock().joined(id, peer.key, now) {
                Ok(node) => {
                    log::info!("discovery: {node} joined");
                    Message::Ack
                }
                Err(Claim::Unknown) => {
                    error(RemoteCode::NotFound, format!("{id} is not registered"))
                }
                Err(Claim::OtherKey) => self.refuse(peer, &request, "the id is another key's"),
            },
            Message::Deregister { node } => {
                if self.registry.lock().deregister(node, peer.key).is_ok() {
                    log::info!("discovery: {node} left");
                }
                Message::Ack
            }
            // Checked with the node itself: the reporter may only be cut off from it.
            Message::Suspect { node } => {
                let held = self.registry.lock().holds(node);
                if held && !self.answers(node, None) && self.registry.lock().deregister_dead(node) {
                    log::info!("discovery: {node} is dead");
                }
                Message::Ack
            }
            Message::Alive { node } => self.heartbeat(node, peer, now),
            other => error(
                RemoteCode::BadRequest,
                format!("discovery does not answer {}", other.name()),
            ),
        }
    }

    fn register(&self, node: NodeInfo, peer: PeerIdentity, now: Instant) -> Message {
        match self.ping(node, Some(peer.key)) {
            Ping::Itself => {}
            // A loaded machine, not a lie: the node asks again (`register_patiently`).
            Ping::Late => {
                return error(
                    RemoteCode::Busy,
                    format!(
                        "{} did not answer discovery's check of the address within {} ms: \
                         try again",
                        node.addr,
                        PING_TIMEOUT.as_millis()
                    ),
                )
            }
            Ping::Other | Ping::Nothing => {
                return self.refuse(
                    peer,
                    &Message::Register { node },
                    "nothing at the address it claims answers with its key",
                )
            }
        }
        let decided = self.registry.lock().register(node, peer.key, now);
        let accepted = match decided {
            Registration::Accepted => true,
            Registration::FirstStillJoining => {
                return error(
                    RemoteCode::Busy,
                    "the first node is still joining: try again shortly".into(),
                )
            }
            // A holder that crashed is replaced at once, so that a node restarted without
            // its identity rejoins without waiting for its old entry to expire. The lock is
            // not held while asking.
            Registration::AskHolder(held, key) if self.answers(held, Some(key)) => {
                return in_use(node.id, held)
            }
            Registration::AskHolder(held, _) => {
                log::info!("discovery: {held} is gone; its id goes to {node}");
                self.registry.lock().holder_gone(node, peer.key, held, now)
            }
        };
        if !accepted {
            return error(
                RemoteCode::IdInUse,
                format!("{} was just claimed by another node", node.id),
            );
        }
        log::info!("discovery: {node} is joining");
        Message::Admitted {
            peer: self.random_joined(now),
            cert: self.certify(node, peer.key),
        }
    }

    fn heartbeat(&self, node: NodeInfo, peer: PeerIdentity, now: Instant) -> Message {
        // An id relearnt (after discovery restarted, or its entry expired) is bound to the
        // key that answers at its address, as at a registration.
        let known = self.registry.lock().is_held_by(node, peer.key);
        if !known && !self.answers(node, Some(peer.key)) {
            return self.refuse(
                peer,
                &Message::Alive { node },
                "nothing at the address it claims answers with its key",
            );
        }
        match self.registry.lock().heartbeat(node, peer.key, now) {
            Heartbeat::Noted => Message::Certified {
                cert: self.certify(node, peer.key),
            },
            Heartbeat::HeldBy(held) => in_use(node.id, held),
        }
    }

    /// A certificate of `node` holding `key`, valid for [`CERTIFICATE_VALIDITY`].
    fn certify(&self, node: NodeInfo, key: PublicKey) -> Box<Certificate> {
        let expires = unix_ms().saturating_add(CERTIFICATE_VALIDITY.as_millis() as u64);
        Box::new(Certificate::issue(
            self.credentials.identity(),
            node,
            key,
            expires,
        ))
    }

    /// Refuses `request` from `peer` for `why`, logged once per key and kind of request.
    fn refuse(&self, peer: PeerIdentity, request: &Message, why: &str) -> Message {
        self.credentials.note_refusal(peer.key, request.name(), why);
        error(
            RemoteCode::BadRequest,
            format!("{} refused: {why}", request.name()),
        )
    }

    /// Whether `node` answers a ping at its address as itself (with `key`, when given).
    fn answers(&self, node: NodeInfo, key: Option<PublicKey>) -> bool {
        self.ping(node, key) == Ping::Itself
    }

    /// What a ping at `node`'s address finds (answering as itself: with `key`, when given).
    fn ping(&self, node: NodeInfo, key: Option<PublicKey>) -> Ping {
        let reply = self
            .pool
            .call_within(node.addr, &Message::Ping, PING_TIMEOUT);
        match reply {
            Ok(Message::Pong { node: n, key: k })
                if n.id == node.id && key.is_none_or(|key| key == k) =>
            {
                Ping::Itself
            }
            Ok(_) => Ping::Other,
            Err(Error::Timeout { .. } | Error::Local { .. }) => Ping::Late,
            Err(Error::Unreachable { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Ping::Late
            }
            Err(_) => Ping::Nothing,
        }
    }

    fn random_joined(&self, now: Instant) -> Option<NodeInfo> {
        let pick = self.rng.lock().next_u64();
        self.registry.lock().joined_peer(pick, now)
    }
}

/// What a ping at a node's address found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ping {
    /// The node, with the key asked for.
    Itself,
    /// Something else answered: another node, or another key.
    Other,
    /// Nothing: the connection was refused or failed.
    Nothing,
    /// No answer in time (or this process out of a resource): the node may only be slow.
    Late,
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
