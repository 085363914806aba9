//! The key directories that exist. A record file lives in its key's directory, so a name
//! whose key has none has no file: reads and commits of small records then skip the `open`
//! that would fail, which was most of a small put's time in the file system.

use std::collections::HashSet;
use std::path::Path;

use parking_lot::RwLock;

use super::{key_dir_name, read_dir, StoreError};
use crate::id::Key;

/// The keys whose directory exists (or may: one is never forgotten, as removing an empty
/// directory could race with a writer that has just made it).
#[derive(Debug, Default)]
pub(super) struct KeyDirs(RwLock<HashSet<Key>>);

impl KeyDirs {
    /// The key directories under `objects` now.
    pub fn scan(objects: &Path) -> Result<KeyDirs, StoreError> {
        let found = read_dir(objects)?.iter().filter_map(key_dir_name).collect();
        Ok(KeyDirs(RwLock::new(found)))
    }

    /// Whether `key` may have a directory, so a file.
    ///
    /// A file is published by a rename under the store's commit lock, after its key was
    /// [`added`](Self::add): a commit that sees no directory here while holding that lock
    /// cannot miss a file, and a read that sees none was before the file came.
    pub fn may_exist(&self, key: Key) -> bool {
        self.0.read().contains(&key)
    }

    /// Notes that `key`'s directory exists, before any file is published in it.
    pub fn add(&self, key: Key) {
        if !self.may_exist(key) {
            self.0.write().insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::tests::TestDir;
    use super::super::{ObjectStore, StoreOptions, OBJECTS_DIR};
    use crate::id::{key_of, Id};

    #[test]
    fn the_store_knows_its_key_directories_across_reopening() {
        let dir = TestDir::new("key-dirs");
        let options = StoreOptions {
            small_object_max: 4,
            ..StoreOptions::default()
        };
        let (big, small) = (b"big".as_slice(), b"small".as_slice());
        assert_ne!(key_of(big), key_of(small));
        let store = ObjectStore::open_options(&dir.store_dir(), options).expect("open");
        store.put(big, &[7; 64], 1).expect("large put");
        store.put(small, b"ab", 1).expect("small put");
        assert!(store.key_dirs.may_exist(key_of(big)));
        assert!(
            !store.key_dirs.may_exist(key_of(small)),
            "a log record made a directory"
        );
        drop(store);

        // Directories found on opening count (an older layout's); stray ones do not.
        let objects = dir.store_dir().join(OBJECTS_DIR);
        fs::create_dir(objects.join("00ff")).expect("mkdir");
        fs::create_dir(objects.join("ABCD")).expect("mkdir");
        let store = ObjectStore::open_options(&dir.store_dir(), options).expect("reopen");
        assert!(store.key_dirs.may_exist(key_of(big)));
        assert!(store.key_dirs.may_exist(Id(0x00ff)));
        assert!(!store.key_dirs.may_exist(Id(0xabcd)));
        assert!(!store.key_dirs.may_exist(key_of(small)));

        // The large record is read from its file, and a smaller version replaces the file.
        assert_eq!(store.get(big).expect("get").1, vec![7; 64]);
        store.put(big, b"x", 2).expect("shrink");
        assert_eq!(store.get(big).expect("get").1, b"x");
        let key_dir = objects.join(key_of(big).to_string());
        assert_eq!(fs::read_dir(key_dir).expect("list").count(), 0);
    }
}
