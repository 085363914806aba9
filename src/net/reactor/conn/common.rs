//! What the connections of one reactor share, and the settings each runs with.

use std::sync::Arc;
use std::time::Duration;

use mio::Registry;

use crate::net::mux::LinkConfig;
use crate::net::Counters;

/// The settings a connection runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub link: LinkConfig,
    /// How long a frame (or the handshake) may take from its first byte to its last, and
    /// how long written bytes may wait for the peer to take them.
    pub frame_timeout: Duration,
    /// How long a connection with no request open may stay silent.
    pub idle_timeout: Duration,
}

/// What the connections of one reactor share, held once for all of them (a process of many
/// nodes holds thousands of connections).
pub(crate) struct Common {
    /// Where the sockets are watched (the crew's poller): writability is asked for only
    /// while bytes wait for it, or every acknowledgement of a written byte would wake the
    /// reactor.
    pub registry: Arc<Registry>,
    pub counters: Arc<Counters>,
    /// The settings of connections peers opened, and of those this end opened (which idle
    /// out as the pool's).
    pub accepted: ConnLimits,
    pub opened: ConnLimits,
}
