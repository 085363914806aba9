//! The one error type of the library.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::id::Id;
use crate::store::StoreError;
use crate::wire::{Message, RemoteCode, WireError};

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
    /// A resource of this process failed, not the peer: out of file descriptors or ports, for
    /// instance. Worth trying again later; says nothing about the peer.
    #[error("local failure {what}")]
    Local {
        /// What was being done.
        what: String,
        /// What the operating system said.
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
    /// An object name cannot be stored: it is empty or too long.
    #[error("invalid object name: {reason}")]
    InvalidName {
        /// Why the name was refused.
        reason: String,
    },
    /// No object has this name.
    #[error("no object named {name:?}")]
    NotFound {
        /// The name asked for (lossily shown as text).
        name: String,
    },
    /// An object failed its checksum, on disk or in transfer. No bytes of it were handed out.
    #[error("object {name:?} is corrupt: {what}")]
    Corrupt {
        /// The object's name (lossily shown as text).
        name: String,
        /// What was wrong.
        what: String,
    },
    /// The object store failed (its file system, or two long names sharing a file).
    #[error("object store failed on {name:?}")]
    Store {
        /// The object's name (lossily shown as text).
        name: String,
        /// What went wrong.
        #[source]
        source: StoreError,
    },
    /// Reading or writing a local file failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The handle has been shut down.
    #[error("the handle has been shut down")]
    Shutdown,
}

impl Error {
    /// The error for `e` in the store while handling the object `name`.
    pub(crate) fn from_store(name: &[u8], e: StoreError) -> Error {
        let name = String::from_utf8_lossy(name).into_owned();
        match e {
            StoreError::InvalidName { reason } => Error::InvalidName {
                reason: reason.to_string(),
            },
            StoreError::NotFound => Error::NotFound { name },
            StoreError::Corrupt { what, .. } => Error::Corrupt { name, what },
            source => Error::Store { name, source },
        }
    }

    /// The error for a reply from `addr` of another kind than `wanted`.
    pub(crate) fn unexpected_reply(addr: SocketAddr, wanted: &str, got: &Message) -> Error {
        Error::Protocol {
            addr,
            what: format!("expected {wanted}, got {}", got.name()),
        }
    }

    /// Whether the peer failed to answer as a node: nothing answers at its address, no
    /// answer came in time, or what came was not the protocol.
    pub(crate) fn is_peer_failure(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. }
                | Error::Timeout { .. }
                | Error::Wire { .. }
                | Error::Protocol { .. }
        )
    }

    /// Whether the same request may succeed if tried again (after looking the key up again):
    /// the overlay was changing, or a peer failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. }
            | Error::Timeout { .. }
            | Error::RouteTooLong { .. }
            | Error::Local { .. } => true,
            Error::Refused { code, .. } => matches!(
                code,
                RemoteCode::NotResponsible
                    | RemoteCode::NotJoined
                    | RemoteCode::Busy
                    | RemoteCode::Unroutable
            ),
            _ => false,
        }
    }
}

/// The result of every fallible libpastry call.
pub type Result<T> = std::result::Result<T, Error>;
