//! Lookups, forwarded hop by hop (recursive): each node asks its next hop for the rest of the
//! route. A node thus talks only to the nodes in its own tables, whose connections serve
//! every lookup; an origin asking every hop itself would connect to every node of the network
//! in turn. A next hop that fails is reported (it may be dead) and routed around, here, by
//! the node whose table holds it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Effect, Membership, OpId, Target, Token, Waiting};
use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::wire::{Message, RemoteCode};

/// A route's answer: the path from the node asked to the responsible one, and the other
/// nodes keeping copies of the key as the responsible one sees them.
pub type RouteEnd = (Vec<NodeInfo>, Vec<NodeInfo>);

/// How many failed next hops one node routes around before it gives up on a lookup.
const MAX_DETOURS: usize = 16;

/// Below this much time to wait, a node does not ask another: the answer could not come back
/// in time.
const MIN_WAIT: Duration = Duration::from_millis(5);

/// Who waits for a route's end.
#[derive(Clone, Copy, Debug)]
pub(super) enum RouteFor {
    /// The node that asked this one (a request being served).
    Peer(Token),
    /// This node's own lookup.
    Api(OpId),
}

/// A route being forwarded from this node.
#[derive(Debug)]
pub(super) struct RouteTask {
    key: Key,
    hops_left: u8,
    deadline: Instant,
    started: Instant,
    /// Next hops that failed.
    exclude: Vec<Id>,
    last_failure: Option<Error>,
    to: RouteFor,
}

impl Membership {
    /// Routes `key` from here, taking at most `hops_left` hops, answered by `deadline`.
    pub(super) fn start_route(
        &mut self,
        now: Instant,
        key: Key,
        hops_left: u8,
        deadline: Instant,
        to: RouteFor,
    ) {
        let task = RouteTask {
            key,
            hops_left,
            deadline,
            started: now,
            exclude: Vec::new(),
            last_failure: None,
            to,
        };
        self.route_step(now, task);
    }

    /// Asks the next hop, or ends the route here.
    fn route_step(&mut self, now: Instant, mut task: RouteTask) {
        if task.exclude.len() > MAX_DETOURS {
            let e = task.last_failure.take().unwrap_or(Error::RouteTooLong {
                key: task.key,
                hops: self.config.max_hops,
            });
            return self.route_end(task, Err(e));
        }
        let next = self.state.route(task.key, |id| task.exclude.contains(&id));
        if next.id == self.me.id {
            let end = (vec![self.me], self.other_replicas(task.key));
            return self.route_end(task, Ok(end));
        }
        if task.hops_left == 0 {
            let e = Error::RouteTooLong {
                key: task.key,
                hops: self.config.max_hops,
            };
            return self.route_end(task, Err(e));
        }
        // Half of what is left: the other half is for routing around this hop if it fails.
        let wait = task.deadline.saturating_duration_since(now) / 2;
        if wait < MIN_WAIT {
            // Out of time: the route has waited this long on the nodes after this one.
            let e = Error::Timeout {
                addr: next.addr,
                after: now.saturating_duration_since(task.started),
            };
            return self.route_end(task, Err(e));
        }
        let (request, wait) = route_request(task.key, task.hops_left - 1, wait);
        self.call(
            next.into(),
            request,
            Some(wait),
            Waiting::Route(Box::new(task)),
        );
    }

    /// The next hop's answer.
    pub(super) fn route_answered(
        &mut self,
        now: Instant,
        next: Target,
        mut task: RouteTask,
        result: Result<Message>,
    ) {
        match result.and_then(|reply| route_answer(next.addr, task.hops_left - 1, reply)) {
            Ok((path, replicas)) => {
                let mut full = Vec::with_capacity(path.len() + 1);
                full.push(self.me);
                full.extend(path);
                self.route_end(task, Ok((full, replicas)));
            }
            Err(e) if is_hop_failure(&e) => {
                self.suspect(now, next, &e);
                task.exclude.extend(next.id);
                task.last_failure = Some(e);
                self.route_step(now, task);
            }
            Err(e) => self.route_end(task, Err(e)),
        }
    }

    fn route_end(&mut self, task: RouteTask, result: Result<RouteEnd>) {
        match task.to {
            RouteFor::Api(op) => self.out.push(Effect::Looked { op, result }),
            RouteFor::Peer(token) => {
                let reply = match result {
                    Ok((path, replicas)) => Message::Routed { path, replicas },
                    Err(e) => Message::Error {
                        code: RemoteCode::Unroutable,
                        message: e.to_string(),
                    },
                };
                self.out.push(Effect::Reply { token, reply });
            }
        }
    }
}

/// The request routing `key` through a node that may take `hops_left` more hops, when the
/// asker waits `wait`, and how long the asker then waits.
///
/// The wait is in whole milliseconds, so that successive lookups wait alike (the socket's
/// timeout is then set once rather than before every request); the receiver gets less time
/// than that, so that a failure further on reaches the asker as its answer (Unroutable), in
/// time to try another way, rather than as the asker's own timeout.
pub fn route_request(key: Key, hops_left: u8, wait: Duration) -> (Message, Duration) {
    let wait = Duration::from_millis(wait.as_millis().try_into().unwrap_or(u64::MAX));
    let budget = wait * 7 / 8;
    let request = Message::Route {
        key,
        hops_left,
        budget_ms: u32::try_from(budget.as_millis()).unwrap_or(u32::MAX),
    };
    (request, wait)
}

/// Checks the answer of the node at `addr`, asked with `hops_left` hops to go.
pub fn route_answer(addr: SocketAddr, hops_left: u8, reply: Message) -> Result<RouteEnd> {
    match reply {
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

/// Whether a failed step means "route around this node" rather than "give up".
pub fn is_hop_failure(e: &Error) -> bool {
    match e {
        e if e.is_peer_failure() => true,
        // Unroutable: the node answered; a node after it failed, and it tried other ways.
        Error::Refused { code, .. } => {
            !matches!(code, RemoteCode::IdInUse | RemoteCode::Unroutable)
        }
        _ => false,
    }
}
