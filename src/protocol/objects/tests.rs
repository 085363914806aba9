use super::*;
use crate::id::{Id, NodeInfo};
use crate::overlay::OverlayState;
use crate::protocol::outcomes::Outcome;
use crate::protocol::placement::Keeping;
use crate::store::RecordMeta;
use crate::wire::Message;

fn node(id: u16) -> NodeInfo {
    NodeInfo {
        id: Id(id),
        addr: format!("127.0.0.1:{}", 1000 + u32::from(id) % 60000)
            .parse()
            .unwrap(),
    }
}

fn record(name: &str, key: u16, version: u64, deleted: bool) -> RecordMeta {
    RecordMeta {
        name: name.as_bytes().to_vec(),
        key: Id(key),
        size: 0,
        version,
        crc: 0,
        deleted,
    }
}

fn answer(version: u64, kept: bool, before: Option<(u64, bool)>) -> CopyAnswer {
    CopyAnswer {
        version,
        kept,
        before,
    }
}

/// An overlay of `ids` as seen by the first, with a leaf set of 4 a side.
fn overlay(ids: &[u16]) -> OverlayState {
    let mut state = OverlayState::new(node(ids[0]), 4);
    for &id in &ids[1..] {
        state.learn(node(id));
    }
    state
}

#[test]
fn a_put_overtaken_by_another_writers_version_is_not_kept_and_asks_for_a_repair() {
    let me = Id(7);
    let (outcome, behind) = put_outcome(me, 100 << 16 | 7, true, &[answer(5, true, None)]);
    assert_eq!(
        outcome,
        Outcome::Stored {
            version: 100 << 16 | 7,
            kept: true
        }
    );
    assert!(!behind);
    // A holder kept a newer version that another node gave: this node's copy was behind.
    let newer = 200 << 16 | 9;
    let (outcome, behind) = put_outcome(me, 100 << 16 | 7, true, &[answer(newer, false, None)]);
    assert!(matches!(outcome, Outcome::Stored { kept: false, .. }));
    assert!(behind);
    // A newer version of this node's own (a later write copied first) is no sign.
    let mine = 200 << 16 | 7;
    assert!(!put_outcome(me, 100 << 16 | 7, true, &[answer(mine, false, None)]).1);
}

#[test]
fn a_delete_existed_if_the_newest_older_record_any_holder_had_was_an_object() {
    let v = 100 << 16 | 7;
    // Nothing here, but a holder had an object older than the delete.
    let (outcome, _) = delete_outcome(Id(7), v, None, &[answer(v, true, Some((50, true)))]);
    assert_eq!(
        outcome,
        Outcome::Deleted {
            version: v,
            existed: true
        }
    );
    // The newest older record was a deletion record: nothing existed.
    let answers = [
        answer(v, true, Some((50, true))),
        answer(v, true, Some((60, false))),
    ];
    let (outcome, _) = delete_outcome(Id(7), v, None, &answers);
    assert!(matches!(outcome, Outcome::Deleted { existed: false, .. }));
    // A holder that did not keep the delete says nothing of what it removed.
    let (outcome, _) = delete_outcome(Id(7), v, None, &[answer(v + 1, false, Some((50, true)))]);
    assert!(matches!(outcome, Outcome::Deleted { existed: false, .. }));
}

#[test]
fn a_holder_lacks_what_it_holds_older_or_damaged_and_what_it_does_not_hold() {
    let held = [record("a", 1, 10, false), record("b", 1, 5, false)];
    let meta_of = |name: &[u8]| -> Result<Option<RecordMeta>, ()> {
        if name == b"c" {
            return Err(()); // damaged
        }
        Ok(held.iter().find(|m| m.name == name).cloned())
    };
    let asked = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (n.as_bytes().to_vec(), 7))
        .collect();
    match lacking(asked, meta_of) {
        Message::Lacking { older, absent } => {
            assert_eq!(older, vec![b"b".to_vec(), b"c".to_vec()]);
            assert_eq!(absent, vec![b"d".to_vec()]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rebalance_drops_a_copy_only_once_every_holder_confirmed_it() {
    // This node (0x1000) holds a record of key 0x5000, whose three holders are 0x5000,
    // 0x4000 and 0x6000 once this node knows them all.
    let state = overlay(&[0x1000, 0x4000, 0x5000, 0x6000, 0x8000]);
    let meta = record("x", 0x5000, 9, false);
    let keeping = Keeping::new(10, 1_000_000, None);
    let mut pass = Rebalance::new(&state, 3, keeping, vec![meta.clone()]);
    assert!(pass.unknown(&state).is_empty());
    let asks = pass.asks();
    let asked: Vec<u16> = asks.iter().map(|(h, _)| h.id.0).collect();
    assert_eq!(asked, vec![0x4000, 0x5000, 0x6000]);
    // Two hold it already; the third holds nothing and is sent it, but does not confirm.
    assert!(pass
        .answered(std::slice::from_ref(&meta), &[], &[])
        .is_empty());
    assert!(pass
        .answered(std::slice::from_ref(&meta), &[], &[])
        .is_empty());
    let send = pass.answered(std::slice::from_ref(&meta), &[], &[b"x".to_vec()]);
    assert_eq!(send, vec![meta.clone()]);
    pass.sent(b"x", false);
    let (drops, complete) = pass.finish();
    assert!(
        drops.is_empty() && !complete,
        "kept until every holder has it"
    );

    let mut pass = Rebalance::new(&state, 3, keeping, vec![meta.clone()]);
    let _ = pass.asks();
    for _ in 0..3 {
        for m in pass.answered(std::slice::from_ref(&meta), &[b"x".to_vec()], &[]) {
            pass.sent(&m.name, true);
        }
    }
    assert_eq!(pass.finish(), (vec![meta], true));
}

#[test]
fn a_rebalance_asks_the_responsible_node_for_holders_it_cannot_be_sure_of() {
    // A full leaf set (4 a side) around 0x1000; a key far away is not spanned by it.
    let ids = [
        0x1000, 0x1100, 0x1200, 0x1300, 0x1400, 0x0c00, 0x0d00, 0x0e00, 0x0f00,
    ];
    let state = overlay(&ids);
    let meta = record("far", 0x9000, 1, false);
    let mut pass = Rebalance::new(&state, 3, Keeping::new(2, 1_000_000, None), vec![meta]);
    let unknown = pass.unknown(&state);
    assert_eq!(unknown, vec![(Id(0x9000), None)]);
    let responsible = node(0x9000);
    let reply = Message::ReplicaSet {
        nodes: vec![node(0x9100), node(0x8f00)],
    };
    pass.found(Id(0x9000), responsible, Some(reply));
    let asked: Vec<u16> = pass.asks().iter().map(|(h, _)| h.id.0).collect();
    assert_eq!(asked, vec![0x8f00, 0x9000, 0x9100]);
    // A set of k or more from the responsible node is not believed.
    let mut pass = Rebalance::new(&state, 2, Keeping::new(2, 1_000_000, None), vec![]);
    let reply = Message::ReplicaSet {
        nodes: vec![node(0x9100), node(0x8f00)],
    };
    pass.found(Id(0x9000), responsible, Some(reply));
    assert!(!pass.finish().1);
}

#[test]
fn a_hand_off_passes_over_members_that_refuse_until_each_record_is_held() {
    let state = overlay(&[0x1000, 0x1100, 0x1200, 0x0f00]);
    let meta = record("x", 0x1000, 1, false);
    let mut handoff = HandOff::new(&state, 2, vec![meta.clone()], false);
    let round: Vec<u16> = handoff.round().iter().map(|(h, _)| h.id.0).collect();
    assert_eq!(round, vec![0x0f00, 0x1100]);
    handoff.failed(node(0x0f00), crate::error::Error::Config("gone".into()));
    handoff.answered(node(0x1100), 1, vec![]); // refused it: leaving too
    let round: Vec<u16> = handoff.round().iter().map(|(h, _)| h.id.0).collect();
    assert_eq!(round, vec![0x1200]);
    handoff.answered(node(0x1200), 1, vec![b"x".to_vec()]);
    assert!(handoff.round().is_empty());
    assert_eq!(handoff.finish().unwrap(), vec![meta]);
}

#[test]
fn a_hand_off_that_placed_nothing_fails() {
    let state = overlay(&[0x1000, 0x1100]);
    let mut handoff = HandOff::new(&state, 2, vec![record("x", 0x1000, 1, false)], false);
    while let Some((holder, batch)) = handoff.round().first().cloned() {
        handoff.answered(holder, batch.len(), vec![]);
    }
    assert!(handoff.finish().is_err());
}

#[test]
fn a_joiner_pulls_what_it_will_hold() {
    let state = overlay(&[0x1000, 0x2000, 0x3000]);
    let records = vec![
        record("near", 0x1801, 1, false),
        record("far", 0x2800, 1, false),
    ];
    let picked = pull_selection(&state, node(0x1800), 1, records);
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].name, b"near");
}

#[test]
fn a_node_cut_off_from_the_others_does_not_leave_with_its_records() {
    let alone = OverlayState::new(node(0x1000), 4);
    let records = vec![record("x", 0x1000, 1, false)];
    // The last node of the overlay leaves; its records stay on its disk.
    let mut last = HandOff::new(&alone, 3, records.clone(), true);
    assert!(last.round().is_empty());
    assert_eq!(last.finish().unwrap(), vec![]);
    // Others live, but none is in its leaf set: it stays.
    let mut cut_off = HandOff::new(&alone, 3, records, false);
    assert!(cut_off.round().is_empty());
    assert!(cut_off.finish().is_err());
    // With nothing to hand over, it may go.
    assert!(HandOff::new(&alone, 3, vec![], false).finish().is_ok());
}

#[test]
fn a_node_with_no_other_holder_orders_writes_only_as_the_last_node_or_with_one_copy() {
    assert!(may_order(2, 3, false));
    assert!(may_order(0, 1, false), "one copy needs no other holder");
    assert!(
        may_order(0, 3, true),
        "the last node keeps what it is given"
    );
    assert!(!may_order(0, 3, false), "cut off while others live");
}
