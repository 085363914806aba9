//! `PastrySecurity`: the cluster key a discovery node, node or client is given, or the
//! explicit choice of none.

use std::ffi::c_char;
use std::path::Path;

use super::{arg, guard, out_arg, str_arg, Failure, PastryStatus};
use crate::{ClusterKey, Security, KEY_LEN};

/// Who a discovery node, node or client admits and talks to: holders of one cluster key, or,
/// made by `pastry_security_insecure`, anyone. Read-only once made; may be shared by any
/// number of handles and threads, and freed once they have been made.
pub struct PastrySecurity(pub(super) Security);

/// Writes a new random cluster key to the file `path`, which must not exist yet (mode 0600),
/// and returns it in `*security_out`, owned by the caller: free it with
/// `pastry_security_free`.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_INVALID_ARGUMENT` (`path` not UTF-8) or
/// `_IO` (the file exists or cannot be written).
///
/// # Safety
/// `path` is a NUL-terminated string; `security_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_new_key_file(
    path: *const c_char,
    security_out: *mut *mut PastrySecurity,
) -> PastryStatus {
    guard(|| {
        let path = str_arg(path, "path")?;
        let out = out_arg(security_out, "security_out")?;
        let key = ClusterKey::create_file(Path::new(path))?;
        *out = boxed(Security::Key(key));
        Ok(())
    })
}

/// Reads the cluster key in the file `path` (as `pastry_security_new_key_file` or
/// `discovery --new-key` writes it) into `*security_out`, owned by the caller.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_INVALID_ARGUMENT` (`path` not UTF-8) or
/// `_IO` (the file cannot be read, or holds no key).
///
/// # Safety
/// As `pastry_security_new_key_file`.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_from_key_file(
    path: *const c_char,
    security_out: *mut *mut PastrySecurity,
) -> PastryStatus {
    guard(|| {
        let path = str_arg(path, "path")?;
        let out = out_arg(security_out, "security_out")?;
        *out = boxed(Security::Key(ClusterKey::from_file(Path::new(path))?));
        Ok(())
    })
}

/// A new random cluster key kept only in memory: for a network within one process.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_IO` (the system gave no random
/// numbers).
///
/// # Safety
/// `security_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_generate(
    security_out: *mut *mut PastrySecurity,
) -> PastryStatus {
    guard(|| {
        let out = out_arg(security_out, "security_out")?;
        *out = boxed(Security::Key(ClusterKey::generate()?));
        Ok(())
    })
}

/// The cluster key made of the `len` bytes at `bytes` (`len` must be `PASTRY_KEY_LEN`).
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (`len` is not
/// `PASTRY_KEY_LEN`).
///
/// # Safety
/// `bytes` points to `len` readable bytes; `security_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_from_bytes(
    bytes: *const u8,
    len: usize,
    security_out: *mut *mut PastrySecurity,
) -> PastryStatus {
    guard(|| {
        let bytes = arg(bytes, "bytes")?;
        let out = out_arg(security_out, "security_out")?;
        if len != KEY_LEN {
            return Err(Failure::invalid(format!(
                "a cluster key is {KEY_LEN} bytes, not {len}"
            )));
        }
        let mut key = [0u8; KEY_LEN];
        std::ptr::copy_nonoverlapping(bytes, key.as_mut_ptr(), KEY_LEN);
        *out = boxed(Security::Key(ClusterKey::from_bytes(key)));
        Ok(())
    })
}

/// The client key of the cluster key in `security`, in `*client_out`, owned by the caller:
/// what a program that only looks up, reads, writes and deletes objects is given. Its holder
/// is served as a client by every node and by discovery, and can be nothing more (it cannot
/// register an id, move objects or change any node's tables), while nodes and discovery,
/// holding the cluster key, admit it with nothing more to configure.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (`security` is the
/// insecure choice, which has no key).
///
/// # Safety
/// `security` is a live handle; `client_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_client_key(
    security: *const PastrySecurity,
    client_out: *mut *mut PastrySecurity,
) -> PastryStatus {
    guard(|| {
        let security = arg(security, "security")?;
        let out = out_arg(client_out, "client_out")?;
        let Security::Key(key) = &security.0 else {
            return Err(Failure::invalid(
                "an insecure network has no key to derive a client key from",
            ));
        };
        *out = boxed(Security::Key(key.client_key()));
        Ok(())
    })
}

/// No key: no handshake and no encryption, and anyone who can reach a port is a full member
/// who can read, change or delete anything. Only for a network that strangers cannot reach.
///
/// Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `security_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_insecure(
    security_out: *mut *mut PastrySecurity,
) -> PastryStatus {
    guard(|| {
        let out = out_arg(security_out, "security_out")?;
        *out = boxed(Security::Insecure);
        Ok(())
    })
}

/// Frees a security handle. Handles made with it keep their own copy. NULL does nothing.
///
/// # Safety
/// `security` is NULL or a live handle; no other call may use it during or after this one.
#[no_mangle]
pub unsafe extern "C" fn pastry_security_free(security: *mut PastrySecurity) {
    super::free_box(security);
}

fn boxed(security: Security) -> *mut PastrySecurity {
    Box::into_raw(Box::new(PastrySecurity(security)))
}

/// The security a C caller passed, which must not be NULL: there is no implicit choice.
///
/// # Safety
/// `security` is NULL or a live handle.
pub(super) unsafe fn security_arg(
    security: *const PastrySecurity,
    what: &str,
) -> Result<Security, Failure> {
    Ok(arg(security, what)?.0.clone())
}
