//! How to start a node, and which settings make sense together.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::net::{NetConfig, Security};
use crate::overlay::DEFAULT_LEAF_HALF;
use crate::store::{CHUNK_SIZE, DEFAULT_SMALL_OBJECT_MAX};

/// Default limit on the hops of one route: far above `log16(2^16) = 4`, so only a network
/// that has not settled reaches it.
pub const DEFAULT_MAX_HOPS: usize = 32;

/// Default number of copies kept of each object.
pub const DEFAULT_REPLICAS: usize = 3;

/// Default time a deletion record is kept: a day, far beyond any repair, so that a holder
/// that was down for hours still learns of the delete.
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Address to listen on. Default `127.0.0.1:0` (the OS chooses the port).
    pub listen: SocketAddr,
    /// Address other nodes use to reach this one (port 0: the port listened on). Default: the
    /// address listened on, which must then not be a wildcard such as `0.0.0.0`.
    pub advertise: Option<SocketAddr>,
    /// This node's id. When `None`: the id the node last ran with in `data_dir` (kept in its
    /// file [`ID_FILE`](super::ID_FILE)), so that a node started again on its directory is
    /// itself again; else one drawn at random ([`Node::start_joined`](super::Node::start_joined)
    /// draws again while a member holds it). A configured id is kept in `data_dir` in turn.
    pub id: Option<Id>,
    /// Leaf-set members kept on each side (`l`). Default 8.
    pub leaf_half: usize,
    /// Copies kept of each object (`k`): on the responsible node and the `k - 1` next best
    /// placed. From 1 to `leaf_half + 1`. Default [`DEFAULT_REPLICAS`].
    pub replicas: usize,
    /// Most hops a route may take before a lookup fails (at most 255 count: the wire carries
    /// it in a byte). Default [`DEFAULT_MAX_HOPS`].
    pub max_hops: usize,
    /// Directory for this node's objects. `None`: a new temporary directory, removed when
    /// the node shuts down.
    pub data_dir: Option<PathBuf>,
    /// How often the node checks its leaf-set neighbours (exchanging leaf sets with them) and
    /// retries work left undone, such as an object it could not hand over. A neighbour that
    /// crashed is noticed within about this long (a hung one within two I/O timeouts).
    /// Default 1 s.
    pub maintenance_interval: Duration,
    /// How long a deletion record is kept after its delete before it is collected (once
    /// every holder has it). A holder away longer than this cannot bring a deleted object
    /// back: see [`LAST_ALIVE_FILE`](super::LAST_ALIVE_FILE) for how. Default [`DEFAULT_TOMBSTONE_GRACE`].
    pub tombstone_grace: Duration,
    /// Whether each write is synced to the disk before it is acknowledged (default true).
    /// Without it a write survives a crash of the process but not a power loss or an
    /// operating-system crash, in exchange for much faster writes; the copies on other nodes
    /// may make that trade acceptable.
    pub sync_writes: bool,
    /// Objects of at most this many bytes live in the store's log (one append, its sync
    /// shared by the writes of the same moment); larger ones are files of their own,
    /// streamed in chunks. Default [`DEFAULT_SMALL_OBJECT_MAX`] (64 KiB); above
    /// [`MAX_SMALL_OBJECT`](crate::store::MAX_SMALL_OBJECT) (1 MiB) is taken as that. See
    /// [`crate::store`].
    pub small_object_max: usize,
    /// Socket timeouts and limits.
    pub net: NetConfig,
    /// Where to serve the tracker seed's compact protocol ([`crate::compact`]): plaintext
    /// and unauthenticated, for programs written to that protocol. Default `None` (off).
    pub compact_listen: Option<SocketAddr>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            advertise: None,
            id: None,
            leaf_half: DEFAULT_LEAF_HALF,
            replicas: DEFAULT_REPLICAS,
            max_hops: DEFAULT_MAX_HOPS,
            data_dir: None,
            maintenance_interval: Duration::from_secs(1),
            tombstone_grace: DEFAULT_TOMBSTONE_GRACE,
            sync_writes: true,
            small_object_max: DEFAULT_SMALL_OBJECT_MAX,
            net: NetConfig::default(),
            compact_listen: None,
        }
    }
}

impl NodeConfig {
    /// The default settings with `security` chosen: the cluster's key, or
    /// [`Security::Insecure`](crate::Security::Insecure).
    pub fn new(security: impl Into<Security>) -> NodeConfig {
        NodeConfig {
            net: NetConfig::with(security),
            ..NodeConfig::default()
        }
    }
}

/// The least `net.max_payload` a node accepts: a frame must hold a whole chunk of an object,
/// and a batch of the names a node asks its peers about when it moves objects (256 names of
/// up to [`MAX_NAME_LEN`](crate::store::MAX_NAME_LEN) bytes).
pub const MIN_MAX_PAYLOAD: u32 = 2 << 20;

impl NodeConfig {
    /// Checks that the settings make sense together; the error says which does not.
    pub fn validate(&self) -> Result<()> {
        if self.leaf_half == 0 || self.max_hops == 0 {
            return Err(Error::Config(
                "leaf_half and max_hops must be at least 1".into(),
            ));
        }
        if self.replicas == 0 || self.replicas > self.leaf_half + 1 {
            // Copies beyond the leaf set could not be found again by the holders.
            return Err(Error::Config(format!(
                "replicas must be from 1 to leaf_half + 1 = {}",
                self.leaf_half + 1
            )));
        }
        self.net.security.chosen()?;
        if self.net.max_payload < MIN_MAX_PAYLOAD {
            return Err(Error::Config(format!(
                "net.max_payload must be at least {MIN_MAX_PAYLOAD} bytes (a chunk is {CHUNK_SIZE})"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_together_are_refused_by_name() {
        assert!(NodeConfig::new(Security::Insecure).validate().is_ok());
        let Err(Error::Config(why)) = NodeConfig::default().validate() else {
            panic!("a node with no security chosen was accepted");
        };
        assert!(why.contains("security"), "{why}");
        let mut small = NodeConfig::new(Security::Insecure);
        small.net.max_payload = u32::try_from(CHUNK_SIZE).unwrap();
        let Err(Error::Config(why)) = small.validate() else {
            panic!("a payload limit of one chunk was accepted");
        };
        assert!(why.contains("max_payload"), "{why}");
        let no_leaf = NodeConfig {
            leaf_half: 0,
            ..NodeConfig::new(Security::Insecure)
        };
        assert!(matches!(no_leaf.validate(), Err(Error::Config(_))));
    }
}
