//! The one CRC-32 (ISO-HDLC, as zlib and Ethernet use) of unencrypted frames and of stored
//! records.
//!
//! Computed by `crc32fast`, which folds with the CPU's carry-less multiply where there is one:
//! every byte of a large object is checksummed as it is sent, as it is received and on disk,
//! and a table-driven CRC was the largest cost of a transfer.

/// The CRC-32 of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A CRC-32 being computed over data that arrives in pieces.
#[derive(Clone, Default)]
pub(crate) struct Crc32Digest(crc32fast::Hasher);

impl Crc32Digest {
    /// A digest of no data yet.
    pub fn new() -> Crc32Digest {
        Crc32Digest::default()
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC-32 of everything added.
    pub fn finalize(self) -> u32 {
        self.0.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_piecewise_digest() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let mut digest = Crc32Digest::new();
        digest.update(b"1234");
        digest.update(b"56789");
        assert_eq!(digest.finalize(), 0xcbf4_3926);
        // Long enough for the folding path, checked against the bitwise definition.
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut bitwise = !0u32;
        for &b in &data {
            bitwise ^= u32::from(b);
            for _ in 0..8 {
                bitwise = (bitwise >> 1) ^ (0xedb8_8320 & 0u32.wrapping_sub(bitwise & 1));
            }
        }
        assert_eq!(crc32(&data), !bitwise);
    }
}
