//! The tracker, served beside a discovery node: the port of the compact listener of the node
//! responsible for a 32-bit key. Responsibility is decided among the nodes discovery knows
//! to have joined; the port is asked of that node once and remembered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use super::format::{name_of, TRACKER_LEN};
use super::server::{Answer, PlainServer, Timeouts};
use crate::error::Result;
use crate::id::{key_of, responsible, NodeInfo};
use crate::net::NetConfig;

/// Where the tracker learns the live nodes: discovery's registry.
pub(crate) type LiveNodes = Arc<dyn Fn() -> Vec<NodeInfo> + Send + Sync>;

/// Asks a node the port of its compact listener (0: none); `None` if it does not answer.
pub(crate) type AskPort = Arc<dyn Fn(NodeInfo) -> Option<u16> + Send + Sync>;

/// A running tracker; stops when dropped.
pub(crate) struct Tracker {
    server: PlainServer,
}

impl Tracker {
    /// Listens on `addr`; learns the live nodes from `live` and their ports from `ask`.
    pub fn start(
        addr: SocketAddr,
        net: &NetConfig,
        live: LiveNodes,
        ask: AskPort,
    ) -> Result<Tracker> {
        let ports: Mutex<HashMap<NodeInfo, u16>> = Mutex::default();
        let server = PlainServer::start(
            "pastry-tracker",
            addr,
            Timeouts::of(net),
            Arc::new(move |bytes: &[u8; TRACKER_LEN]| {
                let key = u32::from_be_bytes(*bytes);
                let port = port_for(key, &live(), &*ask, &ports);
                Answer::Reply(u32::from(port).to_be_bytes())
            }),
        )?;
        Ok(Tracker { server })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// The compact port of the node responsible for `key` among `live`; 0 if there is none, it
/// has no compact listener, or it does not answer.
fn port_for(
    key: u32,
    live: &[NodeInfo],
    ask: &(dyn Fn(NodeInfo) -> Option<u16> + Send + Sync),
    ports: &Mutex<HashMap<NodeInfo, u16>>,
) -> u16 {
    let ring_key = key_of(&name_of(key));
    let Some(id) = responsible(ring_key, live.iter().map(|n| n.id)) else {
        return 0;
    };
    let Some(node) = live.iter().copied().find(|n| n.id == id) else {
        return 0;
    };
    if let Some(port) = ports.lock().get(&node) {
        return *port;
    }
    let Some(port) = ask(node) else {
        return 0;
    };
    let mut ports = ports.lock();
    // Forgets nodes that are gone, so that the map stays the size of the overlay.
    ports.retain(|n, _| live.contains(n));
    ports.insert(node, port);
    port
}
