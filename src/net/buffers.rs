//! Large buffers shared by every connection of the process: the reactors' read buffers, the
//! frames of a large transfer and the sealed bytes waiting for the socket.
//!
//! A node's sockets are used only now and then, so a process of hundreds of nodes needs a
//! few such buffers at a time, not one for each node and thread. And a buffer given back to
//! the allocator after every frame of a large transfer came back as fresh pages, each
//! faulted in and zeroed by the kernel (about 30,000 faults a 256 MiB store): a buffer kept
//! here is reused warm.

use bytes::Bytes;
use parking_lot::Mutex;

/// Most bytes of buffers kept for reuse (more in use at once are made and then dropped):
/// enough for the frames and sealed bytes one large transfer has in hand at a time.
const KEPT_BYTES: usize = 4 << 20;

/// Most buffers kept.
const KEPT: usize = 32;

/// Buffers smaller than this are not kept: small ones come from the allocator cheaply.
pub(crate) const SMALLEST: usize = 32 * 1024;

/// The buffers of the process.
static POOL: Pool = Pool::new();

/// Buffers kept for reuse.
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }

    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut free = self.free.lock();
        // The smallest large enough, so that a large one is left for a large need. None
        // large enough: a new one (growing a smaller one would copy it).
        let fits = free.iter().enumerate();
        let best = fits.filter(|(_, b)| b.capacity() >= capacity);
        let Some((i, _)) = best.min_by_key(|(_, b)| b.capacity()) else {
            return Vec::with_capacity(capacity);
        };
        free.swap_remove(i)
    }

    fn give(&self, buf: Vec<u8>) {
        let size = buf.capacity();
        if size < SMALLEST {
            return;
        }
        let mut free = self.free.lock();
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < KEPT && kept + size <= KEPT_BYTES {
            free.push(buf);
        }
    }
}

/// A buffer with room for at least `capacity` bytes. Its content is what an earlier user
/// left there (its length included): clear it to append, or read over it.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    POOL.take(capacity)
}

/// Gives a buffer back for reuse, or to the allocator when the pool is full or it is small.
pub(crate) fn give(buf: Vec<u8>) {
    POOL.give(buf);
}

/// Makes room in `buf` for `more` bytes after those it holds: when that makes it large, in a
/// buffer of the pool (those it held are moved there, once).
pub(crate) fn reserve(buf: &mut Vec<u8>, more: usize) {
    let need = buf.len() + more;
    if buf.capacity() >= need {
        return;
    }
    if need < SMALLEST {
        buf.reserve(more);
        return;
    }
    let mut larger = take(need);
    larger.clear();
    larger.extend_from_slice(buf);
    give(std::mem::replace(buf, larger));
}

/// Runs `read` with a buffer of `len` bytes (their content is left from earlier reads).
pub(crate) fn with<T>(len: usize, read: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut buf = take(len);
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let out = read(&mut buf[..len]);
    give(buf);
    out
}

/// Bytes whose buffer comes back to the pool once every part of them is dropped.
pub(crate) fn into_bytes(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(buf, &POOL))
}

/// A buffer lent to [`Bytes`], and the pool it goes back to when they are done with it.
struct Pooled(Vec<u8>, &'static Pool);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.1.give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(pool: &Pool) -> Vec<*const u8> {
        pool.free.lock().iter().map(|b| b.as_ptr()).collect()
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_and_size_and_reuses_what_it_keeps() {
        static OWN: Pool = Pool::new();
        // More buffers given back than it keeps, in count and in bytes.
        let taken: Vec<Vec<u8>> = (0..2 * KEPT).map(|_| OWN.take(SMALLEST)).collect();
        for buf in taken {
            OWN.give(buf);
        }
        let big: Vec<Vec<u8>> = (0..8).map(|_| OWN.take(KEPT_BYTES / 4)).collect();
        for buf in big {
            OWN.give(buf);
        }
        let free = OWN.free.lock();
        assert!(free.len() <= KEPT);
        let kept: usize = free.iter().map(Vec::capacity).sum();
        assert!(kept <= KEPT_BYTES, "{kept}");
        drop(free);
        // A buffer large enough is reused; a request larger than any kept gets a new one.
        let kept = held(&OWN);
        let again = OWN.take(SMALLEST);
        assert!(kept.contains(&again.as_ptr()));
        let larger = OWN.take(KEPT_BYTES);
        assert!(!kept.contains(&larger.as_ptr()));
        assert!(larger.capacity() >= KEPT_BYTES);
    }

    #[test]
    fn bytes_give_their_buffer_back_when_the_last_part_is_dropped() {
        static OWN: Pool = Pool::new();
        let mut buf = OWN.take(300 * 1024);
        buf.extend_from_slice(&[7u8; 1000]);
        let at = buf.as_ptr();
        let bytes = Bytes::from_owner(Pooled(buf, &OWN));
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(&part[..], &[7u8; 10]);
        assert!(!held(&OWN).contains(&at), "in use: not back yet");
        drop(part);
        assert!(held(&OWN).contains(&at), "back once the last part went");
    }

    #[test]
    fn small_buffers_are_left_to_the_allocator_and_reads_get_their_length() {
        static OWN: Pool = Pool::new();
        OWN.give(vec![0u8; SMALLEST - 1]);
        assert!(held(&OWN).is_empty());
        // The process's pool: a read buffer is as long as asked, whatever was kept.
        for len in [100, SMALLEST, 3 * SMALLEST] {
            with(len, |buf| assert_eq!(buf.len(), len));
        }
    }
}
