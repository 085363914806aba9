//! The tracker seed's system, served over a libpastry network: a tracker that tells a
//! client which node holds a 32-bit key, and a compact listener on each node that inserts,
//! looks up and deletes 32-bit values in 9-byte messages. Both are plaintext and
//! unauthenticated, as in the seed: off unless asked for, and bound to loopback unless told
//! otherwise (see the README's "The tracker seed's protocol").
//!
//! The formats ([`mod@format`]):
//! - **Tracker**: a request is 4 bytes, the key as a big-endian `u32`; the reply is 4 bytes, a
//!   big-endian `u32` whose low 16 bits are the TCP port of the compact listener of the node
//!   responsible for the key, on the tracker's host (0 when no node with a compact listener
//!   is known). A connection may send several requests.
//! - **Compact listener**: a request is 9 bytes, the type (0 insert, 1 lookup, 2 delete, 3 do
//!   nothing), the key and the value (big-endian `u32`s); the reply is 9 bytes, a status (0
//!   ok, 1 not found, 2 refused or failed), the key, and the value stored, found or removed
//!   (0 otherwise). Any node's listener takes any key. A type above 3 gets status 2 and the
//!   connection is closed.
//! - **Mapping**: key `K` is the object named by the 4 bytes of `K` in big-endian order,
//!   holding the value's 4 bytes in big-endian order, so the same entries are seen through
//!   [`Client::get`](crate::Client::get), `store_data` and the C API, with the object
//!   store's copies, migration and crash tolerance underneath.
//!
//! Both listeners are small servers of their own (`server.rs`): a thread accepts, a thread
//! serves each connection (at most [`MAX_CONNECTIONS`] at once), and a request must arrive
//! whole within the I/O timeout once it has started.

pub mod format;
mod listener;
mod server;
mod tracker;

pub(crate) use listener::CompactListener;
pub(crate) use tracker::Tracker;

/// Most connections a compact listener or a tracker serves at once; one more is closed.
pub const MAX_CONNECTIONS: usize = 64;
