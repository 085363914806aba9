//! Iterative routing: the origin asks each hop for the next one.
//!
//! Chosen over recursive forwarding because no server thread ever waits on another node, so a
//! network whose every connection thread is busy cannot deadlock, and because the origin gets
//! the route for free and can route around a hop that does not answer.

use std::net::SocketAddr;

use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::net::Pool;
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

/// One node's answer: itself, where to go next (itself when it is responsible), and whatever
/// else the step collects.
pub(crate) struct Visit<T> {
    pub node: NodeInfo,
    pub next: NodeInfo,
    pub extra: T,
}

/// Asks `target` over `pool` for the next hop towards `key`, leaving out `exclude`.
pub(crate) fn ask_next_hop(
    pool: &Pool,
    target: Target,
    key: Key,
    exclude: &[Id],
) -> Result<Visit<()>> {
    let request = Message::NextHop {
        key,
        exclude: exclude.to_vec(),
    };
    match pool.call(target.addr, &request)? {
        Message::Hop { node, next } => Ok(Visit {
            node,
            next,
            extra: (),
        }),
        other => Err(Error::unexpected_reply(target.addr, "Hop", &other)),
    }
}

/// Whether a failed step means "route around this node" rather than "give up".
pub(crate) fn is_hop_failure(e: &Error) -> bool {
    match e {
        Error::Unreachable { .. }
        | Error::Timeout { .. }
        | Error::Wire { .. }
        | Error::Protocol { .. } => true,
        Error::Refused { code, .. } => *code != RemoteCode::IdInUse,
        _ => false,
    }
}

/// Walks from `start` towards the node responsible for `key`, asking each node with `step`.
///
/// A node that fails is excluded and its predecessor asked again; the walk fails only when the
/// first node fails or the route exceeds `max_hops`. `on_failure` hears of every node that
/// failed (the evidence a node uses to drop it from its tables).
pub(crate) fn walk<T>(
    key: Key,
    start: Target,
    max_hops: usize,
    mut step: impl FnMut(Target, &[Id]) -> Result<Visit<T>>,
    mut on_failure: impl FnMut(Target, &Error),
) -> Result<Vec<Visit<T>>> {
    let mut path: Vec<Visit<T>> = Vec::new();
    let mut exclude: Vec<Id> = Vec::new();
    let mut target = start;
    // Every step either extends the path or excludes a node, so this bounds the work.
    let budget = 4 * max_hops + 8;
    for _ in 0..budget {
        match step(target, &exclude) {
            Ok(visit) => {
                let done = visit.next.id == visit.node.id;
                target = visit.next.into();
                path.push(visit);
                if done {
                    return Ok(path);
                }
                if path.len() > max_hops {
                    break;
                }
            }
            Err(e) if is_hop_failure(&e) && !path.is_empty() => {
                on_failure(target, &e);
                if let Some(id) = target.id {
                    exclude.push(id);
                }
                // Ask the previous node again, now without the failed one.
                let previous = path.pop().map(|v| v.node);
                target = previous.map(Target::from).unwrap_or(start);
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::RouteTooLong {
        key,
        hops: max_hops,
    })
}
