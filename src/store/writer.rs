//! Streaming a record into a temporary file, then committing it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format;
use super::{Commit, ObjectStore, RecordMeta, StoreError};
use crate::checksum::Crc32Digest;

/// Counter that makes temporary file names unique within this process (the process id makes
/// them unique across processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A record being written; made by [`ObjectStore::writer`].
///
/// Data up to the store's [`small_object_max`](super::StoreOptions::small_object_max) is
/// kept in memory and committed as one entry of the log; beyond that it goes to a temporary
/// file in the store's `tmp` directory. [`finish`](Self::finish) makes it visible
/// atomically. Dropping the writer without finishing leaves the store as it was (and removes
/// the temporary file).
pub struct RecordWriter<'a> {
    store: &'a ObjectStore,
    /// The record's header; `size` and `crc` are filled in by `finish`.
    meta: RecordMeta,
    body: Body,
    digest: Crc32Digest,
}

/// Where a record's data goes while it is written.
enum Body {
    Memory(Vec<u8>),
    File {
        // Declared before `temp` so that the file is closed before the guard removes it.
        file: BufWriter<File>,
        temp: TempFile,
    },
}

impl fmt::Debug for RecordWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RecordWriter");
        d.field("meta", &self.meta);
        if let Body::File { temp, .. } = &self.body {
            d.field("temp", &temp.path);
        }
        d.finish_non_exhaustive()
    }
}

impl<'a> RecordWriter<'a> {
    pub(super) fn new(store: &'a ObjectStore, meta: RecordMeta) -> RecordWriter<'a> {
        RecordWriter {
            store,
            meta,
            body: Body::Memory(Vec::new()),
            digest: Crc32Digest::new(),
        }
    }

    /// Sets the version the record is committed at: a writer may learn it only once the data
    /// is in (the header is written in full by [`finish`](Self::finish)).
    pub fn set_version(&mut self, version: u64) {
        self.meta.version = version;
    }

    /// The CRC-32 of the data written so far.
    pub fn crc_so_far(&self) -> u32 {
        self.digest.clone().finalize()
    }

    /// Appends `chunk` to the record's data.
    ///
    /// A tombstone's writer refuses any data with [`StoreError::TombstoneData`].
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        if self.meta.deleted {
            return Err(StoreError::TombstoneData);
        }
        let small_max = self.store.options.small_object_max as u64;
        if let Body::Memory(data) = &self.body {
            if self.meta.size + chunk.len() as u64 > small_max {
                // On failure the data stays in memory, as before the call.
                self.body = spill(&self.store.tmp, &self.meta, data)?;
            }
        }
        match &mut self.body {
            Body::Memory(data) => data.extend_from_slice(chunk),
            Body::File { file, temp } => file
                .write_all(chunk)
                .map_err(|e| StoreError::io(&temp.path, e))?,
        }
        self.digest.update(chunk);
        self.meta.size += chunk.len() as u64;
        Ok(())
    }

    /// Makes the record durable and visible, unless the store already holds a version of this
    /// name at least as new (then the new data is discarded and the existing record returned
    /// as [`Commit::Superseded`]).
    ///
    /// Fails with [`StoreError::NameClash`] if a large record's file holds a different name.
    pub fn finish(self) -> Result<Commit, StoreError> {
        self.finish_replacing().map(|(commit, _)| commit)
    }

    /// [`finish`](Self::finish), also returning the record the commit replaced (or, if
    /// superseded, the one kept): what the store held just before, in the order its commits
    /// of this name took effect. A record whose header was damaged counts as none.
    pub fn finish_replacing(self) -> Result<(Commit, Option<RecordMeta>), StoreError> {
        let RecordWriter {
            store,
            mut meta,
            body,
            digest,
        } = self;
        meta.crc = digest.finalize();
        match body {
            Body::Memory(data) => store.commit_small(meta, &data),
            Body::File { file, temp } => {
                seal(file, &meta, store.options.sync).map_err(|e| StoreError::io(&temp.path, e))?;
                store.commit_file(temp, meta)
            }
        }
    }
}

/// A new temporary file in `tmp_dir` holding a placeholder header and `data`, a record's data
/// so far.
fn spill(tmp_dir: &Path, meta: &RecordMeta, data: &[u8]) -> Result<Body, StoreError> {
    let (file, temp) = TempFile::create(tmp_dir)?;
    let mut file = BufWriter::new(file);
    // The size and CRC are unknown until the end; `finish` overwrites this header in place
    // (it has the same length, since the name is fixed).
    file.write_all(&format::encode(meta))
        .and_then(|()| file.write_all(data))
        .map_err(|e| StoreError::io(&temp.path, e))?;
    Ok(Body::File { file, temp })
}

/// Flushes the data, fills in the real header and (if `sync`) syncs, so the rename that
/// follows publishes only complete bytes even after a power loss.
fn seal(file: BufWriter<File>, meta: &RecordMeta, sync: bool) -> std::io::Result<()> {
    let mut file = file.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&format::encode(meta))?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

/// A temporary file that is removed when dropped, unless it has been renamed into place (a
/// file displaced by an exchange is one too).
pub(super) struct TempFile {
    path: PathBuf,
    /// False once the file has been renamed: nothing is left to clean up.
    armed: bool,
}

impl TempFile {
    fn create(tmp_dir: &Path) -> Result<(File, TempFile), StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = tmp_dir.join(format!("{}-{n}.tmp", std::process::id()));
        // `create_new`: never write into a file someone else is writing.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok((file, TempFile { path, armed: true }))
    }

    /// Atomically replaces `target` with this file. The file it displaced, if any, is
    /// returned in this one's place (see [`super::exchange`]), to be removed when dropped:
    /// outside the store's lock, as freeing a large file takes a while.
    pub(super) fn replace(mut self, target: &Path) -> Result<Option<TempFile>, StoreError> {
        let exchanged =
            super::exchange::exchange(&self.path, target).map_err(|e| StoreError::io(target, e))?;
        if exchanged {
            return Ok(Some(self));
        }
        fs::rename(&self.path, target).map_err(|e| StoreError::io(target, e))?;
        self.armed = false;
        Ok(None)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_file(&self.path) {
                log::warn!("cannot remove temporary file {}: {e}", self.path.display());
            }
        }
    }
}
