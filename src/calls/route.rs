//! Routing requests: whom to ask, how long to wait, and which failures mean "route around".

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Result;
use crate::id::Key;
use crate::net::{NetConfig, Pool};
use crate::protocol::membership::{route_answer, route_request};

pub(crate) use crate::protocol::membership::{is_hop_failure, RouteEnd, Target};

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
    let (request, wait) = route_request(key, hops_left, wait);
    let reply = pool.call_within(addr, &request, wait)?;
    route_answer(addr, hops_left, reply)
}

/// The most time a lookup takes: twice the I/O timeout, so that a next hop that does not
/// answer within the I/O timeout leaves as long again to route around it.
pub(crate) fn route_budget(net: &NetConfig) -> Duration {
    net.io_timeout * 2
}
