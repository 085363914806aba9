//! Waiting for one socket to hold something to read, on the thread that will read it.

use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::net::TcpStream;

/// What a socket is ready for.
pub(super) struct Ready {
    /// A read will not block: something to read, or the connection closed or failed.
    pub readable: bool,
    /// A write will not block.
    pub writable: bool,
}

/// Waits at most `wait` (to the millisecond, at least one) for `socket` to be readable or
/// closed, or writable too when `writes` asks for it, polling for `spin` of it first.
pub(super) fn wait(socket: &TcpStream, wait: Duration, spin: Duration, writes: bool) -> Ready {
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN | if writes { libc::POLLOUT } else { 0 },
        revents: 0,
    };
    // SAFETY (both calls): one valid pollfd, for a descriptor the caller's socket keeps open.
    let mut ready = 0;
    crate::net::spin::spin(spin.min(wait), || {
        ready = unsafe { libc::poll(&mut fd, 1, 0) };
        ready != 0
    });
    if ready == 0 {
        let millis = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        ready = unsafe { libc::poll(&mut fd, 1, millis) };
    }
    if ready <= 0 {
        return Ready {
            readable: false,
            writable: false,
        };
    }
    let ended = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    Ready {
        readable: fd.revents & (libc::POLLIN | ended) != 0,
        writable: fd.revents & libc::POLLOUT != 0,
    }
}
