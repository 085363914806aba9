//! The Common API in C: an application's callbacks registered on a node, and messages
//! routed to keys (see `Node::route` in the Rust documentation, and the README).

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use super::sized::{self, Growable};
use super::{
    arg, bytes_arg, guard, out_arg, str_arg, Failure, PastryBuffer, PastryNode, PastryNodeInfo,
    PastryNodeList, PastryStatus,
};
use crate::id::{Id, Key, NodeInfo};
use crate::node::{AppRoute, Application};

/// Bytes lent to a callback: a message it may read and replace (`forward`), or the reply it
/// may set (`deliver`). Valid only during the callback.
pub struct PastryBytes(Vec<u8>);

/// An application's callbacks. Fill it with `pastry_application_init(&app, sizeof app)`,
/// then set `deliver` (required), `forward` and `update` (optional) and `user`. Fields are
/// only ever added at the end.
///
/// Threads: `deliver` and `forward` run on the threads serving the node's requests, several
/// at once (the sender's own `forward` on the thread calling `pastry_node_route`); `update`
/// in the node's maintenance pass, one at a time. They must be thread-safe; they may block, even route a message
/// themselves, but the message waits meanwhile. They must not free the node.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PastryApplication {
    /// `sizeof(PastryApplication)` as the program knows it: set by `pastry_application_init`.
    pub size: usize,
    /// Passed back to every callback untouched.
    pub user: *mut c_void,
    /// The message reached the node responsible for `key` (this one). For a
    /// `pastry_node_request`, `pastry_bytes_set(reply, ...)` sets the answer.
    pub deliver: Option<
        unsafe extern "C" fn(
            user: *mut c_void,
            key: u16,
            message: *const u8,
            len: usize,
            reply: *mut PastryBytes,
        ),
    >,
    /// The message is here on its way to `key`, and goes to `next` unless this returns
    /// false (it then stops here). `pastry_bytes_get` reads it and `pastry_bytes_set`
    /// changes it. NULL: every message passes on unchanged.
    pub forward: Option<
        unsafe extern "C" fn(
            user: *mut c_void,
            key: u16,
            message: *mut PastryBytes,
            next: *const PastryNodeInfo,
        ) -> bool,
    >,
    /// `node` joined this node's leaf set (`joined`) or left it. NULL: not told.
    pub update:
        Option<unsafe extern "C" fn(user: *mut c_void, node: *const PastryNodeInfo, joined: bool)>,
}

// SAFETY: repr(C), `size` first, then four pointers: no padding.
unsafe impl Growable for PastryApplication {
    const NAME: &'static str = "PastryApplication";
    const MIN_SIZE: usize = offset_of!(PastryApplication, update) + size_of::<usize>();
    fn defaults() -> Self {
        PastryApplication {
            size: size_of::<PastryApplication>(),
            user: std::ptr::null_mut(),
            deliver: None,
            forward: None,
            update: None,
        }
    }
}

/// Fills `app` with no callbacks and a NULL `user` (`size` is `sizeof *app`). Returns
/// `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (a size smaller than the
/// first release's struct).
///
/// # Safety
/// `app` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pastry_application_init(
    app: *mut PastryApplication,
    size: usize,
) -> PastryStatus {
    guard(|| sized::init(app, size, "app"))
}

/// The C callbacks as an [`Application`].
struct CApplication {
    callbacks: PastryApplication,
    /// The program's pointer, as a number: handed back untouched, never dereferenced here.
    user: usize,
}

// SAFETY: the program promised thread-safe callbacks (the header says so); `user` is only
// handed back.
unsafe impl Send for CApplication {}
unsafe impl Sync for CApplication {}

impl Application for CApplication {
    fn deliver(&self, key: Key, message: &[u8]) -> Vec<u8> {
        let mut reply = PastryBytes(Vec::new());
        if let Some(deliver) = self.callbacks.deliver {
            // SAFETY: a function the program gave, with a message valid for the call.
            unsafe {
                deliver(
                    self.user as *mut c_void,
                    key.0,
                    message.as_ptr(),
                    message.len(),
                    &mut reply,
                )
            };
        }
        reply.0
    }

    fn forward(&self, key: Key, message: &mut Vec<u8>, next: NodeInfo) -> bool {
        let Some(forward) = self.callbacks.forward else {
            return true;
        };
        let mut lent = PastryBytes(std::mem::take(message));
        let next = PastryNodeInfo::from(next);
        // SAFETY: as in `deliver`.
        let go = unsafe { forward(self.user as *mut c_void, key.0, &mut lent, &next) };
        *message = lent.0;
        go
    }

    fn update(&self, node: NodeInfo, joined: bool) {
        if let Some(update) = self.callbacks.update {
            let node = PastryNodeInfo::from(node);
            // SAFETY: as in `deliver`.
            unsafe { update(self.user as *mut c_void, &node, joined) };
        }
    }
}

/// Registers the application `app` under `name` (NUL-terminated UTF-8) on `node`,
/// replacing one registered under that name before; the node keeps a copy of `*app`.
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` (also for a NULL `app->deliver`) or
/// `_INVALID_ARGUMENT` (a wrong size, a name not UTF-8).
///
/// # Safety
/// `node` is NULL or a live handle; `name` is NULL or NUL-terminated; `app` is NULL or
/// points to a struct whose size field is right, whose callbacks stay callable until the
/// application is unregistered or the node freed.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_register_app(
    node: *const PastryNode,
    name: *const c_char,
    app: *const PastryApplication,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let name = str_arg(name, "name")?;
        let callbacks = sized::read(app, "app")?;
        if callbacks.deliver.is_none() {
            return Err(Failure::null("app->deliver"));
        }
        let app = CApplication {
            callbacks,
            user: callbacks.user as usize,
        };
        node.node.register_app(name, Arc::new(app));
        Ok(())
    })
}

/// Removes the application registered under `name` on `node`: once this returns, its
/// callbacks are not called for new messages (a call under way may still end). Returns
/// `PASTRY_STATUS_OK` or `_NULL_PARAMETER`, or `_INVALID_ARGUMENT` (a name not UTF-8).
///
/// # Safety
/// `node` is NULL or a live handle; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_unregister_app(
    node: *const PastryNode,
    name: *const c_char,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        node.node.unregister_app(str_arg(name, "name")?);
        Ok(())
    })
}

/// Reads the bytes lent to a callback. Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `bytes` is NULL or the bytes a callback was given, during that callback; the out
/// pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_bytes_get(
    bytes: *const PastryBytes,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> PastryStatus {
    guard(|| {
        let bytes = arg(bytes, "bytes")?;
        let data_out = out_arg(data_out, "data_out")?;
        let len_out = out_arg(len_out, "len_out")?;
        *data_out = bytes.0.as_ptr();
        *len_out = bytes.0.len();
        Ok(())
    })
}

/// Replaces the bytes lent to a callback with a copy of `len` bytes at `data` (at most
/// `PASTRY_MAX_APP_MESSAGE`). Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or
/// `_INVALID_ARGUMENT` (too long).
///
/// # Safety
/// `bytes` is NULL or the bytes a callback was given, during that callback; `data` points
/// to `len` bytes (or is NULL with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn pastry_bytes_set(
    bytes: *mut PastryBytes,
    data: *const u8,
    len: usize,
) -> PastryStatus {
    guard(|| {
        let bytes = out_arg(bytes, "bytes")?;
        let data = bytes_arg(data, len, "data")?;
        if data.len() > crate::MAX_APP_MESSAGE {
            return Err(Failure::invalid(format!(
                "{} bytes: a message is at most {}",
                data.len(),
                crate::MAX_APP_MESSAGE
            )));
        }
        (*bytes).0 = data.to_vec();
        Ok(())
    })
}

/// Routes `message` (`len` bytes, at most `PASTRY_MAX_APP_MESSAGE`) to application `app`
/// on the node responsible for `key`, one way. On success `*delivered_out` (if not NULL)
/// says whether it was delivered (false: a `forward` stopped it), and `route_out` (if not
/// NULL) receives the nodes it passed, this one first; free it with
/// `pastry_node_list_free`. Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`,
/// `_INVALID_ARGUMENT` (too long, a name not UTF-8), `_NOT_JOINED`, `_UNREACHABLE` (the
/// route failed), or `_REFUSED` (the responsible node runs no such application).
///
/// # Safety
/// `node` is NULL or a live handle; `app` is NULL or NUL-terminated; `message` points to
/// `len` bytes (or is NULL with `len` 0); the out pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_route(
    node: *const PastryNode,
    app: *const c_char,
    key: u16,
    message: *const u8,
    len: usize,
    delivered_out: *mut bool,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let app = str_arg(app, "app")?;
        let message = bytes_arg(message, len, "message")?;
        let routed = node.node.route(app, Id(key), message)?;
        if !delivered_out.is_null() {
            *delivered_out = routed.delivered;
        }
        give(route_out, routed);
        Ok(())
    })
}

/// As `pastry_node_route`, and waits for the reply `deliver` set at the responsible node:
/// on success `*reply_out` holds it (empty if stopped on the way); free it with
/// `pastry_buffer_free`. Returns the statuses of `pastry_node_route`.
///
/// # Safety
/// As `pastry_node_route`; `reply_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_request(
    node: *const PastryNode,
    app: *const c_char,
    key: u16,
    message: *const u8,
    len: usize,
    reply_out: *mut *mut PastryBuffer,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let app = str_arg(app, "app")?;
        let message = bytes_arg(message, len, "message")?;
        let reply_out = out_arg(reply_out, "reply_out")?;
        let mut routed = node.node.request(app, Id(key), message)?;
        *reply_out = PastryBuffer::boxed(std::mem::take(&mut routed.reply));
        give(route_out, routed);
        Ok(())
    })
}

/// Hands a route's path to C if asked for.
///
/// # Safety
/// `route_out` is NULL or writable.
unsafe fn give(route_out: *mut *mut PastryNodeList, routed: AppRoute) {
    if !route_out.is_null() {
        *route_out = PastryNodeList::boxed(routed.path);
    }
}

/// Largest application message or reply, in bytes.
pub const PASTRY_MAX_APP_MESSAGE: usize = 1 << 20;
const _: () = assert!(PASTRY_MAX_APP_MESSAGE == crate::MAX_APP_MESSAGE);
