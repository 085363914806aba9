//! Failure detection and repair (Pastry paper §2.4): leaf-set neighbours exchange their leaf
//! sets every maintenance interval, which both checks that they are alive and fills gaps; a
//! node that fails to answer, here or in any protocol, is dropped from the tables, reported to
//! discovery, and its place in the leaf set refilled from the farthest live node on that side.

use std::time::Instant;

use crate::calls::discovery::DiscoveryLink;
use crate::calls::route::Target;
use crate::error::Error;
use crate::id::{Id, NodeInfo};
use crate::overlay::{OverlayState, RoutingTable};
use crate::protocol::health::Failure;
use crate::wire::{Message, RemoteCode};

use super::Inner;

impl Inner {
    /// Evidence that `target` failed while this node talked to it, in any protocol.
    pub(super) fn suspect(&self, target: Target, e: &Error) {
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
        let dead = self.health.lock().failed(id, failure, Instant::now());
        if dead {
            log::info!("node {}: {node} found dead: {e}", self.me);
            self.declare_dead(node);
        }
    }

    /// Whether `id` was found dead recently.
    pub(super) fn is_dead(&self, id: Id) -> bool {
        self.health.lock().is_dead(id, Instant::now())
    }

    /// `id` has spoken to this node: if it was only thought dead, it is alive after all.
    fn heard_from(&self, id: Id) {
        self.health.lock().heard_from(id);
    }

    /// `id` announced a new join: whatever was thought of it, it is a member again.
    pub(super) fn rejoined(&self, id: Id) {
        self.health.lock().rejoined(id);
    }

    /// Keeps `id`, which left gracefully, out of this node's tables for a while
    /// ([`DEAD_MEMORY`](crate::protocol::health::DEAD_MEMORY)) unless it joins again.
    pub(super) fn mark_departed(&self, id: Id) {
        self.health.lock().departed(id, Instant::now());
    }

    /// Drops a dead node everywhere, repairs the leaf set, tells discovery, and has the objects
    /// it held re-replicated.
    fn declare_dead(&self, node: NodeInfo) {
        let (was_leaf, far_ends, hole) = self.update_state(|state| {
            let was_leaf = state.leaf_set().contains(node.id);
            let hole = state
                .table()
                .contains(node.id)
                .then(|| RoutingTable::cell_of(self.me.id, node.id))
                .flatten();
            state.forget(node.id);
            let leaf = state.leaf_set();
            let far_ends: Vec<NodeInfo> = leaf
                .cw()
                .last()
                .into_iter()
                .chain(leaf.ccw().last())
                .copied()
                .collect();
            (was_leaf, far_ends, hole)
        });
        self.pool.forget(node.addr);
        if let Some((row, col)) = hole {
            self.refill_cell(row, col);
        }
        if was_leaf {
            // The farthest live node on each side knows the nodes just beyond our view.
            for far in far_ends {
                self.exchange_with(far);
            }
        }
        let discovery = *self.discovery.lock();
        if let Some(addr) = discovery {
            let link = DiscoveryLink {
                pool: &self.pool,
                addr,
            };
            if let Err(e) = link.deregister(node) {
                log::debug!("node {}: discovery not told {node} is dead: {e}", self.me);
            }
        }
    }

    /// Fills the routing-table cell (`row`, `col`) left empty by a dead node: any node that
    /// shares at least this node's first `row` digits (the rest of that row first, then the
    /// rows below, then the leaf set) has an entry for the cell that fits here too (the Pastry
    /// paper's repair). The first live answer wins.
    fn refill_cell(&self, row: usize, col: usize) {
        let peers: Vec<NodeInfo> = {
            let state = self.state.read();
            let mut peers: Vec<NodeInfo> = state.table().rows_upto(3).into_iter().collect();
            peers.retain(|p| self.me.id.shared_prefix(p.id) >= row);
            peers.sort_by_key(|p| self.me.id.shared_prefix(p.id));
            for m in state.leaf_set().members() {
                if self.me.id.shared_prefix(m.id) >= row && !peers.contains(&m) {
                    peers.push(m);
                }
            }
            peers
        };
        let request = Message::Cell {
            row: row as u8,
            col: col as u8,
        };
        for peer in peers {
            let Ok(Message::CellEntry { node: Some(entry) }) = self.pool.call(peer.addr, &request)
            else {
                continue;
            };
            if entry.id != self.me.id && !self.is_dead(entry.id) {
                let filled = self.update_state(|s| s.learn(entry));
                if filled {
                    log::debug!(
                        "node {}: cell ({row}, {col}) refilled with {entry}",
                        self.me
                    );
                    return;
                }
            }
        }
    }

    /// Changes the overlay state with `f`. A change of the leaf set (a join, a leave, a
    /// crash, several at once) starts the copy check: the best-placed holders of some keys
    /// may have changed, and every object must be back on exactly its best placed.
    pub(super) fn update_state<T>(&self, f: impl FnOnce(&mut OverlayState) -> T) -> T {
        let (out, changed) = {
            let mut state = self.state.write();
            let before = state.leaf_set().clone();
            let out = f(&mut state);
            (out, *state.leaf_set() != before)
        };
        if changed {
            self.wake_maintenance();
        }
        out
    }

    /// Takes `from` (a live node that spoke to us, if any) and the members of a leaf set
    /// into this node's tables, leaving out nodes recently found dead or gone.
    pub(super) fn learn_leaf_set_of(&self, from: Option<NodeInfo>, leaf_set: &[NodeInfo]) {
        if let Some(from) = from {
            self.heard_from(from.id);
        }
        let fresh: Vec<NodeInfo> = leaf_set
            .iter()
            .chain(&from)
            .filter(|n| n.id != self.me.id && !self.is_dead(n.id))
            .copied()
            .collect();
        self.update_state(|state| {
            for n in fresh {
                state.learn(n);
            }
        });
    }

    /// Exchanges leaf sets with every leaf-set member: the liveness check and the repair.
    pub(super) fn probe_neighbours(&self) {
        let members = self.state.read().leaf_set().members();
        for node in members {
            // A node that started leaving meanwhile must not present itself as a member.
            if *self.phase.lock() != super::Phase::Joined {
                return;
            }
            self.exchange_with(node);
        }
    }

    /// Routing-table maintenance (the Pastry paper's periodic refresh): each round, one entry
    /// of each non-empty row, taken in turn, is asked for its rows as a joining node asks
    /// (rows `0..=r` of a node sharing `r` digits with this one, and its leaf set). The answer
    /// fills routing-table cells live nodes could fill (the leaf set is left to the exchanges
    /// with neighbours: second-hand rows may hold nodes that are gone); an entry that does not
    /// answer is dropped like any dead node. Each entry is thus checked within 15 rounds.
    pub(super) fn refresh_table(&self, round: u64) {
        let picks: Vec<NodeInfo> = {
            let state = self.state.read();
            (0..crate::id::DIGITS)
                .filter_map(|r| {
                    let row: Vec<NodeInfo> =
                        state.table().row(r).iter().flatten().copied().collect();
                    let turn = usize::try_from(round % 16).unwrap_or(0);
                    (!row.is_empty()).then(|| row[turn % row.len()])
                })
                .collect()
        };
        let request = Message::JoinHop {
            joiner: self.me,
            exclude: Vec::new(),
        };
        for node in picks {
            if *self.phase.lock() != super::Phase::Joined {
                return;
            }
            match self.pool.call(node.addr, &request) {
                Ok(Message::JoinState {
                    node: from,
                    rows,
                    leaf_set,
                    ..
                }) if from.id == node.id => {
                    self.heard_from(from.id);
                    let fresh: Vec<NodeInfo> = rows
                        .into_iter()
                        .chain(leaf_set)
                        .filter(|n| n.id != self.me.id && !self.is_dead(n.id))
                        .collect();
                    self.update_state(|state| {
                        for n in fresh {
                            state.learn_for_table(n);
                        }
                    });
                }
                Ok(_) => self.suspect(node.into(), &another_node_answers(node)),
                Err(e) => self.suspect(node.into(), &e),
            }
        }
    }

    /// Exchanges leaf sets with `node`; a failure is evidence against it.
    fn exchange_with(&self, node: NodeInfo) {
        let request = Message::Exchange {
            node: self.me,
            leaf_set: self.state.read().leaf_set().members(),
        };
        match self.pool.call(node.addr, &request) {
            Ok(Message::LeafSet {
                node: from,
                leaf_set,
            }) if from.id == node.id => {
                self.health.lock().answered(node.id);
                self.learn_leaf_set_of(Some(from), &leaf_set);
            }
            // Another node answers at that address: the one we knew is gone.
            Ok(_) => self.suspect(node.into(), &another_node_answers(node)),
            Err(e) => self.suspect(node.into(), &e),
        }
    }

    /// Reminds discovery that this node is alive, so that a restarted discovery relearns it.
    pub(super) fn heartbeat_discovery(&self) {
        let discovery = *self.discovery.lock();
        if let Some(addr) = discovery {
            let link = DiscoveryLink {
                pool: &self.pool,
                addr,
            };
            if let Err(e) = link.alive(self.me) {
                log::debug!("node {}: discovery unreachable: {e}", self.me);
            }
        }
    }
}

/// The evidence that `node` is gone when something else answers at its address.
fn another_node_answers(node: NodeInfo) -> Error {
    Error::Refused {
        addr: node.addr,
        code: RemoteCode::NotJoined,
        message: "another node answers at this address".into(),
    }
}
