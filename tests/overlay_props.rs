//! Property tests of the pure overlay core (ids, leaf set, routing table, routing decision)
//! against a brute-force oracle over random sets of live ids. Long because the oracle, the
//! generators and every property share one file, each property a few lines over the same
//! helpers.
//!
//! The oracle is written from DESIGN.md section 1 alone, independently of the library's code:
//! - `responsible(key, live)`: the live id with the least ring distance
//!   `min((a - k) mod 2^16, (k - a) mod 2^16)`; of two equally near, the LARGER id.
//! - the leaf set of `n` with half `l`: the clockwise side is the `min(l, N - 1)` other ids with
//!   the least `(other - n) mod 2^16`, nearest first; the counter-clockwise side the
//!   `min(l, N - 1)` others with the least `(n - other) mod 2^16`, nearest first.
//! - a routing-table entry `e` fits cell `(r, c)` of node `n` iff `prefix(e, n) == r`,
//!   `digit(e, r) == c` and `e != n`.
//!
//! Networks are built the way a settled network would be: each node starts alone and learns
//! every other live node in a random order (or, for the partial-knowledge tests, its exact
//! leaf set and then a random ~30% of the others).
//!
//! Every failure message names the seed, the case number and label, `l`, the ids, the key and
//! the path, so that a failing case can be copied into a named regression test.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use pastry::overlay::{LeafSet, RoutingTable};
use pastry::{key_of, responsible, Id, NodeInfo, OverlayState, Rng};

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

const RING: u32 = 1 << 16;

/// Clockwise distance from `from` to `to`: `(to - from) mod 2^16`.
fn cw(from: u16, to: u16) -> u32 {
    (u32::from(to) + RING - u32::from(from)) % RING
}

/// Ring distance: `min((a - b) mod 2^16, (b - a) mod 2^16)`.
fn ring_dist(a: u16, b: u16) -> u32 {
    cw(a, b).min(cw(b, a))
}

/// The live id nearest to `key`, ties to the larger id.
fn oracle_responsible(key: u16, live: &[u16]) -> Option<u16> {
    let mut best: Option<u16> = None;
    for &a in live {
        best = Some(match best {
            None => a,
            Some(b) => {
                let (da, db) = (ring_dist(a, key), ring_dist(b, key));
                if da < db || (da == db && a > b) {
                    a
                } else {
                    b
                }
            }
        });
    }
    best
}

/// The expected (clockwise, counter-clockwise) leaf-set sides of `n`, nearest first.
fn oracle_leaf(n: u16, live: &[u16], l: usize) -> (Vec<u16>, Vec<u16>) {
    let others: Vec<u16> = live.iter().copied().filter(|&o| o != n).collect();
    let take = l.min(others.len());
    // The `take` least of `others` by `dist`, in order.
    let nearest = |mut v: Vec<u16>, dist: &dyn Fn(u16) -> u32| {
        if take < v.len() {
            v.select_nth_unstable_by_key(take, |&o| dist(o));
            v.truncate(take);
        }
        v.sort_unstable_by_key(|&o| dist(o));
        v
    };
    let cw_side = nearest(others.clone(), &|o| cw(n, o));
    let ccw_side = nearest(others, &|o| cw(o, n));
    (cw_side, ccw_side)
}

/// Digit `r` (0 = most significant hex digit).
fn digit(id: u16, r: usize) -> usize {
    usize::from((id >> (12 - 4 * r)) & 0xf)
}

/// Number of equal leading hex digits.
fn prefix(a: u16, b: u16) -> usize {
    (0..4).take_while(|&r| digit(a, r) == digit(b, r)).count()
}

/// Whether `entry` belongs in cell `(r, c)` of node `n`'s routing table.
fn fits(n: u16, entry: u16, r: usize, c: usize) -> bool {
    entry != n && prefix(entry, n) == r && digit(entry, r) == c
}

/// CRC-16/XMODEM, bit by bit (poly 0x1021, init 0, no reflection, no final xor).
fn reference_crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

// ---------------------------------------------------------------------------------------------
// Test networks
// ---------------------------------------------------------------------------------------------

const LEAF_HALVES: [usize; 4] = [1, 2, 4, 8];
const SIZES: [usize; 11] = [1, 2, 3, 4, 5, 15, 16, 17, 33, 64, 300];
/// Hop bound for lookups in a network where every node knows every node.
const MAX_HOPS_FULL: usize = 8;

fn node(id: u16) -> NodeInfo {
    NodeInfo {
        id: Id(id),
        addr: SocketAddr::from(([127, 0, 0, 1], id)),
    }
}

fn hex(ids: &[u16]) -> String {
    let parts: Vec<String> = ids.iter().map(|i| format!("{i:04x}")).collect();
    parts.join(",")
}

fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
}

fn random_ids(rng: &mut Rng, n: usize) -> Vec<u16> {
    let mut set = BTreeSet::new();
    while set.len() < n {
        set.insert(rng.next_u64() as u16);
    }
    set.into_iter().collect()
}

/// `n` distinct ids within `spread` of `center` (wrapping round the ring).
fn clustered_ids(rng: &mut Rng, n: usize, center: u16, spread: u16) -> Vec<u16> {
    assert!(n <= usize::from(spread));
    let mut set = BTreeSet::new();
    while set.len() < n {
        let off = rng.below(usize::from(spread)) as u16;
        set.insert(center.wrapping_add(off).wrapping_sub(spread / 2));
    }
    set.into_iter().collect()
}

/// One set of live ids (sorted, distinct), with what is needed to name it in a failure.
struct Case {
    seed: u64,
    no: usize,
    label: String,
    ids: Vec<u16>,
}

impl Case {
    fn describe(&self) -> String {
        format!(
            "seed={:#x} case#{} '{}' N={} ids=[{}]",
            self.seed,
            self.no,
            self.label,
            self.ids.len(),
            hex(&self.ids)
        )
    }
}

/// Hand-picked sets, then random and clustered sets of every size in `SIZES`.
fn cases(seed: u64) -> Vec<Case> {
    let mut rng = Rng::seeded(seed);
    let mut list: Vec<(String, Vec<u16>)> = vec![
        ("single 0000".into(), vec![0x0000]),
        ("single ffff".into(), vec![0xffff]),
        ("antipodes".into(), vec![0x0000, 0x8000]),
        ("adjacent 0000,0001".into(), vec![0x0000, 0x0001]),
        ("adjacent over the wrap".into(), vec![0xffff, 0x0000]),
        ("adjacent 7fff,8000".into(), vec![0x7fff, 0x8000]),
        (
            "wrap cluster of 4".into(),
            vec![0xfffe, 0xffff, 0x0000, 0x0001],
        ),
        ("thirds".into(), vec![0x0000, 0x5555, 0xaaaa]),
        ("quarters".into(), vec![0x0000, 0x4000, 0x8000, 0xc000]),
        ("pair plus two".into(), vec![0x0000, 0x0100, 0x0101, 0x8000]),
        ("same top 3 digits".into(), (0x1230..=0x123f).collect()),
        ("deep pair plus far".into(), vec![0x1230, 0x1231, 0xf000]),
        (
            "one per top digit".into(),
            (0..16).map(|d| d << 12).collect(),
        ),
        (
            "32 round the wrap".into(),
            (0xfff0..=0xffff).chain(0x0000..=0x000f).collect(),
        ),
        (
            "odd and even gaps at wrap".into(),
            vec![0x0001, 0x0003, 0xfffd, 0xffff],
        ),
        ("prefix boundaries".into(), vec![0x1000, 0x1fff, 0x2000]),
        (
            "adjacent at digit boundaries".into(),
            vec![0x0fff, 0x1000, 0x7fff, 0x8000, 0xefff, 0xf000],
        ),
    ];
    for &n in &SIZES {
        let (random, clustered) = if n >= 300 { (2, 1) } else { (6, 2) };
        for rep in 0..random {
            list.push((format!("random n={n} #{rep}"), random_ids(&mut rng, n)));
        }
        for rep in 0..clustered {
            let spread = [64u16, 256, 1024, 4096]
                .into_iter()
                .find(|&s| usize::from(s) >= 2 * n)
                .unwrap_or(4096);
            // The first cluster of each size straddles the wrap; the others sit anywhere.
            let center = if rep == 0 { 0 } else { rng.next_u64() as u16 };
            let ids = clustered_ids(&mut rng, n, center, spread);
            list.push((
                format!("cluster n={n} around {center:04x} spread {spread} #{rep}"),
                ids,
            ));
        }
    }
    list.into_iter()
        .enumerate()
        .map(|(no, (label, mut ids))| {
            ids.sort_unstable();
            ids.dedup();
            Case {
                seed,
                no,
                label,
                ids,
            }
        })
        .collect()
}

/// Keys worth trying in `ids`: each id, its neighbours on the ring, the points halfway between
/// adjacent ids (a true tie when the gap is even), and the ends and middle of the ring.
fn special_keys(ids: &[u16]) -> Vec<(u16, &'static str)> {
    let mut keys = vec![(0x0000, "0000"), (0xffff, "ffff"), (0x8000, "8000")];
    for (i, &a) in ids.iter().enumerate() {
        keys.push((a, "node id"));
        keys.push((a.wrapping_add(1), "node id + 1"));
        keys.push((a.wrapping_sub(1), "node id - 1"));
        let b = ids[(i + 1) % ids.len()];
        let gap = if a == b { RING } else { cw(a, b) };
        let half = (gap / 2) as u16;
        if gap % 2 == 0 {
            keys.push((a.wrapping_add(half), "halfway, even gap (tie)"));
        } else {
            keys.push((a.wrapping_add(half), "halfway, odd gap (low)"));
            keys.push((
                a.wrapping_add(half).wrapping_add(1),
                "halfway, odd gap (high)",
            ));
        }
    }
    keys
}

/// The keys to look up in a network: the special keys (all of them in networks of up to 64
/// nodes, the three fixed ones and a random 400 of the rest otherwise) and 32 random keys.
fn lookup_keys(rng: &mut Rng, ids: &[u16]) -> Vec<(u16, &'static str)> {
    let mut keys = special_keys(ids);
    if ids.len() > 64 {
        shuffle(rng, &mut keys[3..]);
        keys.truncate(403);
    }
    keys.extend((0..32).map(|_| (rng.next_u64() as u16, "random")));
    keys
}

/// The states of one network, in the order of `case.ids`.
struct Net<'a> {
    case: &'a Case,
    l: usize,
    states: Vec<OverlayState>,
}

impl<'a> Net<'a> {
    /// Every node learns every other node, in a random order.
    fn full(case: &'a Case, l: usize, rng: &mut Rng) -> Net<'a> {
        let states = case
            .ids
            .iter()
            .map(|&me| {
                let mut st = OverlayState::new(node(me), l);
                let mut others: Vec<u16> = case.ids.iter().copied().filter(|&o| o != me).collect();
                shuffle(rng, &mut others);
                for o in others {
                    st.learn(node(o));
                }
                st
            })
            .collect();
        Net { case, l, states }
    }

    /// Every node learns its exact leaf set first, then a random ~30% of the others.
    fn partial(case: &'a Case, l: usize, rng: &mut Rng) -> Net<'a> {
        let states = case
            .ids
            .iter()
            .map(|&me| {
                let mut st = OverlayState::new(node(me), l);
                let (c, cc) = oracle_leaf(me, &case.ids, l);
                let mut leaf: Vec<u16> = c.iter().chain(&cc).copied().collect();
                shuffle(rng, &mut leaf);
                for &o in &leaf {
                    st.learn(node(o));
                }
                let mut others: Vec<u16> = case
                    .ids
                    .iter()
                    .copied()
                    .filter(|&o| o != me && !leaf.contains(&o))
                    .collect();
                shuffle(rng, &mut others);
                for o in others {
                    if rng.below(10) < 3 {
                        st.learn(node(o));
                    }
                }
                st
            })
            .collect();
        Net { case, l, states }
    }

    fn ctx(&self) -> String {
        format!("{} l={}", self.case.describe(), self.l)
    }

    fn state(&self, id: u16) -> Option<&OverlayState> {
        let i = self.case.ids.binary_search(&id).ok()?;
        Some(&self.states[i])
    }

    /// Follows `route` from `start` until a node answers itself. Returns the path (start first,
    /// responsible last), or what went wrong with the path so far.
    fn walk(
        &self,
        start: u16,
        key: u16,
        excluded: Option<u16>,
        max_hops: usize,
    ) -> Result<Vec<u16>, String> {
        let mut path = vec![start];
        loop {
            let cur = *path.last().expect("path is never empty");
            let st = self.state(cur).expect("walk only visits live nodes");
            let next = st.route(Id(key), |id| Some(id.0) == excluded);
            let nid = next.id.0;
            if nid == cur {
                if next != st.me() {
                    return Err(format!("{next} answered itself with a different address"));
                }
                return Ok(path);
            }
            path.push(nid);
            let fail = |what: &str| Err(format!("{what}; path=[{}]", hex(&path)));
            if Some(nid) == excluded {
                return fail("routed to the excluded node");
            }
            if next != node(nid) {
                return fail("routed with a wrong address");
            }
            if self.state(nid).is_none() {
                return fail("routed to a node that is not live");
            }
            if path[..path.len() - 1].contains(&nid) {
                return fail("visited a node twice");
            }
            if path.len() - 1 > max_hops {
                return fail(&format!("more than {max_hops} hops"));
            }
        }
    }

    /// Walks `key` from `starts` and checks that each lookup ends at `expected`. Returns the
    /// longest path's hop count.
    fn check_lookups(
        &self,
        starts: &[u16],
        key: u16,
        why: &str,
        excluded: Option<u16>,
        expected: u16,
        max_hops: usize,
    ) -> usize {
        let mut longest = 0;
        for &s in starts {
            let path = self.walk(s, key, excluded, max_hops).unwrap_or_else(|e| {
                panic!(
                    "{}: lookup of key {key:04x} ({why}) from {s:04x} excluding {:?}: {e}",
                    self.ctx(),
                    excluded.map(|x| format!("{x:04x}"))
                )
            });
            let end = *path.last().expect("path is never empty");
            assert_eq!(
                end,
                expected,
                "{}: lookup of key {key:04x} ({why}) from {s:04x} excluding {:?} ended at {end:04x}, \
                 expected {expected:04x}; path=[{}]",
                self.ctx(),
                excluded.map(|x| format!("{x:04x}")),
                hex(&path)
            );
            longest = longest.max(path.len() - 1);
        }
        longest
    }
}

fn ids_of(nodes: &[NodeInfo]) -> Vec<u16> {
    nodes.iter().map(|n| n.id.0).collect()
}

/// Checks both sides of `leaf` against the oracle over `live`.
fn assert_leaf_set(ctx: &str, me: u16, leaf: &LeafSet, live: &[u16], l: usize) {
    let (want_cw, want_ccw) = oracle_leaf(me, live, l);
    assert_eq!(
        ids_of(leaf.cw()),
        want_cw,
        "{ctx}: clockwise side of {me:04x} (got [{}], want [{}])",
        hex(&ids_of(leaf.cw())),
        hex(&want_cw)
    );
    assert_eq!(
        ids_of(leaf.ccw()),
        want_ccw,
        "{ctx}: counter-clockwise side of {me:04x} (got [{}], want [{}])",
        hex(&ids_of(leaf.ccw())),
        hex(&want_ccw)
    );
    for n in leaf.cw().iter().chain(leaf.ccw()) {
        assert_eq!(
            *n,
            node(n.id.0),
            "{ctx}: leaf member of {me:04x} has a wrong address"
        );
    }
    let members: BTreeSet<u16> = ids_of(&leaf.members()).into_iter().collect();
    let want: BTreeSet<u16> = want_cw.iter().chain(&want_ccw).copied().collect();
    assert_eq!(members, want, "{ctx}: members() of {me:04x}");
    assert_eq!(
        leaf.members().len(),
        want.len(),
        "{ctx}: members() of {me:04x} repeats a node"
    );
}

/// Checks that every entry of `st`'s table fits its cell and that every cell some id of `live`
/// fits is filled.
fn assert_table(ctx: &str, st: &OverlayState, live: &[u16]) {
    let me = st.me().id.0;
    let table = st.table();
    // Some live id that fits each cell, if any (one pass over the live ids).
    let mut fillable = [[None::<u16>; 16]; 4];
    for &o in live.iter().filter(|&&o| o != me) {
        let r = prefix(me, o);
        fillable[r][digit(o, r)].get_or_insert(o);
    }
    let mut cells = Vec::new();
    for (r, row) in fillable.iter().enumerate() {
        for (c, could) in row.iter().enumerate() {
            if let Some(e) = table.get(r, c) {
                assert!(
                    fits(me, e.id.0, r, c),
                    "{ctx}: table of {me:04x} holds {} at ({r},{c}), where it does not fit",
                    e.id
                );
                assert!(
                    live.contains(&e.id.0),
                    "{ctx}: table of {me:04x} holds dead {}",
                    e.id
                );
                assert_eq!(e, node(e.id.0), "{ctx}: table of {me:04x}: wrong address");
                cells.push(e.id.0);
            } else if let Some(could) = could {
                panic!(
                    "{ctx}: table of {me:04x}: cell ({r},{c}) is empty, but {could:04x} fits it"
                );
            }
        }
        let upto: Vec<u16> = ids_of(&table.rows_upto(r));
        assert_eq!(upto, cells, "{ctx}: rows_upto({r}) of {me:04x}");
    }
    let entries: Vec<u16> = table.entries().map(|n| n.id.0).collect();
    assert_eq!(entries, cells, "{ctx}: entries() of {me:04x}");
    assert_eq!(table.get(4, 0), None, "{ctx}: row 4 is out of range");
    assert_eq!(table.get(0, 16), None, "{ctx}: column 16 is out of range");
}

// ---------------------------------------------------------------------------------------------
// 1. Leaf sets
// ---------------------------------------------------------------------------------------------

/// The `k` live ids best placed for `key`, best first: nearest, ties to the larger id.
fn oracle_replicas(key: u16, live: &[u16], k: usize) -> Vec<u16> {
    let mut all = live.to_vec();
    all.sort_by_key(|&a| (ring_dist(a, key), std::cmp::Reverse(a)));
    all.truncate(k);
    all
}

#[test]
fn exact_replica_sets_match_the_oracle_and_the_responsible_node_always_knows() {
    const SEED: u64 = 0x4e91_1ca5;
    let mut rng = Rng::seeded(SEED ^ 1);
    let (mut exact, mut unsure) = (0usize, 0usize);
    for case in cases(SEED).into_iter().filter(|c| c.ids.len() <= 64) {
        for &l in &LEAF_HALVES {
            let net = Net::full(&case, l, &mut rng);
            for (key, what) in special_keys(&case.ids) {
                for k in 1..=l + 1 {
                    let want = oracle_replicas(key, &case.ids, k);
                    for st in &net.states {
                        let me = st.me().id.0;
                        let got = st.exact_replica_set(Id(key), k).map(|s| ids_of(&s));
                        match got {
                            Some(got) => {
                                exact += 1;
                                assert_eq!(
                                    got,
                                    want,
                                    "{}: k={k} key {key:04x} ({what}) at {me:04x}",
                                    net.ctx()
                                );
                            }
                            None => {
                                unsure += 1;
                                assert_ne!(
                                    Some(me),
                                    want.first().copied(),
                                    "{}: the responsible node {me:04x} unsure of key {key:04x} \
                                     ({what}), k={k}",
                                    net.ctx()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        exact > 100_000 && unsure > 1000,
        "{exact} exact, {unsure} unsure"
    );
}

/// Every node's replica set, sure or not, is the best `k` of itself and its leaf set by the
/// responsibility rule, best first (as a full sort of them gives it).
#[test]
fn replica_sets_are_the_best_of_the_node_and_its_leaf_set() {
    const SEED: u64 = 0x7e91_1ca5;
    let mut rng = Rng::seeded(SEED ^ 1);
    let mut checked = 0usize;
    for case in cases(SEED).into_iter().filter(|c| c.ids.len() <= 64) {
        for &l in &LEAF_HALVES {
            let net = Net::full(&case, l, &mut rng);
            for (key, what) in special_keys(&case.ids) {
                for st in &net.states {
                    let mut known: Vec<u16> = ids_of(&st.leaf_set().members());
                    known.push(st.me().id.0);
                    for k in 1..=l + 2 {
                        let want = oracle_replicas(key, &known, k);
                        let got = ids_of(&st.replica_set(Id(key), k));
                        assert_eq!(got, want, "{}: k={k} key {key:04x} ({what})", net.ctx());
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked} checked");
}

#[test]
fn leaf_sets_match_oracle() {
    const SEED: u64 = 0x1eaf_5e75;
    let mut rng = Rng::seeded(SEED ^ 1);
    let mut checked = 0;
    for case in cases(SEED) {
        for &l in &LEAF_HALVES {
            let net = Net::full(&case, l, &mut rng);
            for st in &net.states {
                let me = st.me().id.0;
                assert_eq!(st.me(), node(me));
                let leaf = st.leaf_set();
                assert_eq!((leaf.own(), leaf.half()), (Id(me), l), "{}", net.ctx());
                assert_leaf_set(&net.ctx(), me, leaf, &case.ids, l);
                checked += 1;
            }
        }
    }
    assert!(checked > 5000, "only {checked} leaf sets checked");
}

#[test]
fn leaf_set_alone_matches_oracle_under_insert_and_remove() {
    // The same property on `LeafSet` by itself: inserting every id (in a random order) gives the
    // oracle; re-inserting changes nothing; after removing a random half and offering the
    // survivors again, the sides are exactly the oracle over the survivors.
    const SEED: u64 = 0x1eaf_0001;
    let mut rng = Rng::seeded(SEED);
    for round in 0..400 {
        let n = 1 + rng.below(40);
        let ids = random_ids(&mut rng, n);
        let me = ids[rng.below(n)];
        let l = LEAF_HALVES[rng.below(4)];
        let ctx = format!(
            "seed={SEED:#x} round {round} me={me:04x} l={l} ids=[{}]",
            hex(&ids)
        );
        let mut leaf = LeafSet::new(Id(me), l);
        assert!(
            leaf.is_empty() && leaf.covers(Id(rng.next_u64() as u16)),
            "{ctx}"
        );
        let mut order = ids.clone();
        shuffle(&mut rng, &mut order);
        for &o in &order {
            leaf.insert(node(o));
        }
        assert_leaf_set(&ctx, me, &leaf, &ids, l);
        for &o in &order {
            assert!(
                !leaf.insert(node(o)),
                "{ctx}: re-inserting {o:04x} changed the set"
            );
        }
        // Remove a random half; re-offer the survivors: the oracle over the survivors.
        let mut live = ids.clone();
        shuffle(&mut rng, &mut live);
        let gone = live.split_off(n / 2);
        for &g in &gone {
            let was = leaf.contains(Id(g));
            assert_eq!(leaf.remove(Id(g)), was, "{ctx}: remove({g:04x})");
            assert!(
                !leaf.contains(Id(g)),
                "{ctx}: {g:04x} still there after remove"
            );
        }
        if !live.contains(&me) {
            live.push(me);
        }
        live.sort_unstable();
        for &o in &live {
            leaf.insert(node(o));
        }
        assert_leaf_set(
            &format!("{ctx} after removing [{}]", hex(&gone)),
            me,
            &leaf,
            &live,
            l,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Routing tables
// ---------------------------------------------------------------------------------------------

#[test]
fn routing_tables_fit_their_cells_and_fill_every_fillable_cell() {
    const SEED: u64 = 0x7ab1e;
    let mut rng = Rng::seeded(SEED ^ 1);
    for case in cases(SEED) {
        // The table does not depend on l; two values are enough.
        for &l in &[1, 8] {
            let net = Net::full(&case, l, &mut rng);
            let ctx = net.ctx();
            for st in &net.states {
                let me = st.me().id.0;
                assert_table(&ctx, st, &case.ids);
                // cell_of agrees with the oracle for every live id.
                for &o in &case.ids {
                    let want = (o != me).then(|| (prefix(me, o), digit(o, prefix(me, o))));
                    assert_eq!(
                        RoutingTable::cell_of(Id(me), Id(o)),
                        want,
                        "{ctx}: cell_of({me:04x}, {o:04x})"
                    );
                }
                // known(): leaf members and table entries, each once.
                let known = ids_of(&st.known());
                let want: BTreeSet<u16> = ids_of(&st.leaf_set().members())
                    .into_iter()
                    .chain(st.table().entries().map(|n| n.id.0))
                    .collect();
                assert_eq!(
                    known.len(),
                    want.len(),
                    "{ctx}: known() of {me:04x} repeats"
                );
                assert_eq!(known.into_iter().collect::<BTreeSet<_>>(), want, "{ctx}");
                // A settled state learns nothing new from a node it has already seen.
                let mut again = st.clone();
                for &o in &case.ids {
                    assert!(!again.learn(node(o)), "{ctx}: {me:04x} re-learning {o:04x}");
                }
            }
        }
    }
}

/// The id a cell `(r, c)` of `me` is best held by: `me` with hex digit `r` written as `c`
/// (worked on the id's text, apart from the library's arithmetic).
fn cell_point(me: u16, r: usize, c: usize) -> u16 {
    let mut text: Vec<char> = format!("{me:04x}").chars().collect();
    text[r] = std::char::from_digit(c as u32, 16).expect("a hex digit");
    u16::from_str_radix(&text.iter().collect::<String>(), 16).expect("4 hex digits")
}

#[test]
fn routing_table_alone_insert_and_remove() {
    const SEED: u64 = 0x0007_ab1e_0002;
    let mut rng = Rng::seeded(SEED);
    for round in 0..300 {
        let n = 1 + rng.below(200);
        let ids = if round % 2 == 0 {
            random_ids(&mut rng, n)
        } else {
            let center = rng.next_u64() as u16;
            clustered_ids(&mut rng, n, center, 512)
        };
        let me = ids[rng.below(n)];
        let ctx = format!(
            "seed={SEED:#x} round {round} me={me:04x} ids=[{}]",
            hex(&ids)
        );
        let mut table = RoutingTable::new(Id(me));
        let mut order = ids.clone();
        shuffle(&mut rng, &mut order);
        let mut first_in_cell = std::collections::HashMap::new();
        for &o in &order {
            let cell = RoutingTable::cell_of(Id(me), Id(o));
            let better = cell.is_some_and(|(r, c)| match first_in_cell.get(&cell) {
                None => true,
                Some(&held) => {
                    let point = cell_point(me, r, c);
                    o.abs_diff(point) < u16::abs_diff(held, point)
                }
            });
            assert_eq!(table.insert(node(o)), better, "{ctx}: insert({o:04x})");
            if better {
                first_in_cell.insert(cell, o);
            }
        }
        // Each cell keeps the node nearest its point, the first offered of equals.
        for (cell, o) in &first_in_cell {
            let (r, c) = cell.expect("own id has no cell");
            assert_eq!(table.get(r, c), Some(node(*o)), "{ctx}: cell ({r},{c})");
        }
        // A new address for a known id replaces the old one.
        if let Some((cell, &o)) = first_in_cell.iter().next() {
            let (r, c) = cell.expect("own id has no cell");
            let moved = NodeInfo {
                id: Id(o),
                addr: SocketAddr::from(([10, 0, 0, 1], 7)),
            };
            assert!(table.insert(moved), "{ctx}: new address for {o:04x}");
            assert_eq!(table.get(r, c), Some(moved), "{ctx}");
            assert!(table.insert(node(o)), "{ctx}: old address back for {o:04x}");
        }
        // Remove everything: the table empties; removing an absent id changes nothing.
        for &o in &order {
            let was = table.contains(Id(o));
            assert_eq!(table.remove(Id(o)), was, "{ctx}: remove({o:04x})");
            assert!(!table.remove(Id(o)), "{ctx}: second remove({o:04x})");
        }
        assert_eq!(
            table.entries().count(),
            0,
            "{ctx}: entries after removing all"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Routing with full knowledge
// ---------------------------------------------------------------------------------------------

/// The nodes to start lookups from: all of them in small networks, a few at random otherwise.
fn starts(rng: &mut Rng, ids: &[u16], all_upto: usize, some: usize) -> Vec<u16> {
    if ids.len() <= all_upto {
        ids.to_vec()
    } else {
        (0..some).map(|_| ids[rng.below(ids.len())]).collect()
    }
}

#[test]
fn routing_with_full_knowledge_reaches_the_responsible_node() {
    const SEED: u64 = 0x0e0e_7e57;
    let mut rng = Rng::seeded(SEED ^ 1);
    let (mut lookups, mut longest) = (0usize, 0usize);
    for case in cases(SEED) {
        for &l in &LEAF_HALVES {
            let net = Net::full(&case, l, &mut rng);
            let keys = lookup_keys(&mut rng, &case.ids);
            for (key, why) in keys {
                let expected = oracle_responsible(key, &case.ids).expect("never empty");
                let from = starts(&mut rng, &case.ids, 17, 3);
                lookups += from.len();
                let hops = net.check_lookups(&from, key, why, None, expected, MAX_HOPS_FULL);
                longest = longest.max(hops);
            }
        }
    }
    assert!(lookups > 50_000, "only {lookups} lookups");
    eprintln!("full knowledge: {lookups} lookups, longest path {longest} hops");
}

// ---------------------------------------------------------------------------------------------
// 4. Partial knowledge; forgetting and re-learning
// ---------------------------------------------------------------------------------------------

#[test]
fn routing_with_exact_leaf_sets_and_partial_tables_reaches_the_responsible_node() {
    const SEED: u64 = 0x09a5_71a1;
    let mut rng = Rng::seeded(SEED ^ 1);
    let (mut lookups, mut longest) = (0usize, 0usize);
    for case in cases(SEED) {
        // The 300-node networks take the most time: there, only the extreme values of l.
        let big = case.ids.len() > 64;
        for &l in LEAF_HALVES.iter().filter(|&&l| !big || l == 1 || l == 8) {
            let net = Net::partial(&case, l, &mut rng);
            for st in &net.states {
                assert_leaf_set(&net.ctx(), st.me().id.0, st.leaf_set(), &case.ids, l);
            }
            let keys = lookup_keys(&mut rng, &case.ids);
            for (key, why) in keys {
                let expected = oracle_responsible(key, &case.ids).expect("never empty");
                let from = starts(&mut rng, &case.ids, 16, 4);
                lookups += from.len();
                // No hop bound is promised here; a path never revisits a node, so it is at
                // most N - 1 hops long.
                let hops = net.check_lookups(&from, key, why, None, expected, case.ids.len());
                longest = longest.max(hops);
            }
        }
    }
    assert!(lookups > 50_000, "only {lookups} lookups");
    eprintln!("partial knowledge: {lookups} lookups, longest path {longest} hops");
}

#[test]
fn forget_then_relearn() {
    const SEED: u64 = 0xf0_9e7;
    let mut rng = Rng::seeded(SEED ^ 1);
    for case in cases(SEED) {
        if case.ids.len() < 2 {
            continue;
        }
        for &l in &LEAF_HALVES {
            let net = Net::full(&case, l, &mut rng);
            let picks = starts(&mut rng, &case.ids, 17, 8);
            for me in picks {
                let st = net.state(me).expect("live");
                let x = loop {
                    let x = case.ids[rng.below(case.ids.len())];
                    if x != me {
                        break x;
                    }
                };
                let ctx = format!("{} node {me:04x} forgets {x:04x}", net.ctx());
                let (want_cw, want_ccw) = oracle_leaf(me, &case.ids, l);
                let cell = RoutingTable::cell_of(Id(me), Id(x)).expect("x != me");
                let in_table = st.table().get(cell.0, cell.1) == Some(node(x));
                let was_known = want_cw.contains(&x) || want_ccw.contains(&x) || in_table;

                let mut s = st.clone();
                assert_eq!(s.forget(Id(x)), was_known, "{ctx}: forget's answer");
                assert!(!s.forget(Id(x)), "{ctx}: second forget");
                assert!(!ids_of(&s.known()).contains(&x), "{ctx}: still known");
                // The sides lose x and nothing else (no repair without new knowledge).
                let minus = |v: &[u16]| v.iter().copied().filter(|&o| o != x).collect::<Vec<_>>();
                assert_eq!(ids_of(s.leaf_set().cw()), minus(&want_cw), "{ctx}: cw side");
                assert_eq!(
                    ids_of(s.leaf_set().ccw()),
                    minus(&want_ccw),
                    "{ctx}: ccw side"
                );
                // A side short of l members means "I know every node": covers everything.
                let side_short = s.leaf_set().cw().len() < l || s.leaf_set().ccw().len() < l;
                if side_short {
                    for _ in 0..64 {
                        let k = rng.next_u64() as u16;
                        assert!(
                            s.leaf_set().covers(Id(k)),
                            "{ctx}: covers({k:04x}) with a short side"
                        );
                    }
                }
                // A refill takes the nearest of what the node still knows: the other old
                // members and the routing table's entries.
                s.refill_leaf_set();
                let mut still_known: Vec<u16> = want_cw.iter().chain(&want_ccw).copied().collect();
                still_known.extend(ids_of(&s.table().entries().collect::<Vec<_>>()));
                still_known.push(me);
                still_known.retain(|&o| o != x);
                still_known.sort_unstable();
                still_known.dedup();
                let (refill_cw, refill_ccw) = oracle_leaf(me, &still_known, l);
                assert_eq!(
                    ids_of(s.leaf_set().cw()),
                    refill_cw,
                    "{ctx}: refilled cw side"
                );
                assert_eq!(
                    ids_of(s.leaf_set().ccw()),
                    refill_ccw,
                    "{ctx}: refilled ccw side"
                );
                if in_table {
                    assert_eq!(s.table().get(cell.0, cell.1), None, "{ctx}: x's cell");
                }
                // Learning the survivors again gives the oracle over the survivors.
                let survivors: Vec<u16> = case.ids.iter().copied().filter(|&o| o != x).collect();
                let mut order: Vec<u16> = survivors.iter().copied().filter(|&o| o != me).collect();
                shuffle(&mut rng, &mut order);
                for &o in &order {
                    s.learn(node(o));
                }
                assert_leaf_set(
                    &format!("{ctx}, re-learned"),
                    me,
                    s.leaf_set(),
                    &survivors,
                    l,
                );
                assert_table(&format!("{ctx}, re-learned"), &s, &survivors);
                // And learning x again gives the oracle over everyone.
                s.learn(node(x));
                assert_leaf_set(&format!("{ctx}, x back"), me, s.leaf_set(), &case.ids, l);
                assert_table(&format!("{ctx}, x back"), &s, &case.ids);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Routing around an excluded (unreachable) node
// ---------------------------------------------------------------------------------------------

/// What lookups that exclude the responsible node at every hop came to.
#[derive(Default)]
struct Exclusion {
    lookups: usize,
    /// Lookups that did not end at the responsible node among the remaining ones.
    wrong: usize,
    /// Of those, lookups whose last node knew (leaf set or table) a better remaining node.
    knew_better: usize,
    /// `wrong`, by the index of `l` in `LEAF_HALVES`.
    wrong_by_l: [usize; 4],
    first_wrong: Option<String>,
    first_knew_better: Option<String>,
}

/// Excludes, for each key, the responsible node at every hop and looks the key up from every
/// other node (a few random ones in big networks), in networks where every node learned every
/// node. Panics when a lookup routes to the excluded node, revisits a node, takes more than
/// `MAX_HOPS_FULL` hops, or does not end at the responsible node among the remaining ones
/// while `l >= strict_from` or the network has at most `2l` nodes (every leaf set holds every
/// node). Counts the rest.
fn exclusion_run(seed: u64, strict_from: usize) -> Exclusion {
    let mut rng = Rng::seeded(seed ^ 1);
    let mut out = Exclusion::default();
    for case in cases(seed) {
        if case.ids.len() < 2 {
            continue;
        }
        for &l in &LEAF_HALVES {
            let net = Net::full(&case, l, &mut rng);
            let keys = lookup_keys(&mut rng, &case.ids);
            for (key, why) in keys {
                let gone = oracle_responsible(key, &case.ids).expect("never empty");
                let rest: Vec<u16> = case.ids.iter().copied().filter(|&o| o != gone).collect();
                let expected = oracle_responsible(key, &rest).expect("at least two nodes");
                for s in starts(&mut rng, &rest, 17, 3) {
                    out.lookups += 1;
                    let what = || {
                        format!(
                            "{}: lookup of key {key:04x} ({why}) from {s:04x} excluding {gone:04x}",
                            net.ctx()
                        )
                    };
                    let path = net
                        .walk(s, key, Some(gone), MAX_HOPS_FULL)
                        .unwrap_or_else(|e| panic!("{}: {e}", what()));
                    let end = *path.last().expect("path is never empty");
                    if end == expected {
                        continue;
                    }
                    let msg = format!(
                        "{} ended at {end:04x}, expected {expected:04x}; path=[{}]",
                        what(),
                        hex(&path)
                    );
                    assert!(
                        case.ids.len() > 2 * l,
                        "{msg} (every leaf set holds every node)"
                    );
                    assert!(
                        strict_from > l,
                        "{msg} (l={l}: a leaf set of l >= 2 per side bridges \
                         one excluded node)"
                    );
                    out.wrong += 1;
                    out.wrong_by_l[LEAF_HALVES.iter().position(|&h| h == l).expect("l")] += 1;
                    out.first_wrong.get_or_insert_with(|| msg.clone());
                    let st = net.state(end).expect("live");
                    let mut known: Vec<u16> = ids_of(&st.known());
                    known.retain(|&o| o != gone);
                    known.push(end);
                    if oracle_responsible(key, &known) != Some(end) {
                        out.knew_better += 1;
                        out.first_knew_better.get_or_insert(msg);
                    }
                }
            }
        }
    }
    eprintln!(
        "exclusion seed={seed:#x}: {} lookups, {} not at the next responsible node, {} of them \
         at a node that knew a better one; by l in {LEAF_HALVES:?}: {:?}",
        out.lookups, out.wrong, out.knew_better, out.wrong_by_l
    );
    if let Some(m) = &out.first_knew_better {
        eprintln!("first that knew better: {m}");
    }
    out
}

/// With one excluded node, a lookup never uses it, terminates within `MAX_HOPS_FULL` hops
/// without revisiting a node, and, for `l >= 2` (or when every leaf set holds every node),
/// ends at the node responsible among the remaining ones.
///
/// With `l = 1` that last part does not hold and cannot, in general, from local knowledge
/// alone: in {0000, 0001, fffe, ffff}, excluding 0000 for key 0000, node 0001 knows only fffe
/// (its clockwise side, farther from the key than itself), 0000 (excluded) and one of
/// fffe/ffff in its table cell (0, f); if that is fffe, nothing it knows points to ffff,
/// the answer. Nor can a node whose span shrank to exclude the key use a neighbour that
/// shares fewer digits with it (that rule is what makes routing terminate). Such lookups are
/// counted and printed, not asserted; the default `l` is 8.
#[test]
fn routing_around_an_excluded_responsible_node() {
    let run = exclusion_run(0x0e8c_1ded, 2);
    assert!(run.lookups > 50_000, "only {} lookups", run.lookups);
}

// ---------------------------------------------------------------------------------------------
// 6. covers
// ---------------------------------------------------------------------------------------------

#[test]
fn covers_everything_in_small_networks_and_is_sound() {
    const SEED: u64 = 0xc0_7e25;
    let mut rng = Rng::seeded(SEED ^ 1);
    let (mut small, mut sound) = (0usize, 0usize);
    for case in cases(SEED) {
        for &l in &LEAF_HALVES {
            for net in [
                Net::full(&case, l, &mut rng),
                Net::partial(&case, l, &mut rng),
            ] {
                let expected: Vec<(u16, u16)> = lookup_keys(&mut rng, &case.ids)
                    .into_iter()
                    .map(|(k, _)| (k, oracle_responsible(k, &case.ids).expect("never empty")))
                    .collect();
                let is_small = case.ids.len() < 2 * l + 1;
                for me in starts(&mut rng, &case.ids, 64, 24) {
                    let st = net.state(me).expect("live");
                    let leaf = st.leaf_set();
                    let mut local: Vec<u16> = ids_of(&leaf.members());
                    local.push(me);
                    // The span always holds the node itself and its members.
                    for &k in &local {
                        assert!(
                            leaf.covers(Id(k)),
                            "{}: {me:04x} covers({k:04x})",
                            net.ctx()
                        );
                    }
                    for &(k, responsible) in &expected {
                        let covered = leaf.covers(Id(k));
                        if is_small {
                            small += 1;
                            assert!(
                                covered,
                                "{}: {me:04x} covers({k:04x}) in a small network",
                                net.ctx()
                            );
                        }
                        // Sound: within the span, the responsible node is the leaf set's pick.
                        if covered {
                            sound += 1;
                            assert_eq!(
                                oracle_responsible(k, &local),
                                Some(responsible),
                                "{}: {me:04x} covers({k:04x}) but the responsible node is not \
                                 in its leaf set [{}]",
                                net.ctx(),
                                hex(&local)
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        small > 10_000 && sound > 100_000,
        "small={small} sound={sound}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Identifiers and the digest
// ---------------------------------------------------------------------------------------------

#[test]
fn digest_vectors() {
    assert_eq!(key_of(b"123456789"), Id(0x31c3));
    assert_eq!(key_of(b""), Id(0x0000));
    assert_eq!(key_of(b"a"), Id(0x7c87));
    assert_eq!(key_of(b"hello.txt"), Id(0xf34c));
    assert_eq!(
        reference_crc16(b"123456789"),
        0x31c3,
        "the reference itself"
    );
}

#[test]
fn digest_matches_a_bitwise_crc16_xmodem() {
    let mut rng = Rng::seeded(0xd1_9e57);
    for _ in 0..2000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        assert_eq!(
            key_of(&bytes),
            Id(reference_crc16(&bytes)),
            "bytes={bytes:02x?}"
        );
    }
}

#[test]
fn id_functions_match_oracle() {
    let mut rng = Rng::seeded(0x1d_0f);
    let edge = [
        0x0000u16, 0x0001, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x1234, 0x1235,
    ];
    let mut pairs: Vec<(u16, u16)> = edge
        .iter()
        .flat_map(|&a| edge.iter().map(move |&b| (a, b)))
        .collect();
    pairs.extend((0..20_000).map(|_| {
        let a = rng.next_u64() as u16;
        // Often near each other, to exercise long prefixes and small distances.
        let b = match rng.below(3) {
            0 => rng.next_u64() as u16,
            1 => a ^ (rng.next_u64() as u16 & 0x00ff),
            _ => a.wrapping_add(rng.below(64) as u16).wrapping_sub(32),
        };
        (a, b)
    }));
    for (a, b) in pairs {
        let (ia, ib) = (Id(a), Id(b));
        let ctx = format!("a={a:04x} b={b:04x}");
        for r in 0..4 {
            assert_eq!(ia.digit(r), digit(a, r), "{ctx} digit {r}");
        }
        assert_eq!(ia.shared_prefix(ib), prefix(a, b), "{ctx}");
        assert_eq!(u32::from(ia.distance(ib)), ring_dist(a, b), "{ctx}");
        assert_eq!(u32::from(ia.cw_distance(ib)), cw(a, b), "{ctx}");
        assert_eq!(format!("{ia}"), format!("{a:04x}"), "{ctx}");
        // For a third point k: who is the better holder of k?
        let k = rng.next_u64() as u16;
        let want = oracle_responsible(k, &[a, b]).expect("two ids");
        assert_eq!(
            responsible(Id(k), [ia, ib]),
            Some(Id(want)),
            "{ctx} k={k:04x}"
        );
        if a != b {
            assert_eq!(ia.closer_to(Id(k), ib), want == a, "{ctx} k={k:04x}");
            assert_eq!(
                ia.cmp_for_key(ib, Id(k)),
                if want == a {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                },
                "{ctx} k={k:04x}"
            );
        }
    }
    // `responsible` over many ids against the oracle, including ties.
    for case in cases(0x1d_0f) {
        for (k, why) in special_keys(&case.ids) {
            let ids = case.ids.iter().map(|&i| Id(i));
            assert_eq!(
                responsible(Id(k), ids),
                oracle_responsible(k, &case.ids).map(Id),
                "{} key {k:04x} ({why})",
                case.describe()
            );
        }
    }
    assert_eq!(responsible(Id(5), []), None);
}

// ---------------------------------------------------------------------------------------------
// Named regression tests (minimal cases found by the properties above)
// ---------------------------------------------------------------------------------------------

#[test]
fn regression_tie_halfway_goes_to_the_larger_id_over_the_wrap() {
    // {ffff, 0001}: key 0000 is one away from both; ffff is the larger id.
    let case = Case {
        seed: 0,
        no: 0,
        label: "regression".into(),
        ids: vec![0x0001, 0xffff],
    };
    for &l in &LEAF_HALVES {
        let net = Net::full(&case, l, &mut Rng::seeded(1));
        net.check_lookups(&case.ids, 0x0000, "tie", None, 0xffff, MAX_HOPS_FULL);
        // The far side: 8000 is 7fff from both; ffff again.
        net.check_lookups(&case.ids, 0x8000, "far tie", None, 0xffff, MAX_HOPS_FULL);
    }
}

/// With `l = 1`, node 0000 of {0000, 0001, fffe, ffff} holds 0001 (clockwise) and ffff
/// (counter-clockwise) in its leaf set and fffe in its table cell (0, f). Looking up ffff while
/// ffff is excluded, the node responsible among the rest is fffe (one away, like 0000; the
/// larger id wins the tie). `route` answers 0000 itself: it still takes the leaf set's span to
/// reach ffff, so it decides among the leaf set only, although the span now ends at an
/// excluded node and its own table holds the better fffe.
#[test]
fn regression_exclusion_l1_node_claims_a_key_its_table_knows_a_better_holder_for() {
    let mut st = OverlayState::new(node(0x0000), 1);
    for id in [0x0001, 0xfffe, 0xffff] {
        st.learn(node(id));
    }
    assert_eq!(ids_of(st.leaf_set().cw()), [0x0001]);
    assert_eq!(ids_of(st.leaf_set().ccw()), [0xffff]);
    assert_eq!(st.table().get(0, 0xf), Some(node(0xfffe)));
    let next = st.route(Id(0xffff), |id| id == Id(0xffff));
    assert_eq!(next, node(0xfffe), "0000 should hand key ffff to fffe");
}

/// With `l >= 2`, one excluded node next to the key is bridged: a cluster of six round the wrap,
/// every key near it, the responsible node excluded, from every other node.
#[test]
fn regression_exclusion_bridged_with_two_per_side() {
    let case = Case {
        seed: 0,
        no: 0,
        label: "six round the wrap".into(),
        ids: vec![0x0000, 0x0001, 0x0002, 0xfffd, 0xfffe, 0xffff],
    };
    let mut rng = Rng::seeded(2);
    for &l in &[2, 4, 8] {
        let net = Net::full(&case, l, &mut rng);
        for key in (0xffe0..=0xffff)
            .chain(0x0000..=0x0020)
            .chain([0x8000, 0x7fff, 0x8001])
        {
            let gone = oracle_responsible(key, &case.ids).expect("never empty");
            let rest: Vec<u16> = case.ids.iter().copied().filter(|&o| o != gone).collect();
            let expected = oracle_responsible(key, &rest).expect("five left");
            net.check_lookups(
                &rest,
                key,
                "near the wrap",
                Some(gone),
                expected,
                MAX_HOPS_FULL,
            );
        }
    }
}
