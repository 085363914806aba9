//! Who may talk to a listener: the cluster key, and the encrypted channel every connection
//! runs on once both ends have proven it.
//!
//! Each connection opens with a Noise handshake (`NNpsk0`: fresh ephemeral keys on both
//! sides, the cluster key mixed in before the first message), so a peer without the key is
//! found out by its first 56 bytes, and a recorded session cannot be replayed: its first
//! message is stale or already seen (`replay.rs`), and its keys died with its ephemeral keys. The cryptography is the `snow` crate's; nothing here is written
//! by hand but the framing of its records.

mod channel;
mod key_file;
mod replay;

#[cfg(test)]
pub(crate) use channel::channel_pair;
pub(crate) use channel::{Channel, Handshake, HELLO_LEN, MAX_PLAIN, RECORD_OVERHEAD, REPLY_LEN};
pub(crate) use replay::ReplayGuard;

/// Now, in milliseconds since the Unix epoch (0 for a clock set before it): the clock a
/// first handshake message carries and its listener checks.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

use std::fmt;

use crate::error::{Error, Result};

/// Bytes in a cluster key.
pub const KEY_LEN: usize = 32;

/// A cluster's shared secret: every discovery node, node and client of the cluster holds the
/// same one, and a connection from anyone else is closed after its first message.
///
/// Make one with [`ClusterKey::create_file`] (or the `discovery --new-key FILE` program) and
/// hand it to the others with [`ClusterKey::from_file`]. It is never printed: `Debug` shows
/// only that it is a key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_LEN]);

impl ClusterKey {
    /// A new random key, from the operating system's random numbers.
    pub fn generate() -> Result<ClusterKey> {
        crate::secret_file::random("a random cluster key").map(ClusterKey)
    }

    /// The key made of `bytes`.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// The key's bytes, to be kept as secret as the key.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The client key of this cluster: what to give a program that only looks up, reads
    /// and writes objects. A holder of it is served as a client by every node and by
    /// discovery, and cannot be anything more: it cannot register an id, introduce itself
    /// as a node, move objects or change anyone's tables. Derived from this key (an
    /// HMAC-SHA256), so nodes and discovery need nothing more to admit clients; the client
    /// key of a client key is another key, admitted by nobody.
    pub fn client_key(&self) -> ClusterKey {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&key, b"libpastry client key 1");
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(tag.as_ref());
        ClusterKey(bytes)
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// How a listener and its callers treat each other: part of [`NetConfig`](super::NetConfig).
#[derive(Clone, Debug, Default)]
pub enum Security {
    /// Not chosen yet: starting a node, discovery node or client fails, naming the two
    /// choices below. There is no silent default.
    #[default]
    Unset,
    /// Every connection proves this key in a mutual handshake and is encrypted and
    /// authenticated from then on.
    Key(ClusterKey),
    /// No handshake and no encryption: anyone who can reach a port is a full member and can
    /// read, change or delete anything. For a network on one machine's loopback, or behind
    /// a boundary that already keeps strangers out.
    Insecure,
}

impl From<ClusterKey> for Security {
    fn from(key: ClusterKey) -> Security {
        Security::Key(key)
    }
}

impl From<&ClusterKey> for Security {
    fn from(key: &ClusterKey) -> Security {
        Security::Key(key.clone())
    }
}

impl Security {
    /// The key, or the error that says no choice was made.
    pub(crate) fn chosen(&self) -> Result<Option<&ClusterKey>> {
        match self {
            Security::Key(key) => Ok(Some(key)),
            Security::Insecure => Ok(None),
            Security::Unset => Err(Error::Config(
                "net.security is unset: give the cluster key (Security::Key) or choose \
                 Security::Insecure explicitly"
                    .into(),
            )),
        }
    }

    /// The trailer of the frames on this security's connections: a CRC where nothing else
    /// checks the bytes, none where records are sealed.
    pub(crate) fn trailer(&self) -> crate::wire::Trailer {
        crate::wire::Trailer::on(!matches!(self, Security::Insecure))
    }
}
