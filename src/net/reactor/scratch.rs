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
    /// Takes `depth` buffers at once, each as long as asked.
    fn nested(depth: usize) {
        if depth == 0 {
            return;
        }
        super::with(100 + depth, |buf| {
            assert_eq!(buf.len(), 100 + depth);
            nested(depth - 1);
        });
    }

    #[test]
    fn buffers_are_as_long_as_asked_and_the_pool_keeps_a_bounded_number() {
        // More buffers in use at once than the pool keeps: it keeps no more than its bound
        // once they are all given back (other tests may take and give back meanwhile).
        nested(2 * super::KEPT);
        assert!(super::FREE.lock().len() <= super::KEPT);
        assert!(
            !super::FREE.lock().is_empty(),
            "the buffers given back are kept"
        );
    }
}
