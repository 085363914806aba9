//! The certificates one end has sent on a connection: each goes once, and again only when
//! the one sent is half through its life. The other end keeps those it received for as
//! long as they are valid (`identity::Vouchers`), so a leaf-set exchange repeated every
//! round carries none of its neighbours' certificates after the first.

use std::borrow::Cow;

use parking_lot::Mutex;

use crate::identity::{Certificate, CERTIFICATE_VALIDITY};
use crate::wire::Message;

/// Certificates sent, one entry a node id packed in a `u64` (see [`entry`]) and sorted,
/// kept to its length: a connection holds one entry per node it told of, and a node holds
/// dozens of connections.
#[derive(Default)]
pub(crate) struct CertsSent(Mutex<Vec<u64>>);

/// The entry for `cert`: its node's id in the top 16 bits, then 16 bits of a digest of the
/// certificate (to tell a node restarted at another address, or given another key, from
/// the one sent), then its expiry in seconds. The digest is the quick unkeyed one of the
/// maps consulted on every request: it tells changes apart, and no key could keep anyone
/// from finding two certificates that share 16 bits.
fn entry(cert: &Certificate) -> u64 {
    let mut hasher = crate::fast_hash::FastHasher::default();
    std::hash::Hash::hash(&cert.node, &mut hasher);
    std::hash::Hash::hash(&cert.key, &mut hasher);
    let digest = std::hash::Hasher::finish(&hasher) & 0xffff;
    let expires_s = (cert.expires_ms / 1000).min(u64::from(u32::MAX));
    u64::from(cert.node.id.0) << 48 | digest << 32 | expires_s
}

/// Where `id`'s entry is, or would be, in the sorted entries.
fn place(sent: &[u64], id: u16) -> usize {
    sent.partition_point(|e| e >> 48 < u64::from(id))
}

impl CertsSent {
    /// `msg` as it goes on this connection at `now_ms`: a [`Message::Vouched`] without the
    /// certificates sent on it before (and not due again), which are noted as sent; the
    /// message inside alone when none is left (the receiver takes both alike), and `msg`
    /// itself when it needs no change. Borrowed but for a partial strip: a settled
    /// neighbour's exchange goes out with no copy made.
    pub fn strip<'a>(&self, msg: &'a Message, now_ms: u64) -> Cow<'a, Message> {
        let Message::Vouched { certs, message } = msg else {
            return Cow::Borrowed(msg);
        };
        let half_life = (CERTIFICATE_VALIDITY / 2).as_millis() as u64;
        // Sent before, the same certificate, and far enough from its expiry.
        let went = |sent: &[u64], cert: &Certificate| {
            let wanted = entry(cert);
            sent.get(place(sent, cert.node.id.0)).is_some_and(|&e| {
                e >> 32 == wanted >> 32
                    && (e & u64::from(u32::MAX)) * 1000 > now_ms.saturating_add(half_life)
            })
        };
        let mut sent = self.0.lock();
        let fresh: Vec<&Certificate> = certs.iter().filter(|c| !went(&sent, c)).collect();
        for cert in &fresh {
            let at = place(&sent, cert.node.id.0);
            match sent.get_mut(at) {
                Some(e) if *e >> 48 == u64::from(cert.node.id.0) => *e = entry(cert),
                _ => {
                    sent.reserve_exact(1);
                    sent.insert(at, entry(cert));
                }
            }
        }
        if fresh.len() == certs.len() {
            Cow::Borrowed(msg)
        } else if fresh.is_empty() {
            Cow::Borrowed(message)
        } else {
            Cow::Owned(Message::Vouched {
                certs: fresh.into_iter().cloned().collect(),
                message: message.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{loopback_node as node, NodeInfo};
    use crate::identity::Identity;

    #[test]
    fn a_certificate_goes_once_until_it_is_half_through_its_life() {
        let authority = Identity::generate().unwrap();
        let key = Identity::generate().unwrap().public();
        let life = CERTIFICATE_VALIDITY.as_millis() as u64;
        let now = 1_000;
        let cert = |id, expires| Certificate::issue(&authority, node(id), key, expires);
        let vouched = |certs: Vec<Certificate>| Message::Vouched {
            certs,
            message: Box::new(Message::Ping),
        };
        let sent = CertsSent::default();
        let first = vouched(vec![cert(1, now + life), cert(2, now + life)]);
        assert_eq!(*sent.strip(&first, now), first, "all new: sent as they are");
        let again = vouched(vec![cert(1, now + life + 5), cert(3, now + life)]);
        assert_eq!(
            *sent.strip(&again, now + 5),
            vouched(vec![cert(3, now + life)]),
            "1 went before; 3 is new"
        );
        assert_eq!(
            *sent.strip(&vouched(vec![cert(2, now + life)]), now + 6),
            Message::Ping,
            "every one went before: the message alone"
        );
        let late = now + life / 2 + 1;
        let due = vouched(vec![cert(1, late + life)]);
        assert_eq!(*sent.strip(&due, late), due, "due again");
        let moved = NodeInfo {
            addr: ([127, 0, 0, 1], 99).into(),
            ..node(2)
        };
        let restarted = vouched(vec![Certificate::issue(&authority, moved, key, now + life)]);
        assert_eq!(
            *sent.strip(&restarted, now + 10),
            restarted,
            "a node restarted elsewhere: its new certificate goes"
        );
        assert_eq!(*sent.strip(&Message::Ping, now), Message::Ping);
    }
}
