//! The id a node last ran with in its data directory. A node started again there with no
//! id configured comes back as itself, as its identity key (kept there too) and its objects
//! (kept for the keys that id is responsible for) expect, rather than as a node new to the
//! overlay holding another node's objects.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::id::Id;

use super::NodeConfig;

/// The file in a node's data directory that holds the id it last ran with: four hex digits.
pub const ID_FILE: &str = "node-id";

/// The id a node started with `config` takes from its data directory: the one kept there,
/// when no id is configured; `None` otherwise, or when none is kept (a new directory).
pub(super) fn of(config: &NodeConfig) -> Result<Option<Id>> {
    match (&config.id, &config.data_dir) {
        (None, Some(dir)) => kept(dir),
        _ => Ok(None),
    }
}

/// The id kept in `dir`; `None` when there is none (a new directory).
pub(super) fn kept(dir: &Path) -> Result<Option<Id>> {
    let path = dir.join(ID_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let id = text.trim().parse().map_err(|_| {
        Error::Config(format!(
            "{} does not hold a node id (four hex digits): set one, or remove the file",
            path.display()
        ))
    })?;
    Ok(Some(id))
}

/// Keeps `id` in `dir`, unless it is kept there already. Written aside, synced and renamed:
/// a crash leaves the old id or the new one, never a torn file.
pub(super) fn keep(dir: &Path, id: Id) -> Result<()> {
    if matches!(kept(dir), Ok(Some(k)) if k == id) {
        return Ok(());
    }
    let tmp = dir.join(format!("{ID_FILE}.tmp"));
    let io = |source| Error::Io {
        path: tmp.clone(),
        source,
    };
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(format!("{id}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, dir.join(ID_FILE)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Entry;
    use crate::node::Node;
    use crate::{ClusterKey, Discovery};

    /// A data directory of this test's own, empty.
    fn fresh_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pastry-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn on(dir: &Path, key: &ClusterKey, id: Option<Id>) -> NodeConfig {
        NodeConfig {
            id,
            data_dir: Some(dir.to_path_buf()),
            ..NodeConfig::new(key)
        }
    }

    #[test]
    fn a_node_started_again_on_its_directory_with_no_id_has_the_id_it_last_ran_with() {
        let key = ClusterKey::generate().unwrap();
        let dir = fresh_dir("kept-id");
        // Each node is dropped, which stops it, before the next starts on the directory.
        let id_on_start = |id| Node::start(on(&dir, &key, id)).unwrap().id();
        let drawn = id_on_start(None);
        assert_eq!(id_on_start(None), drawn);
        // A configured id replaces the kept one, and is kept in turn.
        let other = Id(drawn.0 ^ 0x8000);
        assert_eq!(id_on_start(Some(other)), other);
        assert_eq!(id_on_start(None), other);
        assert_eq!(kept(&dir).unwrap(), Some(other));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_holds_no_id_stops_the_start_with_an_error_naming_it() {
        let key = ClusterKey::generate().unwrap();
        let dir = fresh_dir("kept-id-bad");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(ID_FILE), "not an id").unwrap();
        let started = Node::start(on(&dir, &key, None));
        assert!(
            matches!(&started, Err(Error::Config(why)) if why.contains(ID_FILE)),
            "{:?}",
            started.as_ref().err()
        );
        // A configured id does not read it, and replaces it.
        let node = Node::start(on(&dir, &key, Some(Id(0x0042)))).unwrap();
        node.shutdown();
        assert_eq!(kept(&dir).unwrap(), Some(Id(0x0042)));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kept_id_that_another_node_took_meanwhile_is_drawn_again_when_started_joined() {
        let key = ClusterKey::generate().unwrap();
        let discovery = Discovery::start("127.0.0.1:0".parse().unwrap(), &key).unwrap();
        let entry = Entry::Discovery(discovery.local_addr());
        let dir = fresh_dir("kept-id-taken");
        drop(Node::start(on(&dir, &key, Some(Id(0x2222)))).unwrap());
        // Another node, with another key, holds that id now.
        let taker = NodeConfig {
            id: Some(Id(0x2222)),
            ..NodeConfig::new(&key)
        };
        let taker = Node::start_joined(taker, entry).unwrap();
        let back = Node::start_joined(on(&dir, &key, None), entry).unwrap();
        assert_ne!(back.id(), Id(0x2222));
        assert!(back.is_joined());
        assert_eq!(kept(&dir).unwrap(), Some(back.id()));
        back.shutdown();
        taker.shutdown();
        discovery.shutdown();
        drop(back);
        let _ = fs::remove_dir_all(&dir);
    }
}
