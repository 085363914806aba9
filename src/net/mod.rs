//! Sockets: frame I/O, the thread-per-connection server, and the pool of reused outbound
//! connections.

mod frame_io;
mod pool;
mod server;

pub use pool::Pool;
pub use server::{Handler, Server};

use std::time::Duration;

use crate::wire::DEFAULT_MAX_PAYLOAD;

/// Socket settings shared by servers and outbound connections.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// How long to wait for a TCP connection to be accepted. Default 2 s.
    pub connect_timeout: Duration,
    /// How long to wait for a reply (or for a write to drain). Default 5 s.
    pub io_timeout: Duration,
    /// How long a server keeps a connection that sends nothing. Default 60 s.
    pub idle_timeout: Duration,
    /// Most connections a server serves at once; one more is refused. Default 512.
    pub max_connections: usize,
    /// Largest frame payload accepted, in bytes. Default 4 MiB.
    pub max_payload: u32,
    /// Most idle outbound connections kept per peer. Default 4.
    pub pool_per_peer: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_payload: DEFAULT_MAX_PAYLOAD,
            pool_per_peer: 4,
        }
    }
}

/// Stack size of connection threads: handlers are shallow, and a network of hundreds of nodes
/// in one process runs thousands of them.
const THREAD_STACK: usize = 256 * 1024;
