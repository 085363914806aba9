//! `PastryClient`: stores, retrieves and deletes objects and files.

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::time::Duration;

use super::net::give_stats;
use super::security::security_arg;
use super::sized::{self, Growable};
use super::{
    addr_arg, arg, bytes_arg, guard, out_arg, str_arg, Failure, PastryBuffer, PastryNetOptions,
    PastryNetStats, PastryNodeList, PastrySecurity, PastryStatus,
};
use crate::{Client, ClientConfig, Entry};

/// A client of the object store. Thread-safe.
pub struct PastryClient(Client);

/// How to make a client with `pastry_client_start`. Fill it with
/// `pastry_client_options_init(&options, sizeof options)`, then set exactly one of
/// `discovery` and `peer`, and `security`. Fields are only ever added at the end (see
/// `PastryNodeOptions`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PastryClientOptions {
    /// `sizeof(PastryClientOptions)` as the program knows it: set by
    /// `pastry_client_options_init`.
    pub size: usize,
    /// The discovery node's address (such as `"127.0.0.1:4000"`), or NULL.
    pub discovery: *const c_char,
    /// A node's address to enter through instead, with no discovery, or NULL.
    pub peer: *const c_char,
    /// The cluster key (or `pastry_security_insecure`); must be set. The client keeps its
    /// own copy.
    pub security: *const PastrySecurity,
    /// Socket timeouts and limits; NULL for the defaults.
    pub net: *const PastryNetOptions,
    /// How long an operation keeps retrying while the overlay changes under it (or the peer
    /// it enters through is unreachable), in ms. Default 10,000.
    pub retry_ms: u64,
    /// Most hops a route may take. Default 32.
    pub max_hops: u32,
    /// Nonzero (the default): a file `pastry_client_retrieve_file` writes is synced to disk
    /// before it is renamed into place, so that after a crash it is whole or absent.
    pub sync_writes: u32,
}

// SAFETY: repr(C), `size` first; 4 pointers, a u64, two u32: no padding.
unsafe impl Growable for PastryClientOptions {
    const NAME: &'static str = "PastryClientOptions";
    // The first release: everything up to `security`, the one field that must be set.
    const MIN_SIZE: usize = offset_of!(PastryClientOptions, security) + size_of::<usize>();
    fn defaults() -> Self {
        let d = ClientConfig::default();
        PastryClientOptions {
            size: size_of::<PastryClientOptions>(),
            discovery: std::ptr::null(),
            peer: std::ptr::null(),
            security: std::ptr::null(),
            net: std::ptr::null(),
            retry_ms: u64::try_from(d.retry_for.as_millis()).unwrap_or(u64::MAX),
            max_hops: u32::try_from(d.max_hops).unwrap_or(u32::MAX),
            sync_writes: d.sync_writes.into(),
        }
    }
}

/// Fills `options` with the defaults each field states, no entry set. `size` is `sizeof
/// *options`. Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, or `_INVALID_ARGUMENT` for a
/// size smaller than the first release's struct.
///
/// # Safety
/// `options` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_options_init(
    options: *mut PastryClientOptions,
    size: usize,
) -> PastryStatus {
    guard(|| sized::init(options, size, "options"))
}

/// A client made from `options`. It contacts no one until its first operation. On success
/// `*client_out` is a new handle, owned by the caller: free it with `pastry_client_free`.
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` (no options, no entry, no security, no
/// `client_out`) or `_INVALID_ARGUMENT` (both entries set, an address or size that is
/// wrong, `max_hops` 0).
///
/// # Safety
/// `options` is NULL or points to options whose `size` is right and whose strings are NULL
/// or NUL-terminated; `client_out` is NULL or points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_start(
    options: *const PastryClientOptions,
    client_out: *mut *mut PastryClient,
) -> PastryStatus {
    guard(|| {
        let options = sized::read(options, "options")?;
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
        let security = security_arg(options.security, "options->security")?;
        if options.max_hops == 0 {
            return Err(Failure::invalid("options->max_hops is 0"));
        }
        let config = ClientConfig {
            net: PastryNetOptions::config_from(options.net, security, "options->net")?,
            max_hops: options.max_hops as usize,
            retry_for: Duration::from_millis(options.retry_ms),
            sync_writes: options.sync_writes != 0,
        };
        *client_out = Box::into_raw(Box::new(PastryClient(Client::with_config(entry, config))));
        Ok(())
    })
}

/// Writes the client's traffic counters into `*stats_out`, whose `size` the caller set
/// (`PastryNetStats stats = { sizeof stats };`). Returns `PASTRY_STATUS_OK`,
/// `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (a wrong size).
///
/// # Safety
/// `client` is NULL or a live handle; `stats_out` is NULL or points to a struct whose size
/// field is right.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_stats(
    client: *const PastryClient,
    stats_out: *mut PastryNetStats,
) -> PastryStatus {
    guard(|| give_stats(stats_out, arg(client, "client")?.0.stats()))
}

/// Reads the bytes of an object being stored: fills up to `len` bytes at `buf` with the
/// bytes from `offset` (as `pread`) and returns how many (more than 0); 0 if there are no
/// more (an error when fewer than the announced size came); negative for a failure, which
/// ends the put.
pub type PastryReadCallback =
    Option<unsafe extern "C" fn(user: *mut c_void, offset: u64, buf: *mut u8, len: usize) -> i64>;

/// Takes the bytes of an object being fetched, in order: `len` bytes at `data` belong at
/// `offset`. Returns 0 to go on, anything else to end the get with a failure.
pub type PastryWriteCallback = Option<
    unsafe extern "C" fn(user: *mut c_void, offset: u64, data: *const u8, len: usize) -> i32,
>;

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
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (not an address).
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
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (not an address).
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
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_INVALID_NAME` (empty, or longer than
/// 4,096 bytes), `_NO_PEERS` (discovery knows no node), `_UNREACHABLE` or `_REFUSED` (no
/// holder took it within the retry time), or `_IO` (a local failure, such as no descriptors
/// left).
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
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_NOT_FOUND`, `_CORRUPT` (every copy
/// failed its checksum), `_INVALID_NAME`, `_NO_PEERS`, `_UNREACHABLE` or `_REFUSED` (no
/// holder answered within the retry time), or `_IO`.
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
/// Returns the statuses of `pastry_client_put`; deleting a name that has no object is not
/// an error (`*existed_out` is false).
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
/// Returns the statuses of `pastry_client_put`, and `_INVALID_ARGUMENT` (`path` not UTF-8)
/// or `_IO` (the file cannot be read; `path` has no file name).
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
/// An existing file at `path` is replaced whole, at once (renamed over); a directory at
/// `path` is left alone and the call fails with `_IO`; nothing is left behind on failure.
/// Returns the statuses of `pastry_client_get`, and `_INVALID_ARGUMENT` (`path` not UTF-8)
/// or `_IO` (the file cannot be written).
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

/// Stores `size` bytes under the name `name` (`name_len` bytes), asking `read` for them a
/// chunk at a time, so that the program never holds the whole object (`user` is passed back
/// untouched). A retry after a failure part way (a holder lost) reads again from offset 0.
/// `route_out` as in `pastry_client_put`. Returns the statuses of `pastry_client_put`, and
/// `PASTRY_STATUS_IO` when `read` fails or ends early.
///
/// # Safety
/// `client` is NULL or a live handle; `name` points to `name_len` bytes; `read` is NULL or
/// a function that may be called on this thread until this returns; `route_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_put_stream(
    client: *const PastryClient,
    name: *const u8,
    name_len: usize,
    size: u64,
    read: PastryReadCallback,
    user: *mut c_void,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let name = bytes_arg(name, name_len, "name")?;
        let read = read.ok_or_else(|| Failure::null("read"))?;
        let user = user as usize; // handed back untouched, on this thread
        let stored = client.0.put_with(name, size, |offset, buf| {
            match read(user as *mut c_void, offset, buf.as_mut_ptr(), buf.len()) {
                n if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX).min(buf.len())),
                n => Err(std::io::Error::other(format!(
                    "the read callback returned {n}"
                ))),
            }
        })?;
        give_route(route_out, stored.route);
        Ok(())
    })
}

/// Fetches the object `name` (`name_len` bytes), handing its bytes to `write` in order,
/// no more than a chunk (1 MiB) at a time (`user` is passed back untouched). If a holder
/// fails part way, the object is sent again from offset 0 by another: the program writes
/// at the offsets given. On success `*size_out` (if not NULL) is the object's size.
/// `route_out` as in `pastry_client_put`. Returns the statuses of `pastry_client_get`, and
/// `PASTRY_STATUS_IO` when `write` returns nonzero.
///
/// # Safety
/// `client` is NULL or a live handle; `name` points to `name_len` bytes; `write` is NULL or
/// a function that may be called on this thread until this returns; `size_out` and
/// `route_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_client_get_stream(
    client: *const PastryClient,
    name: *const u8,
    name_len: usize,
    write: PastryWriteCallback,
    user: *mut c_void,
    size_out: *mut u64,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let client = arg(client, "client")?;
        let name = bytes_arg(name, name_len, "name")?;
        let write = write.ok_or_else(|| Failure::null("write"))?;
        let fetched = client.0.get_with(name, |offset, data| {
            match write(user, offset, data.as_ptr(), data.len()) {
                0 => Ok(()),
                n => Err(std::io::Error::other(format!(
                    "the write callback returned {n}"
                ))),
            }
        })?;
        if !size_out.is_null() {
            *size_out = fetched.size;
        }
        give_route(route_out, fetched.route);
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
