//! What can go wrong in the object store.

use std::io;
use std::path::PathBuf;

/// An error of the [`ObjectStore`](super::ObjectStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The name cannot be stored: it is empty or longer than
    /// [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes.
    #[error("invalid object name: {reason}")]
    InvalidName {
        /// Why the name was refused.
        reason: &'static str,
    },
    /// The name has no live object (it was never written, was removed, or is a tombstone).
    #[error("no such object")]
    NotFound,
    /// A record file is damaged: a bad header, a CRC mismatch, or a length that does not match
    /// its header. No bytes of it are handed out as valid.
    #[error("corrupt record {}: {what}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The file system failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file for this name already holds a different name: two long names share a
    /// shortened file name (or a case-insensitive file system folds two names together).
    /// The existing record is kept.
    #[error("another name already occupies {}", path.display())]
    NameClash {
        /// The file both names map to.
        path: PathBuf,
    },
    /// Data was written to a tombstone's writer: a tombstone has no data.
    #[error("a tombstone holds no data")]
    TombstoneData,
}

impl StoreError {
    /// Wraps an I/O error with the path it concerns.
    pub(super) fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption of the file at `path`.
    pub(super) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }
}
