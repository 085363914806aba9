//! The node's answers to requests from other nodes.

use crate::id::Id;
use crate::wire::{Message, RemoteCode};

use super::{Inner, Phase};

impl Inner {
    /// Answers one request. Runs on a connection thread; takes locks briefly and never waits on
    /// the network.
    pub(crate) fn handle(&self, request: Message) -> Message {
        let phase = *self.phase.lock();
        match request {
            Message::Ping => Message::Pong { node: self.me },
            _ if phase != Phase::Joined => Message::Error {
                code: RemoteCode::NotJoined,
                message: format!("node {} is not part of an overlay", self.me.id),
            },
            Message::NextHop { key, exclude } => {
                let next = self.state.read().route(key, |id| exclude.contains(&id));
                Message::Hop {
                    node: self.me,
                    next,
                }
            }
            Message::JoinHop { joiner, exclude } => {
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
            Message::Announce { node } => {
                if node.id != self.me.id && self.state.write().learn(node) {
                    log::debug!("node {}: learnt {node}", self.me);
                }
                Message::Ack
            }
            Message::Depart { node, leaf_set } => {
                let mut state = self.state.write();
                state.forget(node.id);
                for n in leaf_set.into_iter().filter(|n| n.id != node.id) {
                    state.learn(n);
                }
                drop(state);
                self.pool.forget(node.addr);
                log::debug!("node {}: {node} departed", self.me);
                Message::Ack
            }
            other => Message::Error {
                code: RemoteCode::BadRequest,
                message: format!("a node does not answer {}", other.name()),
            },
        }
    }
}
