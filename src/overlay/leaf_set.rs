//! The leaf set: the `l` nearest known nodes on each side of this node on the ring.

use crate::id::{Id, NodeInfo};

/// Default number of leaf-set members on each side (`|L| = 16`, as in the Pastry paper).
pub const DEFAULT_LEAF_HALF: usize = 8;

/// Up to `l` nearest nodes clockwise and `l` counter-clockwise of `own`.
///
/// In a network of fewer than `2l + 1` nodes both sides may hold the same nodes; a side with
/// fewer than `l` members, or sides that meet, mean the set knows every node, and its span is
/// the whole ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSet {
    own: Id,
    half: usize,
    /// Nearest first, by clockwise distance from `own`.
    cw: Vec<NodeInfo>,
    /// Nearest first, by counter-clockwise distance from `own`.
    ccw: Vec<NodeInfo>,
}

impl LeafSet {
    /// An empty leaf set for node `own`, keeping `half` members on each side.
    pub fn new(own: Id, half: usize) -> LeafSet {
        LeafSet {
            own,
            half,
            cw: Vec::with_capacity(half + 1),
            ccw: Vec::with_capacity(half + 1),
        }
    }

    /// The id this leaf set is centred on.
    pub fn own(&self) -> Id {
        self.own
    }

    /// How many members each side keeps (`l`).
    pub fn half(&self) -> usize {
        self.half
    }

    /// The clockwise side (larger ids, wrapping), nearest first.
    pub fn cw(&self) -> &[NodeInfo] {
        &self.cw
    }

    /// The counter-clockwise side (smaller ids, wrapping), nearest first.
    pub fn ccw(&self) -> &[NodeInfo] {
        &self.ccw
    }

    /// Every member once (a node on both sides is listed once), clockwise side first.
    pub fn members(&self) -> Vec<NodeInfo> {
        let mut all = self.cw.clone();
        for n in &self.ccw {
            if !all.iter().any(|m| m.id == n.id) {
                all.push(*n);
            }
        }
        all
    }

    /// Whether `id` is on either side.
    pub fn contains(&self, id: Id) -> bool {
        self.cw.iter().chain(&self.ccw).any(|n| n.id == id)
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        self.cw.is_empty() && self.ccw.is_empty()
    }

    /// Offers `node` to both sides; it stays on each side where it is among the `l` nearest.
    /// Returns whether the set changed. A known id with a new address takes the new address.
    pub fn insert(&mut self, node: NodeInfo) -> bool {
        if node.id == self.own || self.half == 0 {
            return false;
        }
        let own = self.own;
        let cw = offer(&mut self.cw, self.half, node, |id| own.cw_distance(id));
        let ccw = offer(&mut self.ccw, self.half, node, |id| id.cw_distance(own));
        cw || ccw
    }

    /// Whether `id`, not a member, would enter the set if offered: it is nearer than the
    /// farthest member of a side, or a side has room.
    pub fn would_take(&self, id: Id) -> bool {
        if id == self.own || self.contains(id) {
            return false;
        }
        let own = self.own;
        let fits = |side: &[NodeInfo], dist: &dyn Fn(Id) -> u16| {
            side.partition_point(|n| dist(n.id) < dist(id)) < self.half
        };
        fits(&self.cw, &|x| own.cw_distance(x)) || fits(&self.ccw, &|x| x.cw_distance(own))
    }

    /// Removes `id` from both sides. Returns whether it was there.
    pub fn remove(&mut self, id: Id) -> bool {
        let before = self.cw.len() + self.ccw.len();
        self.cw.retain(|n| n.id != id);
        self.ccw.retain(|n| n.id != id);
        before != self.cw.len() + self.ccw.len()
    }

    /// Whether the set knows every node of the overlay (assuming it is correct): it is
    /// alone, a side holds fewer than `l` members, or the sides meet.
    pub fn knows_all(&self) -> bool {
        let (Some(cw_last), Some(ccw_last)) = (self.cw.last(), self.ccw.last()) else {
            return true;
        };
        self.cw.len() < self.half
            || self.ccw.len() < self.half
            || self.own.cw_distance(cw_last.id) >= self.own.cw_distance(ccw_last.id)
    }

    /// Whether the set knows every node between its farthest members, so that the node
    /// responsible for `key` is among its members or `own` (assuming the set is correct).
    pub fn covers(&self, key: Id) -> bool {
        self.covers_usable(key, |_| true)
    }

    /// [`LeafSet::covers`] when only members for which `usable` holds may be used: the span
    /// ends at the farthest usable member on each side, since nothing is known beyond an
    /// unusable one.
    pub fn covers_usable(&self, key: Id, usable: impl Fn(Id) -> bool) -> bool {
        if self.knows_all() {
            return true;
        }
        let far = |side: &[NodeInfo]| {
            let mut usable_ids = side.iter().rev().map(|n| n.id).filter(|&id| usable(id));
            usable_ids.next().unwrap_or(self.own)
        };
        let (cw_far, ccw_far) = (far(&self.cw), far(&self.ccw));
        ccw_far.cw_distance(key) <= ccw_far.cw_distance(cw_far)
    }
}

/// Inserts `node` into `side` (sorted by `dist`, nearest first) if it is among the `half`
/// nearest; updates the address of a known id. Returns whether `side` changed.
fn offer(side: &mut Vec<NodeInfo>, half: usize, node: NodeInfo, dist: impl Fn(Id) -> u16) -> bool {
    if let Some(known) = side.iter_mut().find(|n| n.id == node.id) {
        let changed = known.addr != node.addr;
        known.addr = node.addr;
        return changed;
    }
    let d = dist(node.id);
    let at = side.partition_point(|n| dist(n.id) < d);
    if at >= half {
        return false;
    }
    side.insert(at, node);
    side.truncate(half);
    true
}
