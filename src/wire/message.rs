//! The messages of the node and discovery protocols.
//!
//! Every exchange is one request frame answered by one reply frame on the same connection.

use crate::id::{Id, NodeInfo};

/// Why a peer refused a request, carried by [`Message::Error`].
///
/// Values are fixed on the wire and never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RemoteCode {
    /// The identifier is used by a live or joining node.
    IdInUse = 1,
    /// The receiver is not part of an overlay (not joined yet, or leaving).
    NotJoined = 2,
    /// The receiver has no room for another connection.
    Busy = 3,
    /// The request makes no sense to the receiver (a reply sent as a request, a node message sent
    /// to discovery, ...).
    BadRequest = 4,
    /// What was asked for does not exist.
    NotFound = 5,
    /// Any other failure on the receiver's side.
    Internal = 6,
}

impl RemoteCode {
    /// The code for a wire value, if it is one.
    pub fn from_u8(v: u8) -> Option<RemoteCode> {
        Some(match v {
            1 => RemoteCode::IdInUse,
            2 => RemoteCode::NotJoined,
            3 => RemoteCode::Busy,
            4 => RemoteCode::BadRequest,
            5 => RemoteCode::NotFound,
            6 => RemoteCode::Internal,
            _ => return None,
        })
    }
}

/// A message of the node or discovery protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Generic success reply.
    Ack,
    /// Generic failure reply.
    Error {
        /// What kind of failure.
        code: RemoteCode,
        /// A human-readable reason.
        message: String,
    },

    // ---- node protocol ----
    /// Liveness probe; answered by [`Message::Pong`].
    Ping,
    /// Answer to [`Message::Ping`]: who is here.
    Pong {
        /// The answering node.
        node: NodeInfo,
    },
    /// Iterative routing step: "where should `key` go next?" Answered by [`Message::Hop`].
    NextHop {
        /// The key being routed.
        key: Id,
        /// Nodes the asker found unreachable: leave them out of the decision.
        exclude: Vec<Id>,
    },
    /// Answer to [`Message::NextHop`].
    Hop {
        /// The answering node.
        node: NodeInfo,
        /// The next hop; equal to `node` when the answering node is responsible for the key.
        next: NodeInfo,
    },
    /// A routing step of a join: like [`Message::NextHop`] for the joiner's id, and also asks for
    /// the state the joiner needs. Answered by [`Message::JoinState`].
    JoinHop {
        /// The node joining.
        joiner: NodeInfo,
        /// Nodes the joiner found unreachable.
        exclude: Vec<Id>,
    },
    /// Answer to [`Message::JoinHop`].
    JoinState {
        /// The answering node.
        node: NodeInfo,
        /// The next hop for the joiner's id; equal to `node` when the answering node is
        /// responsible for it.
        next: NodeInfo,
        /// The routing-table entries of rows `0..=shared_prefix(node, joiner)`.
        rows: Vec<NodeInfo>,
        /// The answering node's leaf set.
        leaf_set: Vec<NodeInfo>,
    },
    /// "I have joined: put me in your tables." Answered by [`Message::Ack`].
    Announce {
        /// The new node.
        node: NodeInfo,
    },
    /// "I am leaving: take me out of your tables, and repair your leaf set from mine."
    /// Answered by [`Message::Ack`].
    Depart {
        /// The leaving node.
        node: NodeInfo,
        /// Its leaf set, from which neighbours repair theirs.
        leaf_set: Vec<NodeInfo>,
    },

    // ---- discovery protocol ----
    /// A node asks to join with this id. Answered by [`Message::Peer`] (a random joined peer to
    /// join through, or none for the first node) or [`Message::Error`] with
    /// [`RemoteCode::IdInUse`].
    Register {
        /// The node asking.
        node: NodeInfo,
    },
    /// A registered node has finished joining: discovery may now hand it out.
    Joined {
        /// The node's id.
        id: Id,
    },
    /// A node has left (or a registration is withdrawn). Discovery forgets the id only if it is
    /// registered at the same address, so that a stale request cannot remove its new holder.
    /// Answered by [`Message::Ack`].
    Deregister {
        /// The node.
        node: NodeInfo,
    },
    /// Asks discovery for a random joined peer. Answered by [`Message::Peer`].
    RandomPeer,
    /// A peer, or none when no node has joined.
    Peer {
        /// The peer handed out.
        peer: Option<NodeInfo>,
    },
    /// Asks discovery for every joined peer. Answered by [`Message::Peers`].
    ListPeers,
    /// Answer to [`Message::ListPeers`], sorted by id.
    Peers {
        /// The joined peers.
        peers: Vec<NodeInfo>,
    },
}

impl Message {
    /// The message type's name, for logs and error texts.
    pub fn name(&self) -> &'static str {
        super::codec::name_of(super::codec::type_of(self)).unwrap_or("unknown")
    }
}
