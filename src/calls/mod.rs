//! The calling side of the protocols in one place: routing requests, requests to discovery,
//! and the mappings between errors and refusals. Nodes and clients both use it; the client
//! reaches into nothing of the node's.

pub(crate) mod discovery;
pub(crate) mod refusal;
pub(crate) mod route;
