//! A simulated node's object store: records in memory, with the real store's rule that a
//! commit keeps the newest version of a name (an older or equal one is superseded).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::checksum::Crc32Digest;
use crate::id::key_of;
use crate::store::{Commit, RecordMeta};
use crate::wire::RecordHead;

/// Records by name, each with its data.
#[derive(Clone, Debug, Default)]
pub(super) struct MemStore {
    records: BTreeMap<Vec<u8>, (RecordMeta, Bytes)>,
}

impl MemStore {
    pub fn meta(&self, name: &[u8]) -> Option<RecordMeta> {
        self.records.get(name).map(|(meta, _)| meta.clone())
    }

    pub fn get(&self, name: &[u8]) -> Option<(RecordMeta, Bytes)> {
        self.records.get(name).cloned()
    }

    /// Every record, by name.
    pub fn records(&self) -> Vec<RecordMeta> {
        self.records
            .values()
            .map(|(meta, _)| meta.clone())
            .collect()
    }

    /// Commits the record `head` with `data`; returns how, and what it replaced (or, if
    /// superseded, the record kept).
    pub fn commit(&mut self, head: &RecordHead, data: Bytes) -> (Commit, Option<RecordMeta>) {
        let existing = self.meta(&head.name);
        if let Some(old) = existing.as_ref().filter(|old| old.version >= head.version) {
            return (Commit::Superseded(old.clone()), Some(old.clone()));
        }
        let mut digest = Crc32Digest::new();
        digest.update(&data);
        let meta = RecordMeta {
            name: head.name.clone(),
            key: key_of(&head.name),
            size: data.len() as u64,
            version: head.version,
            crc: digest.finalize(),
            deleted: head.deleted,
        };
        self.records.insert(head.name.clone(), (meta.clone(), data));
        (Commit::Stored(meta), existing)
    }

    /// Removes `name`'s record if it is still at `version`; returns whether it was.
    pub fn remove(&mut self, name: &[u8], version: u64) -> bool {
        let current = self.records.get(name).map(|(meta, _)| meta.version);
        if current == Some(version) {
            self.records.remove(name);
        }
        current == Some(version)
    }
}
