//! The invariants of the stored objects once the overlay has settled, checked against the
//! simulator's record of every write: each name written has the same record at each of its
//! `k` best-placed live members and at no other node; that record is one a client's write
//! was given (no invented data), and no older than the newest write acknowledged to a client
//! (an acknowledged write is readable until overwritten; with the copies agreeing, no object
//! is lost).
//!
//! The promise holds while fewer than `k` holders fail between repairs. An acknowledged write
//! that no live node holds, after `k` nodes holding it lost their stores within one repair
//! window, is beyond that promise: it is reported by [`Sim::losses_beyond_faults`], not as a
//! violation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::id::{key_of, NodeInfo};
use crate::protocol::membership::Phase;

use super::{Sim, SimNode, Violation};

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
            let acked = newest_acked.get(name).copied();
            let beyond = acked.is_some_and(|v| self.lost_beyond_faults(name, v));
            for (id, record) in &held {
                let version = record.as_ref().map(|(m, _)| m.version);
                if let Some(acked) = acked.filter(|_| !beyond) {
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

    /// The acknowledged writes lost beyond the fault model: no live node holds them, and `k`
    /// nodes that held them lost their stores within one repair window.
    pub fn losses_beyond_faults(&self) -> Vec<Violation> {
        let mut newest: BTreeMap<&[u8], u64> = BTreeMap::new();
        for a in &self.acked {
            let v = newest.entry(&a.name).or_default();
            *v = (*v).max(a.version);
        }
        newest
            .into_iter()
            .filter(|(name, acked)| self.lost_beyond_faults(name, *acked))
            .map(|(name, acked)| Violation {
                node: key_of(name),
                what: format!(
                    "{:?} at {acked} lost with the stores of {} of its holders",
                    String::from_utf8_lossy(name),
                    self.config.replicas
                ),
            })
            .collect()
    }

    /// Whether `name` at `acked` (or later) is held by no live node, and `k` of the nodes that
    /// held it lost their stores within one repair window: the time to find a holder dead
    /// (a maintenance round and a call's timeout) and to copy its objects again (one more).
    fn lost_beyond_faults(&self, name: &[u8], acked: u64) -> bool {
        let holds = |n: &SimNode| {
            n.objects
                .store
                .meta(name)
                .is_some_and(|m| m.version >= acked)
        };
        if self.nodes.iter().any(|n| n.alive && holds(n)) {
            return false;
        }
        let mut lost: Vec<Duration> = self
            .nodes
            .iter()
            .filter(|n| holds(n))
            .filter_map(|n| n.store_lost_at)
            .collect();
        lost.sort();
        let k = self.config.replicas.max(1);
        let window = 2 * self.config.maintenance_interval + self.config.call_timeout;
        lost.windows(k).any(|w| w[k - 1] - w[0] <= window)
    }
}
