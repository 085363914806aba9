//! Read buffers shared by every reactor and reading thread of the process. A node's sockets
//! are read only now and then, so a process of hundreds of nodes needs a few buffers at a
//! time, not one for each node and thread (64 KiB each, most of an idle node's memory).

use parking_lot::Mutex;

/// Buffers kept for the next reader (2 MiB at most); more in use at once are made and then
/// dropped. Only as many as were ever in use at once are made.
const KEPT: usize = 32;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Runs `read` with a buffer of `len` bytes (their content is left from earlier reads).
pub(super) fn with<T>(len: usize, read: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut buf = FREE.lock().pop().unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let out = read(&mut buf[..len]);
    let mut free = FREE.lock();
    if free.len() < KEPT {
        free.push(buf);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_are_reused_and_at_least_as_long_as_asked() {
        let first = super::with(100, |buf| {
            assert_eq!(buf.len(), 100);
            buf[0] = 7;
            buf.as_ptr() as usize
        });
        // Other tests may take buffers meanwhile: asked again, some buffer comes back long
        // enough, and the pool never keeps more than its bound.
        super::with(10, |buf| assert_eq!(buf.len(), 10));
        assert!(super::FREE.lock().len() <= super::KEPT);
        assert_ne!(first, 0);
    }
}
