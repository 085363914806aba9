//! Waiting for one socket to hold something to read, on the thread that will read it.

use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::net::TcpStream;

/// Waits at most `wait` (to the millisecond, at least one) for `socket` to be readable or
/// closed. `true` when it is: a read will not block (it may find nothing, if another
/// reader took it first, and say so).
pub(super) fn wait(socket: &TcpStream, wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, for a descriptor the caller's socket keeps open.
    let ready = unsafe { libc::poll(&mut fd, 1, millis) };
    ready > 0
}
