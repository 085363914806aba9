//! The log that holds small records: appended to, indexed in memory, synced in groups, and
//! rewritten when mostly garbage.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::group_sync::GroupSync;
use super::index::{Index, Slot};
use super::log_format::{self, Entry, Next, ENTRY_FIXED_LEN, LOG_MAGIC};
use super::{sync_dir_now, RecordMeta, StoreError};

const LOG_FILE: &str = "small.log";
/// A log being rewritten; removed at open if a crash left it.
const COMPACT_FILE: &str = "small.log.compact";
/// A log is rewritten once its garbage is at least this large and larger than its live part:
/// each byte written is then copied at most about once more, and a small log never is.
const COMPACT_MIN_GARBAGE: u64 = 8 << 20;
/// Bytes copied per read while rewriting.
const COPY_BUF: usize = 1 << 20;
/// Space written ahead of the entries, as zeros: an append into blocks already written
/// changes no metadata (size, extents), so its `fdatasync` needs no journal commit, only the
/// data and a flush; on ext4 that is about a third cheaper, and concurrent syncs of several
/// logs on one disk do not queue behind each other's commits.
const WRITE_AHEAD: u64 = 1 << 20;

/// The state a commit changes, under one lock.
#[derive(Debug)]
pub(super) struct LogState {
    path: Arc<Path>,
    file: Arc<File>,
    /// Where the next entry goes.
    end: u64,
    /// The file's length: zeros from `end` on.
    allocated: u64,
    /// Number of the last entry appended.
    seq: u64,
    pub index: Index,
}

impl LogState {
    /// Appends one entry's bytes; returns its offset.
    fn append(&mut self, bytes: &[u8]) -> Result<(u64, Appended), StoreError> {
        let offset = self.end;
        if let Err(e) = self.write_ahead(bytes.len() as u64) {
            return Err(StoreError::io(&*self.path, e));
        }
        if let Err(e) = self.file.write_all_at(bytes, offset) {
            // Whatever part was written is cut, so the next entry starts cleanly here.
            let _ = self.file.set_len(offset);
            self.allocated = offset;
            return Err(StoreError::io(&*self.path, e));
        }
        self.end += bytes.len() as u64;
        self.seq += 1;
        Ok((offset, Appended(self.seq)))
    }

    /// Makes sure `len` more bytes fit in the space written ahead.
    fn write_ahead(&mut self, len: u64) -> io::Result<()> {
        if self.end + len <= self.allocated {
            return Ok(());
        }
        let new = (self.end + len).max(self.allocated + WRITE_AHEAD);
        let zeros = vec![0u8; (new - self.allocated) as usize];
        self.file.write_all_at(&zeros, self.allocated)?;
        self.allocated = new;
        Ok(())
    }

    /// Appends `meta`'s record holding `data` and makes it the record of its name.
    pub fn put(&mut self, meta: &RecordMeta, data: &[u8]) -> Result<Appended, StoreError> {
        let bytes = log_format::encode_record(meta, data);
        let (offset, appended) = self.append(&bytes)?;
        let slot = Slot {
            version: meta.version,
            offset,
            len: bytes.len() as u32,
            size: data.len() as u32,
            crc: meta.crc,
            deleted: meta.deleted,
        };
        self.index.insert(&meta.name, slot);
        Ok(appended)
    }

    /// Removes the record of `name` at `version` or older, for good.
    pub fn erase(&mut self, name: &[u8], version: u64) -> Result<Appended, StoreError> {
        let (_, appended) = self.append(&log_format::encode_erase(name, version))?;
        if self.index.get(name).is_some_and(|s| s.version <= version) {
            self.index.remove(name);
        }
        Ok(appended)
    }
}

/// An entry appended, to wait on with [`Log::durable`].
#[derive(Clone, Copy, Debug)]
#[must_use]
pub(super) struct Appended(u64);

/// The log of small records in a store's directory.
#[derive(Debug)]
pub(super) struct Log {
    path: PathBuf,
    dir: PathBuf,
    sync: bool,
    state: Mutex<LogState>,
    group: GroupSync,
    /// Held while rewriting, so that only one rewrite runs.
    compacting: Mutex<()>,
}

impl Log {
    /// Opens the log in `dir` (creating it), reading every entry into the index. A tail that
    /// is not a whole valid entry, as a crash during a write leaves, is cut off; any bytes
    /// after it are kept aside in a file beside the log, with an error logged.
    pub fn open(dir: &Path, sync: bool) -> Result<Log, StoreError> {
        let path = dir.join(LOG_FILE);
        let compact = dir.join(COMPACT_FILE);
        match fs::remove_file(&compact) {
            Ok(()) => log::info!("removed an unfinished rewrite {}", compact.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&compact, e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let (index, end) = replay(&file, &path, sync).map_err(|e| StoreError::io(&path, e))?;
        let allocated = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        if sync {
            sync_dir_now(dir);
        }
        Ok(Log {
            path: path.clone(),
            dir: dir.to_path_buf(),
            sync,
            state: Mutex::new(LogState {
                path: Arc::from(path.as_path()),
                file: Arc::new(file),
                end,
                allocated,
                seq: 0,
                index,
            }),
            group: GroupSync::default(),
            compacting: Mutex::new(()),
        })
    }

    /// Locks the log: the index, and appending.
    pub fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock()
    }

    /// The record of `name` and its data, the CRCs checked.
    pub fn read(&self, name: &[u8]) -> Result<Option<(RecordMeta, Vec<u8>)>, StoreError> {
        let (slot, file) = {
            let state = self.state.lock();
            match state.index.get(name) {
                Some(slot) => (*slot, Arc::clone(&state.file)),
                None => return Ok(None),
            }
        };
        // Read outside the lock: the file handle keeps the bytes even if a rewrite replaces
        // the log meanwhile.
        let mut entry = vec![0u8; slot.len as usize];
        file.read_exact_at(&mut entry, slot.offset)
            .map_err(|e| StoreError::io(&self.path, e))?;
        let mut data = Vec::new();
        let at = |what: &str| format!("entry at offset {}: {what}", slot.offset);
        match log_format::read_entry(&mut &entry[..], &mut data) {
            Ok(Next::Entry {
                entry: Entry::Record(meta),
                ..
            }) if meta.name == name && meta.version == slot.version => Ok(Some((meta, data))),
            Ok(Next::Bad(what) | Next::Damaged { what, .. }) => {
                Err(StoreError::corrupt(&self.path, at(&what)))
            }
            _ => Err(StoreError::corrupt(
                &self.path,
                at("does not hold the record the index says"),
            )),
        }
    }

    /// Returns once `appended` is on disk (at once if this log does not sync).
    pub fn durable(&self, appended: Appended) -> Result<(), StoreError> {
        if !self.sync {
            return Ok(());
        }
        let sync_all_so_far = || {
            let (file, seq) = {
                let state = self.state.lock();
                (Arc::clone(&state.file), state.seq)
            };
            file.sync_data().map(|()| seq)
        };
        self.group
            .wait(appended.0, sync_all_so_far)
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// Rewrites the log with only its live entries if it is mostly garbage. Writers go on
    /// meanwhile: only what they appended during the copy is copied under the lock.
    pub fn compact_if_worth_it(&self) -> Result<(), StoreError> {
        let Some(_only_one) = self.compacting.try_lock() else {
            return Ok(());
        };
        let (old, cut, mut live) = {
            let state = self.state.lock();
            if !worth_compacting(&state) {
                return Ok(());
            }
            let live: Vec<(u64, u32)> =
                state.index.iter().map(|(_, s)| (s.offset, s.len)).collect();
            (Arc::clone(&state.file), state.end, live)
        };
        live.sort_unstable();
        let compact = self.dir.join(COMPACT_FILE);
        let new = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&compact)
            .map_err(|e| StoreError::io(&compact, e))?;
        let result = self.rewrite(&old, new, cut, &live);
        if result.is_err() {
            let _ = fs::remove_file(&compact);
        }
        result
    }

    /// Copies the `live` entries (offset, length; by offset) of `old` into `new`, then, under
    /// the lock, what was appended since `cut`, and puts `new` in the log's place.
    fn rewrite(
        &self,
        old: &File,
        new: File,
        cut: u64,
        live: &[(u64, u32)],
    ) -> Result<(), StoreError> {
        let compact = self.dir.join(COMPACT_FILE);
        let new_err = |e| StoreError::io(&compact, e);
        new.write_all_at(&LOG_MAGIC, 0).map_err(new_err)?;
        // `moved[i]` is the new offset of `live[i]`.
        let mut moved = Vec::with_capacity(live.len());
        let mut at = LOG_MAGIC.len() as u64;
        let mut buf = Vec::new();
        for &(offset, len) in live {
            buf.resize(len as usize, 0);
            old.read_exact_at(&mut buf, offset)
                .map_err(|e| StoreError::io(&self.path, e))?;
            new.write_all_at(&buf, at).map_err(new_err)?;
            moved.push(at);
            at += u64::from(len);
        }
        if self.sync {
            new.sync_data().map_err(new_err)?;
        }
        let mut state = self.state.lock();
        let tail = state.end - cut;
        copy_range(&state.file, cut, &new, at, tail).map_err(new_err)?;
        // Every entry below `cut` that is still live was in `live`: appends since went after it.
        let new_offset = |offset: u64| -> Option<u64> {
            if offset >= cut {
                return Some(offset - cut + at);
            }
            let i = live.binary_search_by_key(&offset, |&(o, _)| o).ok()?;
            Some(moved[i])
        };
        if state
            .index
            .slots_mut()
            .any(|s| new_offset(s.offset).is_none())
        {
            let what = "an entry moved during the rewrite; rewrite abandoned";
            return Err(StoreError::io(&compact, io::Error::other(what)));
        }
        if self.sync {
            new.sync_data().map_err(new_err)?;
        }
        let new = Arc::new(new);
        fs::rename(&compact, &self.path).map_err(|e| StoreError::io(&self.path, e))?;
        if self.sync {
            sync_dir_now(&self.dir);
        }
        for slot in state.index.slots_mut() {
            slot.offset = new_offset(slot.offset).expect("checked above");
        }
        let before = state.end;
        state.end = at + tail;
        state.allocated = state.end;
        state.file = new;
        let seq = state.seq;
        drop(state);
        self.group.covered(seq);
        log::info!(
            "store log {} rewritten: {before} -> {} bytes",
            self.path.display(),
            at + tail
        );
        Ok(())
    }
}

/// Copies `len` bytes at `from` in `src` to `to` in `dst`.
fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUF.min(len as usize)];
    let mut done = 0;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        src.read_exact_at(&mut buf[..n], from + done)?;
        dst.write_all_at(&buf[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Whether the log holds enough garbage to be rewritten.
fn worth_compacting(state: &LogState) -> bool {
    let garbage = state
        .end
        .saturating_sub(LOG_MAGIC.len() as u64 + state.index.live_bytes());
    garbage >= COMPACT_MIN_GARBAGE && garbage > state.index.live_bytes()
}

/// Reads the whole log into an index; returns it and where the valid entries end.
fn replay(file: &File, path: &Path, sync: bool) -> io::Result<(Index, u64)> {
    let len = file.metadata()?.len();
    if len == 0 {
        file.write_all_at(&LOG_MAGIC, 0)?;
        if sync {
            file.sync_all()?;
        }
        return Ok((Index::default(), LOG_MAGIC.len() as u64));
    }
    let mut reader = BufReader::with_capacity(COPY_BUF, file);
    let mut magic = [0u8; LOG_MAGIC.len()];
    if len < magic.len() as u64 || {
        std::io::Read::read_exact(&mut reader, &mut magic)?;
        magic != LOG_MAGIC
    } {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a store log (bad magic); move it away to start an empty one",
        ));
    }
    let mut index = Index::default();
    let mut at = magic.len() as u64;
    let mut data = Vec::new();
    loop {
        match log_format::read_entry(&mut reader, &mut data)? {
            Next::End => break,
            // The space written ahead, unless something follows it.
            Next::Zeros if !nonzero_after(file, at)? => break,
            Next::Zeros => {
                cut_tail(file, path, at, len, "zeros where an entry should be")?;
                break;
            }
            Next::Entry { entry, len } => {
                apply(&mut index, entry, at, len);
                at += len;
            }
            Next::Damaged {
                len: entry_len,
                what,
            } => {
                // Kept in the file (a later rewrite drops it): the rest is still readable.
                log::error!(
                    "store log {}: skipping the damaged entry at offset {at} ({what})",
                    path.display()
                );
                at += entry_len;
            }
            Next::Bad(what) => {
                cut_tail(file, path, at, len, &what)?;
                break;
            }
        }
    }
    Ok((index, at))
}

/// Replays one entry found at `offset`.
fn apply(index: &mut Index, entry: Entry, offset: u64, len: u64) {
    match entry {
        Entry::Record(meta) => {
            if index
                .get(&meta.name)
                .is_some_and(|s| s.version > meta.version)
            {
                return;
            }
            let slot = Slot {
                version: meta.version,
                offset,
                len: len as u32,
                size: meta.size as u32,
                crc: meta.crc,
                deleted: meta.deleted,
            };
            index.insert(&meta.name, slot);
        }
        Entry::Erase { name, version } => {
            if index.get(&name).is_some_and(|s| s.version <= version) {
                index.remove(&name);
            }
        }
    }
}

/// Whether any byte of `file` from `from` on is not zero.
fn nonzero_after(file: &File, from: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut at = from;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Cuts the log at `at`, where `what` is wrong. A crash mid-write leaves only a short tail
/// (then zeros, the space written ahead); if anything follows beyond the longest entry, it
/// is kept in a side file, since entries after damage cannot be found.
fn cut_tail(file: &File, path: &Path, at: u64, len: u64, what: &str) -> io::Result<()> {
    let rest = len - at;
    let longest = (ENTRY_FIXED_LEN + super::MAX_NAME_LEN + super::MAX_SMALL_OBJECT) as u64;
    if rest > longest && nonzero_after(file, at + longest)? {
        let aside = path.with_extension(format!("damaged-{at}"));
        let mut out = File::create(&aside)?;
        let mut src = file.try_clone()?;
        src.seek(SeekFrom::Start(at))?;
        io::copy(&mut src, &mut out)?;
        out.sync_all()?;
        log::error!(
            "store log {} is damaged at offset {at} ({what}): the {rest} bytes after it are kept in {}",
            path.display(),
            aside.display()
        );
    } else {
        log::warn!(
            "store log {}: cutting {rest} bytes at offset {at} ({what}), a write a crash cut short",
            path.display()
        );
    }
    file.set_len(at)?;
    file.sync_all()
}
