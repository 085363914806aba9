//! The invariants of a settled overlay, checked by brute force against the simulator's
//! complete knowledge of who is alive: every leaf set is exactly the `l` nearest live members
//! on each side; every routing-table entry is live and in its cell, and every cell some live
//! member could fill is filled; every member names as the other holders of its own id's
//! copies the `k - 1` best-placed live members (the holders the store writes to); every
//! lookup ends at the live member responsible for its key.

use std::fmt;

use crate::id::{Id, Key, NodeInfo, BASE, DIGITS};
use crate::overlay::RoutingTable;
use crate::protocol::membership::Phase;

use super::Sim;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The node whose state breaks it.
    pub node: Id,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}: {}", self.node, self.what)
    }
}

/// Which prefixes the live members' ids cover: `covered[r]` has a bit for every prefix of
/// `r + 1` digits.
struct Prefixes {
    covered: Vec<Vec<bool>>,
}

impl Prefixes {
    fn of(ids: &[Id]) -> Prefixes {
        let mut covered: Vec<Vec<bool>> =
            (0..DIGITS).map(|r| vec![false; BASE << (4 * r)]).collect();
        for id in ids {
            for (r, row) in covered.iter_mut().enumerate() {
                row[usize::from(id.0 >> (4 * (DIGITS - 1 - r)))] = true;
            }
        }
        Prefixes { covered }
    }

    /// Whether a live member shares `own`'s first `row` digits and has `col` as the next.
    fn fillable(&self, own: Id, row: usize, col: usize) -> bool {
        let head = if row == 0 {
            0
        } else {
            usize::from(own.0 >> (4 * (DIGITS - row)))
        };
        self.covered[row][head << 4 | col]
    }
}

impl Sim {
    /// Checks the invariants of a settled overlay; returns every violation (none when the
    /// overlay is as it should be). Lookups are checked as they end: see
    /// [`check_lookups`](Self::check_lookups).
    pub fn check(&self) -> Vec<Violation> {
        let members: Vec<NodeInfo> = self
            .live
            .values()
            .map(|slot| &self.nodes[*slot].core)
            .filter(|core| core.phase() == Phase::Joined)
            .map(|core| core.me())
            .collect();
        let mut out = Vec::new();
        let joining = self.live.len() - members.len();
        if joining > 0 {
            out.push(Violation {
                node: Id(0),
                what: format!("{joining} live nodes have not joined"),
            });
        }
        let ids: Vec<Id> = members.iter().map(|n| n.id).collect();
        let prefixes = Prefixes::of(&ids);
        let l = self.config.leaf_half;
        for (at, me) in members.iter().enumerate() {
            let state = self.nodes[self.live[&me.id]].core.state();
            let leaf = state.leaf_set();
            let others = members.len() - 1;
            let cw: Vec<NodeInfo> = (1..=others.min(l))
                .map(|i| members[(at + i) % members.len()])
                .collect();
            let ccw: Vec<NodeInfo> = (1..=others.min(l))
                .map(|i| members[(at + members.len() - i) % members.len()])
                .collect();
            if leaf.cw() != cw.as_slice() || leaf.ccw() != ccw.as_slice() {
                out.push(Violation {
                    node: me.id,
                    what: format!(
                        "leaf set cw {:?} ccw {:?}, should be cw {:?} ccw {:?}",
                        ids_of(leaf.cw()),
                        ids_of(leaf.ccw()),
                        ids_of(&cw),
                        ids_of(&ccw)
                    ),
                });
            }
            // The holders of the copies of a key this node is responsible for (its own id).
            // The best placed are the nearest: at most `k - 1` on each side.
            let k = self.config.replicas;
            let near = (k - 1).min(members.len() - 1);
            let mut best: Vec<Id> = (1..=near)
                .flat_map(|i| {
                    [
                        ids[(at + i) % ids.len()],
                        ids[(at + ids.len() - i) % ids.len()],
                    ]
                })
                .collect();
            best.sort_by(|a, b| a.cmp_for_key(*b, me.id));
            best.dedup();
            let want: Vec<Id> = best
                .into_iter()
                .filter(|id| *id != me.id)
                .take(k.saturating_sub(1))
                .collect();
            let core = &self.nodes[self.live[&me.id]].core;
            let named: Vec<Id> = core.other_replicas(me.id).iter().map(|n| n.id).collect();
            if named != want {
                out.push(Violation {
                    node: me.id,
                    what: format!(
                        "names {named:?} as the other holders of its id, should be {want:?}"
                    ),
                });
            }
            let table = state.table();
            for row in 0..DIGITS {
                for col in 0..BASE {
                    let entry = table.get(row, col);
                    if let Some(e) = entry {
                        let live = self.live.get(&e.id).map(|s| &self.nodes[*s].core);
                        if !live.is_some_and(|c| c.me() == e && c.phase() == Phase::Joined) {
                            out.push(Violation {
                                node: me.id,
                                what: format!("table cell ({row}, {col}) holds {e}, not a member"),
                            });
                        }
                        if RoutingTable::cell_of(me.id, e.id) != Some((row, col)) {
                            out.push(Violation {
                                node: me.id,
                                what: format!("table cell ({row}, {col}) holds {e}, out of place"),
                            });
                        }
                    } else if col != me.id.digit(row) && prefixes.fillable(me.id, row, col) {
                        out.push(Violation {
                            node: me.id,
                            what: format!("table cell ({row}, {col}) empty, a member fits"),
                        });
                    }
                }
            }
        }
        out.extend(self.check_objects(&members));
        out
    }

    /// The live member responsible for `key`: the numerically closest.
    pub fn responsible(&self, key: Key) -> Option<Id> {
        responsible_among(&self.members(), key)
    }

    /// Checks ended lookups: each must have succeeded and ended at the live member
    /// responsible for its key.
    pub fn check_lookups(&self, ended: &[super::LookupEnd]) -> Vec<Violation> {
        let members = self.members();
        let mut out = Vec::new();
        for end in ended {
            let what = match &end.path {
                Err(e) => format!("lookup of {} failed: {e}", end.key),
                Ok(path) => {
                    let last = path.last().map(|n| n.id);
                    let responsible = responsible_among(&members, end.key);
                    if last == responsible {
                        continue;
                    }
                    format!(
                        "lookup of {} ended at {:?}, responsible is {:?}",
                        end.key, last, responsible
                    )
                }
            };
            out.push(Violation {
                node: end.from,
                what,
            });
        }
        out
    }
}

/// The member of `sorted` responsible for `key`: the nearest on one side or the other.
fn responsible_among(sorted: &[Id], key: Key) -> Option<Id> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let at = sorted.partition_point(|id| *id < key);
    crate::id::responsible(key, [sorted[at % n], sorted[(at + n - 1) % n]])
}

fn ids_of(nodes: &[NodeInfo]) -> Vec<String> {
    nodes.iter().map(|n| n.id.to_string()).collect()
}
