//! Sockets: frame I/O, the multiplexed connections a reactor serves, the pool of reused
//! outbound connections, and the cluster key and encrypted channel they all run on.

mod buffers;
mod connection;
mod frame_io;
mod frames;
mod introductions;
mod mux;
mod pool;
mod reactor;
mod secure;
mod server;
mod spin;
mod stream_ids;

pub use connection::Connection;
pub(crate) use frame_io::{refusal_to_error, ReadError};
pub(crate) use frames::Frames;
pub use pool::Pool;
pub(crate) use reactor::{may_block, Chore};
pub(crate) use secure::unix_ms;
pub use secure::{ClusterKey, Security, KEY_LEN};
pub(crate) use server::Later;
pub use server::{Handler, Server, Session};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::wire::DEFAULT_MAX_PAYLOAD;

/// Whether a buffer holding `held` bytes of something `whole` bytes long (a frame, a sealed
/// record) may make room for all of it: once an eighth has come. Memory then follows the
/// bytes that arrived (eight times them at most), never a length a header claims, and a
/// large frame arriving in records gets its room with its first record instead of being
/// moved as it grows.
pub(crate) fn room_for_whole(held: usize, whole: usize) -> bool {
    8 * held >= whole
}

/// Socket settings shared by servers and outbound connections.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// How long to wait for a TCP connection to be accepted. Default 2 s.
    pub connect_timeout: Duration,
    /// How long to wait for a reply (or for a write to drain). Default 5 s. A lookup, which may
    /// have to route around a hop that does not answer, takes at most twice this. Also how
    /// long a frame may take from its first byte to its last: a frame that trickles in more
    /// slowly closes its connection.
    pub io_timeout: Duration,
    /// How long a server keeps a connection that sends nothing. Default 60 s.
    pub idle_timeout: Duration,
    /// Most connections a server serves at once; one more is refused. Default 2,048: a node
    /// of a large overlay sits in many others' routing tables, and a connection costs a
    /// descriptor and a few KiB, no thread.
    pub max_connections: usize,
    /// Once a server holds half of `max_connections`, the most connections from one IP
    /// address it holds before they have proven the cluster key: past it, a new one from that
    /// address is closed at once. A stranger opening thousands of connections so holds no
    /// more than half the slots and this many (each for at most `io_timeout`), and the rest
    /// stay free for others. Default 16.
    pub max_handshakes_per_source: usize,
    /// Largest frame payload accepted, in bytes. Default 4 MiB.
    pub max_payload: u32,
    /// Most requests a server works on at once, each on a handler thread of its own (started
    /// as needed, let go when idle); one more is refused as busy. Default 128.
    pub max_workers: usize,
    /// Most requests one connection may have in flight at a server at once; one more is
    /// refused as busy. Default 128.
    pub max_streams: usize,
    /// Bytes of frames a request's sender may send ahead of what this end has taken: what a
    /// slow receiver holds of one request at most (besides one frame), once the sender has
    /// heard from it; before, every sender starts with 1 MiB, so that peers configured
    /// differently agree. 0 is taken as 1. Default 1 MiB.
    pub stream_window: u32,
    /// Whether outbound connections are kept: 0 closes each after its one request (a
    /// baseline for benchmarks, and the way to fit the most nodes under a descriptor limit);
    /// any other value keeps one per peer, carrying every request to it at once. Default 1.
    pub pool_per_peer: usize,
    /// Most outbound connections kept in all, the least recently used one with no request
    /// in flight closed first: bounds the sockets one node or client holds however many
    /// peers it talks to. Default 1,024: a client talks to every node whose keys it reads
    /// or writes, and a connection closed to make room costs a handshake on the next request
    /// to its node (a client of 256 nodes kept to 128 spent most of its time in handshakes).
    /// A node keeps far fewer: its leaf set and routing table, and briefly the others it
    /// met. (Connections peers opened and introduced are theirs to close, not counted here.)
    pub pool_max_idle: usize,
    /// How long an outbound connection may carry no request before it is closed: this
    /// bounds the connections a node holds to the peers it talks to often. Default 30 s. A
    /// node closes one to a peer outside its leaf set and routing table (and discovery)
    /// sooner: after 5 s, at its next maintenance round.
    pub pool_idle_timeout: Duration,
    /// How long a thread waiting for a peer's bytes (an answer, or the next request on a
    /// server's connections) polls for them before it sleeps. Default 50 µs; zero never
    /// polls. Waking a sleeping thread on an idle processor costs tens of microseconds on a
    /// virtual machine, more than most answers take: on this project's 2-processor test
    /// machine one client's gets took 100 µs each without polling and 23 µs with it. At most
    /// one thread a processor polls at a time, yielding to any thread ready to run. A
    /// server's threads poll only while their waits show it pays (up to this long), so an
    /// idle node does not poll after every message of its upkeep. Servers of a process
    /// share their threads: those poll at most as long as the longest setting among them.
    pub spin: Duration,
    /// Who may connect: holders of the cluster key, or anyone. Must be chosen: the default,
    /// [`Security::Unset`], makes starting fail.
    pub security: Security,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
            max_handshakes_per_source: 16,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_workers: 128,
            max_streams: 128,
            stream_window: 1 << 20,
            pool_per_peer: 1,
            pool_max_idle: 1024,
            pool_idle_timeout: Duration::from_secs(30),
            spin: Duration::from_micros(50),
            security: Security::Unset,
        }
    }
}

impl NetConfig {
    /// The default settings with `security` chosen: a [`ClusterKey`] (or a reference to
    /// one), or [`Security::Insecure`].
    pub fn with(security: impl Into<Security>) -> NetConfig {
        NetConfig {
            security: security.into(),
            ..NetConfig::default()
        }
    }
}

/// Traffic counters of one node or discovery server, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections the server accepted.
    pub accepted: u64,
    /// Requests the server answered.
    pub served: u64,
    /// Outbound connections opened (each reused for many requests).
    pub opened: u64,
    /// Requests sent.
    pub sent: u64,
    /// Largest frame payload sent or received, in bytes: bounds the memory a transfer holds.
    pub largest_frame: u64,
    /// Connections the server holds open now.
    pub open_connections: u64,
}

/// The live counters behind [`NetStats`], shared by a server and a pool.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    served: AtomicU64,
    opened: AtomicU64,
    sent: AtomicU64,
    largest_frame: AtomicU64,
    open: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a frame's payload length.
    fn note_frame(&self, len: u64) {
        self.largest_frame.fetch_max(len, Ordering::Relaxed);
    }

    /// A copy of the counts now.
    pub fn snapshot(&self) -> NetStats {
        NetStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            largest_frame: self.largest_frame.load(Ordering::Relaxed),
            open_connections: self.open.load(Ordering::Relaxed),
        }
    }
}

/// Stack size of reactor and handler threads: handlers are shallow, and a network of
/// hundreds of nodes in one process runs thousands of them.
const THREAD_STACK: usize = 256 * 1024;
