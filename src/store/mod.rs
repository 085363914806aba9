//! The on-disk object store of one node.
//!
//! # Layout
//!
//! ```text
//! <dir>/objects/<key as 4 hex digits>/<encoded name>   one record per file
//! <dir>/tmp/<pid>-<n>.tmp                               writes in progress
//! ```
//!
//! Why this shape:
//! - **One file per name.** Objects are identified by name, not key; names that share a key (a
//!   16-bit digest collides often) sit side by side in the key's directory, and handing off the
//!   objects of a key range is a walk over a few directories, not the whole store.
//! - **Encoded file names.** Names are untrusted bytes, so the file name is an escaping of the
//!   name that is always one harmless path component (see below); overly long names are
//!   shortened, and since a shortened name could collide, the full name is kept in the file.
//! - **A header in every file.** It holds the full name, the version, the data size and CRC, so
//!   the store can be listed and checked without an index that could disagree with the files.
//! - **`tmp` beside `objects`.** A write streams into `tmp` (on the same file system), is synced,
//!   then renamed over its target: after a crash an object is wholly old, wholly new, or absent,
//!   and the only debris is in `tmp`, which [`ObjectStore::open`] empties.
//!
//! # File names
//!
//! `[A-Za-z0-9_-]` and `.` stay as they are; every other byte, and a leading `.`, becomes
//! `%XX` (upper-case hex). So `/`, NUL and `%` never appear raw, and `.`/`..` cannot be formed
//! (`..` is `%2E.`). An encoding longer than 200 bytes becomes `~` + its first 100 bytes (never
//! splitting a `%XX`) + `~` + 16 hex digits of the CRC-64/XZ of the name; `~` is always escaped
//! in a plain encoding, so only two shortened forms can clash, and the store detects that
//! ([`StoreError::NameClash`]) by comparing the name in the file's header.
//!
//! # Record file format (version 1, integers big-endian)
//!
//! | bytes | field                                                   |
//! |-------|---------------------------------------------------------|
//! | 4     | magic `PSTR`                                            |
//! | 1     | format version (1)                                      |
//! | 1     | flags: bit 0 = tombstone; other bits must be 0          |
//! | 2     | name length `n` (1..=[`MAX_NAME_LEN`])                  |
//! | 8     | version                                                 |
//! | 8     | data size                                               |
//! | 4     | CRC-32/ISO-HDLC of the data                             |
//! | `n`   | the name                                                |
//! | 4     | CRC-32/ISO-HDLC of all the header bytes above           |
//! | size  | the data                                                |
//!
//! # Versions
//!
//! Newest wins: a write is kept only if its version is greater than that of the record it
//! would replace (object or tombstone); the compare and the rename happen under one store-wide
//! lock, held only for that moment. Only one `ObjectStore` may use a directory at a time
//! (opening one empties `tmp`, which would break another's writes in progress).

mod error;
mod format;
mod name;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

pub use error::StoreError;
pub use reader::RecordReader;
pub use writer::RecordWriter;

use crate::id::{key_of, Id, Key};
use writer::TempFile;

/// The longest name the store accepts, in bytes; longer ones are refused with
/// [`StoreError::InvalidName`].
pub const MAX_NAME_LEN: usize = 4096;

/// The unit of streaming: a [`RecordReader`] never hands out more in one chunk.
pub const CHUNK_SIZE: usize = 256 * 1024;

const OBJECTS_DIR: &str = "objects";
const TMP_DIR: &str = "tmp";

/// What the store knows of one record without reading its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// The object's name.
    pub name: Vec<u8>,
    /// The digest of the name.
    pub key: Key,
    /// Bytes of data (0 for a tombstone).
    pub size: u64,
    /// The record's version: newer wins.
    pub version: u64,
    /// CRC-32/ISO-HDLC of the data.
    pub crc: u32,
    /// A tombstone: the object was deleted at this version.
    pub deleted: bool,
}

/// The outcome of finishing a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    /// The new record was kept.
    Stored(RecordMeta),
    /// The store already held a record of this name with a version at least as new; it was
    /// kept and the new data discarded. This is the existing record.
    Superseded(RecordMeta),
}

/// The object store of one node: records kept as files under one directory.
///
/// All methods take `&self`; it can be shared between threads.
#[derive(Debug)]
pub struct ObjectStore {
    /// Whether writes reach the disk before they count as done.
    sync: bool,
    dir: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    /// Held for each compare-and-rename (and compare-and-remove): reading one header, never
    /// while data is written.
    commit_lock: Mutex<()>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send>() {}
    assert_send_sync::<ObjectStore>();
    assert_send::<RecordReader>();
    assert_send::<RecordWriter<'static>>();
};

impl ObjectStore {
    /// Opens (creating if need be) the store in `dir`, and removes the temporary files a crash
    /// may have left behind.
    pub fn open(dir: &Path) -> Result<ObjectStore, StoreError> {
        ObjectStore::open_with(dir, true)
    }

    /// [`ObjectStore::open`], choosing whether writes are synced to the disk before they
    /// count as done. Unsynced writes survive a process crash but not a power loss or an
    /// operating-system crash; they are many times faster on most disks.
    pub fn open_with(dir: &Path, sync: bool) -> Result<ObjectStore, StoreError> {
        let store = ObjectStore {
            sync,
            dir: dir.to_path_buf(),
            objects: dir.join(OBJECTS_DIR),
            tmp: dir.join(TMP_DIR),
            commit_lock: Mutex::new(()),
        };
        for d in [&store.objects, &store.tmp] {
            fs::create_dir_all(d).map_err(|e| StoreError::io(d, e))?;
        }
        store.clear_tmp()?;
        Ok(store)
    }

    /// Makes a change to `dir`'s entries durable, if this store syncs.
    fn sync_dir(&self, dir: &Path) {
        if self.sync {
            sync_dir_now(dir);
        }
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts writing a record of `name` at `version`; a tombstone (`deleted`) takes no data.
    ///
    /// Nothing is visible until [`RecordWriter::finish`].
    pub fn writer(
        &self,
        name: &[u8],
        version: u64,
        deleted: bool,
    ) -> Result<RecordWriter<'_>, StoreError> {
        name::validate(name)?;
        let meta = RecordMeta {
            name: name.to_vec(),
            key: key_of(name),
            size: 0,
            version,
            crc: 0,
            deleted,
        };
        RecordWriter::create(self, &self.tmp, meta)
    }

    /// Opens the live record of `name` for streaming.
    ///
    /// [`StoreError::NotFound`] if there is none or it is a tombstone; [`StoreError::Corrupt`]
    /// if its header is damaged or its length does not match the header.
    pub fn reader(&self, name: &[u8]) -> Result<RecordReader, StoreError> {
        let path = self.path_of(name)?;
        let Some((file, meta)) = open_record(&path)? else {
            return Err(StoreError::NotFound);
        };
        if meta.name != name || meta.deleted {
            return Err(StoreError::NotFound);
        }
        RecordReader::new(file, path, meta)
    }

    /// The record of `name`, tombstones included; `None` if there is none.
    pub fn meta(&self, name: &[u8]) -> Result<Option<RecordMeta>, StoreError> {
        let path = self.path_of(name)?;
        Ok(read_meta(&path)?.filter(|m| m.name == name))
    }

    /// Every record, tombstones included, ordered by key then name.
    ///
    /// Reads only headers. A file that is not a valid record in its right place is skipped
    /// with a warning, so one damaged file does not hide the others.
    pub fn records(&self) -> Result<Vec<RecordMeta>, StoreError> {
        let mut out = Vec::new();
        for entry in read_dir(&self.objects)? {
            let path = entry.path();
            match key_dir_name(&entry) {
                Some(key) => out.extend(records_in(&path, key)?),
                None => log::warn!("ignoring stray entry {} in the store", path.display()),
            }
        }
        out.sort_by(|a, b| (a.key, &a.name).cmp(&(b.key, &b.name)));
        Ok(out)
    }

    /// Deletes the record (object or tombstone) of `name` if its version is still
    /// `if_version`, so that a newer write that came in between is not lost.
    ///
    /// Returns whether a file was removed. A record with a damaged header is
    /// [`StoreError::Corrupt`] (its version cannot be compared); a new write replaces it.
    pub fn remove(&self, name: &[u8], if_version: u64) -> Result<bool, StoreError> {
        let path = self.path_of(name)?;
        {
            let _guard = self.commit_lock.lock();
            match read_meta(&path)? {
                Some(m) if m.name == name && m.version == if_version => {}
                _ => return Ok(false),
            }
            fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        // The key directory is left in place even if empty: removing it could race with a
        // writer that has just created it, and there are at most 65536 of them.
        self.sync_dir(path.parent().unwrap_or(&self.objects));
        Ok(true)
    }

    /// Writes `data` as the record of `name` at `version`.
    pub fn put(&self, name: &[u8], data: &[u8], version: u64) -> Result<Commit, StoreError> {
        let mut w = self.writer(name, version, false)?;
        w.write(data)?;
        w.finish()
    }

    /// Writes a tombstone for `name` at `version`.
    pub fn delete(&self, name: &[u8], version: u64) -> Result<Commit, StoreError> {
        self.writer(name, version, true)?.finish()
    }

    /// Reads the live record of `name` whole, checking its CRC.
    ///
    /// [`StoreError::Corrupt`] rather than wrong bytes if the file is damaged.
    pub fn get(&self, name: &[u8]) -> Result<(RecordMeta, Vec<u8>), StoreError> {
        let mut reader = self.reader(name)?;
        // Grown chunk by chunk rather than sized from the header, which is not trusted to
        // allocate by.
        let mut data = Vec::new();
        while let Some(chunk) = reader.read_chunk()? {
            data.extend_from_slice(chunk);
        }
        Ok((reader.meta().clone(), data))
    }

    /// Publishes a finished temporary file as the record `meta`, unless newest-wins says no.
    /// Also returns the record it replaced (read under the same lock as the compare, so that
    /// the commits of one name form one sequence).
    fn commit(
        &self,
        temp: TempFile,
        meta: RecordMeta,
    ) -> Result<(Commit, Option<RecordMeta>), StoreError> {
        let key_dir = self.ensure_key_dir(meta.key)?;
        let target = key_dir.join(name::file_name(&meta.name));
        let replaced = {
            let _guard = self.commit_lock.lock();
            let existing = existing_for_commit(&target)?;
            match existing {
                Some(old) if old.name != meta.name => {
                    return Err(StoreError::NameClash { path: target });
                }
                Some(old) if old.version >= meta.version => {
                    return Ok((Commit::Superseded(old.clone()), Some(old)))
                }
                _ => {}
            }
            temp.rename_to(&target)?;
            existing
        };
        // Make the rename itself durable; outside the lock, as it may be slow.
        self.sync_dir(&key_dir);
        Ok((Commit::Stored(meta), replaced))
    }

    /// The file of `name`'s record, after validating the name.
    fn path_of(&self, name: &[u8]) -> Result<PathBuf, StoreError> {
        name::validate(name)?;
        Ok(self.key_dir(key_of(name)).join(name::file_name(name)))
    }

    fn key_dir(&self, key: Key) -> PathBuf {
        self.objects.join(key.to_string())
    }

    /// Creates the key's directory if missing (syncing `objects` so the new entry survives a
    /// crash) and returns its path.
    fn ensure_key_dir(&self, key: Key) -> Result<PathBuf, StoreError> {
        let dir = self.key_dir(key);
        match fs::create_dir(&dir) {
            Ok(()) => self.sync_dir(&self.objects),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        Ok(dir)
    }

    /// Removes everything in `tmp`: only unfinished writes live there.
    fn clear_tmp(&self) -> Result<(), StoreError> {
        for entry in read_dir(&self.tmp)? {
            let path = entry.path();
            let is_file = entry.file_type().is_ok_and(|t| !t.is_dir());
            if !is_file {
                log::warn!("leaving unexpected directory {}", path.display());
                continue;
            }
            log::info!("removing leftover temporary file {}", path.display());
            fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Opens the record file at `path` and reads its header; `None` if there is no file.
fn open_record(path: &Path) -> Result<Option<(File, RecordMeta)>, StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let meta = format::read(&mut file, path)?;
    Ok(Some((file, meta)))
}

/// The header of the record file at `path`; `None` if there is no file.
fn read_meta(path: &Path) -> Result<Option<RecordMeta>, StoreError> {
    Ok(open_record(path)?.map(|(_, meta)| meta))
}

/// The record a commit would replace. A damaged one counts as absent, so that a new write
/// repairs it rather than failing forever.
fn existing_for_commit(target: &Path) -> Result<Option<RecordMeta>, StoreError> {
    match read_meta(target) {
        Err(StoreError::Corrupt { what, .. }) => {
            log::warn!("replacing corrupt record {}: {what}", target.display());
            Ok(None)
        }
        other => other,
    }
}

/// The key a directory under `objects` stands for: exactly 4 lowercase hex digits.
fn key_dir_name(entry: &fs::DirEntry) -> Option<Key> {
    if !entry.file_type().ok()?.is_dir() {
        return None;
    }
    let name = entry.file_name();
    let name = name.to_str()?;
    // Only the form `key_dir` writes: `ABCD` or `+abc` would parse but are not ours.
    let lower_hex = name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if name.len() != 4 || !lower_hex {
        return None;
    }
    u16::from_str_radix(name, 16).ok().map(Id)
}

/// The valid records in the directory of `key`; anything else is skipped with a warning.
fn records_in(dir: &Path, key: Key) -> Result<Vec<RecordMeta>, StoreError> {
    let mut out = Vec::new();
    for entry in read_dir(dir)? {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            log::warn!("ignoring non-file {} in the store", path.display());
            continue;
        }
        match read_meta(&path) {
            Ok(Some(meta)) if is_placed_right(&entry, &meta, key) => out.push(meta),
            Ok(Some(_)) => log::warn!("ignoring misplaced record {}", path.display()),
            Ok(None) => {} // removed since the listing
            Err(e @ StoreError::Corrupt { .. }) => log::warn!("skipping {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Whether the file holding `meta` is where its name says it belongs (a file copied or moved
/// by hand would otherwise shadow or duplicate the real one).
fn is_placed_right(entry: &fs::DirEntry, meta: &RecordMeta, key: Key) -> bool {
    meta.key == key && entry.file_name().to_str() == Some(name::file_name(&meta.name).as_str())
}

/// The entries of `dir`, failing on the first one that cannot be read.
fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    fs::read_dir(dir)
        .and_then(|it| it.collect::<io::Result<Vec<_>>>())
        .map_err(|e| StoreError::io(dir, e))
}

/// Syncs a directory so that a rename, creation or removal in it survives a crash.
///
/// Best effort: some platforms cannot open or sync a directory, and there is nothing better to
/// do then.
fn sync_dir_now(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!("cannot sync directory {}: {e}", dir.display());
    }
}
