//! Failure detection and repair (Pastry paper §2.4): leaf-set neighbours exchange their leaf
//! sets (the nearest every maintenance round), which both checks that they are alive and
//! fills gaps; a node that fails to answer, here or in any protocol, is dropped from the
//! tables, reported to the driver (which tells discovery), and its place refilled: in the
//! leaf set from the farthest live node on each side, in the routing table from a peer's
//! entry for the same cell.

use std::time::{Duration, Instant};

use super::{Effect, Membership, Target, Waiting};
use crate::error::{Error, Result};
use crate::id::{NodeInfo, DIGITS};
use crate::overlay::RoutingTable;
use crate::protocol::health::Failure;
use crate::wire::{Message, RemoteCode};

/// How long a node found dead by its silence is asked again whether it is alive: a
/// partition shorter than this heals by itself.
pub const SILENT_PROBATION: Duration = Duration::from_secs(600);

/// Rounds between routes of a node's own id through a routing-table entry.
pub const SELF_CHECK_EVERY: u64 = 8;

/// The refill of a routing-table cell: the peers still to ask, best first.
#[derive(Debug)]
pub(super) struct CellTask {
    row: usize,
    col: usize,
    peers: Vec<NodeInfo>,
}

impl Membership {
    /// Evidence that `target` failed while this node talked to it, in any protocol.
    pub(super) fn suspect(&mut self, now: Instant, target: Target, e: &Error) {
        let Some(id) = target.id else { return };
        let node = NodeInfo {
            id,
            addr: target.addr,
        };
        let failure = match e {
            Error::Unreachable { .. }
            | Error::Refused {
                code: RemoteCode::NotJoined,
                ..
            } => Failure::Gone,
            Error::Timeout { .. } | Error::Wire { .. } | Error::Protocol { .. } => Failure::Silent,
            _ => return,
        };
        if self.health.failed(id, failure, now) {
            log::info!("node {}: {node} found dead: {e}", self.me);
            if failure == Failure::Silent {
                self.silent.insert(id, (node, now));
            }
            self.declare_dead(node);
        }
    }

    /// Drops a dead node everywhere and starts the repairs.
    fn declare_dead(&mut self, node: NodeInfo) {
        let me = self.me.id;
        let (was_leaf, hole) = self.change(|state| {
            let was_leaf = state.leaf_set().contains(node.id);
            let hole = state
                .table()
                .contains(node.id)
                .then(|| RoutingTable::cell_of(me, node.id))
                .flatten();
            state.forget(node.id);
            (was_leaf, hole)
        });
        self.out.push(Effect::Dead(node));
        if let Some((row, col)) = hole {
            self.refill_cell(row, col);
        }
        if was_leaf {
            // The farthest live node on each side knows the nodes just beyond our view.
            let leaf = self.state.leaf_set();
            let far_ends: Vec<NodeInfo> = leaf
                .cw()
                .last()
                .into_iter()
                .chain(leaf.ccw().last())
                .copied()
                .collect();
            for far in far_ends {
                self.exchange_with(far, true);
            }
        }
    }

    /// Fills the routing-table cell (`row`, `col`) left empty by a dead node: any node that
    /// shares at least this node's first `row` digits (the rest of that row first, then the
    /// rows below, then the leaf set) has an entry for the cell that fits here too (the Pastry
    /// paper's repair). The first live answer wins.
    fn refill_cell(&mut self, row: usize, col: usize) {
        let me = self.me.id;
        let mut peers: Vec<NodeInfo> = self.state.table().rows_upto(DIGITS - 1);
        peers.retain(|p| me.shared_prefix(p.id) >= row);
        peers.sort_by_key(|p| me.shared_prefix(p.id));
        for m in self.state.leaf_set().members() {
            if me.shared_prefix(m.id) >= row && !peers.contains(&m) {
                peers.push(m);
            }
        }
        peers.reverse(); // asked from the end
        self.ask_for_cell(CellTask { row, col, peers });
    }

    fn ask_for_cell(&mut self, mut task: CellTask) {
        let Some(peer) = task.peers.pop() else {
            return;
        };
        let request = Message::Cell {
            row: task.row as u8,
            col: task.col as u8,
        };
        self.call(peer.into(), request, None, Waiting::Cell(task));
    }

    /// A peer's answer for a cell to refill: its entry is asked whether it is alive
    /// before it takes the cell.
    pub(super) fn cell_answered(&mut self, now: Instant, task: CellTask, result: Result<Message>) {
        if let Ok(Message::CellEntry { node: Some(entry) }) = result {
            if entry.id != self.me.id
                && !self.health.is_dead(entry.id, now)
                && self.state.table().would_take(entry)
            {
                return self.call(
                    entry.into(),
                    Message::Ping,
                    None,
                    Waiting::Vouch(Some(task)),
                );
            }
        }
        self.ask_for_cell(task);
    }

    /// The answer of a node heard of second hand: alive, it enters the routing table; dead,
    /// it is kept out (and the refill it was to serve goes on with the next peer).
    pub(super) fn vouched(
        &mut self,
        now: Instant,
        to: Target,
        task: Option<CellTask>,
        result: Result<Message>,
    ) {
        match result {
            Ok(Message::Pong { node, .. }) if Some(node.id) == to.id && node.addr == to.addr => {
                self.health.heard_from(node.id);
                if self.change(|s| s.learn_for_table(node)) {
                    log::debug!("node {}: {node} takes a routing-table cell", self.me);
                }
            }
            Ok(_) => self.suspect(now, to, &another_node_answers(to)),
            Err(e) => {
                self.suspect(now, to, &e);
                if let Some(task) = task {
                    self.ask_for_cell(task);
                }
            }
        }
    }

    /// Takes `from` (a live node that spoke to us, if any) and the members of a leaf set
    /// into this node's tables, leaving out nodes recently found dead or gone.
    pub(super) fn learn_leaf_set_of(
        &mut self,
        now: Instant,
        from: Option<NodeInfo>,
        leaf_set: &[NodeInfo],
    ) {
        if let Some(from) = from {
            self.health.heard_from(from.id);
            self.silent.remove(&from.id);
        }
        let me = self.me.id;
        let fresh: Vec<NodeInfo> = leaf_set
            .iter()
            .chain(&from)
            .filter(|n| n.id != me && !self.health.is_dead(n.id, now))
            .copied()
            .collect();
        self.change(|state| {
            for n in fresh {
                state.learn(n);
            }
        });
    }

    /// Asks the nodes found dead by their silence, and that would be leaf-set members if
    /// alive, whether they are: silence may be a partition, after which each side would
    /// otherwise keep the other out for good. Nodes found dead because nothing listens at
    /// their address are never asked again.
    pub(super) fn probe_silent(&mut self, now: Instant) {
        self.silent
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < SILENT_PROBATION);
        let leaf = self.state.leaf_set();
        let candidates: Vec<NodeInfo> = self
            .silent
            .values()
            .map(|(n, _)| *n)
            .filter(|n| leaf.would_take(n.id))
            .take(2 * self.config.leaf_half)
            .collect();
        for node in candidates {
            let request = Message::Exchange {
                node: self.me,
                leaf_set: self.leaf_set_for(node.id, true),
            };
            self.call(node.into(), request, None, Waiting::Probe);
        }
    }

    /// The answer of a node found silent.
    pub(super) fn probed(&mut self, now: Instant, to: Target, result: Result<Message>) {
        let Some(id) = to.id else { return };
        match result {
            Ok(Message::LeafSet { node, leaf_set }) if node.id == id => {
                log::info!("node {}: {node}, found dead, answers again", self.me);
                self.health.answered(id);
                self.learn_leaf_set_of(now, Some(node), &leaf_set);
            }
            // Still silent: asked again next round, until the probation ends.
            Err(Error::Timeout { .. } | Error::Wire { .. }) => {}
            _ => {
                self.silent.remove(&id);
            }
        }
    }

    /// Routes this node's own id through one of its routing-table entries, in turn, every
    /// [`SELF_CHECK_EVERY`] rounds. The route should end here; if it ends at another node,
    /// the overlay takes that node for the one responsible for this id, and this node's
    /// leaf set is wrong: it joined through a node whose view was out of date (concurrent
    /// joins) or it was cut off, and its true neighbours do not know it. An exchange with
    /// that node puts each in the other's leaf set, and their neighbours learn the rest.
    pub(super) fn check_own_place(&mut self) {
        let me = self.me.id;
        if (self.round + u64::from(me.0)) % SELF_CHECK_EVERY != 0 {
            return;
        }
        let entries: Vec<NodeInfo> = self.state.table().entries().collect();
        let turn = usize::try_from(self.round / SELF_CHECK_EVERY).unwrap_or(0);
        let Some(via) = entries.get(turn % entries.len().max(1)).copied() else {
            return;
        };
        let hops = u8::try_from(self.config.max_hops).unwrap_or(u8::MAX);
        let (request, wait) = super::route_request(me, hops, self.config.call_timeout);
        self.call(via.into(), request, Some(wait), Waiting::SelfCheck);
    }

    /// The end of a route of this node's own id.
    pub(super) fn self_checked(&mut self, via: Target, result: Result<Message>) {
        let hops = u8::try_from(self.config.max_hops).unwrap_or(u8::MAX);
        let Ok((path, _)) = result.and_then(|reply| super::route_answer(via.addr, hops, reply))
        else {
            return; // a failed route says nothing of this node's place
        };
        match path.last() {
            Some(end) if end.id != self.me.id => {
                log::info!("node {}: a route of its own id ends at {end}", self.me);
                self.exchange_with(*end, true);
            }
            _ => {}
        }
    }

    /// Routing-table maintenance (the Pastry paper's periodic refresh): each round, one entry
    /// of each non-empty row, taken in turn, is asked for its rows as a joining node asks
    /// (rows `0..=r` of a node sharing `r` digits with this one, and its leaf set). The answer
    /// fills routing-table cells live nodes could fill (the leaf set is left to the exchanges
    /// with neighbours: second-hand rows may hold nodes that are gone); an entry that does not
    /// answer is dropped like any dead node. Each entry is thus checked within 15 rounds.
    pub(super) fn refresh_table(&mut self) {
        let turn = usize::try_from(self.round % 16).unwrap_or(0);
        let picks: Vec<NodeInfo> = (0..DIGITS)
            .filter_map(|r| {
                let row: Vec<NodeInfo> = self
                    .state
                    .table()
                    .row(r)
                    .iter()
                    .flatten()
                    .copied()
                    .collect();
                (!row.is_empty()).then(|| row[turn % row.len()])
            })
            .collect();
        let request = Message::JoinHop {
            joiner: self.me,
            exclude: Vec::new(),
        };
        for node in picks {
            self.call(node.into(), request.clone(), None, Waiting::Refresh);
        }
    }

    /// A routing-table entry's answer to the refresh.
    pub(super) fn refreshed(&mut self, now: Instant, to: Target, result: Result<Message>) {
        match result {
            Ok(Message::JoinState {
                node,
                rows,
                leaf_set,
                ..
            }) if Some(node.id) == to.id => {
                self.health.heard_from(node.id);
                // Rows are second hand and may hold nodes long gone: a candidate for a
                // cell is asked whether it is alive first (the best one per cell).
                let me = self.me.id;
                let table = self.state.table();
                let mut candidates: Vec<NodeInfo> = Vec::new();
                for n in rows.into_iter().chain(leaf_set) {
                    if n.id == me || self.health.is_dead(n.id, now) || !table.would_take(n) {
                        continue;
                    }
                    let cell = RoutingTable::cell_of(me, n.id);
                    match candidates
                        .iter_mut()
                        .find(|c| RoutingTable::cell_of(me, c.id) == cell)
                    {
                        Some(held) if table.prefers(n.id, held.id) => *held = n,
                        Some(_) => {}
                        None => candidates.push(n),
                    }
                }
                for n in candidates {
                    self.call(n.into(), Message::Ping, None, Waiting::Vouch(None));
                }
            }
            Ok(_) => self.suspect(now, to, &another_node_answers(to)),
            Err(e) => self.suspect(now, to, &e),
        }
    }
}

/// The evidence that the node at `to` is gone when something else answers at its address.
pub(super) fn another_node_answers(to: Target) -> Error {
    Error::Refused {
        addr: to.addr,
        code: RemoteCode::NotJoined,
        message: "another node answers at this address".into(),
    }
}
