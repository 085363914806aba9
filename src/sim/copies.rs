//! The invariants of the stored objects once the overlay has settled, checked against the
//! simulator's record of every write: each name written has the same record at each of its
//! `k` best-placed live members and at no other node; that record is one a client's write
//! was given (no invented data), and no older than the newest write acknowledged to a client
//! (an acknowledged write is readable until overwritten; with the copies agreeing, no object
//! is lost).

use std::collections::BTreeMap;

use crate::id::{key_of, NodeInfo};
use crate::protocol::membership::Phase;

use super::{Sim, Violation};

impl Sim {
    /// The object invariants over the joined `members`, sorted by id.
    pub(super) fn check_objects(&self, members: &[NodeInfo]) -> Vec<Violation> {
        let mut out = Vec::new();
        let k = self.config.replicas;
        let mut newest_acked: BTreeMap<&[u8], u64> = BTreeMap::new();
        for a in &self.acked {
            let v = newest_acked.entry(&a.name).or_default();
            *v = (*v).max(a.version);
        }
        let mut names: Vec<&[u8]> = self.issued.keys().map(|(n, _)| n.as_slice()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let key = key_of(name);
            let mut holders = members.to_vec();
            holders.sort_by(|a, b| a.id.cmp_for_key(b.id, key));
            holders.truncate(k);
            let held: Vec<_> = holders
                .iter()
                .map(|h| (h.id, self.nodes[self.live[&h.id]].objects.store.get(name)))
                .collect();
            let shown = String::from_utf8_lossy(name);
            let versions: Vec<Option<u64>> = held
                .iter()
                .map(|(_, r)| r.as_ref().map(|(m, _)| m.version))
                .collect();
            if versions.windows(2).any(|w| w[0] != w[1]) {
                let at: Vec<String> = held
                    .iter()
                    .zip(&versions)
                    .map(|((id, _), v)| format!("{id}: {v:?}"))
                    .collect();
                out.push(Violation {
                    node: key,
                    what: format!("copies of {shown:?} disagree: {}", at.join(", ")),
                });
            }
            for (id, record) in &held {
                let version = record.as_ref().map(|(m, _)| m.version);
                if let Some(&acked) = newest_acked.get(name) {
                    if version.is_none_or(|v| v < acked) {
                        out.push(Violation {
                            node: *id,
                            what: format!(
                                "holds {shown:?} at {version:?}, a write at {acked} was acknowledged"
                            ),
                        });
                    }
                }
                let Some((meta, data)) = record else { continue };
                let matches = match self.issued.get(&(name.to_vec(), meta.version)) {
                    Some(Some(put)) => !meta.deleted && put == data,
                    Some(None) => meta.deleted,
                    None => false,
                };
                if !matches {
                    out.push(Violation {
                        node: *id,
                        what: format!("holds {shown:?} at {} as no write gave it", meta.version),
                    });
                }
            }
            // Nobody else keeps a copy once its holders have it.
            for (id, slot) in &self.live {
                let node = &self.nodes[*slot];
                if node.core.phase() == Phase::Joined
                    && !holders.iter().any(|h| h.id == *id)
                    && node.objects.store.meta(name).is_some()
                {
                    out.push(Violation {
                        node: *id,
                        what: format!("keeps a copy of {shown:?}, not one of its holders"),
                    });
                }
            }
        }
        out
    }
}
