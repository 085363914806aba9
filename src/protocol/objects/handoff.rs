//! A leaving node's hand-off: every record goes to the nodes that keep it once this one is
//! gone (the `k` best placed among its leaf set) before it leaves. Members that refuse or fail
//! (leaving too, say) are excluded and the next best placed take their place, round after
//! round: each round excludes at least one more member, or ends. The new holders' maintenance
//! restores the full count of copies if some were unreachable.
//!
//! Resumable like [`super::Rebalance`]: each [`round`](HandOff::round) gives the records to
//! bring each member up to date with ([`super::bring_up_to_date`]); the driver reports each
//! member's result.

use std::collections::HashMap;

use crate::error::Error;
use crate::id::NodeInfo;
use crate::overlay::OverlayState;
use crate::store::RecordMeta;

/// A hand-off in progress.
#[derive(Debug)]
pub struct HandOff {
    me: NodeInfo,
    k: usize,
    members: Vec<NodeInfo>,
    records: Vec<RecordMeta>,
    /// How many members now hold each record (or were not sent it, as it need not go).
    held: HashMap<Vec<u8>, usize>,
    excluded: Vec<NodeInfo>,
    rounds_left: usize,
    last_error: Option<Error>,
    /// Nobody else is known to be in the overlay.
    last: bool,
}

impl HandOff {
    /// The hand-off of `records` by a node whose overlay is `state`, keeping `k` copies.
    /// `last` says that no other node is known to be in the overlay (discovery knows none):
    /// only then may a node with an empty leaf set leave with its records, which stay on its
    /// disk. A node whose leaf set is empty while others live is cut off from them, not the
    /// last: it stays until it can hand its records over.
    pub fn new(state: &OverlayState, k: usize, records: Vec<RecordMeta>, last: bool) -> HandOff {
        let members = state.leaf_set().members();
        HandOff {
            me: state.me(),
            k,
            rounds_left: members.len() + 1,
            members,
            records,
            held: HashMap::new(),
            excluded: Vec::new(),
            last_error: None,
            last,
        }
    }

    /// The next round: for each member, the records it is to be brought up to date with.
    /// Empty when every record is held, or no round is left.
    pub fn round(&mut self) -> Vec<(NodeInfo, Vec<RecordMeta>)> {
        if self.rounds_left == 0 || self.members.is_empty() {
            return Vec::new();
        }
        self.rounds_left -= 1;
        let mut by_holder: HashMap<NodeInfo, Vec<RecordMeta>> = HashMap::new();
        for meta in self
            .records
            .iter()
            .filter(|m| !self.held.contains_key(&m.name))
        {
            let mut holders: Vec<NodeInfo> = self
                .members
                .iter()
                .filter(|m| !self.excluded.contains(m))
                .copied()
                .collect();
            holders.sort_by(|a, b| a.id.cmp_for_key(b.id, meta.key));
            holders.truncate(self.k);
            for h in holders {
                by_holder.entry(h).or_default().push(meta.clone());
            }
        }
        let mut round: Vec<_> = by_holder.into_iter().collect();
        round.sort_by_key(|(h, _)| h.id);
        round
    }

    /// `holder` was brought up to date with `asked` records and now holds (or need not be
    /// sent) those named in `reached`. One that took fewer than asked is excluded: it is
    /// leaving too, perhaps.
    pub fn answered(&mut self, holder: NodeInfo, asked: usize, reached: Vec<Vec<u8>>) {
        if reached.len() < asked {
            self.excluded.push(holder);
        }
        for name in reached {
            *self.held.entry(name).or_default() += 1;
        }
    }

    /// `holder` could not be brought up to date.
    pub fn failed(&mut self, holder: NodeInfo, e: Error) {
        self.excluded.push(holder);
        self.last_error = Some(e);
    }

    /// The end: what at least one member now holds, to be deleted once this node is gone from
    /// the others' tables; an error if some record could not be handed to any of them (the
    /// last node has nowhere to hand anything: its data stays on its disk).
    pub fn finish(self) -> Result<Vec<RecordMeta>, Error> {
        if self.members.is_empty() && (self.last || self.records.is_empty()) {
            return Ok(Vec::new());
        }
        let (handed, stranded): (Vec<RecordMeta>, Vec<RecordMeta>) = self
            .records
            .into_iter()
            .partition(|m| self.held.get(&m.name).is_some_and(|&n| n > 0));
        if let Some(meta) = stranded.first() {
            return Err(self.last_error.unwrap_or_else(|| Error::Protocol {
                addr: self.me.addr,
                what: format!(
                    "no neighbour took {:?}",
                    String::from_utf8_lossy(&meta.name)
                ),
            }));
        }
        Ok(handed)
    }
}
