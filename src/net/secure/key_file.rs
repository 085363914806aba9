//! Cluster keys on disk: one line of 64 hex digits, in a file only its owner may read
//! (`secret_file`).

use std::path::Path;

use super::ClusterKey;
use crate::error::Result;
use crate::secret_file;

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
        secret_file::write(path, self.as_bytes())
    }

    /// Reads the key in `path`, as [`ClusterKey::create_file`] writes it. A file that others
    /// than its owner may read is used, with a warning in the log: the key is then theirs too.
    pub fn from_file(path: &Path) -> Result<ClusterKey> {
        secret_file::read(path, "cluster key").map(ClusterKey::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_is_read_back_and_never_printed() {
        let path = std::env::temp_dir().join(format!("pastry-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let key = ClusterKey::create_file(&path).unwrap();
        assert_eq!(ClusterKey::from_file(&path).unwrap(), key);
        assert!(ClusterKey::create_file(&path).is_err(), "never overwritten");
        assert_eq!(format!("{key:?}"), "ClusterKey(..)", "never printed");
        std::fs::remove_file(&path).unwrap();
    }
}
