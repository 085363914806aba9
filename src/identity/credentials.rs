//! What a participant proves on its connections, and what it believes of the other end's.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::{CertError, Certificate, Identity, PublicKey, Vouchers, SIGNATURE_LEN};
use crate::id::NodeInfo;

/// Bound into every proof: a signature made for anything else never verifies as one.
const CONTEXT: &[u8] = b"libpastry hello 1\0";

/// Bytes of a connection's binding: its handshake hash.
pub(crate) const BINDING_LEN: usize = 32;

/// A participant's proof, on one connection, that it holds `key` and is `node`: its
/// signature over the connection's handshake hash (so it is worth nothing on any other
/// connection) and which end it is (so a proof sent back is not the other end's). Carried
/// by [`Message::Hello`](crate::wire::Message::Hello).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proof {
    /// The node it claims to be.
    pub node: NodeInfo,
    /// The key it proves.
    pub key: PublicKey,
    /// Discovery's certificate of `node` and `key` (none before its first registration).
    pub cert: Option<Box<Certificate>>,
    /// The signature over the binding.
    pub signature: [u8; SIGNATURE_LEN],
}

/// What a connection's other end proved to be. Requests that speak for a node are believed
/// only for this node; those only nodes may send, only when it is certified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// The node, as its proof (and certificate) says.
    pub node: NodeInfo,
    /// The key it proved.
    pub key: PublicKey,
    /// Whether it is a member node: its certificate verified (or this participant trusts
    /// no discovery, and a proven key is all there is).
    pub member: bool,
}

/// How a participant judges proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Judge {
    /// Discovery: it issues the certificates, so a proven key is what it goes by.
    Authority,
    /// A node: a peer is a member only with a certificate from the discovery that
    /// certified this node.
    Member,
}

/// A participant's identity, its certificate, and the discovery it trusts.
#[derive(Debug)]
pub(crate) struct Credentials {
    identity: Identity,
    judge: Judge,
    /// The authority whose certificates are believed: discovery's own key, or, for a node,
    /// the one that signed its first certificate (none before that, or ever for a node
    /// joined without discovery).
    authority: RwLock<Option<PublicKey>>,
    certificate: RwLock<Option<Certificate>>,
    /// The node this participant is (none for discovery).
    me: Option<NodeInfo>,
    /// Refusals already logged, by whom and what: each is logged once.
    logged: Mutex<HashSet<(PublicKey, &'static str)>>,
    /// Refusals noted in all.
    refused: AtomicU64,
    /// Set for a node of an overlay without discovery: it takes proven keys as members
    /// without certificates, having none to check them against.
    open: AtomicBool,
    /// The certificates of other nodes, checked: those proven on connections, and those
    /// that came with node entries.
    vouchers: Vouchers,
}

/// Most distinct refusals remembered as logged: past it, the oldest are forgotten (and may
/// be logged again) rather than memory grow with what strangers send.
const MAX_LOGGED: usize = 4096;

impl Credentials {
    /// Node `me`'s: it trusts no discovery until one certifies it.
    pub fn node(identity: Identity, me: NodeInfo) -> Credentials {
        Credentials {
            identity,
            judge: Judge::Member,
            authority: RwLock::new(None),
            certificate: RwLock::new(None),
            me: Some(me),
            logged: Mutex::default(),
            refused: AtomicU64::new(0),
            open: AtomicBool::new(false),
            vouchers: Vouchers::default(),
        }
    }

    /// The node this participant is (none for discovery).
    pub fn me(&self) -> Option<NodeInfo> {
        self.me
    }

    /// The certificates held of other nodes.
    pub fn vouchers(&self) -> &Vouchers {
        &self.vouchers
    }

    /// Logs, once per `who` and `what`, that a request `what` from the holder of `who` was
    /// refused for `why`.
    pub fn note_refusal(&self, who: PublicKey, what: &'static str, why: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock();
        if logged.len() >= MAX_LOGGED {
            logged.clear();
        }
        if logged.insert((who, what)) {
            log::warn!("refused {what} from the holder of key {who}: {why}");
        }
    }

    /// Requests refused so far, and the distinct (sender, kind) refusals logged.
    #[cfg(test)]
    pub fn refusals(&self) -> (u64, usize) {
        (
            self.refused.load(Ordering::Relaxed),
            self.logged.lock().len(),
        )
    }

    /// Discovery's: `identity` is the authority key it signs certificates with.
    pub fn authority(identity: Identity) -> Credentials {
        let public = identity.public();
        Credentials {
            identity,
            judge: Judge::Authority,
            authority: RwLock::new(Some(public)),
            certificate: RwLock::new(None),
            me: None,
            logged: Mutex::default(),
            refused: AtomicU64::new(0),
            open: AtomicBool::new(false),
            vouchers: Vouchers::default(),
        }
    }

    /// The signing identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The public key proved.
    pub fn public(&self) -> PublicKey {
        self.identity.public()
    }

    /// The authority trusted, if any.
    pub fn trusted_authority(&self) -> Option<PublicKey> {
        *self.authority.read()
    }

    /// The certificate held, if any.
    pub fn certificate(&self) -> Option<Certificate> {
        self.certificate.read().clone()
    }

    /// Makes this node one of an overlay without discovery (it joins through a peer or
    /// starts one): unless a discovery certified it before, it takes proven keys as members
    /// from now on, with no certificate to check.
    pub fn open_without_discovery(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// Takes `cert`, given by discovery for this participant as `node`, at `now_ms`. The
    /// first certificate decides which discovery is trusted from then on; one signed by
    /// another is refused.
    pub fn certify(&self, cert: Certificate, node: NodeInfo, now_ms: u64) -> Result<(), CertError> {
        let mut authority = self.authority.write();
        let trusted = authority.unwrap_or(cert.authority);
        cert.check(&trusted, node, &self.public(), now_ms)?;
        if authority.is_none() {
            log::info!("{node}: trusting discovery {trusted}, which certified it");
        }
        *authority = Some(trusted);
        *self.certificate.write() = Some(cert);
        Ok(())
    }

    /// This participant's proof as `node` on a connection bound by `binding`, of which it
    /// is the end that `opened` it or not.
    pub fn prove(&self, node: NodeInfo, binding: &[u8; BINDING_LEN], opened: bool) -> Proof {
        let key = self.public();
        let signature = self.identity.sign(&signed(node, &key, binding, opened));
        Proof {
            node,
            key,
            cert: self.certificate().map(Box::new),
            signature,
        }
    }

    /// Judges `proof`, sent by the end of a connection bound by `binding` that `opened` it
    /// or not, at `now_ms`: who that end is, or why it is not believed.
    pub fn judge(
        &self,
        proof: &Proof,
        binding: &[u8; BINDING_LEN],
        opened: bool,
        now_ms: u64,
    ) -> Result<PeerIdentity, Refused> {
        let message = signed(proof.node, &proof.key, binding, opened);
        if !proof.key.verifies(&message, &proof.signature) {
            return Err(Refused::Proof);
        }
        let member = match (self.judge, self.trusted_authority()) {
            (Judge::Authority, authority) => match (&proof.cert, authority) {
                (Some(cert), Some(authority)) => cert
                    .check(&authority, proof.node, &proof.key, now_ms)
                    .is_ok(),
                _ => false,
            },
            // Nothing to check a certificate against: a node of an overlay without
            // discovery takes proven keys as they come; one not yet certified (it may be
            // about to be) takes nobody as a member.
            (Judge::Member, None) if self.open.load(Ordering::Relaxed) => true,
            (Judge::Member, None) => return Err(Refused::NotCertified),
            (Judge::Member, Some(authority)) => {
                let cert = proof.cert.as_ref().ok_or(Refused::Uncertified)?;
                cert.check(&authority, proof.node, &proof.key, now_ms)
                    .map_err(Refused::Certificate)?;
                // The node is known now: what others tell of it is believed too.
                if !self.vouchers.known(cert, now_ms) {
                    self.vouchers.keep((**cert).clone(), now_ms);
                }
                true
            }
        };
        Ok(PeerIdentity {
            node: proof.node,
            key: proof.key,
            member,
        })
    }
}

/// Why a proof is not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The signature does not verify over this connection's binding: made for another
    /// connection, or forged.
    #[error("its proof of key does not verify on this connection")]
    Proof,
    /// No certificate, where one is required.
    #[error("it has no certificate")]
    Uncertified,
    /// A certificate that is not believed.
    #[error("{0}")]
    Certificate(CertError),
    /// This node is not certified yet, and so believes no one's certificate.
    #[error("this node is not certified yet")]
    NotCertified,
}

/// The bytes a proof signs.
fn signed(node: NodeInfo, key: &PublicKey, binding: &[u8; BINDING_LEN], opened: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CONTEXT.len() + 1 + BINDING_LEN + 2 + 48 + 32);
    bytes.extend_from_slice(CONTEXT);
    bytes.push(u8::from(opened));
    bytes.extend_from_slice(binding);
    super::put_node(&mut bytes, node);
    bytes.extend_from_slice(&key.0);
    bytes
}
