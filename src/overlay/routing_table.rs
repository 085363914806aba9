//! The routing table: 4 rows of 16 columns, one row per shared hex prefix length.

use crate::id::{Id, NodeInfo, BASE, DIGITS};

/// `DIGITS` rows by `BASE` columns. Row `r` holds nodes sharing exactly `r` leading digits with
/// this node; column `c` of row `r` holds one whose digit `r` is `c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingTable {
    own: Id,
    /// The filled cells, by `row * BASE + column`, sorted and kept to their number: of the
    /// 64 cells, a network of hundreds fills a few dozen.
    cells: Vec<(u8, NodeInfo)>,
}

impl RoutingTable {
    /// An empty table for node `own`.
    pub fn new(own: Id) -> RoutingTable {
        RoutingTable {
            own,
            cells: Vec::new(),
        }
    }

    /// The cell (row, column) that `id` belongs in, or `None` for `own` itself.
    pub fn cell_of(own: Id, id: Id) -> Option<(usize, usize)> {
        let row = own.shared_prefix(id);
        (row < DIGITS).then(|| (row, id.digit(row)))
    }

    /// Where cell (`row`, `col`) is, or would be, among the filled ones.
    fn place(&self, row: usize, col: usize) -> Result<usize, usize> {
        let index = (row * BASE + col) as u8;
        self.cells.binary_search_by_key(&index, |(i, _)| *i)
    }

    /// The entry at `row`, `col` (both in range, else `None`).
    pub fn get(&self, row: usize, col: usize) -> Option<NodeInfo> {
        if row >= DIGITS || col >= BASE {
            return None;
        }
        self.place(row, col).ok().map(|at| self.cells[at].1)
    }

    /// The entries of row `row`, by column.
    pub fn row(&self, row: usize) -> [Option<NodeInfo>; BASE] {
        let row = row.min(DIGITS - 1);
        std::array::from_fn(|col| self.get(row, col))
    }

    /// Every entry, row by row.
    pub fn entries(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.cells.iter().map(|(_, node)| *node)
    }

    /// The entries of rows `0..=last` (clamped to the table).
    pub fn rows_upto(&self, last: usize) -> Vec<NodeInfo> {
        let end = (last.min(DIGITS - 1) + 1) * BASE;
        self.cells
            .iter()
            .take_while(|(i, _)| usize::from(*i) < end)
            .map(|(_, node)| *node)
            .collect()
    }

    /// Fills cell (`row`, `col`) with `node`, or empties it.
    fn set(&mut self, row: usize, col: usize, node: Option<NodeInfo>) {
        match (self.place(row, col), node) {
            (Ok(at), Some(node)) => self.cells[at].1 = node,
            (Ok(at), None) => {
                self.cells.remove(at);
                self.cells.shrink_to_fit();
            }
            (Err(at), Some(node)) => {
                self.cells.reserve_exact(1);
                self.cells.insert(at, ((row * BASE + col) as u8, node));
            }
            (Err(_), None) => {}
        }
    }

    /// Puts `node` in its cell if the cell is empty, holds the same id at another address, or
    /// holds a node farther from the cell's point than `node` (see
    /// [`prefers`](Self::prefers)). Returns whether the table changed.
    pub fn insert(&mut self, node: NodeInfo) -> bool {
        if !self.would_take(node) {
            return false;
        }
        if let Some((r, c)) = Self::cell_of(self.own, node.id) {
            self.set(r, c, Some(node));
        }
        true
    }

    /// Whether [`insert`](Self::insert) would change the table.
    pub fn would_take(&self, node: NodeInfo) -> bool {
        Self::cell_of(self.own, node.id).is_some_and(|(r, c)| match self.get(r, c) {
            None => true,
            Some(n) if n.id == node.id => n.addr != node.addr,
            Some(n) => self.prefers(node.id, n.id),
        })
    }

    /// Whether `a` is a better entry than `b` for the cell they share: nearer the cell's
    /// point, this node's own id with the cell's digit put in (ties keep `b`). Any node of
    /// the cell routes as well as another; the point spreads the choice. Were the first
    /// node heard of kept instead, every node's table would hold the overlay's oldest nodes,
    /// and each of those would keep a connection to nearly every node.
    pub fn prefers(&self, a: Id, b: Id) -> bool {
        let Some((row, col)) = Self::cell_of(self.own, a) else {
            return false;
        };
        let shift = 4 * (DIGITS - 1 - row);
        let point = (self.own.0 & !(0xf << shift)) | ((col as u16) << shift);
        a.0.abs_diff(point) < b.0.abs_diff(point)
    }

    /// Empties the cell holding `id`, if any. Returns whether it was there.
    pub fn remove(&mut self, id: Id) -> bool {
        let Some((r, c)) = Self::cell_of(self.own, id) else {
            return false;
        };
        if self.get(r, c).is_some_and(|n| n.id == id) {
            self.set(r, c, None);
            true
        } else {
            false
        }
    }

    /// Whether `id` is in the table.
    pub fn contains(&self, id: Id) -> bool {
        Self::cell_of(self.own, id)
            .and_then(|(r, c)| self.get(r, c))
            .is_some_and(|n| n.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::loopback_node as node;

    #[test]
    fn a_cell_keeps_the_node_nearest_its_point() {
        // Cell (0, 5) of 0x1234 is best held by 0x5234.
        let mut table = RoutingTable::new(Id(0x1234));
        assert!(table.insert(node(0x5000)));
        assert!(table.would_take(node(0x5300)) && table.insert(node(0x5300)));
        assert_eq!(table.get(0, 5).map(|n| n.id), Some(Id(0x5300)));
        // Farther from the point than the entry, or as far: kept out.
        assert!(!table.would_take(node(0x5100)) && !table.insert(node(0x5100)));
        assert!(!table.insert(node(0x5168))); // 0xcc below the point, as far as 0x5300 above
        assert!(
            !table.insert(node(0x5300)),
            "the same node again changes nothing"
        );
        assert!(table.insert(node(0x5234)));
        // Deeper rows have their own points: cell (2, 0xa) is best held by 0x12a4.
        assert!(table.insert(node(0x12a0)));
        assert!(table.insert(node(0x12a4)));
        assert!(!table.insert(node(0x12a3)));
        assert!(table.contains(Id(0x12a4)) && !table.contains(Id(0x12a0)));
        // Two nodes with the same cell choose different entries among the same candidates.
        let mut other = RoutingTable::new(Id(0x1fff));
        for id in [0x5000, 0x5300, 0x5100, 0x5234, 0x5ff0] {
            other.insert(node(id));
        }
        assert_eq!(other.get(0, 5).map(|n| n.id), Some(Id(0x5ff0)));
    }
}
