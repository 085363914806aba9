//! The entries of the store's log (layout in the [module docs](super)).
//!
//! Decoding trusts nothing, as for record files: lengths are bounded before anything is
//! allocated and the header's CRC is checked before any field is believed.

use std::io::{self, Read};

use super::{RecordMeta, MAX_NAME_LEN, MAX_SMALL_OBJECT};
use crate::checksum::{crc32, Crc32Digest};
use crate::id::key_of;

/// First bytes of the log file: what it is, and the format of its entries.
pub(super) const LOG_MAGIC: [u8; 8] = *b"PSTRLOG1";
/// Bytes of an entry before its name: header CRC, kind, name length, version, size, data CRC.
pub(super) const ENTRY_FIXED_LEN: usize = 4 + 1 + 2 + 8 + 4 + 4;

/// What an entry says.
const KIND_OBJECT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
const KIND_ERASE: u8 = 2;

/// One decoded entry.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// A record (object or tombstone); its data follows the name.
    Record(RecordMeta),
    /// The record of `name` at `version` or older was removed.
    Erase { name: Vec<u8>, version: u64 },
}

/// The bytes of an entry holding `meta`'s record with `data` (`meta.size` and `meta.crc`
/// describe `data`; the name is validated and the data no larger than [`MAX_SMALL_OBJECT`]).
pub(super) fn encode_record(meta: &RecordMeta, data: &[u8]) -> Vec<u8> {
    let kind = if meta.deleted {
        KIND_TOMBSTONE
    } else {
        KIND_OBJECT
    };
    encode(kind, &meta.name, meta.version, meta.crc, data)
}

/// The bytes of an entry erasing the record of `name` at `version` or older.
pub(super) fn encode_erase(name: &[u8], version: u64) -> Vec<u8> {
    encode(KIND_ERASE, name, version, 0, &[])
}

fn encode(kind: u8, name: &[u8], version: u64, crc: u32, data: &[u8]) -> Vec<u8> {
    let name_len = u16::try_from(name.len()).expect("validated names fit in u16");
    let size = u32::try_from(data.len()).expect("small objects fit in u32");
    let mut e = Vec::with_capacity(ENTRY_FIXED_LEN + name.len() + data.len());
    e.extend_from_slice(&[0; 4]);
    e.push(kind);
    e.extend_from_slice(&name_len.to_be_bytes());
    e.extend_from_slice(&version.to_be_bytes());
    e.extend_from_slice(&size.to_be_bytes());
    e.extend_from_slice(&crc.to_be_bytes());
    e.extend_from_slice(name);
    let header_crc = crc32(&e[4..]);
    e[..4].copy_from_slice(&header_crc.to_be_bytes());
    e.extend_from_slice(data);
    e
}

/// How reading the next entry ended.
#[derive(Debug)]
pub(super) enum Next {
    /// A whole, valid entry of `len` bytes; a record's data is in the buffer passed in.
    Entry { entry: Entry, len: u64 },
    /// A whole entry of `len` bytes whose header is valid but whose data is not (`what`):
    /// damage to this entry alone, as its length can be believed.
    Damaged { len: u64, what: String },
    /// The log ends here, cleanly.
    End,
    /// A header of zeros: the space written ahead of the entries (or damage, if anything but
    /// zeros follows).
    Zeros,
    /// The bytes here are not a whole valid entry: a write cut short by a crash, or damage.
    /// Nothing from here on can be trusted (lengths cannot be believed past a bad header).
    Bad(String),
}

/// Reads the entry at the reader's position, its data into `data` (reused between calls).
pub(super) fn read_entry(r: &mut impl Read, data: &mut Vec<u8>) -> io::Result<Next> {
    let mut fixed = [0u8; ENTRY_FIXED_LEN];
    match read_full(r, &mut fixed)? {
        0 => return Ok(Next::End),
        n if fixed[..n].iter().all(|&b| b == 0) => return Ok(Next::Zeros),
        n if n < ENTRY_FIXED_LEN => return Ok(Next::Bad(format!("entry cut at {n} bytes"))),
        _ => {}
    }
    let kind = fixed[4];
    let name_len = usize::from(u16::from_be_bytes([fixed[5], fixed[6]]));
    let version = u64::from_be_bytes(fixed[7..15].try_into().expect("8 bytes"));
    let size = u32::from_be_bytes(fixed[15..19].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(fixed[19..23].try_into().expect("4 bytes"));
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Ok(Next::Bad(format!("name length {name_len} out of range")));
    }
    if size as usize > MAX_SMALL_OBJECT || (kind != KIND_OBJECT && size != 0) {
        return Ok(Next::Bad(format!("size {size} out of range for its kind")));
    }
    // Bounded just above, whatever the bytes claim.
    let mut name = vec![0u8; name_len];
    if read_full(r, &mut name)? < name_len {
        return Ok(Next::Bad("entry cut inside its name".into()));
    }
    let mut digest = Crc32Digest::new();
    digest.update(&fixed[4..]);
    digest.update(&name);
    if digest.finalize().to_be_bytes() != fixed[..4] {
        return Ok(Next::Bad("header CRC mismatch".into()));
    }
    data.clear();
    data.resize(size as usize, 0);
    if read_full(r, data)? < data.len() {
        return Ok(Next::Bad("entry cut inside its data".into()));
    }
    let len = (ENTRY_FIXED_LEN + name_len) as u64 + u64::from(size);
    if crc32(data) != crc {
        let what = "data CRC mismatch".into();
        return Ok(Next::Damaged { len, what });
    }
    let entry = match kind {
        KIND_ERASE => Entry::Erase { name, version },
        KIND_OBJECT | KIND_TOMBSTONE => Entry::Record(RecordMeta {
            key: key_of(&name),
            name,
            size: u64::from(size),
            version,
            crc,
            deleted: kind == KIND_TOMBSTONE,
        }),
        other => return Ok(Next::Bad(format!("unknown entry kind {other}"))),
    };
    Ok(Next::Entry { entry, len })
}

/// Fills `buf` as far as the reader goes; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(deleted: bool) -> (RecordMeta, Vec<u8>) {
        let data = if deleted { vec![] } else { b"four".to_vec() };
        let meta = RecordMeta {
            name: b"tracker/42".to_vec(),
            key: key_of(b"tracker/42"),
            size: data.len() as u64,
            version: 77,
            crc: crc32(&data),
            deleted,
        };
        (meta, data)
    }

    fn decode(bytes: &[u8]) -> (Next, Vec<u8>) {
        let mut data = Vec::new();
        let next = read_entry(&mut &bytes[..], &mut data).expect("no I/O error");
        (next, data)
    }

    #[test]
    fn records_and_erasures_round_trip() {
        for deleted in [false, true] {
            let (meta, data) = sample(deleted);
            let bytes = encode_record(&meta, &data);
            let (next, got) = decode(&bytes);
            match next {
                Next::Entry { entry, len } => {
                    assert_eq!(entry, Entry::Record(meta));
                    assert_eq!(len, bytes.len() as u64);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(got, data);
        }
        let bytes = encode_erase(b"x", 9);
        let (next, _) = decode(&bytes);
        assert!(matches!(
            next,
            Next::Entry { entry: Entry::Erase { ref name, version: 9 }, .. } if name == b"x"
        ));
        assert!(matches!(decode(&[]).0, Next::End));
    }

    #[test]
    fn every_flip_and_truncation_is_refused() {
        let (meta, data) = sample(false);
        let bytes = encode_record(&meta, &data);
        let data_at = bytes.len() - data.len();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x08;
            match decode(&bad).0 {
                Next::Bad(_) => assert!(i < data_at, "flip at {i}"),
                Next::Damaged { len, .. } => {
                    assert!(i >= data_at, "flip at {i}");
                    assert_eq!(len, bytes.len() as u64);
                }
                other => panic!("flip at {i}: {other:?}"),
            }
        }
        for len in 1..bytes.len() {
            assert!(matches!(decode(&bytes[..len]).0, Next::Bad(_)), "cut {len}");
        }
    }

    #[test]
    fn huge_lengths_are_refused_before_allocating() {
        let (meta, data) = sample(false);
        let mut bytes = encode_record(&meta, &data);
        bytes[15..19].copy_from_slice(&u32::MAX.to_be_bytes());
        let (next, got) = decode(&bytes);
        assert!(
            matches!(next, Next::Bad(ref w) if w.contains("size")),
            "{next:?}"
        );
        assert!(got.capacity() < 1024);
    }
}
