//! The one error type of the library.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::id::Id;
use crate::wire::{RemoteCode, WireError};

/// Everything that can go wrong in libpastry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A string is not an identifier: 1 to 4 hex digits, optionally after `0x`.
    #[error("invalid identifier {0:?}: expected 1 to 4 hex digits")]
    InvalidId(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Binding or accepting on a local address failed.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Talking to a peer (a node or the discovery node) failed: it could not be reached, it
    /// closed the connection, or it did not answer in time.
    #[error("peer {addr} unreachable")]
    Unreachable {
        /// The peer's address.
        addr: SocketAddr,
        /// What the operating system said (`TimedOut`/`WouldBlock` for a timeout).
        #[source]
        source: io::Error,
    },
    /// A peer did not answer within the configured timeout.
    #[error("peer {addr} did not answer within {after:?}")]
    Timeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The timeout that expired.
        after: Duration,
    },
    /// A frame could not be decoded.
    #[error("malformed frame from {addr}")]
    Wire {
        /// The peer that sent it.
        addr: SocketAddr,
        /// What was wrong with it.
        #[source]
        source: WireError,
    },
    /// A peer answered with a message that does not fit the request.
    #[error("unexpected reply from {addr}: {what}")]
    Protocol {
        /// The peer's address.
        addr: SocketAddr,
        /// What was expected and what came.
        what: String,
    },
    /// The identifier is already used by a live or joining node.
    #[error("identifier {0} is already in use")]
    IdInUse(Id),
    /// There is no live peer to join through or to ask.
    #[error("no live peer is known")]
    NoPeers,
    /// A peer refused the request; its reason is given.
    #[error("{addr} refused ({code:?}): {message}")]
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// The kind of refusal.
        code: RemoteCode,
        /// The peer's reason.
        message: String,
    },
    /// The node has not joined an overlay (or has left it).
    #[error("node {0} is not part of an overlay")]
    NotJoined(Id),
    /// The node is already part of an overlay.
    #[error("node {0} has already joined")]
    AlreadyJoined(Id),
    /// A lookup did not settle within the hop limit: the overlay is not yet consistent.
    #[error("lookup of {key} did not settle within {hops} hops")]
    RouteTooLong {
        /// The key looked up.
        key: Id,
        /// The hop limit.
        hops: usize,
    },
    /// The handle has been shut down.
    #[error("the handle has been shut down")]
    Shutdown,
}

/// The result of every fallible libpastry call.
pub type Result<T> = std::result::Result<T, Error>;
