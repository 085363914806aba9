//! Cluster keys on disk: one line of 64 hex digits, in a file only its owner may read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::{ClusterKey, KEY_LEN};
use crate::error::{Error, Result};

/// Longest key file read: the key, a line ending and some slack for stray whitespace.
const MAX_FILE: u64 = 256;

impl ClusterKey {
    /// Generates a new key and writes it to `path`, which must not exist yet (an existing
    /// key is never overwritten), readable and writable by its owner only (mode 0600).
    pub fn create_file(path: &Path) -> Result<ClusterKey> {
        let key = ClusterKey::generate()?;
        key.save(path)?;
        Ok(key)
    }

    /// Writes this key to `path` as [`ClusterKey::create_file`] does: to a new file (an
    /// existing one is never overwritten), mode 0600, synced.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io_error = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_error)?;
        let mut text = hex(self.as_bytes());
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error)
    }

    /// Reads the key in `path`, as [`ClusterKey::create_file`] writes it. A file that others
    /// than its owner may read is used, with a warning in the log: the key is then theirs too.
    pub fn from_file(path: &Path) -> Result<ClusterKey> {
        let io_error = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        warn_if_shared(path, &file);
        let mut text = String::new();
        file.take(MAX_FILE)
            .read_to_string(&mut text)
            .map_err(io_error)?;
        parse(text.trim()).ok_or_else(|| {
            io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a cluster key: expected {} hex digits", 2 * KEY_LEN),
            ))
        })
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, file: &File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "cluster key file {} may be read by others than its owner (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &File) {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key written as exactly 64 hex digits, or `None`.
fn parse(text: &str) -> Option<ClusterKey> {
    if text.len() != 2 * KEY_LEN || !text.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; KEY_LEN];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(ClusterKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_is_read_back_and_never_overwritten() {
        let path = std::env::temp_dir().join(format!("pastry-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let key = ClusterKey::create_file(&path).unwrap();
        assert_eq!(ClusterKey::from_file(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            ClusterKey::create_file(&path),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists
        ));
        assert_eq!(ClusterKey::from_file(&path).unwrap(), key, "kept");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn anything_but_64_hex_digits_is_not_a_key() {
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
        let key = parse(&"0a".repeat(32)).unwrap();
        assert_eq!(key.as_bytes(), &[0x0a; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "ClusterKey(..)", "never printed");
    }
}
