//! 32-byte secrets on disk (a cluster key, a node's signing key): one line of 64 hex digits,
//! in a file only its owner may read, never overwritten.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Bytes in a secret.
pub(crate) const SECRET_LEN: usize = 32;

/// Longest file read: the secret, a line ending and some slack for stray whitespace.
const MAX_FILE: u64 = 256;

/// 32 bytes from the operating system's random numbers; `what` names them in the error.
pub(crate) fn random(what: &str) -> Result<[u8; SECRET_LEN]> {
    let mut bytes = [0u8; SECRET_LEN];
    getrandom::fill(&mut bytes).map_err(|e| Error::Local {
        what: format!("drawing {what}"),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(bytes)
}

/// Writes `secret` to `path`, which must not exist yet (a secret is never overwritten),
/// readable and writable by its owner only (mode 0600), synced.
pub(crate) fn write(path: &Path, secret: &[u8; SECRET_LEN]) -> Result<()> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error)?;
    let mut text = hex(secret);
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error)
}

/// Reads the secret in `path`, as [`write`] writes it; `what` names it in messages. A file
/// that others than its owner may read is used, with a warning in the log: the secret is
/// then theirs too.
pub(crate) fn read(path: &Path, what: &str) -> Result<[u8; SECRET_LEN]> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    warn_if_shared(path, &file, what);
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(io_error)?;
    parse(text.trim()).ok_or_else(|| {
        io_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a {what}: expected {} hex digits", 2 * SECRET_LEN),
        ))
    })
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, file: &File, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "{what} file {} may be read by others than its owner (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &File, _: &str) {}

/// Lower-case hex digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret written as exactly 64 hex digits, or `None`.
pub(crate) fn parse(text: &str) -> Option<[u8; SECRET_LEN]> {
    if text.len() != 2 * SECRET_LEN || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; SECRET_LEN];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_written_is_read_back_and_never_overwritten() {
        let path = std::env::temp_dir().join(format!("pastry-secret-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let secret = random("a test secret").unwrap();
        write(&path, &secret).unwrap();
        assert_eq!(read(&path, "test secret").unwrap(), secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            write(&path, &[0; SECRET_LEN]),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists
        ));
        assert_eq!(read(&path, "test secret").unwrap(), secret, "kept");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn anything_but_64_hex_digits_is_not_a_secret() {
        for bad in [
            "",
            "00",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(65),
            &"é".repeat(32),
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(parse(&"0a".repeat(32)).unwrap(), [0x0a; SECRET_LEN]);
    }
}
