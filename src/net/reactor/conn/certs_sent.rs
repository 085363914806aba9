//! The certificates one end has sent on a connection: each goes once, and again only when
//! the one sent is half through its life. The other end keeps those it received for as
//! long as they are valid (`identity::Vouchers`), so a leaf-set exchange repeated every
//! round carries none of its neighbours' certificates after the first.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::id::{Id, NodeInfo};
use crate::identity::{Certificate, CERTIFICATE_VALIDITY};
use crate::wire::Message;

/// Certificates sent, by node id: the expiry of the one sent, and a digest of the node
/// (its address) it named, kept small: a connection holds one entry per node it told of.
#[derive(Default)]
pub(crate) struct CertsSent(Mutex<HashMap<Id, (u64, u32)>>);

/// A digest of `node`, to tell a node restarted at another address from the one sent.
fn digest(node: &NodeInfo) -> u32 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(node, &mut hasher);
    std::hash::Hasher::finish(&hasher) as u32
}

impl CertsSent {
    /// `msg` as it goes on this connection at `now_ms`: a [`Message::Vouched`] without the
    /// certificates sent on it before (and not due again), which are noted as sent; `None`
    /// when `msg` needs no change.
    pub fn strip(&self, msg: &Message, now_ms: u64) -> Option<Message> {
        let Message::Vouched { certs, message } = msg else {
            return None;
        };
        let due = |sent: &(u64, u32), cert: &Certificate| {
            let half_life = (CERTIFICATE_VALIDITY / 2).as_millis() as u64;
            sent.1 != digest(&cert.node) || sent.0 <= now_ms.saturating_add(half_life)
        };
        let mut sent = self.0.lock();
        let fresh: Vec<Certificate> = certs
            .iter()
            .filter(|c| sent.get(&c.node.id).is_none_or(|s| due(s, c)))
            .cloned()
            .collect();
        for cert in &fresh {
            sent.insert(cert.node.id, (cert.expires_ms, digest(&cert.node)));
        }
        if fresh.len() == certs.len() {
            return None;
        }
        Some(Message::Vouched {
            certs: fresh,
            message: message.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn a_certificate_goes_once_until_it_is_half_through_its_life() {
        let authority = Identity::generate().unwrap();
        let key = Identity::generate().unwrap().public();
        let node = |id: u16| NodeInfo {
            id: Id(id),
            addr: ([127, 0, 0, 1], id).into(),
        };
        let life = CERTIFICATE_VALIDITY.as_millis() as u64;
        let now = 1_000;
        let cert = |id, expires| Certificate::issue(&authority, node(id), key, expires);
        let vouched = |certs: Vec<Certificate>| Message::Vouched {
            certs,
            message: Box::new(Message::Ping),
        };
        let sent = CertsSent::default();
        let first = vouched(vec![cert(1, now + life), cert(2, now + life)]);
        assert_eq!(sent.strip(&first, now), None, "all new: sent as they are");
        let again = vouched(vec![cert(1, now + life + 5), cert(3, now + life)]);
        assert_eq!(
            sent.strip(&again, now + 5),
            Some(vouched(vec![cert(3, now + life)])),
            "1 went before; 3 is new"
        );
        let late = now + life / 2 + 1;
        assert_eq!(
            sent.strip(&vouched(vec![cert(1, late + life)]), late),
            None,
            "due again"
        );
        let moved = NodeInfo {
            addr: ([127, 0, 0, 1], 99).into(),
            ..node(2)
        };
        let restarted = Certificate::issue(&authority, moved, key, now + life);
        assert_eq!(
            sent.strip(&vouched(vec![restarted]), now + 10),
            None,
            "a node restarted elsewhere: its new certificate goes"
        );
        assert_eq!(sent.strip(&Message::Ping, now), None);
    }
}
