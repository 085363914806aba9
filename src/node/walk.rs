//! Routing over the network. Lookups are forwarded hop by hop (recursive, [`Inner::route_on`]);
//! a join is walked by the joiner, which asks each node on the way for its next hop and the
//! state it needs (iterative, [`walk`]).

use std::time::{Duration, Instant};

use super::Inner;
use crate::calls::route::{ask_route, is_hop_failure, RouteEnd, Target};
use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};

/// One node's answer: itself, where to go next (itself when it is responsible), and whatever
/// else the step collects.
pub(crate) struct Visit<T> {
    pub node: NodeInfo,
    pub next: NodeInfo,
    pub extra: T,
}

/// How many failed next hops one node routes around before it gives up on a lookup.
const MAX_DETOURS: usize = 16;

/// Below this much time to wait, a node does not ask another: the answer could not come back
/// in time.
const MIN_WAIT: Duration = Duration::from_millis(5);

impl Inner {
    /// The route from this node to the one responsible for `key` (this node first), taking at
    /// most `hops_left` hops and answered by `deadline`, with the other holders of the key.
    ///
    /// Recursive: the next hop is asked for the rest of the route. A node thus talks only to
    /// the nodes in its own tables, whose pooled connections serve every lookup; an origin
    /// asking every hop itself would connect to every node of the network in turn. It cannot
    /// deadlock: every call gets a connection and a thread of its own at the callee (or a
    /// Busy refusal, never a queue), and `hops_left` bounds every chain of calls. A next hop
    /// that fails is reported (it may be dead) and routed around, here, by the node whose
    /// table holds it.
    pub(super) fn route_on(&self, key: Key, hops_left: u8, deadline: Instant) -> Result<RouteEnd> {
        let started = Instant::now();
        let mut exclude: Vec<Id> = Vec::new();
        let mut last_failure = None;
        for _ in 0..=MAX_DETOURS {
            let next = self.state.read().route(key, |id| exclude.contains(&id));
            if next.id == self.me.id {
                return Ok((vec![self.me], self.other_replicas(key)));
            }
            if hops_left == 0 {
                return Err(Error::RouteTooLong {
                    key,
                    hops: self.config.max_hops,
                });
            }
            // Half of what is left: the other half is for routing around this hop if it
            // fails.
            let wait = deadline.saturating_duration_since(Instant::now()) / 2;
            if wait < MIN_WAIT {
                // Out of time: the route has waited this long on the nodes after this one.
                return Err(Error::Timeout {
                    addr: next.addr,
                    after: started.elapsed(),
                });
            }
            match ask_route(&self.pool, next.addr, key, hops_left - 1, wait) {
                Ok((path, replicas)) => {
                    let mut full = Vec::with_capacity(path.len() + 1);
                    full.push(self.me);
                    full.extend(path);
                    return Ok((full, replicas));
                }
                Err(e) if is_hop_failure(&e) => {
                    self.suspect(next.into(), &e);
                    exclude.push(next.id);
                    last_failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_failure.unwrap_or(Error::RouteTooLong {
            key,
            hops: self.config.max_hops,
        }))
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
