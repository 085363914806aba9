//! The protocol core: the rules of the protocols as state machines, with no sockets, threads
//! or clock in them. Requests, replies and the time come in; answers and effects (messages to
//! send, nodes to ask) go out, for a driver to carry out: the threaded servers in
//! [`crate::Discovery`] and [`crate::Node`], and the simulator in [`crate::sim`]. Their rules
//! are tested here with time passed in.

pub mod health;
pub mod membership;
pub mod placement;
pub mod registry;
