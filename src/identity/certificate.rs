//! A certificate: discovery's signature binding a node id to the node's key and address
//! until an expiry.

use std::time::Duration;

use super::{Identity, PublicKey, SIGNATURE_LEN};
use crate::id::NodeInfo;

/// How long a certificate discovery issues is valid. A node renews its own with every
/// reminder it sends discovery (every few seconds), so this only bounds how long an id
/// stays vouched for after its node stopped hearing from discovery.
pub const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(3600);

/// Bound into what is signed: a signature made for anything else never verifies as one.
const CONTEXT: &[u8] = b"libpastry certificate 1\0";

/// Discovery's word that `node` (its id at its address) holds `key` until `expires_ms`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Certificate {
    /// The node vouched for: its id and the address it listens on.
    pub node: NodeInfo,
    /// The node's public key: the one its connections prove.
    pub key: PublicKey,
    /// When it stops being valid, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// The discovery (authority) key that signed it.
    pub authority: PublicKey,
    /// The authority's signature over all the above.
    pub signature: [u8; SIGNATURE_LEN],
}

/// Why a certificate is not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Its expiry has passed.
    #[error("the certificate expired")]
    Expired,
    /// Signed by another discovery than the one this participant trusts.
    #[error("the certificate was signed by another discovery")]
    OtherAuthority,
    /// The signature does not verify: forged or changed.
    #[error("the certificate's signature does not verify")]
    BadSignature,
    /// It vouches for another node (id or address) than the one it came with.
    #[error("the certificate names another node or address")]
    OtherNode,
    /// It binds another key than the one the connection proved.
    #[error("the certificate binds another key")]
    OtherKey,
}

impl Certificate {
    /// `authority` vouches for `node` holding `key` until `expires_ms`.
    pub fn issue(
        authority: &Identity,
        node: NodeInfo,
        key: PublicKey,
        expires_ms: u64,
    ) -> Certificate {
        let mut cert = Certificate {
            node,
            key,
            expires_ms,
            authority: authority.public(),
            signature: [0; SIGNATURE_LEN],
        };
        cert.signature = authority.sign(&cert.signed());
        cert
    }

    /// Whether this certificate, signed by `authority` and valid at `now_ms`, vouches for
    /// `node` holding `key`.
    pub fn check(
        &self,
        authority: &PublicKey,
        node: NodeInfo,
        key: &PublicKey,
        now_ms: u64,
    ) -> Result<(), CertError> {
        if self.authority != *authority {
            return Err(CertError::OtherAuthority);
        }
        // A copy a node of this process kept was verified when it came.
        if !super::vouchers::held_in_process(self)
            && !authority.verifies(&self.signed(), &self.signature)
        {
            return Err(CertError::BadSignature);
        }
        if self.expires_ms <= now_ms {
            return Err(CertError::Expired);
        }
        if self.node != node {
            return Err(CertError::OtherNode);
        }
        if self.key != *key {
            return Err(CertError::OtherKey);
        }
        Ok(())
    }

    /// The bytes signed: every field but the signature, after the context.
    fn signed(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CONTEXT.len() + 120);
        bytes.extend_from_slice(CONTEXT);
        super::put_node(&mut bytes, self.node);
        bytes.extend_from_slice(&self.key.0);
        bytes.extend_from_slice(&self.expires_ms.to_be_bytes());
        bytes.extend_from_slice(&self.authority.0);
        bytes
    }
}
