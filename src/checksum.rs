//! The one CRC-32 (ISO-HDLC, as zlib and Ethernet use) of frames and stored records.
//!
//! Computed with 16-byte slices at a time: a byte-wise table made checksums the bottleneck of
//! large transfers, where every chunk is checked on the wire and on disk.

/// The CRC-32 algorithm, slice-by-16.
pub(crate) static CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// A CRC-32 being computed over data that arrives in pieces.
pub(crate) type Crc32Digest = crc::Digest<'static, u32, crc::Table<16>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_piecewise_digest() {
        assert_eq!(CRC32.checksum(b"123456789"), 0xcbf4_3926);
        let mut digest = CRC32.digest();
        digest.update(b"1234");
        digest.update(b"56789");
        assert_eq!(digest.finalize(), 0xcbf4_3926);
    }
}
