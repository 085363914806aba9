//! Where each record in the log lives: the log's index, kept in memory.
//!
//! Ordered by key then name, as [`ObjectStore::records`](super::ObjectStore::records) lists
//! them, so that listing needs no sort; grouped by key so that a lookup by name borrows it.

use std::collections::BTreeMap;

use super::RecordMeta;
use crate::id::{key_of, Key};

/// One live record of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub version: u64,
    /// Where its entry starts in the log.
    pub offset: u64,
    /// The whole entry's length: header, name and data.
    pub len: u32,
    /// Bytes of data.
    pub size: u32,
    /// CRC-32 of the data.
    pub crc: u32,
    pub deleted: bool,
}

impl Slot {
    /// The record's description, for `name`.
    pub fn meta(&self, name: &[u8]) -> RecordMeta {
        RecordMeta {
            name: name.to_vec(),
            key: key_of(name),
            size: u64::from(self.size),
            version: self.version,
            crc: self.crc,
            deleted: self.deleted,
        }
    }
}

/// The live records of the log, and how many of its bytes they take.
#[derive(Debug, Default)]
pub(super) struct Index {
    by_key: BTreeMap<Key, BTreeMap<Box<[u8]>, Slot>>,
    /// Sum of the live entries' lengths: the rest of the log is garbage.
    live_bytes: u64,
}

impl Index {
    pub fn get(&self, name: &[u8]) -> Option<&Slot> {
        self.by_key.get(&key_of(name))?.get(name)
    }

    /// Makes `slot` the record of `name`; returns the one it replaced.
    pub fn insert(&mut self, name: &[u8], slot: Slot) -> Option<Slot> {
        let old = self
            .by_key
            .entry(key_of(name))
            .or_default()
            .insert(name.into(), slot);
        self.live_bytes += u64::from(slot.len);
        if let Some(old) = old {
            self.live_bytes -= u64::from(old.len);
        }
        old
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Slot> {
        let key = key_of(name);
        let names = self.by_key.get_mut(&key)?;
        let old = names.remove(name)?;
        if names.is_empty() {
            self.by_key.remove(&key);
        }
        self.live_bytes -= u64::from(old.len);
        Some(old)
    }

    /// Every record, by key then name.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Slot)> {
        self.by_key
            .values()
            .flat_map(|names| names.iter().map(|(n, s)| (&**n, s)))
    }

    /// Every slot, to move it (compaction).
    pub fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.by_key
            .values_mut()
            .flat_map(|names| names.values_mut())
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(version: u64, len: u32) -> Slot {
        Slot {
            version,
            offset: 0,
            len,
            size: 0,
            crc: 0,
            deleted: false,
        }
    }

    #[test]
    fn counts_follow_inserts_and_removals() {
        let mut index = Index::default();
        assert_eq!(index.insert(b"a", slot(1, 30)), None);
        assert_eq!(index.insert(b"b", slot(1, 40)), None);
        assert_eq!(index.insert(b"a", slot(2, 35)), Some(slot(1, 30)));
        assert_eq!(index.live_bytes(), 75);
        assert_eq!(index.remove(b"b"), Some(slot(1, 40)));
        assert_eq!(index.remove(b"b"), None);
        assert_eq!(index.live_bytes(), 35);
        assert_eq!(index.get(b"a"), Some(&slot(2, 35)));
        let names: Vec<&[u8]> = index.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [b"a" as &[u8]]);
    }
}
