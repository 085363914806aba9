//! The protocol core: the rules of the protocols as state machines, with no sockets, threads
//! or clock in them. Requests, replies and the time come in; answers and effects (messages to
//! send, nodes to ask) go out, for a driver to carry out: the threaded servers in
//! [`crate::Discovery`] and [`crate::Node`], and the simulator in [`crate::sim`]. Their rules
//! are tested here with time passed in.
//!
//! The overlay's protocols are whole state machines here ([`membership`], [`registry`]). The
//! object store's protocol is its decisions and resumable passes ([`objects`]) with its rules
//! ([`placement`], [`versions`], [`outcomes`], [`repairs`]); the drivers move the bytes
//! (streaming large objects over sockets, or in memory in the simulator).

pub mod health;
pub mod membership;
pub mod objects;
pub mod outcomes;
pub mod placement;
pub mod registry;
pub mod repairs;
pub mod versions;
