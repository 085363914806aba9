//! Who may send what (DESIGN.md section 9): clients look up, read and write objects; only
//! member nodes move objects or change tables, and a node speaks for its own id only.

use crate::id::NodeInfo;
use crate::identity::PeerIdentity;
use crate::wire::{Message, RemoteCode};

use super::Inner;

/// Whom a request must come from.
#[derive(Debug, PartialEq, Eq)]
enum Sender {
    /// Anyone holding the cluster key: a client or a node.
    Anyone,
    /// A member node, whoever it is.
    Member,
    /// This member node, and no other: the request speaks for it.
    Itself(NodeInfo),
}

/// Whom `request` must come from.
fn required(request: &Message) -> Sender {
    match request {
        Message::Announce { node }
        | Message::Depart { node, .. }
        | Message::Exchange { node, .. } => Sender::Itself(*node),
        Message::JoinHop { joiner, .. } | Message::Pull { joiner } => Sender::Itself(*joiner),
        Message::Cell { .. } | Message::Replicas { .. } | Message::Holds { .. } => Sender::Member,
        // A hand-off or a holder's copy, or a put passed on by a node: a node's business.
        Message::Record(head) if head.handoff || head.relayed => Sender::Member,
        Message::Delete { relayed: true, .. } => Sender::Member,
        _ => Sender::Anyone,
    }
}

impl Inner {
    /// Whether `peer`, a member, is a neighbour of this node's: within the span of its leaf
    /// set. Only a neighbour hands records over to it, writes copies to it, or pulls the
    /// records it will keep: every holder of a key this node holds lies within that span.
    /// `what` names the request, for the log.
    pub(super) fn is_neighbour(&self, peer: Option<PeerIdentity>, what: &'static str) -> bool {
        let Some(peer) = peer else { return false };
        if self.core.read().state().leaf_set().covers(peer.node.id) {
            return true;
        }
        let why = format!("{} is not a neighbour of this node's", peer.node);
        self.credentials.note_refusal(peer.key, what, &why);
        false
    }

    /// Whether `peer`, who the request's connection proved to be (none for a client), may
    /// send `request`: `Err` holds the refusal to answer with. A refusal is logged once per
    /// sender and kind of request.
    pub(super) fn admit(
        &self,
        request: &Message,
        peer: Option<PeerIdentity>,
    ) -> Result<(), Message> {
        let why = match (required(request), peer) {
            (Sender::Anyone, _) => return Ok(()),
            (_, None) => "only a node may send it, on a connection it proved its identity on",
            (_, Some(peer)) if !peer.member => "only a node certified by discovery may send it",
            (Sender::Member, Some(_)) => return Ok(()),
            (Sender::Itself(node), Some(peer)) if node == peer.node => return Ok(()),
            (Sender::Itself(_), Some(_)) => "a node speaks for itself only",
        };
        if let Some(peer) = peer {
            self.credentials.note_refusal(peer.key, request.name(), why);
        } else {
            log::debug!(
                "node {}: refused {} from a client: {why}",
                self.me,
                request.name()
            );
        }
        Err(Message::Error {
            code: RemoteCode::BadRequest,
            message: format!("{} refused: {why}", request.name()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::loopback_node as node;
    use crate::wire::RecordHead;

    #[test]
    fn clients_read_and_write_and_nodes_alone_move_objects_or_change_tables() {
        let head = |handoff, relayed| {
            Message::Record(RecordHead {
                name: b"x".to_vec(),
                size: 0,
                version: 0,
                deleted: false,
                handoff,
                request: 0,
                existed: false,
                relayed,
                direct: false,
            })
        };
        for open in [
            Message::Ping,
            Message::Get {
                name: b"x".to_vec(),
                direct: true,
            },
            head(false, false),
            Message::Delete {
                name: b"x".to_vec(),
                request: 1,
                relayed: false,
                direct: true,
            },
            Message::CompactPort,
        ] {
            assert_eq!(required(&open), Sender::Anyone, "{open:?}");
        }
        for member in [
            head(true, false),
            head(false, true),
            Message::Holds { records: vec![] },
        ] {
            assert_eq!(required(&member), Sender::Member, "{member:?}");
        }
        let itself = Message::Depart {
            node: node(7),
            leaf_set: vec![],
        };
        assert_eq!(required(&itself), Sender::Itself(node(7)));
        assert_eq!(
            required(&Message::Pull { joiner: node(8) }),
            Sender::Itself(node(8))
        );
    }
}
