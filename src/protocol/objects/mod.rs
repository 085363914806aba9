//! The object store's protocol, as decisions and resumable passes with no sockets, threads or
//! disk in them: what a write does and answers, whether a copy from another node is taken,
//! what a holder lacks, and the passes that move copies to their holders (a maintenance
//! rebalance, a leaving node's hand-off, a joining node's pull). The store's rules they apply
//! ([`super::placement`], [`super::versions`], [`super::outcomes`]) are beside them.
//!
//! The drivers move the bytes: the threaded node streams records over its connections (a
//! large object never held in memory whole), the simulator hands them over in its in-memory
//! network. What goes where, which version a write gets, what each answer means and what
//! becomes of each copy is decided here, for both. Store reads and commits are synchronous
//! calls the driver makes and reports back (as raft-rs reads its `Storage`): a node's store
//! is local, and its operations either happen or fail at once.

mod checks;
mod handoff;
mod rebalance;
mod write;

pub use checks::{bring_up_to_date, lacking, pull_selection, Answered, HOLDS_BATCH};
pub use handoff::HandOff;
pub use rebalance::Rebalance;
pub use write::{
    copy_answer, copy_head, copy_reply, delete_outcome, may_order, put_outcome, record_head,
    relay_target, CopyAnswer,
};

#[cfg(test)]
mod tests;
