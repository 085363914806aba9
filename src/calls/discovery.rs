//! Requests to the discovery node, as a node or a client makes them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::id::{Id, NodeInfo};
use crate::identity::Certificate;
use crate::net::Pool;
use crate::protocol::registry::JOIN_TIMEOUT;
use crate::wire::{Message, RemoteCode};

/// What a registration gives: a joined peer to join through (none for the first node), and
/// the node's certificate.
pub(crate) type Admission = (Option<NodeInfo>, Box<Certificate>);

/// Talks to a discovery node from a node or a client.
pub(crate) struct DiscoveryLink<'a> {
    pub pool: &'a Pool,
    pub addr: SocketAddr,
}

impl DiscoveryLink<'_> {
    /// Registers `node` as joining; returns a joined peer to join through, if any, and the
    /// node's certificate.
    pub fn register(&self, node: NodeInfo) -> Result<Admission> {
        match self.pool.call(self.addr, &Message::Register { node }) {
            Ok(Message::Admitted { peer, cert }) => Ok((peer, cert)),
            Ok(other) => Err(self.unexpected("Admitted", &other)),
            Err(Error::Refused {
                code: RemoteCode::IdInUse,
                ..
            }) => Err(Error::IdInUse(node.id)),
            Err(e) => Err(e),
        }
    }

    /// Registers `node`, asking again (for up to [`JOIN_TIMEOUT`]) while discovery says it is
    /// busy: the overlay's first node is still joining, or the check of `node`'s address got
    /// no answer in time (a loaded machine).
    pub fn register_patiently(&self, node: NodeInfo) -> Result<Admission> {
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

    /// Tells discovery that `node` is alive and joined; returns its renewed certificate.
    pub fn alive(&self, node: NodeInfo) -> Result<Box<Certificate>> {
        match self.pool.call(self.addr, &Message::Alive { node })? {
            Message::Certified { cert } => Ok(cert),
            other => Err(self.unexpected("Certified", &other)),
        }
    }

    /// Tells discovery that `node` has left.
    pub fn deregister(&self, node: NodeInfo) -> Result<()> {
        self.ack(&Message::Deregister { node })
    }

    /// Reports that `node` did not answer this node (discovery checks with it).
    pub fn suspect(&self, node: NodeInfo) -> Result<()> {
        self.ack(&Message::Suspect { node })
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
