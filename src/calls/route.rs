//! Routing requests: whom to ask, how long to wait, and which failures mean "route around".

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::net::{NetConfig, Pool};
use crate::wire::{Message, RemoteCode};

/// Whom to ask next: an address, and the id when known (the first hop of a join through a
/// known address has none yet).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub id: Option<Id>,
    pub addr: SocketAddr,
}

impl From<NodeInfo> for Target {
    fn from(n: NodeInfo) -> Self {
        Target {
            id: Some(n.id),
            addr: n.addr,
        }
    }
}

/// A route's answer: the path from the node asked to the responsible one, and the other
/// nodes keeping copies of the key as the responsible one sees them.
pub(crate) type RouteEnd = (Vec<NodeInfo>, Vec<NodeInfo>);

/// Routes `key` through the node at `addr`, which may take `hops_left` more hops, waiting at
/// most `wait` for the answer: the path from that node to the responsible one, and the other
/// holders of the key.
pub(crate) fn ask_route(
    pool: &Pool,
    addr: SocketAddr,
    key: Key,
    hops_left: u8,
    wait: Duration,
) -> Result<RouteEnd> {
    // Whole milliseconds: successive lookups then wait alike, and the socket's timeout is
    // set once rather than before every request.
    let wait = Duration::from_millis(wait.as_millis().try_into().unwrap_or(u64::MAX));
    // The receiver gets less time than we wait, so that a failure further on reaches us as
    // its answer (Unroutable), in time to try another way, rather than as our own timeout.
    let budget = wait * 7 / 8;
    let request = Message::Route {
        key,
        hops_left,
        budget_ms: u32::try_from(budget.as_millis()).unwrap_or(u32::MAX),
    };
    match pool.call_within(addr, &request, wait)? {
        Message::Routed { path, replicas }
            if !path.is_empty() && path.len() <= usize::from(hops_left) + 1 =>
        {
            Ok((path, replicas))
        }
        Message::Routed { path, .. } => Err(Error::Protocol {
            addr,
            what: format!("a route of {} nodes, {hops_left} hops allowed", path.len()),
        }),
        other => Err(Error::unexpected_reply(addr, "Routed", &other)),
    }
}

/// The most time a lookup takes: twice the I/O timeout, so that a next hop that does not
/// answer within the I/O timeout leaves as long again to route around it.
pub(crate) fn route_budget(net: &NetConfig) -> Duration {
    net.io_timeout * 2
}

/// Whether a failed step means "route around this node" rather than "give up".
pub(crate) fn is_hop_failure(e: &Error) -> bool {
    match e {
        Error::Unreachable { .. }
        | Error::Timeout { .. }
        | Error::Wire { .. }
        | Error::Protocol { .. } => true,
        // Unroutable: the node answered; a node after it failed, and it tried other ways.
        Error::Refused { code, .. } => {
            !matches!(code, RemoteCode::IdInUse | RemoteCode::Unroutable)
        }
        _ => false,
    }
}
