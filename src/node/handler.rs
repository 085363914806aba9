//! The node's answers to requests from other nodes and clients.

use std::time::{Duration, Instant};

use crate::id::Id;
use crate::net::Session;
use crate::wire::{Message, RemoteCode};

use super::{Inner, Phase};
use crate::calls::route::route_budget;

impl Inner {
    /// Answers one request. Runs on a connection thread; takes locks briefly, and waits on
    /// another node only to forward a lookup (see [`Inner::route_on`] for why that cannot
    /// deadlock).
    pub(crate) fn handle(&self, request: Message, session: &mut Session<'_>) -> Message {
        let phase = *self.phase.lock();
        // A leaving node still routes and serves reads until it has handed everything over.
        let routing = matches!(phase, Phase::Joined | Phase::Leaving);
        match request {
            Message::Ping => Message::Pong { node: self.me },
            Message::Route {
                key,
                hops_left,
                budget_ms,
            } if routing => {
                // However long the asker says it waits, a route is answered within our own
                // budget for one: a request cannot hold this thread longer.
                let budget =
                    Duration::from_millis(budget_ms.into()).min(route_budget(&self.config.net));
                match self.route_on(key, hops_left, Instant::now() + budget) {
                    Ok((path, replicas)) => Message::Routed { path, replicas },
                    Err(e) => Message::Error {
                        code: RemoteCode::Unroutable,
                        message: e.to_string(),
                    },
                }
            }
            Message::JoinHop { joiner, exclude } if routing => {
                let state = self.state.read();
                let next = state.route(joiner.id, |id: Id| exclude.contains(&id));
                let shared = self.me.id.shared_prefix(joiner.id);
                Message::JoinState {
                    node: self.me,
                    next,
                    rows: state.table().rows_upto(shared),
                    leaf_set: state.leaf_set().members(),
                }
            }
            Message::Exchange { node, leaf_set } if routing => {
                if node.id != self.me.id {
                    self.learn_leaf_set_of(Some(node), &leaf_set);
                }
                Message::LeafSet {
                    node: self.me,
                    leaf_set: self.state.read().leaf_set().members(),
                }
            }
            Message::Announce { node } if routing => {
                self.rejoined(node.id);
                if node.id != self.me.id && self.update_state(|s| s.learn(node)) {
                    log::debug!("node {}: learnt {node}", self.me);
                }
                Message::Ack
            }
            Message::Depart { node, leaf_set } if routing => {
                // Gone for good: a neighbour that has not heard yet must not hand it back.
                self.mark_departed(node.id);
                self.update_state(|s| s.forget(node.id));
                self.learn_leaf_set_of(None, &leaf_set);
                self.pool.forget(node.addr);
                log::debug!("node {}: {node} departed", self.me);
                Message::Ack
            }
            Message::Get { name } if routing => self.serve_get(&name, session),
            Message::Record(head) => self.receive_record(head, phase, session),
            Message::Delete {
                name,
                request,
                relayed,
            } if phase == Phase::Joined => self.delete(&name, request, relayed),
            Message::Pull { joiner } if phase == Phase::Joined => self.serve_pull(joiner, session),
            // A leaving node is about to drop what it holds: its copies count for nothing.
            Message::Holds { records } if phase == Phase::Joined => self.lacking(records),
            Message::Replicas { key } if routing => Message::ReplicaSet {
                nodes: self.other_replicas(key),
            },
            Message::Cell { row, col } if routing => Message::CellEntry {
                node: self.state.read().table().get(row.into(), col.into()),
            },
            Message::Route { .. }
            | Message::JoinHop { .. }
            | Message::Announce { .. }
            | Message::Exchange { .. }
            | Message::Depart { .. }
            | Message::Get { .. }
            | Message::Delete { .. }
            | Message::Pull { .. }
            | Message::Holds { .. }
            | Message::Replicas { .. }
            | Message::Cell { .. } => Message::Error {
                code: RemoteCode::NotJoined,
                message: format!("node {} is not part of an overlay", self.me.id),
            },
            other => Message::Error {
                code: RemoteCode::BadRequest,
                message: format!("a node does not answer {}", other.name()),
            },
        }
    }
}
