//! The on-disk object store of one node.
//!
//! # Layout
//!
//! ```text
//! <dir>/small.log                                       small records, appended
//! <dir>/objects/<key as 4 hex digits>/<encoded name>   one large record per file
//! <dir>/tmp/<pid>-<n>.tmp                               large writes in progress
//! ```
//!
//! Two tiers, one store: a record of at most [`StoreOptions::small_object_max`] bytes of data
//! (64 KiB by default; tombstones too) is an entry of the **log**, a larger one a **file**.
//! Every operation looks at both and the newest version of a name wins, so an object can move
//! between tiers as it grows or shrinks, and a directory written before the log existed (files
//! only) is served as it is; [`ObjectStore::open`] moves its small files into the log once.
//!
//! Why this shape:
//! - **A log for small records.** A put of a few bytes is one `write` at the end of one file,
//!   and its sync is shared with every other write of that moment (grouped commits): no file,
//!   directory or inode per object, and about one sync per synced put, not three. An index in
//!   memory says where each live entry is; the log is rewritten without its garbage once that
//!   is most of it.
//! - **Files for large records**, streamed in and out in chunks and never held in memory.
//!   Objects are identified by name, not key; names that share a key (a 16-bit digest
//!   collides often) sit side by side in the key's directory.
//! - **The key directories known in memory.** A name whose key has no directory has no file,
//!   so a small record is read and written with no `open` that fails (on ext4 such a look
//!   cost more than the log's write).
//! - **Encoded file names.** Names are untrusted bytes, so the file name is an escaping of the
//!   name that is always one harmless path component (see below); overly long names are
//!   shortened, and since a shortened name could collide, the full name is kept in the file.
//! - **A header in every file and every entry.** It holds the full name, the version, the data
//!   size and CRC, each under a CRC of its own, so the store can be listed and checked
//!   without anything that could disagree with the data.
//! - **`tmp` beside `objects`.** A large write streams into `tmp` (on the same file system), is
//!   synced, then takes its target's place in one step (an exchange of the two files where
//!   the system has one, the displaced file then removed from `tmp`: see `exchange.rs`):
//!   after a crash an object is wholly old, wholly new, or absent, and the only debris is in
//!   `tmp`, which [`ObjectStore::open`] empties. A log entry cut short by a crash is the
//!   log's last bytes, which opening cuts off.
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
//! # Log format (integers big-endian)
//!
//! The file starts with `PSTRLOG1`; then entries, each:
//!
//! | bytes | field                                                            |
//! |-------|------------------------------------------------------------------|
//! | 4     | CRC-32/ISO-HDLC of the rest of the header (kind through name)    |
//! | 1     | kind: 0 object, 1 tombstone, 2 erasure of the name's record      |
//! | 2     | name length `n` (1..=[`MAX_NAME_LEN`])                           |
//! | 8     | version (an erasure: of the record it erases, or older)          |
//! | 4     | data size (at most [`MAX_SMALL_OBJECT`]; 0 unless an object)     |
//! | 4     | CRC-32/ISO-HDLC of the data                                      |
//! | `n`   | the name                                                         |
//! | size  | the data                                                         |
//!
//! A 4-byte value under a 10-byte name takes 37 bytes. Replaying the log in order rebuilds
//! the index: a record replaces an older version of its name, an erasure removes it.
//!
//! # Versions
//!
//! Newest wins: a write is kept only if its version is greater than that of the record it
//! would replace (object or tombstone, in either tier); the compare and the publishing happen
//! under one store-wide lock, held only for that moment. Only one `ObjectStore` may use a
//! directory at a time (opening one empties `tmp` and replays the log).

mod error;
mod exchange;
mod format;
mod group_sync;
mod index;
mod key_dirs;
mod log_format;
mod name;
mod reader;
mod small_log;
mod tiers;
mod writer;

#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

pub use error::StoreError;
pub use reader::RecordReader;
pub use writer::RecordWriter;

use crate::id::{key_of, Id, Key};
use key_dirs::KeyDirs;
use small_log::Log;

/// The longest name the store accepts, in bytes; longer ones are refused with
/// [`StoreError::InvalidName`].
pub const MAX_NAME_LEN: usize = 4096;

/// The unit of streaming: a [`RecordReader`] never hands out more in one chunk.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Default [`StoreOptions::small_object_max`]: objects up to 64 KiB live in the log.
pub const DEFAULT_SMALL_OBJECT_MAX: usize = 64 * 1024;

/// The largest [`StoreOptions::small_object_max`]: a small object is held in memory while it
/// is written and read, and copied whenever the log is rewritten.
pub const MAX_SMALL_OBJECT: usize = 1 << 20;

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

/// How to open a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Whether writes reach the disk before they count as done (default true). Unsynced
    /// writes survive a process crash but not a power loss or an operating-system crash;
    /// they are many times faster on most disks.
    pub sync: bool,
    /// Objects with at most this many bytes of data live in the store's log; larger ones are
    /// files of their own, streamed in chunks. Default [`DEFAULT_SMALL_OBJECT_MAX`]; larger
    /// than [`MAX_SMALL_OBJECT`] is taken as that. 0 keeps only empty objects and tombstones
    /// in the log.
    pub small_object_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync: true,
            small_object_max: DEFAULT_SMALL_OBJECT_MAX,
        }
    }
}

/// The object store of one node: small records in a log, large ones as files, under one
/// directory.
///
/// All methods take `&self`; it can be shared between threads.
#[derive(Debug)]
pub struct ObjectStore {
    options: StoreOptions,
    dir: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    /// The small records; its lock is also the store's commit lock, held for each
    /// compare-and-publish in either tier (never while data is written).
    log: Log,
    /// The keys with a directory under `objects`: where no file can be.
    key_dirs: KeyDirs,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send>() {}
    assert_send_sync::<ObjectStore>();
    assert_send::<RecordReader>();
    assert_send::<RecordWriter<'static>>();
};

impl ObjectStore {
    /// Opens (creating if need be) the store in `dir` with the default [`StoreOptions`].
    /// See [`ObjectStore::open_options`].
    pub fn open(dir: &Path) -> Result<ObjectStore, StoreError> {
        ObjectStore::open_options(dir, StoreOptions::default())
    }

    /// [`ObjectStore::open`], choosing whether writes are synced ([`StoreOptions::sync`]).
    pub fn open_with(dir: &Path, sync: bool) -> Result<ObjectStore, StoreError> {
        let options = StoreOptions {
            sync,
            ..StoreOptions::default()
        };
        ObjectStore::open_options(dir, options)
    }

    /// Opens (creating if need be) the store in `dir`: removes the temporary files a crash may
    /// have left behind, replays the log (cutting off an entry a crash cut short), moves
    /// small records still kept as files (as a store written before the log existed keeps
    /// them) into the log, saying so in the log of the program, and settles a name a crash
    /// left in both the log and a file (the older record goes).
    pub fn open_options(dir: &Path, mut options: StoreOptions) -> Result<ObjectStore, StoreError> {
        options.small_object_max = options.small_object_max.min(MAX_SMALL_OBJECT);
        let objects = dir.join(OBJECTS_DIR);
        let tmp = dir.join(TMP_DIR);
        for d in [&objects, &tmp] {
            fs::create_dir_all(d).map_err(|e| StoreError::io(d, e))?;
        }
        let key_dirs = KeyDirs::scan(&objects)?;
        let store = ObjectStore {
            options,
            dir: dir.to_path_buf(),
            objects,
            tmp,
            log: Log::open(dir, options.sync)?,
            key_dirs,
        };
        store.clear_tmp()?;
        let files = store.move_small_files_into_log(store.file_records()?)?;
        store.settle_both_tiers(&files)?;
        Ok(store)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// Makes a change to `dir`'s entries durable, if this store syncs.
    fn sync_dir(&self, dir: &Path) {
        if self.options.sync {
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
        Ok(RecordWriter::new(self, meta))
    }

    /// Opens the live record of `name` for streaming.
    ///
    /// [`StoreError::NotFound`] if there is none or it is a tombstone; [`StoreError::Corrupt`]
    /// if its header is damaged or its length does not match the header.
    pub fn reader(&self, name: &[u8]) -> Result<RecordReader, StoreError> {
        self.open_newest(name)?.ok_or(StoreError::NotFound)
    }

    /// The record of `name`, tombstones included; `None` if there is none. A name the log
    /// holds is answered from its index, with no look for a file (see `open_newest`).
    pub fn meta(&self, name: &[u8]) -> Result<Option<RecordMeta>, StoreError> {
        name::validate(name)?;
        let in_log = || self.log.lock().index.get(name).map(|s| s.meta(name));
        if let Some(meta) = in_log() {
            return Ok(Some(meta));
        }
        if !self.key_dirs.may_exist(key_of(name)) {
            return Ok(None);
        }
        match read_meta(&self.path_of(name)?)?.filter(|m| m.name == name) {
            Some(meta) => Ok(Some(meta)),
            // A small write may have replaced the file with a log record meanwhile.
            None => Ok(in_log()),
        }
    }

    /// Every record, tombstones included, ordered by key then name.
    ///
    /// Reads only the index and the files' headers. A file that is not a valid record in its
    /// right place is skipped with a warning, so one damaged file does not hide the others.
    /// The files are listed before the log, outside its lock: a record that grows into a
    /// file while the files are listed is missed by this call (and listed by the next).
    pub fn records(&self) -> Result<Vec<RecordMeta>, StoreError> {
        let files = self.file_records()?;
        let state = self.log.lock();
        let in_log = state.index.iter().map(|(name, slot)| slot.meta(name));
        if files.is_empty() {
            return Ok(in_log.collect());
        }
        Ok(tiers::merge(in_log.collect(), files))
    }

    /// Every record kept as a file, ordered by key then name.
    fn file_records(&self) -> Result<Vec<RecordMeta>, StoreError> {
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
    /// [`StoreError::Corrupt`] rather than wrong bytes if the record is damaged.
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
        // Before the directory, so that nothing is ever in one this store does not know of.
        self.key_dirs.add(key);
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
            Ok(Some(meta)) if has_legacy_name(&entry, &meta, key) => {
                // Written before long names were shortened with SHA-256: renamed once.
                let to = dir.join(name::file_name(&meta.name));
                fs::rename(&path, &to).map_err(|e| StoreError::io(&path, e))?;
                log::info!("renamed {} to {}", path.display(), to.display());
                out.push(meta);
            }
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

/// Whether the file holding `meta` has the name an older layout gave it.
fn has_legacy_name(entry: &fs::DirEntry, meta: &RecordMeta, key: Key) -> bool {
    let legacy = name::legacy_file_name(&meta.name);
    meta.key == key && legacy.is_some() && entry.file_name().to_str() == legacy.as_deref()
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
