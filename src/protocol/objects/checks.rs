//! The exchange that brings one holder up to date: this node asks which of its records the
//! holder lacks ([`Message::Holds`]); the holder answers ([`lacking`]); this node sends what
//! its rules say must go and counts the rest ([`bring_up_to_date`]). Rebalances, hand-offs and
//! their simulated twins all run it. Also what a joining node pulls ([`pull_selection`]).

use std::collections::HashSet;

use crate::id::NodeInfo;
use crate::overlay::OverlayState;
use crate::protocol::placement::{self, Held, Keeping, Reach, Step};
use crate::store::RecordMeta;
use crate::wire::Message;

/// Records asked about in one [`Message::Holds`]: keeps the frame far below the payload limit
/// even with long names.
pub const HOLDS_BATCH: usize = 256;

/// The answer to a [`Message::Holds`] of `records` (name, version) by a node whose store
/// reads `meta_of`: which it holds at an older version (a damaged record is as good as an old
/// one: a copy replaces it), and which not at all.
pub fn lacking<E>(
    records: Vec<(Vec<u8>, u64)>,
    mut meta_of: impl FnMut(&[u8]) -> Result<Option<RecordMeta>, E>,
) -> Message {
    let (mut older, mut absent) = (Vec::new(), Vec::new());
    for (name, version) in records {
        match meta_of(&name) {
            Ok(Some(held)) if held.version >= version => {}
            Ok(None) => absent.push(name),
            _ => older.push(name),
        }
    }
    Message::Lacking { older, absent }
}

/// What a holder's answer about a batch of records asks of this node.
#[derive(Debug, Default)]
pub struct Answered {
    /// Records nothing is sent of, with what the holder has of each.
    pub counted: Vec<(Vec<u8>, Reach)>,
    /// Records to send; once the holder confirms one, it [`Reach::Holds`] it.
    pub send: Vec<RecordMeta>,
}

/// What to do after a holder answered that of `batch` it holds the names `older` at an older
/// version and `absent` not at all, when `keeping` judges this node's records.
pub fn bring_up_to_date(
    batch: &[RecordMeta],
    older: &[Vec<u8>],
    absent: &[Vec<u8>],
    keeping: &Keeping,
) -> Answered {
    let older: HashSet<&[u8]> = older.iter().map(Vec::as_slice).collect();
    let absent: HashSet<&[u8]> = absent.iter().map(Vec::as_slice).collect();
    let mut answered = Answered::default();
    for meta in batch {
        let held = if absent.contains(meta.name.as_slice()) {
            Held::Nothing
        } else if older.contains(meta.name.as_slice()) {
            Held::Older
        } else {
            Held::AsNew
        };
        match placement::step(held, keeping.verdict(meta)) {
            Step::Count(reach) => answered.counted.push((meta.name.clone(), reach)),
            Step::Send => answered.send.push(meta.clone()),
        }
    }
    answered
}

/// Which of `records` a node whose overlay is `state` sends to `joiner` when it pulls: those
/// whose `k` holders include the joiner once it is counted in.
pub fn pull_selection(
    state: &OverlayState,
    joiner: NodeInfo,
    k: usize,
    records: Vec<RecordMeta>,
) -> Vec<RecordMeta> {
    let mut state = state.clone();
    state.learn(joiner);
    records
        .into_iter()
        .filter(|meta| state.replica_set(meta.key, k).contains(&joiner))
        .collect()
}
