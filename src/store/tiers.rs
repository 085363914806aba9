//! Publishing, reading and removing records across the two tiers, the log and the files, so
//! that the newest version of a name wins wherever it is.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::writer::TempFile;
use super::{read_meta, Commit, ObjectStore, RecordMeta, RecordReader, StoreError, CHUNK_SIZE};

/// The newer of a name's log record and file record; the log's if they are the same version
/// (a move into the log that a crash interrupted leaves both).
pub(super) fn newest(
    in_log: Option<RecordMeta>,
    in_file: Option<RecordMeta>,
) -> Option<RecordMeta> {
    match (in_log, in_file) {
        (Some(l), Some(f)) if f.version > l.version => Some(f),
        (Some(l), _) => Some(l),
        (None, f) => f,
    }
}

/// Both tiers' records (each by key then name) as one list by key then name, the newest of
/// each name only.
pub(super) fn merge(in_log: Vec<RecordMeta>, files: Vec<RecordMeta>) -> Vec<RecordMeta> {
    let mut all = in_log;
    all.extend(files);
    // Stable: for equal names the log's (first) comes first unless the file's is newer.
    all.sort_by(|a, b| (a.key, &a.name, b.version).cmp(&(b.key, &b.name, a.version)));
    all.dedup_by(|later, earlier| later.name == earlier.name);
    all
}

/// The record file of a name as a commit sees it.
enum OnDisk {
    None,
    Record(RecordMeta),
    /// Another name's file (two shortened names clash): not this name's record.
    Foreign,
    /// A file whose header is damaged: a new write replaces it rather than failing forever.
    Damaged,
}

impl OnDisk {
    fn read(path: &Path, name: &[u8]) -> Result<OnDisk, StoreError> {
        match read_meta(path) {
            Ok(Some(m)) if m.name == name => Ok(OnDisk::Record(m)),
            Ok(Some(_)) => Ok(OnDisk::Foreign),
            Ok(None) => Ok(OnDisk::None),
            Err(StoreError::Corrupt { what, .. }) => {
                log::warn!("replacing corrupt record {}: {what}", path.display());
                Ok(OnDisk::Damaged)
            }
            Err(e) => Err(e),
        }
    }

    fn record(self) -> Option<RecordMeta> {
        match self {
            OnDisk::Record(m) => Some(m),
            _ => None,
        }
    }
}

impl ObjectStore {
    /// The file of `meta`'s name at `path`, as a commit sees it under the commit lock.
    fn on_disk(&self, path: &Path, meta: &RecordMeta) -> Result<OnDisk, StoreError> {
        if !self.key_dirs.may_exist(meta.key) {
            return Ok(OnDisk::None);
        }
        OnDisk::read(path, &meta.name)
    }

    /// Publishes a small record (`data` in memory) as an entry of the log, unless newest-wins
    /// says no. Also returns the record it replaced (read under the same lock as the compare,
    /// so that the commits of one name form one sequence).
    pub(super) fn commit_small(
        &self,
        meta: RecordMeta,
        data: &[u8],
    ) -> Result<(Commit, Option<RecordMeta>), StoreError> {
        let path = self.path_of(&meta.name)?;
        let mut state = self.log.lock();
        let on_disk = self.on_disk(&path, &meta)?;
        let file_left = matches!(on_disk, OnDisk::Record(_) | OnDisk::Damaged);
        let in_log = state.index.get(&meta.name).map(|s| s.meta(&meta.name));
        let existing = newest(in_log, on_disk.record());
        if let Some(old) = existing.as_ref().filter(|o| o.version >= meta.version) {
            return Ok((Commit::Superseded(old.clone()), existing));
        }
        let appended = state.put(&meta, data)?;
        drop(state);
        self.log.durable(appended)?;
        if file_left {
            // Only once the entry is durable: until then the file is what a crash keeps.
            // The write is done either way: a file left behind is older, and the next open
            // removes it.
            if let Err(e) = self.remove_stale_file(&path, &meta.name) {
                log::warn!("cannot remove a replaced record file: {e}");
            }
        }
        self.compact_log();
        Ok((Commit::Stored(meta), existing))
    }

    /// Publishes a finished temporary file as the record `meta`, unless newest-wins says no;
    /// returns what [`commit_small`](Self::commit_small) does.
    pub(super) fn commit_file(
        &self,
        temp: TempFile,
        meta: RecordMeta,
    ) -> Result<(Commit, Option<RecordMeta>), StoreError> {
        let key_dir = self.ensure_key_dir(meta.key)?;
        let target = key_dir.join(super::name::file_name(&meta.name));
        let mut state = self.log.lock();
        let on_disk = OnDisk::read(&target, &meta.name)?;
        if matches!(on_disk, OnDisk::Foreign) {
            return Err(StoreError::NameClash { path: target });
        }
        let in_log = state.index.get(&meta.name).map(|s| s.meta(&meta.name));
        let existing = newest(in_log.clone(), on_disk.record());
        if let Some(old) = existing.as_ref().filter(|o| o.version >= meta.version) {
            return Ok((Commit::Superseded(old.clone()), existing));
        }
        let displaced = temp.replace(&target)?;
        // The log's older record must not come back if this file is removed later.
        let erased = match in_log {
            Some(old) => Some(state.erase(&meta.name, old.version)?),
            None => None,
        };
        drop(state);
        drop(displaced);
        // Make the exchange or rename itself durable; outside the lock, as it may be slow.
        self.sync_dir(&key_dir);
        if let Some(erased) = erased {
            self.log.durable(erased)?;
        }
        Ok((Commit::Stored(meta), existing))
    }

    /// Removes `name`'s file if the log now holds a record at least as new (or the file is
    /// damaged): a file commit since would have taken the name out of the log.
    fn remove_stale_file(&self, path: &Path, name: &[u8]) -> Result<(), StoreError> {
        let state = self.log.lock();
        let Some(logged) = state.index.get(name).map(|s| s.version) else {
            return Ok(());
        };
        let stale = match OnDisk::read(path, name)? {
            OnDisk::Record(m) => m.version <= logged,
            OnDisk::Damaged => true,
            OnDisk::None | OnDisk::Foreign => false,
        };
        if stale {
            fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
        }
        drop(state);
        if stale {
            self.sync_dir(path.parent().unwrap_or(&self.objects));
        }
        Ok(())
    }

    /// Rewrites the log if it is mostly garbage. A failure leaves the log as it was (only
    /// larger than it need be), so it is logged rather than failing the write that found it.
    fn compact_log(&self) {
        if let Err(e) = self.log.compact_if_worth_it() {
            log::warn!("cannot rewrite the store's log: {e}");
        }
    }

    /// Deletes the record (object or tombstone) of `name` if its version is still
    /// `if_version`, so that a newer write that came in between is not lost.
    ///
    /// Returns whether a record was removed. A record file with a damaged header is
    /// [`StoreError::Corrupt`] (its version cannot be compared); a new write replaces it.
    pub fn remove(&self, name: &[u8], if_version: u64) -> Result<bool, StoreError> {
        let path = self.path_of(name)?;
        let mut state = self.log.lock();
        let erased = match state.index.get(name) {
            Some(slot) if slot.version == if_version => Some(state.erase(name, if_version)?),
            _ => None,
        };
        let on_disk = match self.key_dirs.may_exist(super::key_of(name)) {
            true => read_meta(&path),
            false => Ok(None),
        };
        let file_removed = match on_disk {
            Ok(Some(m)) if m.name == name && m.version == if_version => {
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                true
            }
            Err(e) if erased.is_none() => return Err(e),
            _ => false,
        };
        drop(state);
        if let Some(erased) = erased {
            self.log.durable(erased)?;
            self.compact_log();
        }
        // The key directory is left in place even if empty: removing it could race with a
        // writer that has just created it, and there are at most 65536 of them.
        if file_removed {
            self.sync_dir(path.parent().unwrap_or(&self.objects));
        }
        Ok(erased.is_some() || file_removed)
    }

    /// The newest live record of `name`, opened for streaming; `None` if there is none or it
    /// is a tombstone.
    ///
    /// A name the log holds has no newer file (a file's commit takes the name out of the log
    /// under the log's lock, and opening the store settles what a crash left in both), so
    /// its file is not looked for: a small value is read with no failed `open`.
    pub(super) fn open_newest(&self, name: &[u8]) -> Result<Option<RecordReader>, StoreError> {
        super::name::validate(name)?;
        let logged = |(meta, data): (RecordMeta, Vec<u8>)| {
            (!meta.deleted).then(|| RecordReader::in_memory(meta, data))
        };
        if let Some(record) = self.log.read(name)? {
            return Ok(logged(record));
        }
        if !self.key_dirs.may_exist(super::key_of(name)) {
            return Ok(None);
        }
        let path = self.path_of(name)?;
        match super::open_record(&path)?.filter(|(_, m)| m.name == name) {
            Some((file, meta)) if !meta.deleted => RecordReader::new(file, path, meta).map(Some),
            Some(_) => Ok(None),
            // A small write may have replaced the file with a log record meanwhile.
            None => Ok(self.log.read(name)?.and_then(logged)),
        }
    }

    /// Settles each name kept in both tiers, which only a crash leaves behind (a commit cut
    /// short between publishing its record and taking the name's older record out of the
    /// other tier): the older record goes, a log record by an erasure, a file (or one of
    /// the same version, which a move into the log leaves) by its removal. Afterwards a
    /// name the log holds has no file, so reads need not look for one, and no removal of
    /// the newer record can bring the older back. `files` are the store's file records.
    pub(super) fn settle_both_tiers(&self, files: &[RecordMeta]) -> Result<(), StoreError> {
        let mut state = self.log.lock();
        let mut last = None;
        let mut stale = Vec::new();
        for file in files {
            let Some(logged) = state.index.get(&file.name).map(|s| s.version) else {
                continue;
            };
            if logged < file.version {
                last = Some(state.erase(&file.name, logged)?);
            } else {
                stale.push(self.path_of(&file.name)?);
            }
        }
        drop(state);
        if let Some(last) = last {
            self.log.durable(last)?;
        }
        for path in &stale {
            log::info!("removing {}: its log record is newer", path.display());
            fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
        }
        let dirs: BTreeSet<&Path> = stale.iter().filter_map(|p| p.parent()).collect();
        for dir in dirs {
            self.sync_dir(dir);
        }
        Ok(())
    }

    /// Moves the small records still kept as files into the log: one sync for all of them,
    /// then the files go. A crash in between leaves both, and the log's wins.
    /// `files` are the store's file records; returns those left as files.
    pub(super) fn move_small_files_into_log(
        &self,
        files: Vec<RecordMeta>,
    ) -> Result<Vec<RecordMeta>, StoreError> {
        let (small, mut left): (Vec<RecordMeta>, Vec<RecordMeta>) = files
            .into_iter()
            .partition(|m| m.size <= self.options.small_object_max as u64);
        if small.is_empty() {
            return Ok(left);
        }
        let mut moved = Vec::new();
        let mut last = None;
        for meta in small {
            let path = self.path_of(&meta.name)?;
            let data = match read_file_whole(&path, &meta) {
                Ok(data) => data,
                Err(e @ StoreError::Corrupt { .. }) => {
                    log::warn!("leaving {e} as a file");
                    left.push(meta);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut state = self.log.lock();
            if state
                .index
                .get(&meta.name)
                .is_none_or(|s| s.version < meta.version)
            {
                last = Some(state.put(&meta, &data)?);
            }
            moved.push(path);
        }
        if let Some(last) = last {
            self.log.durable(last)?;
        }
        for path in &moved {
            fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
        }
        if !moved.is_empty() {
            let dirs: BTreeSet<&Path> = moved.iter().filter_map(|p| p.parent()).collect();
            for dir in dirs {
                self.sync_dir(dir);
            }
            log::info!(
                "store {}: moved {} small records from files into its log",
                self.dir.display(),
                moved.len()
            );
        }
        Ok(left)
    }
}

/// The data of the small record file at `path`, its CRC checked.
fn read_file_whole(path: &Path, meta: &RecordMeta) -> Result<Vec<u8>, StoreError> {
    let Some((file, found)) = super::open_record(path)? else {
        return Err(StoreError::NotFound);
    };
    if found != *meta {
        return Err(StoreError::corrupt(path, "changed while it was moved"));
    }
    let mut reader = RecordReader::new(file, path.to_path_buf(), found)?;
    let mut data = Vec::with_capacity(CHUNK_SIZE.min(meta.size as usize));
    while let Some(chunk) = reader.read_chunk()? {
        data.extend_from_slice(chunk);
    }
    Ok(data)
}
