//! Who a participant is: a node's signing key, and the certificate by which discovery binds
//! a node id to that key and an address (DESIGN.md section 9).
//!
//! A node proves its key on every connection it opens by signing that connection's
//! handshake hash, so a proof seen on one connection is worth nothing on another; a peer
//! then believes what the connection says about the node (its departure, its address) and
//! nothing it says about any other. The signatures are Ed25519, by `ring`: nothing here is
//! cryptography written by hand.

mod certificate;
mod credentials;
mod vouchers;

pub use certificate::{CertError, Certificate, CERTIFICATE_VALIDITY};
pub(crate) use credentials::{Credentials, PeerIdentity, Proof, BINDING_LEN};
pub(crate) use vouchers::Vouchers;

use std::fmt;
use std::path::Path;

use ring::signature::{self, Ed25519KeyPair, KeyPair};

use crate::error::{Error, Result};
use crate::id::NodeInfo;
use crate::secret_file::{self, SECRET_LEN};

/// Appends `node` to bytes to be signed: its id, then its address's text form (canonical:
/// no flow information or scope travels on the wire) ended by a NUL.
fn put_node(bytes: &mut Vec<u8>, node: NodeInfo) {
    bytes.extend_from_slice(&node.id.0.to_be_bytes());
    bytes.extend_from_slice(node.addr.to_string().as_bytes());
    bytes.push(0);
}

/// Bytes of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 public key: who signed a certificate or a proof.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    /// The first 8 bytes in hex: enough to tell keys apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&secret_file::hex(&self.0[..8]))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A signing key pair: a node's identity, or the authority key with which discovery signs
/// certificates. Never printed.
pub struct Identity {
    pair: Ed25519KeyPair,
    seed: [u8; SECRET_LEN],
}

/// The file in a node's data directory that keeps its identity across restarts.
pub const IDENTITY_FILE: &str = "identity.key";

impl Identity {
    /// A new identity from the operating system's random numbers.
    pub fn generate() -> Result<Identity> {
        Identity::from_seed(secret_file::random("a signing key")?)
    }

    /// The identity whose secret is `seed` (what [`Identity::save`] writes).
    pub fn from_seed(seed: [u8; SECRET_LEN]) -> Result<Identity> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|e| Error::Config(format!("not a signing key: {e}")))?;
        Ok(Identity { pair, seed })
    }

    /// Writes the secret to `path`, a new file readable by its owner only (mode 0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        secret_file::write(path, &self.seed)
    }

    /// Reads the identity [`Identity::save`] wrote to `path`.
    pub fn from_file(path: &Path) -> Result<Identity> {
        Identity::from_seed(secret_file::read(path, "signing key")?)
    }

    /// The identity kept in `dir` ([`IDENTITY_FILE`]), made and saved there the first time:
    /// a node restarted on its data directory is the same node to discovery.
    pub fn in_dir(dir: &Path) -> Result<Identity> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Identity::in_file(&dir.join(IDENTITY_FILE))
    }

    /// The identity kept in the file `path`, made and saved there (mode 0600) the first
    /// time.
    pub fn in_file(path: &Path) -> Result<Identity> {
        if path.exists() {
            return Identity::from_file(path);
        }
        let identity = Identity::generate()?;
        identity.save(path)?;
        log::info!(
            "new identity {} kept in {}",
            identity.public(),
            path.display()
        );
        Ok(identity)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let mut key = [0u8; PUBLIC_KEY_LEN];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public())
    }
}

#[cfg(test)]
mod tests;
