//! Turning an untrusted name into a file name that cannot leave its directory.
//!
//! The encoding keeps `[A-Za-z0-9_-]` and `.` as they are (so ordinary names stay readable in
//! a directory listing) and writes every other byte as `%XX` with upper-case hex. `%` itself is
//! escaped, so the encoding is one-to-one; a leading `.` is escaped too, so `.`, `..` and hidden
//! files cannot be produced. `/` and NUL never survive, so the result is always exactly one
//! path component.
//!
//! File systems limit a component to about 255 bytes, so an encoding longer than
//! [`MAX_PLAIN_LEN`] is shortened to `~<first 100 bytes>~<SHA-256 of the name, first 16
//! bytes in hex>`. `~` is never in a plain encoding, so a shortened form can only clash with
//! another shortened form, and finding two names of one form would take about 2^64 tries: no
//! one can compute a name that blocks another's (the full name kept in every file's header
//! would still detect it, see [`StoreError::NameClash`]). Directories written before used a
//! CRC-64 there, which anyone could collide on purpose; such files are renamed when the store
//! finds them ([`legacy_file_name`]).

use super::{StoreError, MAX_NAME_LEN};

/// Longest encoding used as it is; longer ones are shortened.
pub(super) const MAX_PLAIN_LEN: usize = 200;
/// Bytes of the encoding kept at the start of a shortened form (never splitting a `%XX`).
const SHORT_PREFIX_LEN: usize = 100;

/// CRC-64/XZ that told shortened names apart in directories written before.
const LEGACY_DIGEST: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// Bytes of the SHA-256 of a name kept in its shortened form.
const DIGEST_BYTES: usize = 16;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Refuses names the store cannot hold: empty, or longer than [`MAX_NAME_LEN`].
pub(super) fn validate(name: &[u8]) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::InvalidName {
            reason: "the name is empty",
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::InvalidName {
            reason: "the name is longer than MAX_NAME_LEN bytes",
        });
    }
    Ok(())
}

/// The file name that holds `name`'s record: its plain encoding, or the shortened form.
///
/// Always non-empty ASCII from `[A-Za-z0-9_.%~-]`, never starting with `.`, at most
/// [`MAX_PLAIN_LEN`] bytes.
pub(super) fn file_name(name: &[u8]) -> String {
    let plain = encode(name, usize::MAX);
    if plain.len() <= MAX_PLAIN_LEN {
        return plain;
    }
    let prefix = encode(name, SHORT_PREFIX_LEN);
    let digest = ring::digest::digest(&ring::digest::SHA256, name);
    let hex = crate::secret_file::hex(&digest.as_ref()[..DIGEST_BYTES]);
    format!("~{prefix}~{hex}")
}

/// The file name that held `name`'s record in directories written before: as
/// [`file_name`], but shortened with a CRC-64. `None` when it is the same as today's.
pub(super) fn legacy_file_name(name: &[u8]) -> Option<String> {
    let plain = encode(name, usize::MAX);
    if plain.len() <= MAX_PLAIN_LEN {
        return None;
    }
    let prefix = encode(name, SHORT_PREFIX_LEN);
    Some(format!("~{prefix}~{:016x}", LEGACY_DIGEST.checksum(name)))
}

/// The encoding of the longest start of `name` whose encoding fits in `limit` bytes.
///
/// Encoding byte by byte and stopping before the first one that does not fit is what keeps a
/// `%XX` from being cut in half.
fn encode(name: &[u8], limit: usize) -> String {
    let mut out = String::with_capacity(name.len().min(limit));
    for (i, &b) in name.iter().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        let width = if plain { 1 } else { 3 };
        if out.len() + width > limit {
            break;
        }
        if plain {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(file_name(b"hello.txt"), "hello.txt");
        assert_eq!(file_name(b"a_b-C9"), "a_b-C9");
    }

    #[test]
    fn hostile_bytes_are_escaped() {
        assert_eq!(file_name(b"."), "%2E");
        assert_eq!(file_name(b".."), "%2E.");
        assert_eq!(file_name(b".hidden"), "%2Ehidden");
        assert_eq!(file_name(b"../../etc/passwd"), "%2E.%2F..%2Fetc%2Fpasswd");
        assert_eq!(file_name(b"/abs"), "%2Fabs");
        assert_eq!(file_name(b"a\0b"), "a%00b");
        assert_eq!(file_name(b"%2F"), "%252F");
        assert_eq!(file_name(b"~x"), "%7Ex");
        assert_eq!(file_name(&[0xff, 0x80]), "%FF%80");
    }

    #[test]
    fn long_names_are_shortened_without_splitting_an_escape() {
        // 99 plain bytes then escapes: the 100th byte of the encoding is inside `%2F`.
        let mut name = vec![b'a'; 99];
        name.extend_from_slice(&[b'/'; 60]);
        let f = file_name(&name);
        assert!(f.starts_with('~'), "{f}");
        let (prefix, digest) = f[1..].split_once('~').expect("two tildes");
        assert_eq!(prefix, "a".repeat(99), "the split escape is dropped");
        assert_eq!(digest.len(), 2 * DIGEST_BYTES);
        assert!(f.len() <= MAX_PLAIN_LEN);
        let legacy = legacy_file_name(&name).expect("shortened before too");
        assert_ne!(legacy, f);
        assert_eq!(legacy.len(), f.len() - 2 * DIGEST_BYTES + 16);
        assert_eq!(legacy_file_name(b"short"), None);

        let mut other = name.clone();
        *other.last_mut().expect("non-empty") = b'b';
        assert_ne!(file_name(&other), f, "the digest tells them apart");
    }

    #[test]
    fn exactly_the_plain_limit_is_not_shortened() {
        let name = vec![b'x'; MAX_PLAIN_LEN];
        assert_eq!(file_name(&name).len(), MAX_PLAIN_LEN);
        let name = vec![b'x'; MAX_PLAIN_LEN + 1];
        assert!(file_name(&name).starts_with('~'));
    }

    #[test]
    fn validation_bounds() {
        assert!(matches!(validate(b""), Err(StoreError::InvalidName { .. })));
        assert!(validate(&vec![b'a'; MAX_NAME_LEN]).is_ok());
        assert!(matches!(
            validate(&vec![b'a'; MAX_NAME_LEN + 1]),
            Err(StoreError::InvalidName { .. })
        ));
    }
}
