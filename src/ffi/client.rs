//! `PastryClient`: stores, retrieves and deletes objects and files.

use std::ffi::c_char;
use std::path::Path;

use super::{
    addr_arg, arg, bytes_arg, guard, out_arg, str_arg, PastryBuffer, PastryNodeList, PastryStatus,
};
use std::time::Duration;

use super::security::security_arg;
use super::{Failure, PastrySecurity};
use crate::{Client, ClientConfig, Entry};

/// A client of the object store. Thread-safe.
pub struct PastryClient(Client);

/// How to make a client with `pastry_client_start`. Fill it with
/// `pastry_client_options_default`, then set exactly one of `discovery` and `peer`.
#[repr(C)]
pub struct PastryClientOptions {
    /// The discovery node's address (such as `"127.0.0.1:4000"`), or NULL.
    pub discovery: *const c_char,
    /// A node's address to enter through instead, with no discovery, or NULL.
    pub peer: *const c_char,
    /// The cluster key (or `pastry_security_insecure`); must be set. The client keeps its
    /// own copy.
    pub security: *const PastrySecurity,
    /// How long an operation keeps retrying while the overlay changes under it (or the peer
    /// it enters through is unreachable), in milliseconds; 0 for the default (10 000).
    pub retry_ms: u32,
}

/// Fills `options` with the defaults: no entry set, default retry time.
///
/// # Safety
/// `options` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_options_default(
    options: *mut PastryClientOptions,
) -> PastryStatus {
    guard(|| {
        let options = out_arg(options, "options")?;
        *options = PastryClientOptions {
            discovery: std::ptr::null(),
            peer: std::ptr::null(),
            security: std::ptr::null(),
            retry_ms: 0,
        };
        Ok(())
    })
}

/// A client made from `options`. It contacts no one until its first operation. On success
/// `*client_out` is a new handle, owned by the caller: free it with `pastry_client_free`.
///
/// # Safety
/// `options` points to options whose strings are NULL or NUL-terminated; `client_out`
/// points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_start(
    options: *const PastryClientOptions,
    client_out: *mut *mut PastryClient,
) -> PastryStatus {
    guard(|| {
        let options = arg(options, "options")?;
        let client_out = out_arg(client_out, "client_out")?;
        let entry = match (options.discovery.is_null(), options.peer.is_null()) {
            (false, true) => Entry::Discovery(addr_arg(options.discovery, "options->discovery")?),
            (true, false) => Entry::Peer(addr_arg(options.peer, "options->peer")?),
            (true, true) => return Err(Failure::null("options->discovery (and options->peer)")),
            (false, false) => {
                return Err(Failure::invalid(
                    "set only one of options->discovery and options->peer",
                ))
            }
        };
        let mut config = ClientConfig::new(security_arg(options.security, "options->security")?);
        if options.retry_ms != 0 {
            config.retry_for = Duration::from_millis(options.retry_ms.into());
        }
        *client_out = Box::into_raw(Box::new(PastryClient(Client::with_config(entry, config))));
        Ok(())
    })
}

/// Hands a route to C if the caller asked for it.
///
/// # Safety
/// `route_out` is NULL or points to writable storage.
unsafe fn give_route(route_out: *mut *mut PastryNodeList, route: crate::Route) {
    if !route_out.is_null() {
        *route_out = PastryNodeList::boxed(route.path);
    }
}

/// A client that enters the overlay through the discovery node at `discovery` (such as
/// `"127.0.0.1:4000"`), holding `security` (not NULL), with default options. It contacts no one until its first operation.
/// On success `*client_out` is a new handle, owned by the caller: free
/// it with `pastry_client_free`.
///
/// # Safety
/// `discovery` is a NUL-terminated string; `security` is a live handle; `client_out`
/// points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_new(
    discovery: *const c_char,
    security: *const PastrySecurity,
    client_out: *mut *mut PastryClient,
) -> PastryStatus {
    guard(|| {
        let discovery = addr_arg(discovery, "discovery")?;
        let security = security_arg(security, "security")?;
        let client_out = out_arg(client_out, "client_out")?;
        let client = Client::new(discovery, security);
        *client_out = Box::into_raw(Box::new(PastryClient(client)));
        Ok(())
    })
}

/// A client that enters the overlay through the node at `peer`, with no discovery node.
///
/// # Safety
/// As `pastry_client_new`.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_via_peer(
    peer: *const c_char,
    security: *const PastrySecurity,
    client_out: *mut *mut PastryClient,
) -> PastryStatus {
    guard(|| {
        let peer = addr_arg(peer, "peer")?;
        let security = security_arg(security, "security")?;
        let client_out = out_arg(client_out, "client_out")?;
        let client = Client::via_peer(peer, security);
        *client_out = Box::into_raw(Box::new(PastryClient(client)));
        Ok(())
    })
}

/// Stores `data_len` bytes at `data` under the name `name` (`name_len` bytes, any bytes) on
/// the node responsible for its key. If `route_out` is not NULL, on success it receives the
/// route taken (the holder last), owned by the caller: free it with
/// `pastry_node_list_free`.
///
/// # Safety
/// `client` is a live handle; `name` and `data` point to as many bytes as their lengths say
/// (`data` may be NULL when `data_len` is 0); `route_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_put(
    client: *const PastryClient,
    name: *const u8,
    name_len: usize,
    data: *const u8,
    data_len: usize,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let name = bytes_arg(name, name_len, "name")?;
        let data = bytes_arg(data, data_len, "data")?;
        let stored = client.0.put(name, data)?;
        give_route(route_out, stored.route);
        Ok(())
    })
}

/// Fetches the object `name`. On success `*data_out` holds its bytes, owned by the caller:
/// free them with `pastry_buffer_free`. `route_out` as in `pastry_client_put`.
/// `PASTRY_STATUS_NOT_FOUND` if there is no such object.
///
/// # Safety
/// `client` is a live handle; `name` points to `name_len` bytes; `data_out` is writable;
/// `route_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_get(
    client: *const PastryClient,
    name: *const u8,
    name_len: usize,
    data_out: *mut *mut PastryBuffer,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let name = bytes_arg(name, name_len, "name")?;
        let data_out = out_arg(data_out, "data_out")?;
        let fetched = client.0.get(name)?;
        *data_out = PastryBuffer::boxed(fetched.data);
        give_route(route_out, fetched.route);
        Ok(())
    })
}

/// Deletes the object `name`. If `existed_out` is not NULL it receives whether there was
/// one. `route_out` as in `pastry_client_put`.
///
/// # Safety
/// `client` is a live handle; `name` points to `name_len` bytes; `existed_out` and
/// `route_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_delete(
    client: *const PastryClient,
    name: *const u8,
    name_len: usize,
    existed_out: *mut bool,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let name = bytes_arg(name, name_len, "name")?;
        let deleted = client.0.delete(name)?;
        if !existed_out.is_null() {
            *existed_out = deleted.existed;
        }
        give_route(route_out, deleted.route);
        Ok(())
    })
}

/// Stores the file at `path` (NUL-terminated, UTF-8) under its base name, streamed in
/// chunks. `route_out` as in `pastry_client_put`.
///
/// # Safety
/// `client` is a live handle; `path` is a NUL-terminated string; `route_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_store_file(
    client: *const PastryClient,
    path: *const c_char,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let path = str_arg(path, "path")?;
        let stored = client.0.store_file(Path::new(path))?;
        give_route(route_out, stored.route);
        Ok(())
    })
}

/// Fetches the object `name` (`name_len` bytes) into the file at `path` (NUL-terminated,
/// UTF-8), streamed in chunks; the file appears only once the whole object has arrived and
/// passed its checksum. `route_out` as in `pastry_client_put`.
///
/// # Safety
/// `client` is a live handle; `name` points to `name_len` bytes; `path` is a NUL-terminated
/// string; `route_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_retrieve_file(
    client: *const PastryClient,
    name: *const u8,
    name_len: usize,
    path: *const c_char,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let name = bytes_arg(name, name_len, "name")?;
        let path = str_arg(path, "path")?;
        let retrieved = client.0.retrieve_file(name, Path::new(path))?;
        give_route(route_out, retrieved.route);
        Ok(())
    })
}

/// Frees a client and closes its connections. NULL does nothing.
///
/// # Safety
/// `client` is NULL or a live handle; no other call may use it during or after this one.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_free(client: *mut PastryClient) {
    super::free_box(client);
}
