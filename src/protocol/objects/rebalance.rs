//! One rebalance pass: every record this node holds goes where it belongs. Each of its
//! holders gets the current version if it lacks it, and a copy this node should not keep is
//! deleted once all of them confirmed (one rule keeps every move safe: a copy is deleted only
//! after its holders confirmed holding a version at least as new, and only if it was not
//! rewritten in between). Deletion records past their grace go once every holder has them or
//! holds nothing of the name, and a record kept from before a long absence that no other
//! holder knows is dropped ([`Keeping`]).
//!
//! The pass is resumable: the driver asks what it needs (the holders of keys this node cannot
//! be sure of, then each holder's [`Message::Holds`]), feeds the answers back in any order,
//! and [`Rebalance::finish`]es it.

use std::collections::HashMap;

use crate::id::{Key, NodeInfo};
use crate::overlay::OverlayState;
use crate::protocol::placement::{self, Fate, Keeping, Reach, Verdict};
use crate::store::RecordMeta;
use crate::wire::Message;

use super::checks::{bring_up_to_date, Answered, HOLDS_BATCH};

/// A rebalance pass in progress.
#[derive(Debug)]
pub struct Rebalance {
    me: NodeInfo,
    k: usize,
    keeping: Keeping,
    records: Vec<RecordMeta>,
    /// The holders of each key, once known; `None` while being found or if that failed.
    holders: HashMap<Key, Option<Vec<NodeInfo>>>,
    /// What each other holder has of each record, by name: (holds it, holds nothing).
    reached: HashMap<Vec<u8>, (usize, usize)>,
    /// False once something failed: the pass is to be run again.
    complete: bool,
}

impl Rebalance {
    /// A pass over `records` by a node whose overlay is `state`, keeping `k` copies. The
    /// holders of a key are known at once when the leaf set makes them sure; the others are
    /// among [`unknown`](Self::unknown).
    pub fn new(state: &OverlayState, k: usize, keeping: Keeping, records: Vec<RecordMeta>) -> Self {
        let mut holders = HashMap::new();
        for meta in &records {
            holders
                .entry(meta.key)
                .or_insert_with(|| state.exact_replica_set(meta.key, k));
        }
        Rebalance {
            me: state.me(),
            k,
            keeping,
            records,
            holders,
            reached: HashMap::new(),
            complete: true,
        }
    }

    /// The keys whose holders this node cannot be sure of, each with the node responsible
    /// for it if this node's leaf set spans it. The driver asks the responsible node (found
    /// by a lookup if not given) for its [`Message::Replicas`], and reports with
    /// [`found`](Self::found).
    pub fn unknown(&self, state: &OverlayState) -> Vec<(Key, Option<NodeInfo>)> {
        let mut keys: Vec<Key> = self
            .holders
            .iter()
            .filter(|(_, h)| h.is_none())
            .map(|(k, _)| *k)
            .collect();
        keys.sort();
        keys.into_iter()
            .map(|key| {
                let responsible = state
                    .leaf_set()
                    .covers(key)
                    .then(|| state.route(key, |_| false));
                (key, responsible)
            })
            .collect()
    }

    /// What the node `responsible` for `key` answered to [`Message::Replicas`] (or `None` if
    /// it could not be asked): the key's holders are it and the set it gave.
    pub fn found(&mut self, key: Key, responsible: NodeInfo, reply: Option<Message>) {
        let holders = match reply {
            // The node itself, unsure a moment ago: the next pass tries again.
            _ if responsible.id == self.me.id => None,
            Some(Message::ReplicaSet { nodes }) if nodes.len() < self.k => {
                let mut holders = vec![responsible];
                holders.extend(nodes.into_iter().filter(|n| n.id != responsible.id));
                Some(holders)
            }
            _ => None,
        };
        if holders.is_none() {
            self.complete = false;
        }
        self.holders.insert(key, holders);
    }

    /// A key whose holders could not be found this pass.
    pub fn not_found(&mut self) {
        self.complete = false;
    }

    /// The records to ask each other holder about, in batches for [`Message::Holds`]. Records
    /// whose holders are unknown are left to the next pass.
    pub fn asks(&mut self) -> Vec<(NodeInfo, Vec<RecordMeta>)> {
        let mut by_holder: HashMap<NodeInfo, Vec<RecordMeta>> = HashMap::new();
        for meta in &self.records {
            let Some(Some(holders)) = self.holders.get(&meta.key) else {
                self.complete = false;
                continue;
            };
            for h in holders.iter().filter(|h| h.id != self.me.id) {
                by_holder.entry(*h).or_default().push(meta.clone());
            }
        }
        let mut asks: Vec<(NodeInfo, Vec<RecordMeta>)> = Vec::new();
        let mut holders: Vec<_> = by_holder.into_iter().collect();
        holders.sort_by_key(|(h, _)| h.id);
        for (holder, metas) in holders {
            asks.extend(metas.chunks(HOLDS_BATCH).map(|c| (holder, c.to_vec())));
        }
        asks
    }

    /// `holder` answered about `batch` (its [`Message::Lacking`]): returns the records to
    /// send it, each reported with [`sent`](Self::sent).
    pub fn answered(
        &mut self,
        batch: &[RecordMeta],
        older: &[Vec<u8>],
        absent: &[Vec<u8>],
    ) -> Vec<RecordMeta> {
        let Answered { counted, send } = bring_up_to_date(batch, older, absent, &self.keeping);
        for (name, reach) in counted {
            self.count(name, reach);
        }
        send
    }

    /// A record was sent to a holder: `confirmed` if it now holds that version or newer.
    pub fn sent(&mut self, name: &[u8], confirmed: bool) {
        if confirmed {
            self.count(name.to_vec(), Reach::Holds);
        }
    }

    /// A holder could not be asked or did not answer.
    pub fn failed(&mut self) {
        self.complete = false;
    }

    fn count(&mut self, name: Vec<u8>, reach: Reach) {
        let counts = self.reached.entry(name).or_default();
        match reach {
            Reach::Holds => counts.0 += 1,
            Reach::Absent => counts.1 += 1,
        }
    }

    /// The end of the pass: the copies to delete here (each only if still at the version
    /// listed), and whether everything was done.
    pub fn finish(mut self) -> (Vec<RecordMeta>, bool) {
        let mut drops = Vec::new();
        for meta in std::mem::take(&mut self.records) {
            let Some(Some(holders)) = self.holders.get(&meta.key) else {
                continue;
            };
            let others = holders.iter().filter(|h| h.id != self.me.id).count();
            let (holding, absent) = self.reached.get(&meta.name).copied().unwrap_or_default();
            let mine = others < holders.len();
            let verdict = self.keeping.verdict(&meta);
            match placement::fate(verdict, holding, absent, others, mine) {
                Fate::Drop => {
                    if verdict == Verdict::Unconfirmed && others > 0 && absent == others {
                        log::info!(
                            "node {}: dropping {:?}, unknown to its holders since this node was away",
                            self.me,
                            String::from_utf8_lossy(&meta.name)
                        );
                    }
                    drops.push(meta);
                }
                Fate::Keep => {}
                Fate::Unsettled => self.complete = false,
            }
        }
        (drops, self.complete)
    }
}
