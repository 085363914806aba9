//! The header at the start of every record file (layout in the [module docs](super)).
//!
//! Decoding trusts nothing: every field is range-checked before it is used, the name length is
//! bounded by [`MAX_NAME_LEN`] before anything is allocated, and the header's own CRC-32 is
//! checked before any field is believed.

use std::io::{self, Read};
use std::path::Path;

use super::{RecordMeta, StoreError, MAX_NAME_LEN};
use crate::checksum::{crc32, Crc32Digest};
use crate::id::key_of;

/// First bytes of every record file.
pub(super) const MAGIC: [u8; 4] = *b"PSTR";
/// The format written by this build; others are refused.
pub(super) const FORMAT_VERSION: u8 = 1;
/// Flag bit: the record is a tombstone.
const FLAG_DELETED: u8 = 0x01;
/// Bytes before the name: magic, format, flags, name length, version, size, data CRC.
pub(super) const FIXED_LEN: usize = 4 + 1 + 1 + 2 + 8 + 8 + 4;
/// Bytes after the name: the header CRC.
const TRAILER_LEN: usize = 4;

/// Length of the header of a record whose name is `name_len` bytes: where its data starts.
pub(super) fn header_len(name_len: usize) -> u64 {
    (FIXED_LEN + name_len + TRAILER_LEN) as u64
}

/// The header bytes for `meta` (whose name the caller has validated).
pub(super) fn encode(meta: &RecordMeta) -> Vec<u8> {
    let name_len = u16::try_from(meta.name.len()).expect("validated names fit in u16");
    let flags = if meta.deleted { FLAG_DELETED } else { 0 };
    let mut h = Vec::with_capacity(FIXED_LEN + meta.name.len() + TRAILER_LEN);
    h.extend_from_slice(&MAGIC);
    h.push(FORMAT_VERSION);
    h.push(flags);
    h.extend_from_slice(&name_len.to_be_bytes());
    h.extend_from_slice(&meta.version.to_be_bytes());
    h.extend_from_slice(&meta.size.to_be_bytes());
    h.extend_from_slice(&meta.crc.to_be_bytes());
    h.extend_from_slice(&meta.name);
    let crc = crc32(&h);
    h.extend_from_slice(&crc.to_be_bytes());
    h
}

/// Reads and checks the header at the start of `r`, leaving `r` at the first data byte.
///
/// A short or invalid header is [`StoreError::Corrupt`]; only a failing read is `Io`.
pub(super) fn read(r: &mut impl Read, path: &Path) -> Result<RecordMeta, StoreError> {
    let corrupt = |what: String| StoreError::corrupt(path, what);
    let mut fixed = [0u8; FIXED_LEN];
    read_exact(r, &mut fixed, path)?;
    if fixed[0..4] != MAGIC {
        return Err(corrupt("not a record file (bad magic)".into()));
    }
    if fixed[4] != FORMAT_VERSION {
        return Err(corrupt(format!("unknown format version {}", fixed[4])));
    }
    let flags = fixed[5];
    if flags & !FLAG_DELETED != 0 {
        return Err(corrupt(format!("unknown flags {flags:#04x}")));
    }
    let name_len = usize::from(u16::from_be_bytes([fixed[6], fixed[7]]));
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(corrupt(format!("name length {name_len} out of range")));
    }
    // Bounded by MAX_NAME_LEN just above, so this allocation is small whatever the file says.
    let mut rest = vec![0u8; name_len + TRAILER_LEN];
    read_exact(r, &mut rest, path)?;
    let (name, stored_crc) = rest.split_at(name_len);
    let mut digest = Crc32Digest::new();
    digest.update(&fixed);
    digest.update(name);
    if digest.finalize().to_be_bytes() != stored_crc {
        return Err(corrupt("header CRC mismatch".into()));
    }
    let meta = RecordMeta {
        key: key_of(name),
        name: name.to_vec(),
        version: be_u64(&fixed[8..16]),
        size: be_u64(&fixed[16..24]),
        crc: u32::from_be_bytes([fixed[24], fixed[25], fixed[26], fixed[27]]),
        deleted: flags & FLAG_DELETED != 0,
    };
    if meta.deleted && meta.size != 0 {
        return Err(corrupt(format!(
            "tombstone with {} bytes of data",
            meta.size
        )));
    }
    Ok(meta)
}

/// `read_exact`, with running out of bytes reported as a truncated header.
fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), StoreError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => StoreError::corrupt(path, "truncated header"),
        _ => StoreError::io(path, e),
    })
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordMeta {
        RecordMeta {
            name: b"hello.txt".to_vec(),
            key: key_of(b"hello.txt"),
            size: 1234,
            version: 77,
            crc: 0xdead_beef,
            deleted: false,
        }
    }

    fn decode(bytes: &[u8]) -> Result<RecordMeta, StoreError> {
        read(&mut &bytes[..], Path::new("x"))
    }

    #[test]
    fn round_trip_and_length() {
        let h = encode(&sample());
        assert_eq!(h.len() as u64, header_len(9));
        assert_eq!(&h[..4], b"PSTR");
        assert_eq!(decode(&h).expect("valid"), sample());
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let h = encode(&sample());
        for i in 0..h.len() {
            let mut bad = h.clone();
            bad[i] ^= 0x10;
            assert!(
                matches!(decode(&bad), Err(StoreError::Corrupt { .. })),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let h = encode(&sample());
        for len in 0..h.len() {
            assert!(
                matches!(decode(&h[..len]), Err(StoreError::Corrupt { .. })),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn huge_name_length_is_refused_before_allocating() {
        let mut h = encode(&sample());
        h[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        let err = decode(&h).expect_err("refused");
        assert!(format!("{err}").contains("name length"), "{err}");
    }

    #[test]
    fn tombstone_with_data_is_refused() {
        let mut m = sample();
        m.deleted = true;
        assert!(matches!(
            decode(&encode(&m)),
            Err(StoreError::Corrupt { .. })
        ));
        m.size = 0;
        assert_eq!(decode(&encode(&m)).expect("valid tombstone"), m);
    }
}
