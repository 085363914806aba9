//! Putting a finished file in place of another in one step, without the flush ext4 adds to a
//! rename over an existing file.
//!
//! ext4 (with its default `auto_da_alloc`) starts writing back the data of a file renamed
//! over another before the rename returns, on the renaming thread: 90–180 ms for 256 MiB on
//! this project's machines, under the store's commit lock, for a store that chose not to
//! sync. Exchanging the two files (`renameat2` with `RENAME_EXCHANGE`) is just as atomic and
//! has no such flush; the displaced file is then removed where it landed. A synced store has
//! written its data already, so either way costs it nothing more.

use std::io;
use std::path::Path;

/// Swaps the files at `from` and `to` atomically. `Ok(false)` when that cannot be done here
/// (another system, a file system without the operation, or no file at `to`): the caller
/// renames instead.
#[cfg(target_os = "linux")]
pub(super) fn exchange(from: &Path, to: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let from = CString::new(from.as_os_str().as_bytes())?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // The system call rather than glibc's wrapper, which needs glibc 2.28: a library linked
    // into others' programs should not raise the C library they need. A kernel without it
    // (before 3.15) answers ENOSYS.
    // SAFETY: two NUL-terminated paths that outlive the call, which only reads them.
    let done = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(error),
    }
}

/// Swaps the files at `from` and `to` atomically: never here, so the caller renames.
#[cfg(not(target_os = "linux"))]
pub(super) fn exchange(_from: &Path, _to: &Path) -> io::Result<bool> {
    Ok(false)
}
