//! The decisions of a write. The responsible node orders every put and delete of a name: it
//! gives each write its version, writes its own copy and the other holders' copies
//! (primary/backup), and only then answers, with an outcome these functions compute from its
//! own commit and the holders' answers. Copies arriving from other nodes are kept if newer
//! than what is held.

use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::overlay::OverlayState;
use crate::protocol::outcomes::Outcome;
use crate::protocol::versions::writer_of;
use crate::store::{Commit, RecordMeta};
use crate::wire::{Message, RecordHead};

/// What a holder answered to a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyAnswer {
    /// The version it holds now.
    pub version: u64,
    /// False when it held a newer version already.
    pub kept: bool,
    /// The version it held before, and whether that was an object.
    pub before: Option<(u64, bool)>,
}

/// A holder's reply to a copy, as a [`CopyAnswer`].
pub fn copy_answer(holder: NodeInfo, reply: Message) -> Result<CopyAnswer> {
    match reply {
        Message::Stored {
            version,
            kept,
            before,
            before_live,
        } => Ok(CopyAnswer {
            version,
            kept,
            before: (before != 0).then_some((before, before_live)),
        }),
        other => Err(Error::unexpected_reply(holder.addr, "Stored", &other)),
    }
}

/// The head of the copies of a client's put (or delete) that got `version`.
pub fn copy_head(head: &RecordHead, version: u64) -> RecordHead {
    RecordHead {
        version,
        handoff: true,
        relayed: false,
        direct: false,
        existed: false,
        ..head.clone()
    }
}

/// The reply of a holder that committed a copy: what it holds now and what it held before.
pub fn copy_reply(commit: &Commit, before: Option<&RecordMeta>) -> Message {
    let (version, kept) = match commit {
        Commit::Stored(meta) => (meta.version, true),
        Commit::Superseded(meta) => (meta.version, false),
    };
    Message::Stored {
        version,
        kept,
        before: before.map_or(0, |m| m.version),
        before_live: before.is_some_and(|m| !m.deleted),
    }
}

/// Whether a holder's answer shows it held a newer version than the write `me` just made,
/// which `me` did not give: `me`'s own copy was behind (it took over the key before
/// maintenance caught it up). The write is then ordered before that version, and the newer
/// record is to be fetched (repaired) here.
fn behind(me: Id, answers: &[CopyAnswer]) -> bool {
    answers
        .iter()
        .any(|a| !a.kept && writer_of(a.version) != me)
}

/// The outcome of a put that `me` gave `version`, its own copy `stored` (not overtaken), and
/// whether `me`'s copy was behind (a repair is due).
pub fn put_outcome(me: Id, version: u64, stored: bool, answers: &[CopyAnswer]) -> (Outcome, bool) {
    let behind = behind(me, answers);
    let outcome = Outcome::Stored {
        version,
        kept: stored && !behind,
    };
    (outcome, behind)
}

/// The outcome of a delete that `me` gave `version`, when `here` is what it removed in its
/// own store (the version and whether it was an object), and whether `me`'s copy was behind.
/// Should it have been, the newest record older than the delete that any holder had is what
/// the delete removed.
pub fn delete_outcome(
    me: Id,
    version: u64,
    here: Option<(u64, bool)>,
    answers: &[CopyAnswer],
) -> (Outcome, bool) {
    let existed = answers
        .iter()
        .filter(|a| a.kept)
        .filter_map(|a| a.before)
        .chain(here)
        .filter(|&(v, _)| v < version)
        .max_by_key(|&(v, _)| v)
        .is_some_and(|(_, live)| live);
    let outcome = Outcome::Deleted { version, existed };
    (outcome, behind(me, answers))
}

/// Whether a node may order a write whose key has `others` other holders in its view, when
/// it keeps `k` copies and `last` says no other node is known to live: not when it would be
/// the only holder of a write meant to have several while other nodes live. It is then cut
/// off from its whole leaf set (a partition), and an acknowledged write would live on it
/// alone; the client tries again, through a node that is not cut off.
pub fn may_order(others: usize, k: usize, last: bool) -> bool {
    k == 1 || others > 0 || last
}

/// The node a client's write for `key` is passed on to when `me` is not responsible: the
/// responsible one, if `me`'s leaf set spans the key and the write was not passed on already
/// (so a write is relayed at most once).
pub fn relay_target(state: &OverlayState, key: Key, relayed: bool) -> Option<NodeInfo> {
    if relayed || !state.leaf_set().covers(key) {
        return None;
    }
    let to = state.route(key, |_| false);
    (to.id != state.me().id).then_some(to)
}

/// The head a stored record is sent with: as a hand-off copy if `handoff`, else as an
/// answer to a get.
pub fn record_head(meta: &RecordMeta, handoff: bool) -> RecordHead {
    RecordHead {
        name: meta.name.clone(),
        size: meta.size,
        version: meta.version,
        deleted: meta.deleted,
        handoff,
        request: 0,
        existed: false,
        relayed: false,
        direct: false,
    }
}
