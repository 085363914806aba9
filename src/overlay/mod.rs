//! The overlay state of one node, and the routing decision: pure data, no I/O, no clock.

mod leaf_set;
mod routing_table;

pub use leaf_set::{LeafSet, DEFAULT_LEAF_HALF};
pub use routing_table::RoutingTable;

use crate::id::{Id, Key, NodeInfo};

/// What one node knows of the overlay: itself, its leaf set and its routing table.
#[derive(Clone, Debug)]
pub struct OverlayState {
    me: NodeInfo,
    leaf_set: LeafSet,
    table: RoutingTable,
}

impl OverlayState {
    /// The state of a node that knows nobody yet.
    pub fn new(me: NodeInfo, leaf_half: usize) -> OverlayState {
        OverlayState {
            me,
            leaf_set: LeafSet::new(me.id, leaf_half),
            table: RoutingTable::new(me.id),
        }
    }

    /// This node.
    pub fn me(&self) -> NodeInfo {
        self.me
    }

    /// The leaf set.
    pub fn leaf_set(&self) -> &LeafSet {
        &self.leaf_set
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Takes `node` into the leaf set and routing table wherever it fits. Returns whether
    /// anything changed.
    pub fn learn(&mut self, node: NodeInfo) -> bool {
        let leaf = self.leaf_set.insert(node);
        let table = self.table.insert(node);
        leaf || table
    }

    /// Takes `node` into the routing table only, where it fits: for nodes heard of second
    /// hand from another node's rows, which may be out of date. The leaf set takes only what
    /// its neighbours, checked every round, tell of.
    pub fn learn_for_table(&mut self, node: NodeInfo) -> bool {
        self.table.insert(node)
    }

    /// Removes `id` from the leaf set and routing table. Returns whether it was known.
    pub fn forget(&mut self, id: Id) -> bool {
        let leaf = self.leaf_set.remove(id);
        let table = self.table.remove(id);
        leaf || table
    }

    /// Offers every known node to the leaf set again, after a member was dropped with no
    /// replacement in sight: a short side claims the whole ring, so it must not stay short
    /// while other nodes are known. Exact repair asks the neighbours; this is the best that
    /// local knowledge can do.
    pub fn refill_leaf_set(&mut self) {
        // Both sides and the table: in a small network one side refills from the other.
        for n in self.known() {
            self.leaf_set.insert(n);
        }
    }

    /// Every node in the leaf set or routing table, once each.
    pub fn known(&self) -> Vec<NodeInfo> {
        let mut all = self.leaf_set.members();
        for n in self.table.entries() {
            if !all.iter().any(|m| m.id == n.id) {
                all.push(n);
            }
        }
        all
    }

    /// The nodes that keep copies of `key`: the `k` best placed for it by the responsibility
    /// rule among this node and its leaf set, best first. Meaningful where the leaf set
    /// covers `key` (a node computes it for keys near itself).
    pub fn replica_set(&self, key: Key, k: usize) -> Vec<NodeInfo> {
        // The k best kept in order as the candidates go by: every lookup's last step asks for
        // this, and sorting the whole leaf set for three of its members cost more than the
        // rest of the step.
        let mut best: Vec<NodeInfo> = Vec::with_capacity(k + 1);
        let sides = self.leaf_set.cw().iter().chain(self.leaf_set.ccw());
        for node in std::iter::once(&self.me).chain(sides) {
            let worst = best.last().filter(|_| best.len() >= k);
            if worst.is_some_and(|w| !node.id.closer_to(key, w.id)) {
                continue; // the common case once k are kept: one comparison
            }
            if best.iter().any(|b| b.id == node.id) {
                continue; // a node on both sides of a small ring
            }
            let at = best.partition_point(|b| b.id.closer_to(key, node.id));
            best.insert(at, *node);
            best.truncate(k);
        }
        best
    }

    /// [`replica_set`](Self::replica_set) when this node can be sure of it (assuming its leaf
    /// set is correct): the leaf set covers `key`, and no node beyond it could be better
    /// placed than a member of the set. `None` when the set reaches the far end of a full
    /// side (an unseen node just beyond might belong in it): the node responsible for `key`
    /// knows, since it sees `l` nodes each side and the `k <= l + 1` holders of its keys lie
    /// within `k - 1` of it.
    pub fn exact_replica_set(&self, key: Key, k: usize) -> Option<Vec<NodeInfo>> {
        if !self.leaf_set.covers(key) {
            return None;
        }
        let set = self.replica_set(key, k);
        if self.leaf_set.knows_all() {
            return Some(set);
        }
        // An unseen node lies beyond a side's farthest member, so farther from `key` than it
        // (the key is within the span): it could displace the set's worst member only if that
        // one is farther still.
        let worst = set.last().map_or(0, |w| w.id.distance(key));
        let unsure = |side: &[NodeInfo]| {
            side.last()
                .is_some_and(|far| set.contains(far) && far.id.distance(key) < worst)
        };
        (!unsure(self.leaf_set.cw()) && !unsure(self.leaf_set.ccw())).then_some(set)
    }

    /// The routing decision for `key`: the node to ask next, or `me` when this node is
    /// responsible. Nodes for which `excluded` is true (found unreachable) are never chosen.
    ///
    /// As in the Pastry paper: within the leaf set's span, the responsible node among the leaf
    /// set and `me`; else a node sharing one more digit with `key` (the routing-table entry for
    /// it, or a known node sharing more digits and nearer the key); else any known node sharing
    /// as many digits with `key` as `me` does and strictly closer to it.
    pub fn route(&self, key: Key, excluded: impl Fn(Id) -> bool) -> NodeInfo {
        let usable = |n: &NodeInfo| !excluded(n.id);
        let best = |a: NodeInfo, b: NodeInfo| {
            if b.id.closer_to(key, a.id) {
                b
            } else {
                a
            }
        };
        if self.leaf_set.covers_usable(key, |id| !excluded(id)) {
            let members = self.leaf_set.cw().iter().chain(self.leaf_set.ccw());
            return members.copied().filter(usable).fold(self.me, best);
        }
        let row = self.me.id.shared_prefix(key);
        if row >= crate::id::DIGITS {
            return self.me; // key == me: always covered, kept for totality
        }
        if let Some(entry) = self.table.get(row, key.digit(row)).filter(usable) {
            // Any known node sharing more digits will do; the one nearest the key is the
            // likeliest to hold the key in its leaf set's span and answer at the next step.
            // Of the table, only `entry` shares more digits with `key`. A node in row r shares
            // exactly r digits with this node: below `row` it leaves the key's digits sooner,
            // above it it has this node's digit `row`, not the key's, and in row `row` only
            // column `key.digit(row)` has the key's.
            let members = self.leaf_set.cw().iter().chain(self.leaf_set.ccw());
            return members
                .copied()
                .filter(|n| usable(n) && n.id.shared_prefix(key) > row)
                .fold(entry, best);
        }
        // The rare case: no entry for the next digit. Any node at least as far along the
        // prefix and nearer to the key still makes progress.
        let members = self.leaf_set.cw().iter().chain(self.leaf_set.ccw());
        members
            .copied()
            .chain(self.table.entries())
            .filter(|n| usable(n) && n.id.shared_prefix(key) >= row)
            .filter(|n| n.id.closer_to(key, self.me.id))
            .fold(self.me, best)
    }
}
