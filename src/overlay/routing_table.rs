//! The routing table: 4 rows of 16 columns, one row per shared hex prefix length.

use crate::id::{Id, NodeInfo, BASE, DIGITS};

/// `DIGITS` rows by `BASE` columns. Row `r` holds nodes sharing exactly `r` leading digits with
/// this node; column `c` of row `r` holds one whose digit `r` is `c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingTable {
    own: Id,
    cells: [[Option<NodeInfo>; BASE]; DIGITS],
}

impl RoutingTable {
    /// An empty table for node `own`.
    pub fn new(own: Id) -> RoutingTable {
        RoutingTable {
            own,
            cells: [[None; BASE]; DIGITS],
        }
    }

    /// The cell (row, column) that `id` belongs in, or `None` for `own` itself.
    pub fn cell_of(own: Id, id: Id) -> Option<(usize, usize)> {
        let row = own.shared_prefix(id);
        (row < DIGITS).then(|| (row, id.digit(row)))
    }

    /// The entry at `row`, `col` (both in range, else `None`).
    pub fn get(&self, row: usize, col: usize) -> Option<NodeInfo> {
        *self.cells.get(row)?.get(col)?
    }

    /// The entries of row `row`, by column.
    pub fn row(&self, row: usize) -> &[Option<NodeInfo>; BASE] {
        &self.cells[row.min(DIGITS - 1)]
    }

    /// Every entry, row by row.
    pub fn entries(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.cells.iter().flatten().flatten().copied()
    }

    /// The entries of rows `0..=last` (clamped to the table).
    pub fn rows_upto(&self, last: usize) -> Vec<NodeInfo> {
        self.cells[..=last.min(DIGITS - 1)]
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect()
    }

    /// Puts `node` in its cell if the cell is empty (or holds the same id at another address).
    /// Returns whether the table changed. An occupied cell keeps its entry: a node already in
    /// use is as good as a new one, and keeping it avoids churn.
    pub fn insert(&mut self, node: NodeInfo) -> bool {
        let Some((r, c)) = Self::cell_of(self.own, node.id) else {
            return false;
        };
        match &mut self.cells[r][c] {
            Some(known) if known.id == node.id && known.addr != node.addr => {
                known.addr = node.addr;
                true
            }
            Some(_) => false,
            empty => {
                *empty = Some(node);
                true
            }
        }
    }

    /// Whether [`insert`](Self::insert) would change the table: `node`'s cell is empty, or
    /// holds its id at another address.
    pub fn would_take(&self, node: NodeInfo) -> bool {
        Self::cell_of(self.own, node.id).is_some_and(|(r, c)| match self.cells[r][c] {
            None => true,
            Some(n) => n.id == node.id && n.addr != node.addr,
        })
    }

    /// Empties the cell holding `id`, if any. Returns whether it was there.
    pub fn remove(&mut self, id: Id) -> bool {
        let Some((r, c)) = Self::cell_of(self.own, id) else {
            return false;
        };
        let cell = &mut self.cells[r][c];
        if cell.is_some_and(|n| n.id == id) {
            *cell = None;
            true
        } else {
            false
        }
    }

    /// Whether `id` is in the table.
    pub fn contains(&self, id: Id) -> bool {
        Self::cell_of(self.own, id)
            .and_then(|(r, c)| self.cells[r][c])
            .is_some_and(|n| n.id == id)
    }
}
