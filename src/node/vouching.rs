//! Certificates with the node entries nodes tell each other of (DESIGN.md section 9): a
//! message naming nodes travels with their certificates ([`Message::Vouched`]), and a node
//! enters into its tables only the nodes a certificate from its discovery vouches for (or
//! the sender itself, whose connection proved it). Certificates are checked once, when
//! learnt, never on a lookup's hops.

use crate::id::NodeInfo;
use crate::identity::Certificate;
use crate::net::unix_ms;
use crate::wire::{Message, RemoteCode};

use super::Inner;

/// Most certificates of one message looked at: a join's rows and leaf set are fewer.
const MAX_PER_MESSAGE: usize = 160;

impl Inner {
    /// `msg`, to be sent, with the certificates held of the nodes it names; as it is when it
    /// names none, or when this node trusts no discovery (an overlay without one).
    pub(super) fn vouch(&self, msg: Message) -> Message {
        if self.credentials.trusted_authority().is_none() {
            return msg;
        }
        let named = named_nodes(&msg);
        if named.is_empty() {
            return msg;
        }
        let mine = self.credentials.certificate();
        let mut certs: Vec<Certificate> = Vec::new();
        for node in named {
            let cert = if node.id == self.me.id {
                mine.clone()
            } else {
                self.credentials
                    .vouchers()
                    .get(node.id)
                    .map(|c| (*c).clone())
            };
            if let Some(cert) = cert.filter(|c| c.node == node) {
                if !certs.iter().any(|c| c.node == node) {
                    certs.push(cert);
                }
            }
        }
        Message::Vouched {
            certs,
            message: Box::new(msg),
        }
    }

    /// `msg`, as received from `sender` (the node its connection proved, for a request;
    /// none for an answer): its certificates checked and kept, and every node it names
    /// that none vouches for left out; when such a node cannot be left out (the sender
    /// speaking of itself, a join's next hop), an error in its place.
    pub(super) fn unvouch(&self, msg: Message, sender: Option<NodeInfo>) -> Message {
        let (msg, certs) = open_envelope(msg);
        self.check_entries(msg, certs, sender)
    }

    /// [`Inner::unvouch`] of `msg` taken out of its envelope with `certs`: the request
    /// handler checks its sender in between.
    pub(super) fn check_entries(
        &self,
        msg: Message,
        certs: Vec<Certificate>,
        sender: Option<NodeInfo>,
    ) -> Message {
        self.take_certificates(certs);
        if self.credentials.trusted_authority().is_none() {
            return msg;
        }
        let now = unix_ms();
        let me = self.me;
        let vouched = |node: &NodeInfo| {
            *node == me || Some(*node) == sender || self.credentials.vouchers().vouches(node, now)
        };
        match retain_nodes(msg, &vouched) {
            Ok(msg) => msg,
            Err(kind) => Message::Error {
                code: RemoteCode::BadRequest,
                message: format!("{kind} names a node no certificate vouches for"),
            },
        }
    }

    /// Checks and keeps `certs` (at most [`MAX_PER_MESSAGE`]); those that do not verify
    /// are dropped, with a word in the log.
    fn take_certificates(&self, certs: Vec<Certificate>) {
        let Some(authority) = self.credentials.trusted_authority() else {
            return;
        };
        let now = unix_ms();
        for cert in certs.into_iter().take(MAX_PER_MESSAGE) {
            if cert.node.id == self.me.id || self.credentials.vouchers().known(&cert, now) {
                continue;
            }
            match cert.check(&authority, cert.node, &cert.key, now) {
                Ok(()) => self.credentials.vouchers().keep(cert, now),
                Err(e) => {
                    self.credentials.note_refusal(
                        cert.key,
                        "certificate",
                        &format!("{}: {e}", cert.node),
                    );
                }
            }
        }
    }
}

/// `msg` taken out of its envelope, if it came in one, and the certificates with it.
pub(super) fn open_envelope(msg: Message) -> (Message, Vec<Certificate>) {
    match msg {
        Message::Vouched { certs, message } => (*message, certs),
        other => (other, Vec::new()),
    }
}

/// The nodes `msg` names that the receiver may enter into its tables.
fn named_nodes(msg: &Message) -> Vec<NodeInfo> {
    match msg {
        Message::JoinState {
            node,
            next,
            rows,
            leaf_set,
        } => [*node, *next]
            .into_iter()
            .chain(rows.iter().copied())
            .chain(leaf_set.iter().copied())
            .collect(),
        Message::Exchange { node, leaf_set }
        | Message::LeafSet { node, leaf_set }
        | Message::Depart { node, leaf_set } => std::iter::once(*node)
            .chain(leaf_set.iter().copied())
            .collect(),
        Message::Announce { node } => vec![*node],
        Message::CellEntry { node } => node.iter().copied().collect(),
        Message::ReplicaSet { nodes } => nodes.clone(),
        _ => Vec::new(),
    }
}

/// `msg` with only the nodes `vouched` accepts; `Err` with the message's name when one it
/// cannot leave out is not.
fn retain_nodes(
    msg: Message,
    vouched: &dyn Fn(&NodeInfo) -> bool,
) -> Result<Message, &'static str> {
    let kind = msg.name();
    let must = |node: &NodeInfo| if vouched(node) { Ok(()) } else { Err(kind) };
    let keep = |mut list: Vec<NodeInfo>| {
        list.retain(|n| vouched(n));
        list
    };
    Ok(match msg {
        // The next hop is only called, not learnt: its connection proves who answers there.
        Message::JoinState {
            node,
            next,
            rows,
            leaf_set,
        } => {
            must(&node)?;
            Message::JoinState {
                node,
                next,
                rows: keep(rows),
                leaf_set: keep(leaf_set),
            }
        }
        Message::Exchange { node, leaf_set } => {
            must(&node)?;
            Message::Exchange {
                node,
                leaf_set: keep(leaf_set),
            }
        }
        Message::LeafSet { node, leaf_set } => {
            must(&node)?;
            Message::LeafSet {
                node,
                leaf_set: keep(leaf_set),
            }
        }
        Message::Depart { node, leaf_set } => {
            must(&node)?;
            Message::Depart {
                node,
                leaf_set: keep(leaf_set),
            }
        }
        Message::Announce { node } => {
            must(&node)?;
            Message::Announce { node }
        }
        Message::CellEntry { node } => Message::CellEntry {
            node: node.filter(|n| vouched(n)),
        },
        Message::ReplicaSet { nodes } => Message::ReplicaSet { nodes: keep(nodes) },
        other => other,
    })
}
