//! The certificates a node holds of the nodes it knows of, each checked when it arrived.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Certificate, CERTIFICATE_VALIDITY, SIGNATURE_LEN};
use crate::id::{Id, NodeInfo};

/// Most certificates kept: past it, expired ones go first, and then a new one is not kept
/// (its node is not learnt) until room is made. Far above a node's leaf set and routing
/// table, which are all it needs.
const MAX_KEPT: usize = 2048;

/// Every certificate held by a node of this process, by its signature: nodes of one
/// process (a simulation, a test, a host running many) hear of the same nodes, and hold one
/// copy of each certificate between them rather than one each (at 256 nodes a process,
/// most of a node's memory). Entries whose certificate no node holds any more are swept
/// once the table has doubled since the last sweep.
static SHARED: Mutex<Shared> = Mutex::new(Shared::new());

struct Shared {
    by_signature: BTreeMap<[u8; SIGNATURE_LEN], Weak<Certificate>>,
    /// Entries left by the last sweep.
    swept_at: usize,
}

impl Shared {
    const fn new() -> Shared {
        Shared {
            by_signature: BTreeMap::new(),
            swept_at: 0,
        }
    }

    /// The copy of `cert` held, made if none is.
    fn share(&mut self, cert: Certificate) -> Arc<Certificate> {
        if let Some(held) = self
            .by_signature
            .get(&cert.signature)
            .and_then(Weak::upgrade)
        {
            // The signature covers every other field, but a certificate is shared only
            // when it is the same in all.
            if *held == cert {
                return held;
            }
        }
        if self.by_signature.len() >= 2 * self.swept_at + 64 {
            self.by_signature.retain(|_, held| held.strong_count() > 0);
            self.swept_at = self.by_signature.len();
        }
        let cert = Arc::new(cert);
        self.by_signature
            .insert(cert.signature, Arc::downgrade(&cert));
        cert
    }
}

/// The process's copy of `cert`.
fn shared(cert: Certificate) -> Arc<Certificate> {
    SHARED.lock().share(cert)
}

/// Whether a node of this process holds `cert` (the same in every field). Only checked
/// certificates are kept ([`Vouchers::keep`]), so its signature needs no second check: in a
/// process of hundreds of nodes, each certificate is verified once, not by every node that
/// hears of it.
pub(super) fn held_in_process(cert: &Certificate) -> bool {
    SHARED
        .lock()
        .by_signature
        .get(&cert.signature)
        .and_then(Weak::upgrade)
        .is_some_and(|held| *held == *cert)
}

/// Certificates sorted by their node's id, the vector kept to its length: a node holds
/// one for each node it knows of, hundreds in a network of hundreds.
#[derive(Default, Debug)]
struct ById(Vec<Arc<Certificate>>);

impl ById {
    fn place(&self, id: Id) -> Result<usize, usize> {
        self.0.binary_search_by_key(&id, |c| c.node.id)
    }

    fn get(&self, id: &Id) -> Option<&Arc<Certificate>> {
        self.place(*id).ok().map(|at| &self.0[at])
    }

    fn contains_key(&self, id: &Id) -> bool {
        self.place(*id).is_ok()
    }

    /// Keeps `cert` as its node's, in place of any held.
    fn insert(&mut self, cert: Arc<Certificate>) {
        match self.place(cert.node.id) {
            Ok(at) => self.0[at] = cert,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, cert);
            }
        }
    }

    fn retain(&mut self, keep: impl FnMut(&Arc<Certificate>) -> bool) {
        self.0.retain(keep);
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The certificates of the nodes this node knows of, each checked when it arrived.
#[derive(Default, Debug)]
pub(crate) struct Vouchers {
    by_id: Mutex<ById>,
}

impl Vouchers {
    /// Whether a certificate held vouches for `node` at `now_ms`.
    pub fn vouches(&self, node: &NodeInfo, now_ms: u64) -> bool {
        self.by_id
            .lock()
            .get(&node.id)
            .is_some_and(|c| c.node == *node && c.expires_ms > now_ms)
    }

    /// The certificate held of `id`, if any.
    pub fn get(&self, id: Id) -> Option<Arc<Certificate>> {
        self.by_id.lock().get(&id).cloned()
    }

    /// Keeps `cert`, already checked (its signature verified: the process's copy stands
    /// for that check, [`held_in_process`]), unless one of the same id that lasts as long
    /// is held already or there is no room.
    pub fn keep(&self, cert: Certificate, now_ms: u64) {
        let mut by_id = self.by_id.lock();
        // A certificate issued before the one held (an old address or key of the id,
        // replayed) never replaces it.
        if by_id
            .get(&cert.node.id)
            .is_some_and(|held| held.expires_ms >= cert.expires_ms)
        {
            return;
        }
        if by_id.len() >= MAX_KEPT && !by_id.contains_key(&cert.node.id) {
            by_id.retain(|c| c.expires_ms > now_ms);
            if by_id.len() >= MAX_KEPT {
                return;
            }
        }
        by_id.insert(shared(cert));
    }

    /// Whether `cert` needs no check at `now_ms`: one held vouches for the same node and
    /// key as long, or for more than half a certificate's life yet. Nodes renew their
    /// certificates every few seconds: each renewal is checked once in half a life, not at
    /// every exchange that carries it.
    pub fn known(&self, cert: &Certificate, now_ms: u64) -> bool {
        let half_life = (CERTIFICATE_VALIDITY / 2).as_millis() as u64;
        self.by_id.lock().get(&cert.node.id).is_some_and(|held| {
            held.node == cert.node
                && held.key == cert.key
                && (held.expires_ms >= cert.expires_ms
                    || held.expires_ms > now_ms.saturating_add(half_life))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CertError, Identity};
    use super::*;
    use crate::id::loopback_node;

    #[test]
    fn a_certificate_held_vouches_for_its_node_until_it_expires() {
        let authority = Identity::generate().unwrap();
        let key = Identity::generate().unwrap().public();
        let node = NodeInfo {
            id: Id(7),
            addr: ([127, 0, 0, 1], 7).into(),
        };
        let now = 1_000_000;
        let life = CERTIFICATE_VALIDITY.as_millis() as u64;
        let cert = Certificate::issue(&authority, node, key, now + life);
        let vouchers = Vouchers::default();
        assert!(!vouchers.vouches(&node, now) && !vouchers.known(&cert, now));
        vouchers.keep(cert.clone(), now);
        assert!(vouchers.vouches(&node, now));
        assert!(!vouchers.vouches(&node, now + life), "expired");
        let moved = NodeInfo {
            addr: ([127, 0, 0, 1], 8).into(),
            ..node
        };
        assert!(!vouchers.vouches(&moved, now), "another address");
        // A renewal is checked again only once the one held is half through its life.
        let renewed = Certificate::issue(&authority, node, key, now + life + 5_000);
        assert!(vouchers.known(&renewed, now + 5_000));
        assert!(!vouchers.known(&renewed, now + life / 2 + 1));
        let restarted = Certificate::issue(&authority, moved, key, now + life);
        assert!(!vouchers.known(&restarted, now));
    }

    #[test]
    fn nodes_of_a_process_share_one_copy_of_a_certificate_while_any_holds_it() {
        let authority = Identity::generate().unwrap();
        let key = Identity::generate().unwrap().public();
        let cert = |id| Certificate::issue(&authority, loopback_node(id), key, 10_000);
        let (a, b) = (Vouchers::default(), Vouchers::default());
        a.keep(cert(1), 1);
        b.keep(cert(1), 1);
        assert!(Arc::ptr_eq(&a.get(Id(1)).unwrap(), &b.get(Id(1)).unwrap()));
        // Copies nobody holds are swept by the time the table has doubled: 500 dropped,
        // then 600 more held, and the table keeps those 600.
        let mut shared = Shared::new();
        let gone: Vec<_> = (0..500).map(|id| shared.share(cert(id))).collect();
        drop(gone);
        let held: Vec<_> = (500..1100).map(|id| shared.share(cert(id))).collect();
        assert_eq!(shared.by_signature.len(), held.len());
    }

    #[test]
    fn a_copy_held_in_the_process_spares_a_check_only_for_a_certificate_equal_in_every_field() {
        let authority = Identity::generate().unwrap();
        let key = Identity::generate().unwrap().public();
        let node = loopback_node(0x4242);
        let cert = Certificate::issue(&authority, node, key, 10_000);
        assert!(!held_in_process(&cert));
        let vouchers = Vouchers::default();
        vouchers.keep(cert.clone(), 1);
        assert!(held_in_process(&cert));
        assert_eq!(cert.check(&authority.public(), node, &key, 1), Ok(()));
        // The held copy's signature on changed fields: not held, checked, and refused.
        let mut moved = cert.clone();
        moved.node = loopback_node(0x4243);
        let mut longer = cert.clone();
        longer.expires_ms += 1;
        for forged in [moved, longer] {
            assert!(!held_in_process(&forged));
            assert_eq!(
                forged.check(&authority.public(), forged.node, &key, 1),
                Err(CertError::BadSignature)
            );
        }
        // What a held copy does not spare: the checks of the moment.
        assert_eq!(
            cert.check(&authority.public(), node, &key, 10_000),
            Err(CertError::Expired)
        );
        drop(vouchers);
        assert!(!held_in_process(&cert), "no node holds it any more");
    }

    #[test]
    fn at_most_max_kept_certificates_are_held() {
        let authority = Identity::generate().unwrap();
        let key = Identity::generate().unwrap().public();
        let vouchers = Vouchers::default();
        for id in 0..(MAX_KEPT as u16 + 10) {
            let node = NodeInfo {
                id: Id(id),
                addr: ([127, 0, 0, 1], id).into(),
            };
            vouchers.keep(Certificate::issue(&authority, node, key, 10), 1);
        }
        assert_eq!(vouchers.by_id.lock().len(), MAX_KEPT);
        // Expired ones make room.
        let node = NodeInfo {
            id: Id(60_000),
            addr: ([127, 0, 0, 1], 1).into(),
        };
        vouchers.keep(Certificate::issue(&authority, node, key, 100), 50);
        assert!(vouchers.vouches(&node, 50));
        assert_eq!(vouchers.by_id.lock().len(), 1);
    }
}
