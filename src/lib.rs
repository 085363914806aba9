//! # libpastry
//!
//! An embeddable implementation of the [Pastry] peer-to-peer overlay on 16-bit identifiers:
//! a discovery node that tracks the live peers, nodes that join, route lookups to the node
//! numerically closest to a key through a leaf set and a prefix routing table, and leave.
//!
//! ```
//! use pastry::{key_of, ClusterKey, Discovery, Entry, Node, NodeConfig};
//!
//! # fn main() -> pastry::Result<()> {
//! // Every member proves this key when it connects; a network across machines reads it
//! // from a file (`ClusterKey::create_file`, `ClusterKey::from_file`).
//! let key = ClusterKey::generate()?;
//! let discovery = Discovery::start("127.0.0.1:0".parse().unwrap(), &key)?;
//! let mut nodes = Vec::new();
//! for _ in 0..4 {
//!     // A random id; one a member holds already is drawn again.
//!     let entry = Entry::Discovery(discovery.local_addr());
//!     nodes.push(Node::start_joined(NodeConfig::new(&key), entry)?);
//! }
//! let route = nodes[0].lookup(key_of(b"hello.txt"))?;
//! let ids: Vec<_> = discovery.peers().iter().map(|p| p.id).collect();
//! assert_eq!(Some(route.responsible().id), pastry::responsible(route.key, ids));
//! # Ok(())
//! # }
//! ```
//!
//! Layers, from the bottom: [`id`] (identifiers, distance, digest), [`overlay`] (the leaf set,
//! routing table and routing decision: pure, no I/O), [`wire`] (messages and frames), `net`
//! (sockets and threads), then [`Node`] and [`Discovery`].
//!
//! [Pastry]: https://www.microsoft.com/en-us/research/publication/pastry-scalable-distributed-object-location-and-routing-for-large-scale-peer-to-peer-systems/
#![warn(missing_docs)]

mod calls;
mod checksum;
mod client;
pub mod compact;
mod discovery;
mod error;
mod fast_hash;
pub mod ffi;
pub mod id;
pub mod identity;
mod net;
mod node;
pub mod overlay;
pub mod protocol;
mod rng;
mod secret_file;
pub mod sim;
pub mod store;
mod transfer;
pub mod wire;

pub use client::{Client, ClientConfig, Deleted, Entry, Fetched, Retrieved, Stored};
pub use discovery::{Discovery, DISCOVERY_MAX_CONNECTIONS};
pub use error::{Error, Result};
pub use id::{key_of, responsible, Id, Key, NodeId, NodeInfo};
pub use identity::{Certificate, Identity, PublicKey};
pub use net::{ClusterKey, Connection, NetConfig, NetStats, Security, KEY_LEN};
pub use node::{
    AppRoute, Application, Node, NodeConfig, Route, DEFAULT_MAX_HOPS, DEFAULT_REPLICAS,
    DEFAULT_TOMBSTONE_GRACE, ID_DRAWS, ID_FILE, LAST_ALIVE_FILE, MAX_APP_MESSAGE,
    MAX_VERSION_AHEAD, MIN_MAX_PAYLOAD,
};
pub use overlay::{LeafSet, OverlayState, RoutingTable};
pub use rng::Rng;
pub use store::{RecordMeta, CHUNK_SIZE, MAX_NAME_LEN};
