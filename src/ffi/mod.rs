//! The C ABI: `pastry_*` functions over opaque handles, a thin skin over the Rust API.
//!
//! Conventions, the same in every function:
//! - Every function returns a `PastryStatus`; on failure, `pastry_last_error` gives a
//!   readable message (per thread).
//! - Out-parameters are written only on success.
//! - A NULL pointer argument gives `PASTRY_STATUS_NULL_PARAMETER` (optional arguments say so).
//! - Everything handed out has a `_free` function; `_free(NULL)` does nothing.
//! - No panic crosses the boundary: it becomes `PASTRY_STATUS_PANIC`.
//! - Handles are thread-safe: any function may be called on a handle from any thread at
//!   once, except its `_free`, which must be the last call on it.
//! - No call raises SIGPIPE: a peer that closes its connection gives an error, whether or
//!   not the program ignores the signal.

mod apps;
mod client;
mod discovery;
mod logging;
mod net;
mod node;
mod security;
mod sized;
mod snapshot;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;
use crate::id::NodeInfo;
use crate::wire::RemoteCode;

pub use apps::*;
pub use client::*;
pub use discovery::*;
pub use logging::*;
pub use net::*;
pub use node::*;
pub use security::*;
pub use snapshot::*;

/// The outcome of a `pastry_*` call. Values are fixed and never renumbered.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PastryStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 1,
    /// An argument is out of range or malformed (an address, an id, a string that is not
    /// UTF-8, a buffer too small).
    InvalidArgument = 2,
    /// The node's identifier is already in use.
    IdInUse = 3,
    /// No object has this name.
    NotFound = 4,
    /// An object failed its checksum.
    Corrupt = 5,
    /// An object name is empty or too long.
    InvalidName = 6,
    /// A peer could not be reached or did not answer in time.
    Unreachable = 7,
    /// The node is not part of an overlay (or has already joined one).
    NotJoined = 8,
    /// No live peer is known.
    NoPeers = 9,
    /// A local file or the object store failed.
    Io = 10,
    /// A peer refused the request or answered out of protocol.
    Refused = 11,
    /// A panic was caught inside the library (a bug: please report it).
    Panic = 12,
    /// Any other failure; see `pastry_last_error`.
    Other = 13,
}

/// The status for an error: the one place where Rust errors become C codes.
fn status_of(e: &Error) -> PastryStatus {
    match e {
        Error::InvalidId(_) | Error::Config(_) => PastryStatus::InvalidArgument,
        Error::IdInUse(_) => PastryStatus::IdInUse,
        Error::NotFound { .. } => PastryStatus::NotFound,
        Error::Corrupt { .. } => PastryStatus::Corrupt,
        Error::InvalidName { .. } => PastryStatus::InvalidName,
        Error::Unreachable { .. } | Error::Timeout { .. } | Error::RouteTooLong { .. } => {
            PastryStatus::Unreachable
        }
        Error::NotJoined(_) | Error::AlreadyJoined(_) | Error::Shutdown => PastryStatus::NotJoined,
        Error::NoPeers => PastryStatus::NoPeers,
        Error::Io { .. } | Error::Store { .. } | Error::Listen { .. } | Error::Local { .. } => {
            PastryStatus::Io
        }
        Error::Refused {
            code: RemoteCode::IdInUse,
            ..
        } => PastryStatus::IdInUse,
        Error::Refused { .. } | Error::Wire { .. } | Error::Protocol { .. } => {
            PastryStatus::Refused
        }
    }
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Remembers `message` as this thread's last error.
fn set_last_error(message: String) {
    let message = c_string(message);
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

/// A C string of `text`. Text never holds NUL in practice; if it does, it is cut there
/// rather than lost.
fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let end = e.nul_position();
        CString::new(&e.into_vec()[..end]).unwrap_or_default()
    })
}

/// The failure of a call: a status and its message.
pub(crate) struct Failure(PastryStatus, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Failure(status_of(&e), message)
    }
}

impl Failure {
    fn null(what: &str) -> Failure {
        Failure(PastryStatus::NullParameter, format!("{what} is NULL"))
    }

    fn invalid(message: impl Into<String>) -> Failure {
        Failure(PastryStatus::InvalidArgument, message.into())
    }
}

/// Runs the body of an exported function: turns its failure or panic into a status and
/// remembers the message. A function, not a macro, so that rustfmt keeps working.
fn guard(body: impl FnOnce() -> Result<(), Failure>) -> PastryStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => PastryStatus::Ok,
        Ok(Err(Failure(status, message))) => {
            set_last_error(message);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last_error(format!("panic inside libpastry: {what}"));
            PastryStatus::Panic
        }
    }
}

/// A reference from a pointer that must not be NULL.
///
/// # Safety
/// `ptr` is NULL or points to a live `T`.
unsafe fn arg<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    ptr.as_ref().ok_or_else(|| Failure::null(what))
}

/// A UTF-8 string from a NUL-terminated C string that must not be NULL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string.
unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Bytes from a pointer and a length; NULL is allowed only for length 0.
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes.
unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(Failure::null(what)),
        (false, _) => Ok(std::slice::from_raw_parts(ptr, len)),
    }
}

/// A socket address from a C string such as `"127.0.0.1:4000"`.
///
/// # Safety
/// As [`str_arg`].
unsafe fn addr_arg(ptr: *const c_char, what: &str) -> Result<SocketAddr, Failure> {
    let text = str_arg(ptr, what)?;
    text.parse().map_err(|_| {
        Failure::invalid(format!(
            "{what} {text:?} is not an address like 127.0.0.1:4000"
        ))
    })
}

/// Hands an array to C as a pointer and a length; an empty one is NULL.
fn slice_to_c<T>(items: Box<[T]>) -> (*mut T, usize) {
    let len = items.len();
    if len == 0 {
        return (std::ptr::null_mut(), 0);
    }
    (Box::into_raw(items) as *mut T, len)
}

/// Frees an array from [`slice_to_c`].
///
/// # Safety
/// `ptr` and `len` came from `slice_to_c` and are not used again.
unsafe fn free_c_slice<T>(ptr: *mut T, len: usize) {
    if !ptr.is_null() {
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)));
    }
}

/// Frees a handle made by `Box::into_raw`: the body of every handle's `_free`. NULL does
/// nothing; a panic while stopping is caught, not carried into C.
///
/// # Safety
/// `ptr` is NULL or came from `Box::into_raw` and is not used again.
unsafe fn free_box<T>(ptr: *mut T) {
    if !ptr.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(ptr))));
    }
}

/// Checks that an out-pointer is not NULL, before any work is done.
fn out_arg<T>(ptr: *mut T, what: &str) -> Result<*mut T, Failure> {
    if ptr.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(ptr)
    }
}

/// Longest address text, with its NUL: `[ffff:...:ffff]:65535` fits.
pub const PASTRY_ADDR_LEN: usize = 64;

/// Bytes in a cluster key (`pastry_security_from_bytes`).
pub const PASTRY_KEY_LEN: usize = 32;
const _: () = assert!(PASTRY_KEY_LEN == crate::KEY_LEN);

/// A node as seen from C: its id and its address as text.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PastryNodeInfo {
    /// The node's identifier (shown as 4 hex digits).
    pub id: u16,
    /// The node's address, NUL-terminated, such as `127.0.0.1:4000`.
    pub addr: [c_char; PASTRY_ADDR_LEN],
}

impl From<NodeInfo> for PastryNodeInfo {
    fn from(n: NodeInfo) -> Self {
        let mut addr = [0 as c_char; PASTRY_ADDR_LEN];
        let text = n.addr.to_string();
        for (dst, src) in addr.iter_mut().zip(text.bytes().take(PASTRY_ADDR_LEN - 1)) {
            *dst = src as c_char;
        }
        PastryNodeInfo { id: n.id.0, addr }
    }
}

/// A list of nodes (a route, a leaf set, the entries of a routing table, the peers discovery
/// knows). Owned by the caller: free it with `pastry_node_list_free`.
#[repr(C)]
pub struct PastryNodeList {
    /// The nodes; NULL when `len` is 0.
    pub items: *mut PastryNodeInfo,
    /// How many.
    pub len: usize,
}

impl PastryNodeList {
    /// A list handed to C.
    fn boxed(nodes: impl IntoIterator<Item = NodeInfo>) -> *mut PastryNodeList {
        let (items, len) = slice_to_c(nodes.into_iter().map(PastryNodeInfo::from).collect());
        Box::into_raw(Box::new(PastryNodeList { items, len }))
    }
}

/// Frees a node list. NULL does nothing.
///
/// # Safety
/// `list` is NULL or a list from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_list_free(list: *mut PastryNodeList) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if list.is_null() {
            return;
        }
        let list = Box::from_raw(list);
        free_c_slice(list.items, list.len);
    }));
}

/// Bytes handed to C (an object's data). Free with `pastry_buffer_free`.
#[repr(C)]
pub struct PastryBuffer {
    /// The bytes; NULL when `len` is 0.
    pub data: *mut u8,
    /// How many.
    pub len: usize,
}

impl PastryBuffer {
    fn boxed(bytes: Vec<u8>) -> *mut PastryBuffer {
        let (data, len) = slice_to_c(bytes.into_boxed_slice());
        Box::into_raw(Box::new(PastryBuffer { data, len }))
    }
}

/// Frees a buffer. NULL does nothing.
///
/// # Safety
/// `buffer` is NULL or a buffer from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn pastry_buffer_free(buffer: *mut PastryBuffer) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !buffer.is_null() {
            let buffer = Box::from_raw(buffer);
            free_c_slice(buffer.data, buffer.len);
        }
    }));
}

/// The message of the last call on this thread that failed: a NUL-terminated string owned
/// by the library, valid until the next failing call on this thread. Never NULL; empty if no
/// call has failed.
#[no_mangle]
pub extern "C" fn pastry_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// A short description of a status (a `PastryStatus` value), as a static NUL-terminated
/// string. Never NULL; an unknown value gives `"unknown status"`.
#[no_mangle]
pub extern "C" fn pastry_status_text(status: u32) -> *const c_char {
    // Taken as a plain integer: a value C makes up must not become an invalid Rust enum.
    let text: &'static CStr = match status {
        0 => c"ok",
        1 => c"a required pointer argument is NULL",
        2 => c"invalid argument",
        3 => c"identifier already in use",
        4 => c"no object with this name",
        5 => c"object is corrupt",
        6 => c"invalid object name",
        7 => c"peer unreachable",
        8 => c"node is not part of an overlay",
        9 => c"no live peer is known",
        10 => c"I/O error",
        11 => c"refused by a peer",
        12 => c"internal error (panic)",
        13 => c"error",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// The library's version, as a static NUL-terminated string such as `"0.1.0"`.
#[no_mangle]
pub extern "C" fn pastry_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The key of a name: CRC-16/XMODEM of its bytes (`"123456789"` gives `0x31c3`).
///
/// Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `name` points to `name_len` bytes (or is NULL with `name_len` 0); `key_out` points to a
/// `uint16_t`.
#[no_mangle]
pub unsafe extern "C" fn pastry_key_of(
    name: *const u8,
    name_len: usize,
    key_out: *mut u16,
) -> PastryStatus {
    guard(|| {
        let name = bytes_arg(name, name_len, "name")?;
        let key_out = out_arg(key_out, "key_out")?;
        *key_out = crate::id::key_of(name).0;
        Ok(())
    })
}

/// The id among `ids` (`len` of them) responsible for `key`: the numerically closest on
/// the ring, the larger id on a tie, as a lookup finds it among live nodes. Returns
/// `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, or `_INVALID_ARGUMENT` when `len` is 0.
///
/// # Safety
/// `ids` points to `len` ids (or is NULL with `len` 0); `id_out` points to a `uint16_t`.
#[no_mangle]
pub unsafe extern "C" fn pastry_responsible(
    key: u16,
    ids: *const u16,
    len: usize,
    id_out: *mut u16,
) -> PastryStatus {
    guard(|| {
        let ids = if len == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(arg(ids, "ids")?, len)
        };
        let id_out = out_arg(id_out, "id_out")?;
        let id = crate::id::responsible(crate::id::Id(key), ids.iter().map(|i| crate::id::Id(*i)))
            .ok_or_else(|| Failure::invalid("no ids to choose from (len is 0)"))?;
        *id_out = id.0;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_text() {
        let texts: Vec<&CStr> = (0..=13)
            .map(|s| unsafe { CStr::from_ptr(pastry_status_text(s)) })
            .collect();
        for (i, t) in texts.iter().enumerate() {
            assert!(!texts[..i].contains(t), "status {i} repeats {t:?}");
        }
        assert_eq!(PastryStatus::Other as u32, 13, "texts cover every status");
        let unknown = unsafe { CStr::from_ptr(pastry_status_text(99)) };
        assert_eq!(unknown, c"unknown status");
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, PastryStatus::Panic);
        let message = unsafe { CStr::from_ptr(pastry_last_error()) };
        assert!(message.to_str().unwrap().contains("boom"));
    }

    #[test]
    fn the_digest_is_exported() {
        let mut key = 0u16;
        let name = b"123456789";
        let status = unsafe { pastry_key_of(name.as_ptr(), name.len(), &mut key) };
        assert_eq!((status, key), (PastryStatus::Ok, 0x31c3));
        let status = unsafe { pastry_key_of(std::ptr::null(), 3, &mut key) };
        assert_eq!(status, PastryStatus::NullParameter);
        let status = unsafe { pastry_key_of(name.as_ptr(), name.len(), std::ptr::null_mut()) };
        assert_eq!(status, PastryStatus::NullParameter);
    }
}
