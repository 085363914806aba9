//! The join protocol (Pastry paper §2.3), walked by the joiner (iterative): it asks each node
//! on the way for the next hop towards its own id and the state it needs, then builds its
//! tables from the nodes on the path (rows `0..=p` from a node sharing `p` digits, the leaf
//! set from the last). A node that fails is excluded and its predecessor asked again.

use std::time::Instant;

use super::{Effect, Membership, Target, Waiting};
use crate::error::{Error, Result};
use crate::id::{Id, NodeInfo};
use crate::wire::Message;

/// One node's answer on the way.
#[derive(Debug)]
struct Visit {
    node: NodeInfo,
    rows: Vec<NodeInfo>,
    leaf_set: Vec<NodeInfo>,
}

/// A join under way.
#[derive(Debug)]
pub(super) struct JoinWalk {
    start: Target,
    path: Vec<Visit>,
    exclude: Vec<Id>,
    /// Steps left: every step either extends the path or excludes a node, so this bounds
    /// the work.
    steps_left: usize,
}

impl Membership {
    /// Starts the walk at `start`.
    pub(super) fn start_join_walk(&mut self, _now: Instant, start: Target) {
        self.join = Some(JoinWalk {
            start,
            path: Vec::new(),
            exclude: Vec::new(),
            steps_left: 4 * self.config.max_hops + 8,
        });
        self.join_step(start);
    }

    fn join_step(&mut self, target: Target) {
        let Some(walk) = self.join.as_mut() else {
            return;
        };
        if walk.steps_left == 0 {
            let hops = self.config.max_hops;
            return self.join_failed(Error::RouteTooLong {
                key: self.me.id,
                hops,
            });
        }
        walk.steps_left -= 1;
        let request = Message::JoinHop {
            joiner: self.me,
            exclude: walk.exclude.clone(),
        };
        self.call(target, request, None, Waiting::JoinHop);
    }

    /// The answer of `target` to a step of the walk.
    pub(super) fn join_answered(&mut self, _now: Instant, target: Target, result: Result<Message>) {
        if self.join.is_none() {
            return;
        }
        let me = self.me;
        let visit = result.and_then(|reply| match reply {
            Message::JoinState { node, .. } if node.id == me.id => Err(Error::IdInUse(node.id)),
            Message::JoinState {
                node,
                next,
                rows,
                leaf_set,
            } => Ok((
                Visit {
                    node,
                    rows,
                    leaf_set,
                },
                next,
            )),
            other => Err(Error::unexpected_reply(target.addr, "JoinState", &other)),
        });
        let max_hops = self.config.max_hops;
        let Some(walk) = self.join.as_mut() else {
            return;
        };
        match visit {
            Ok((visit, next)) => {
                let done = next.id == visit.node.id;
                walk.path.push(visit);
                if done {
                    return self.join_walked();
                }
                if walk.path.len() > max_hops {
                    return self.join_failed(Error::RouteTooLong {
                        key: me.id,
                        hops: max_hops,
                    });
                }
                self.join_step(next.into());
            }
            Err(e) if super::is_hop_failure(&e) && !walk.path.is_empty() => {
                log::debug!("node {me}: join hop {target:?} failed: {e}");
                walk.exclude.extend(target.id);
                // Ask the previous node again, now without the failed one.
                let previous = walk.path.pop().map(|v| v.node);
                let again = previous.map(Target::from).unwrap_or(walk.start);
                self.join_step(again);
            }
            Err(e) => self.join_failed(e),
        }
    }

    /// The walk is done: the tables are built from what the path's nodes told.
    fn join_walked(&mut self) {
        let Some(walk) = self.join.take() else {
            return;
        };
        let route: Vec<String> = walk.path.iter().map(|v| v.node.id.to_string()).collect();
        log::debug!("node {}: join route {}", self.me, route.join(" -> "));
        self.change(|state| {
            for visit in &walk.path {
                state.learn(visit.node);
                for n in visit.rows.iter().chain(&visit.leaf_set) {
                    state.learn(*n);
                }
            }
        });
        self.out.push(Effect::JoinWalked);
    }

    fn join_failed(&mut self, e: Error) {
        self.join = None;
        self.out.push(Effect::JoinFailed(e));
    }

    /// A joiner's step through this node: where its id goes next, with this node's rows
    /// `0..=shared_prefix` and leaf set.
    pub(super) fn join_state(&self, joiner: NodeInfo, exclude: &[Id]) -> Message {
        let next = self.state.route(joiner.id, |id: Id| exclude.contains(&id));
        let shared = self.me.id.shared_prefix(joiner.id);
        Message::JoinState {
            node: self.me,
            next,
            rows: self.state.table().rows_upto(shared),
            leaf_set: self.state.leaf_set().members(),
        }
    }
}
