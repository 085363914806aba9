//! `PastryDiscovery`: a discovery node.

use std::ffi::c_char;

use super::security::security_arg;
use super::{addr_arg, arg, guard, out_arg, Failure, PastryNodeList, PastrySecurity, PastryStatus};
use crate::Discovery;

/// A running discovery node. Thread-safe.
pub struct PastryDiscovery(Discovery);

/// Starts a discovery node listening on `listen` (such as `"127.0.0.1:0"`; port 0 lets the
/// system choose), admitting what `security` admits (not NULL). On success `*discovery_out` is a new handle, owned by the caller: stop it
/// and free it with `pastry_discovery_free`.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_INVALID_ARGUMENT` (not an address) or
/// `_IO` (the address cannot be listened on).
///
/// # Safety
/// `listen` is a NUL-terminated string; `security` is a live handle; `discovery_out` points
/// to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_discovery_start(
    listen: *const c_char,
    security: *const PastrySecurity,
    discovery_out: *mut *mut PastryDiscovery,
) -> PastryStatus {
    guard(|| {
        let listen = addr_arg(listen, "listen")?;
        let security = security_arg(security, "security")?;
        let discovery_out = out_arg(discovery_out, "discovery_out")?;
        let discovery = Discovery::start(listen, security)?;
        *discovery_out = Box::into_raw(Box::new(PastryDiscovery(discovery)));
        Ok(())
    })
}

/// Writes the address the discovery node listens on (such as `"127.0.0.1:40123"`) into
/// `buf` of `buf_len` bytes, NUL-terminated. `PASTRY_ADDR_LEN` bytes always suffice.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (`buf_len` too
/// small).
///
/// # Safety
/// `discovery` is a live handle; `buf` points to `buf_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pastry_discovery_address(
    discovery: *const PastryDiscovery,
    buf: *mut c_char,
    buf_len: usize,
) -> PastryStatus {
    guard(|| {
        let discovery = arg(discovery, "discovery")?;
        let buf = out_arg(buf, "buf")?;
        let text = discovery.0.local_addr().to_string();
        if text.len() + 1 > buf_len {
            return Err(Failure::invalid(format!(
                "buf_len {buf_len} is too small for {text:?}"
            )));
        }
        std::ptr::copy_nonoverlapping(text.as_ptr() as *const c_char, buf, text.len());
        *buf.add(text.len()) = 0;
        Ok(())
    })
}

/// The peers that have finished joining, sorted by id. On success `*peers_out` is a new
/// list, owned by the caller: free it with `pastry_node_list_free`.
///
/// Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `discovery` is a live handle; `peers_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_discovery_peers(
    discovery: *const PastryDiscovery,
    peers_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let discovery = arg(discovery, "discovery")?;
        let peers_out = out_arg(peers_out, "peers_out")?;
        *peers_out = PastryNodeList::boxed(discovery.0.peers());
        Ok(())
    })
}

/// Stops the discovery node, joins its threads and frees the handle. NULL does nothing.
///
/// # Safety
/// `discovery` is NULL or a live handle; no other call may use it during or after this one.
#[no_mangle]
pub unsafe extern "C" fn pastry_discovery_free(discovery: *mut PastryDiscovery) {
    super::free_box(discovery);
}
