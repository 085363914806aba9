//! The node's answers to requests from other nodes and clients: the overlay's go to the
//! membership core, the objects' to the store's side of the node.

use std::sync::Arc;

use crate::net::Session;
use crate::protocol::membership::{Membership, Phase};
use crate::wire::{Message, RemoteCode};

use super::Inner;

impl Inner {
    /// Answers one request. Runs on a handler thread; takes locks briefly. A route this
    /// node forwards holds no thread while the next hop works on it (`relay.rs`); the other
    /// requests that wait on another node (a relayed write, a copy) cannot deadlock: every
    /// call gets a handler thread of its own at the callee, or a Busy refusal, never a
    /// queue, and every chain of calls ends.
    pub(crate) fn handle(self: &Arc<Self>, request: Message, session: &mut Session<'_>) -> Message {
        // The sender is checked for what the envelope carries, not for the envelope.
        let (request, certs) = super::vouching::open_envelope(request);
        if let Err(refusal) = self.admit(&request, session.peer()) {
            return match &request {
                // Its frames are read (at most what it announced) and dropped.
                Message::Record(head) => super::objects::drain(head, session, refusal),
                _ => refusal,
            };
        }
        let sender = session.peer().map(|p| p.node);
        let request = match self.check_entries(request, certs, sender) {
            // It named a node no certificate vouches for.
            refusal @ Message::Error { .. } => return refusal,
            request => request,
        };
        if Membership::serves(&request) {
            return self
                .serve_overlay(request, session)
                .unwrap_or_else(|other| bad_request(&other));
        }
        if self.may_wait(&request) {
            // The reactor's other connections are read meanwhile.
            crate::net::may_block();
        }
        let phase = self.phase();
        // A leaving node still serves reads until it has handed everything over.
        let routing = matches!(phase, Phase::Joined | Phase::Leaving);
        match request {
            Message::Get { name, direct } if routing => self.serve_get(&name, direct, session),
            Message::AppRoute {
                app,
                key,
                hops_left,
                request,
                message,
            } => self.serve_app_route((app, key, hops_left, request, message), session),
            Message::CompactPort => Message::CompactPortIs {
                port: self.compact_port.load(std::sync::atomic::Ordering::Relaxed),
            },
            Message::Record(head) => self.receive_record(head, phase, session),
            Message::Delete {
                name,
                request,
                relayed,
                direct,
            } if phase == Phase::Joined => self.delete(&name, request, relayed || direct, session),
            Message::Pull { joiner } if phase == Phase::Joined => {
                if self.is_neighbour(session.peer(), "Pull") {
                    self.serve_pull(joiner, session)
                } else {
                    refuse_not_neighbour()
                }
            }
            // A leaving node is about to drop what it holds: its copies count for nothing.
            Message::Holds { records } if phase == Phase::Joined => self.lacking(records),
            Message::Get { .. }
            | Message::Delete { .. }
            | Message::Pull { .. }
            | Message::Holds { .. } => self.core.read().not_joined(),
            other => bad_request(&other),
        }
    }

    /// Whether serving `request` may wait on the disk (a synced write, a write to a file of
    /// its own, a deletion, which may remove one) or read much of it. A small write the store
    /// keeps in its log unsynced waits on neither: it is served with the reactor's lead kept,
    /// and the answers of its copies are read by that reactor (`net::reactor`'s crew), with
    /// no thread woken on the way.
    fn may_wait(&self, request: &Message) -> bool {
        match request {
            Message::Record(head) => {
                let store = self.objects.store.options();
                store.sync || head.size > store.small_object_max as u64
            }
            Message::Delete { .. } | Message::Pull { .. } | Message::Holds { .. } => true,
            _ => false,
        }
    }
}

fn bad_request(request: &Message) -> Message {
    Message::Error {
        code: RemoteCode::BadRequest,
        message: format!("a node does not answer {}", request.name()),
    }
}

fn refuse_not_neighbour() -> Message {
    Message::Error {
        code: RemoteCode::NotResponsible,
        message: "records are pulled by neighbours only".into(),
    }
}
