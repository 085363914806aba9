//! Structs that may grow between releases. Each begins with `size_t size`, the size of the
//! struct as the program was compiled with it: the library reads and writes no byte past it,
//! so a program built against an older header (a smaller struct) keeps working with a newer
//! library, and fields it does not know take their documented defaults.
//!
//! The rule, as the README's "ABI and versions" states it: a field is only ever added at the
//! end of such a struct; a program built against a newer header than the library's may pass
//! a larger struct only if the fields this library does not know are zero.

use std::mem::size_of;

use super::Failure;

/// A `#[repr(C)]` struct whose first field is `size: usize`.
///
/// # Safety
/// The implementor is `#[repr(C)]`, starts with a `usize` size field, and has no padding
/// (so that every byte of a value is initialised and may be copied).
pub(crate) unsafe trait Growable: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
    /// The least size accepted: the struct as first released.
    const MIN_SIZE: usize;
    /// The defaults, with `size` equal to `size_of::<Self>()`.
    fn defaults() -> Self;
}

/// Fills the first `size` bytes of `*ptr` with the defaults and sets its size field to
/// `size`: the body of every `_init`. Bytes past this library's struct are zeroed.
///
/// # Safety
/// `ptr` is NULL or points to `size` writable bytes.
pub(super) unsafe fn init<T: Growable>(
    ptr: *mut T,
    size: usize,
    what: &str,
) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    check_size::<T>(size, what)?;
    let defaults = T::defaults();
    let known = size.min(size_of::<T>());
    let bytes = ptr.cast::<u8>();
    std::ptr::copy_nonoverlapping((&defaults as *const T).cast::<u8>(), bytes, known);
    std::ptr::write_bytes(bytes.add(known), 0, size - known);
    bytes.cast::<usize>().write_unaligned(size);
    Ok(())
}

/// Reads a struct of its own stated size: fields past it take their defaults.
///
/// # Safety
/// `ptr` is NULL or points to a struct whose size field is right (at least that many
/// readable bytes).
pub(super) unsafe fn read<T: Growable>(ptr: *const T, what: &str) -> Result<T, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    let bytes = ptr.cast::<u8>();
    let size = bytes.cast::<usize>().read_unaligned();
    check_size::<T>(size, what)?;
    let mut value = T::defaults();
    let known = size.min(size_of::<T>());
    std::ptr::copy_nonoverlapping(bytes, (&mut value as *mut T).cast::<u8>(), known);
    let newer = std::slice::from_raw_parts(bytes.add(known), size - known);
    if newer.iter().any(|b| *b != 0) {
        return Err(Failure::invalid(format!(
            "{what} sets fields this library (version {}) does not know: it was built \
             against a newer pastry.h",
            env!("CARGO_PKG_VERSION")
        )));
    }
    Ok(value)
}

/// Writes `value` into the caller's struct, no further than its stated size (an
/// out-parameter such as `PastryNetStats`).
///
/// # Safety
/// `ptr` is NULL or points to a struct whose size field is right.
pub(super) unsafe fn write<T: Growable>(ptr: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    let bytes = ptr.cast::<u8>();
    let size = bytes.cast::<usize>().read_unaligned();
    check_size::<T>(size, what)?;
    let known = size.min(size_of::<T>());
    // The size field is the caller's and stays as it was.
    std::ptr::copy_nonoverlapping(
        (&value as *const T).cast::<u8>().add(size_of::<usize>()),
        bytes.add(size_of::<usize>()),
        known - size_of::<usize>(),
    );
    // Fields of a newer header than this library's: nothing to say, so zero.
    std::ptr::write_bytes(bytes.add(known), 0, size - known);
    Ok(())
}

fn check_size<T: Growable>(size: usize, what: &str) -> Result<(), Failure> {
    // A bound on what a newer header may add, so that a wrong size reads no wild memory.
    const MOST: usize = 4096;
    if size < T::MIN_SIZE || size > MOST {
        return Err(Failure::invalid(format!(
            "{what}->size is {size}: set it to sizeof({}) (at least {}, as the library's \
             _init functions do)",
            T::NAME,
            T::MIN_SIZE
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::super::{
        PastryApplication, PastryClientOptions, PastryNetOptions, PastryNetStats, PastryNodeOptions,
    };

    /// `Growable` copies whole structs byte for byte: padding would be uninitialised bytes,
    /// and a field added after it would take whatever an older program left there.
    #[test]
    fn the_growable_structs_have_no_padding() {
        let word = size_of::<usize>();
        // size, 5 pointers, 6 four-byte fields, 2 u64.
        assert_eq!(
            size_of::<PastryNodeOptions>(),
            word + 5 * word + 6 * 4 + 2 * 8
        );
        // size, 4 pointers, a u64, 2 four-byte fields.
        assert_eq!(
            size_of::<PastryClientOptions>(),
            word + 4 * word + 8 + 2 * 4
        );
        // size, 4 u64, 8 four-byte fields, a u64.
        assert_eq!(size_of::<PastryNetOptions>(), word + 4 * 8 + 8 * 4 + 8);
        // size, 6 u64.
        assert_eq!(size_of::<PastryNetStats>(), word + 6 * 8);
        // size, a pointer, 3 function pointers.
        assert_eq!(size_of::<PastryApplication>(), word + 4 * word);
    }
}
