//! The protocol core: the rules of the protocols as state machines, with no sockets, threads
//! or clock in them. Requests, replies and the time come in; answers and effects (messages to
//! send, nodes to ask) go out, for a driver to carry out: the threaded servers in
//! [`crate::Discovery`] and [`crate::Node`] today. Their rules are tested here with time
//! passed in.
//!
//! So far discovery's registry and a node's failure tracking live here; the node's protocols
//! are to follow.

pub mod health;
pub mod registry;
