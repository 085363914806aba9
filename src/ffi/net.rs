//! `PastryNetOptions` (socket timeouts and limits, shared by nodes, clients and discovery)
//! and `PastryNetStats` (traffic counters).

use std::mem::{offset_of, size_of};
use std::time::Duration;

use super::sized::{self, Growable};
use super::{guard, PastryStatus};
use crate::net::{NetConfig, NetStats};
use crate::Security;

/// Socket timeouts and limits of a node, client or discovery node. Fill it with
/// `pastry_net_options_init`, change fields, and point an options struct's `net` at it
/// (NULL there means these defaults). Fields are only ever added at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PastryNetOptions {
    /// `sizeof(PastryNetOptions)` as the program knows it: set by `pastry_net_options_init`.
    pub size: usize,
    /// How long to wait for a TCP connection to be accepted, in ms. Default 2,000.
    pub connect_timeout_ms: u64,
    /// How long to wait for a reply, or for a frame to arrive whole, in ms. Default 5,000.
    pub io_timeout_ms: u64,
    /// How long a server keeps a connection that sends nothing, in ms. Default 60,000.
    pub idle_timeout_ms: u64,
    /// How long an outbound connection may carry no request before it is closed, in ms.
    /// Default 30,000.
    pub pool_idle_timeout_ms: u64,
    /// Most connections a server serves at once. Default 2,048.
    pub max_connections: u32,
    /// Most unproven connections from one address once a server is half full. Default 16.
    pub max_handshakes_per_source: u32,
    /// Largest frame payload accepted, in bytes. Default 4 MiB (a node needs at least 2 MiB).
    pub max_payload: u32,
    /// Most requests a server works on at once. Default 128.
    pub max_workers: u32,
    /// Most requests one connection may have in flight at a server. Default 128.
    pub max_streams: u32,
    /// Bytes of one request's frames a sender may send ahead of this end's taking, once it
    /// has heard from this end (every sender starts with 1 MiB). Default 1 MiB.
    pub stream_window: u32,
    /// 0: a connection per request (no pool); otherwise one kept per peer. Default 1.
    pub pool_per_peer: u32,
    /// Most outbound connections kept in all. Default 1,024.
    pub pool_max_idle: u32,
    /// How long a thread waiting for a peer's bytes polls for them before it sleeps, in
    /// µs; 0 never polls. Default 50. (Added after the first release: a program built
    /// before it gets the default.)
    pub spin_us: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<&NetConfig> for PastryNetOptions {
    fn from(c: &NetConfig) -> Self {
        PastryNetOptions {
            size: size_of::<PastryNetOptions>(),
            connect_timeout_ms: ms(c.connect_timeout),
            io_timeout_ms: ms(c.io_timeout),
            idle_timeout_ms: ms(c.idle_timeout),
            pool_idle_timeout_ms: ms(c.pool_idle_timeout),
            max_connections: small(c.max_connections),
            max_handshakes_per_source: small(c.max_handshakes_per_source),
            max_payload: c.max_payload,
            max_workers: small(c.max_workers),
            max_streams: small(c.max_streams),
            stream_window: c.stream_window,
            pool_per_peer: small(c.pool_per_peer),
            pool_max_idle: small(c.pool_max_idle),
            spin_us: u64::try_from(c.spin.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

impl PastryNetOptions {
    /// The Rust settings, with `security`.
    pub(super) fn to_config(self, security: Security) -> NetConfig {
        NetConfig {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            io_timeout: Duration::from_millis(self.io_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            pool_idle_timeout: Duration::from_millis(self.pool_idle_timeout_ms),
            max_connections: self.max_connections as usize,
            max_handshakes_per_source: self.max_handshakes_per_source as usize,
            max_payload: self.max_payload,
            max_workers: self.max_workers as usize,
            max_streams: self.max_streams as usize,
            stream_window: self.stream_window,
            pool_per_peer: self.pool_per_peer as usize,
            pool_max_idle: self.pool_max_idle as usize,
            spin: Duration::from_micros(self.spin_us),
            security,
        }
    }

    /// The settings an options struct's `net` names: NULL for the defaults.
    ///
    /// # Safety
    /// `ptr` is NULL or points to a struct whose size field is right.
    pub(super) unsafe fn config_from(
        ptr: *const PastryNetOptions,
        security: Security,
        what: &str,
    ) -> Result<NetConfig, super::Failure> {
        if ptr.is_null() {
            return Ok(NetConfig::with(security));
        }
        Ok(sized::read(ptr, what)?.to_config(security))
    }
}

// SAFETY: repr(C), `size` first, 4 u64, 8 u32, a u64: no padding (a test checks).
unsafe impl Growable for PastryNetOptions {
    const NAME: &'static str = "PastryNetOptions";
    /// The first release's struct ended before `spin_us`.
    const MIN_SIZE: usize = offset_of!(PastryNetOptions, spin_us);
    fn defaults() -> Self {
        (&NetConfig::default()).into()
    }
}

/// Fills `options` with the defaults (`size` is `sizeof *options`). Returns
/// `PASTRY_STATUS_OK`, `PASTRY_STATUS_NULL_PARAMETER`, or `PASTRY_STATUS_INVALID_ARGUMENT`
/// for a size smaller than the first release's struct.
///
/// # Safety
/// `options` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pastry_net_options_init(
    options: *mut PastryNetOptions,
    size: usize,
) -> PastryStatus {
    guard(|| sized::init(options, size, "options"))
}

/// Traffic counters of a node, client or discovery node. Set `size` to
/// `sizeof(PastryNetStats)` before asking (`PastryNetStats stats = { sizeof stats };`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PastryNetStats {
    /// `sizeof(PastryNetStats)` as the program knows it; set by the caller.
    pub size: usize,
    /// Connections the server accepted.
    pub accepted: u64,
    /// Requests the server answered.
    pub served: u64,
    /// Outbound connections opened (each reused for many requests).
    pub opened: u64,
    /// Requests sent.
    pub sent: u64,
    /// Largest frame payload sent or received, in bytes.
    pub largest_frame: u64,
    /// Connections the server holds open now.
    pub open_connections: u64,
}

impl From<NetStats> for PastryNetStats {
    fn from(s: NetStats) -> Self {
        PastryNetStats {
            size: size_of::<PastryNetStats>(),
            accepted: s.accepted,
            served: s.served,
            opened: s.opened,
            sent: s.sent,
            largest_frame: s.largest_frame,
            open_connections: s.open_connections,
        }
    }
}

// SAFETY: repr(C), `size` first, then u64s: no padding.
unsafe impl Growable for PastryNetStats {
    const NAME: &'static str = "PastryNetStats";
    const MIN_SIZE: usize = offset_of!(PastryNetStats, open_connections) + size_of::<u64>();
    fn defaults() -> Self {
        PastryNetStats {
            size: size_of::<PastryNetStats>(),
            ..PastryNetStats::default()
        }
    }
}

/// Writes `stats` into the caller's struct.
///
/// # Safety
/// `out` is NULL or points to a struct whose size field is right.
pub(super) unsafe fn give_stats(
    out: *mut PastryNetStats,
    stats: NetStats,
) -> Result<(), super::Failure> {
    sized::write(out, stats.into(), "stats_out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_built_before_spin_us_gets_the_default_and_a_newer_one_its_own() {
        let security = Security::Insecure;
        let mut options = PastryNetOptions::from(&NetConfig::default());
        options.spin_us = 0;
        // An older program's struct ends before the field, and says so in its size.
        options.size = offset_of!(PastryNetOptions, spin_us);
        // SAFETY: a whole struct, whose size field is at most its size.
        let older = unsafe { PastryNetOptions::config_from(&options, security.clone(), "net") };
        let older = older.ok().expect("an older program's struct is read");
        assert_eq!(older.spin, NetConfig::default().spin);
        options.size = size_of::<PastryNetOptions>();
        // SAFETY: as above.
        let newer = unsafe { PastryNetOptions::config_from(&options, security, "net") };
        let newer = newer.ok().expect("a newer program's struct is read");
        assert_eq!(newer.spin, Duration::ZERO);
    }
}
