//! Unit tests of the membership core, with fake peers and time passed in: each test plays
//! the other nodes by hand, answering the calls the core asks for.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::exchange::FAR_EVERY;
use super::*;
use crate::id::Id;

use crate::id::loopback_node as node;

fn config() -> Config {
    Config {
        leaf_half: 2,
        replicas: 2,
        max_hops: 8,
        call_timeout: Duration::from_secs(1),
        key: crate::identity::PublicKey([1; 32]),
    }
}

/// A joined node `me` that knows `others`.
fn member(me: u16, others: &[u16]) -> Membership {
    let mut m = Membership::new(node(me), config());
    m.begin_join().unwrap();
    m.join(Instant::now(), None);
    for o in others {
        m.state.learn(node(*o));
    }
    m
}

fn calls(effects: &[Effect]) -> Vec<&Call> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Call(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn refused(addr: SocketAddr) -> Error {
    Error::Unreachable {
        addr,
        source: io::ErrorKind::ConnectionRefused.into(),
    }
}

#[test]
fn a_lookup_routes_around_a_dead_hop_and_reports_it() {
    let t0 = Instant::now();
    // 0x1000 knows two nodes sharing digits with the key; the better placed one is dead.
    let mut m = member(0x1000, &[0x8000, 0x8100, 0x3000, 0x1100]);
    let key = Id(0x8101);
    let effects = m.lookup(t0, 7, key);
    let first = calls(&effects);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].to.id, Some(Id(0x8100)));
    let id = first[0].id;
    let effects = m.answer(t0, id, Err(refused(node(0x8100).addr)));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Dead(n) if n.id == Id(0x8100))));
    assert!(!m.state().table().contains(Id(0x8100)));
    let retry: Vec<&Call> = calls(&effects)
        .into_iter()
        .filter(|c| matches!(c.request, Message::Route { .. }))
        .collect();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].to.id, Some(Id(0x8000)));
    let reply = Message::Routed {
        path: vec![node(0x8000)],
        replicas: vec![],
    };
    let effects = m.answer(t0, retry[0].id, Ok(reply));
    let Some(Effect::Looked {
        op: 7,
        result: Ok((path, _)),
    }) = effects.first()
    else {
        panic!("no lookup result: {effects:?}");
    };
    assert_eq!(path, &vec![node(0x1000), node(0x8000)]);
}

#[test]
fn a_forwarded_route_out_of_time_is_refused_as_unroutable() {
    let t0 = Instant::now();
    let mut m = member(0x1000, &[0x8000]);
    let request = Message::Route {
        key: Id(0x8001),
        hops_left: 3,
        budget_ms: 4, // below the least worth waiting for
    };
    let effects = m.serve(t0, 42, request).expect("a membership request");
    let Some(Effect::Reply { token: 42, reply }) = effects.first() else {
        panic!("no reply: {effects:?}");
    };
    assert!(matches!(
        reply,
        Message::Error {
            code: RemoteCode::Unroutable,
            ..
        }
    ));
}

#[test]
fn a_join_walks_the_path_backs_off_a_failed_hop_and_builds_its_tables() {
    let t0 = Instant::now();
    let mut j = Membership::new(node(0x5005), config());
    j.begin_join().unwrap();
    let start = Target {
        id: None,
        addr: node(0x1000).addr,
    };
    let effects = j.join(t0, Some(start));
    let step = calls(&effects)[0].id;
    // The first node sends the joiner on to 0x5000, which is dead.
    let state = |n: u16, next: u16, rows: &[u16]| {
        Ok(Message::JoinState {
            node: node(n),
            next: node(next),
            rows: rows.iter().map(|r| node(*r)).collect(),
            leaf_set: vec![],
        })
    };
    let effects = j.answer(t0, step, state(0x1000, 0x5000, &[0x5000]));
    let to_dead = calls(&effects)[0];
    assert_eq!(to_dead.to.id, Some(Id(0x5000)));
    // Asked again without it, the first node answers with another next hop.
    let effects = j.answer(t0, to_dead.id, Err(refused(to_dead.to.addr)));
    let again = calls(&effects)[0];
    assert!(matches!(&again.request, Message::JoinHop { exclude, .. } if exclude == &[Id(0x5000)]));
    let effects = j.answer(t0, again.id, state(0x1000, 0x5010, &[]));
    let last = calls(&effects)[0];
    let effects = j.answer(t0, last.id, state(0x5010, 0x5010, &[0x2000]));
    assert!(matches!(
        effects.as_slice(),
        [Effect::LeafSetChanged, Effect::JoinWalked]
    ));
    assert_eq!(j.phase(), Phase::Joining);
    let known: Vec<Id> = j.state().known().iter().map(|n| n.id).collect();
    assert!(known.contains(&Id(0x5010)) && known.contains(&Id(0x2000)));
    // Finishing announces the joiner to everyone it knows.
    let effects = j.finish_join(t0);
    assert_eq!(j.phase(), Phase::Joined);
    assert_eq!(calls(&effects).len(), j.state().known().len());
}

#[test]
fn a_join_through_a_node_with_our_id_fails_as_in_use() {
    let t0 = Instant::now();
    let mut j = Membership::new(node(0x5005), config());
    j.begin_join().unwrap();
    let effects = j.join(t0, Some(node(0x1000).into()));
    let step = calls(&effects)[0].id;
    let reply = Message::JoinState {
        node: NodeInfo {
            id: Id(0x5005),
            addr: node(0x1000).addr,
        },
        next: node(0x1000),
        rows: vec![],
        leaf_set: vec![],
    };
    let effects = j.answer(t0, step, Ok(reply));
    assert!(matches!(
        effects.as_slice(),
        [Effect::JoinFailed(Error::IdInUse(_))]
    ));
}

#[test]
fn a_silent_neighbour_is_dropped_then_probed_until_it_answers_again() {
    let t0 = Instant::now();
    let mut m = member(0x1000, &[0x1100, 0x0f00]);
    let timeout = |c: &Call| Error::Timeout {
        addr: c.to.addr,
        after: c.wait,
    };
    // A round's exchange and table refresh both go unanswered by 0x1100: two silences.
    let effects = m.tick(t0);
    let to_silent: Vec<&Call> = calls(&effects)
        .into_iter()
        .filter(|c| c.to.id == Some(Id(0x1100)))
        .collect();
    assert_eq!(to_silent.len(), 2);
    m.answer(t0, to_silent[0].id, Err(timeout(to_silent[0])));
    assert!(m.state().leaf_set().contains(Id(0x1100)));
    m.answer(t0, to_silent[1].id, Err(timeout(to_silent[1])));
    assert!(!m.state().leaf_set().contains(Id(0x1100)));
    // Then it is asked again each round, as it would still fit in the leaf set.
    let later = t0 + Duration::from_secs(5);
    let effects = m.tick(later);
    let probe = calls(&effects)
        .into_iter()
        .find(|c| c.to.id == Some(Id(0x1100)))
        .expect("a probe of the silent node");
    let reply = Message::LeafSet {
        node: node(0x1100),
        leaf_set: vec![node(0x1000)],
    };
    m.answer(later, probe.id, Ok(reply));
    assert!(m.state().leaf_set().contains(Id(0x1100)));
}

#[test]
fn leaving_drops_maintenance_and_departs_to_everyone_known() {
    let t0 = Instant::now();
    let mut m = member(0x1000, &[0x1100, 0x0f00, 0x8000]);
    let effects = m.tick(t0);
    let exchange = calls(&effects)[0].id;
    m.begin_leave().unwrap();
    assert!(!m.wants(exchange));
    let effects = m.depart(t0);
    assert_eq!(m.phase(), Phase::Left);
    let departs = calls(&effects);
    assert_eq!(departs.len(), 3);
    assert!(departs
        .iter()
        .all(|c| matches!(c.request, Message::Depart { .. })));
    // A node that left refuses the overlay's requests but answers pings.
    let refused = m.serve(t0, 1, Message::Cell { row: 0, col: 0 }).unwrap();
    assert!(matches!(
        refused.as_slice(),
        [Effect::Reply {
            reply: Message::Error {
                code: RemoteCode::NotJoined,
                ..
            },
            ..
        }]
    ));
    let pong = m.serve(t0, 2, Message::Ping).unwrap();
    assert!(matches!(
        pong.as_slice(),
        [Effect::Reply {
            reply: Message::Pong { .. },
            ..
        }]
    ));
}

/// A joined 0x8000 with eight leaf-set members on each side, 0x10 apart, keeping 3 copies:
/// the nearest are 0x8010, 0x8020, 0x7ff0 and 0x7fe0.
fn member_of_sixteen() -> (Membership, Vec<u16>) {
    let mut m = Membership::new(
        node(0x8000),
        Config {
            leaf_half: 8,
            replicas: 3,
            ..config()
        },
    );
    m.begin_join().unwrap();
    m.join(Instant::now(), None);
    let sides: Vec<u16> = (1..=8u16)
        .flat_map(|i| [0x8000 + 0x10 * i, 0x8000 - 0x10 * i])
        .collect();
    for id in &sides {
        m.state.learn(node(*id));
    }
    (m, sides)
}

/// The ids `effects` call with an exchange.
fn exchanged(effects: &[Effect]) -> Vec<u16> {
    calls(effects)
        .into_iter()
        .filter(|c| matches!(c.request, Message::Exchange { .. }))
        .filter_map(|c| c.to.id.map(|id| id.0))
        .collect()
}

#[test]
fn the_nearest_neighbours_are_exchanged_with_every_round_the_others_in_turn() {
    let (mut m, sides) = member_of_sixteen();
    let near = [0x8010, 0x8020, 0x7ff0, 0x7fe0];
    let mut rounds_with = std::collections::HashMap::<u16, u64>::new();
    let t0 = Instant::now();
    for round in 0..FAR_EVERY {
        let exchanged = exchanged(&m.tick(t0 + Duration::from_secs(round)));
        for id in near {
            assert!(exchanged.contains(&id), "{id:04x} in round {round}");
        }
        assert!(exchanged.len() < sides.len(), "not everyone every round");
        for id in exchanged {
            *rounds_with.entry(id).or_default() += 1;
        }
    }
    for id in sides {
        let expected = if near.contains(&id) { FAR_EVERY } else { 1 };
        assert_eq!(rounds_with.get(&id), Some(&expected), "{id:04x}");
    }
}

#[test]
fn a_neighbour_that_exchanged_since_the_last_round_is_not_called_until_it_falls_silent() {
    let t0 = Instant::now();
    let mut m = member(0x1000, &[0x1100, 0x0f00]);
    assert_eq!(exchanged(&m.tick(t0)), [0x1100, 0x0f00]);
    // 0x1100 exchanges with this node between its rounds: the next round leaves it out,
    // and still calls 0x0f00, which did not.
    let exchange = Message::Exchange {
        node: node(0x1100),
        leaf_set: vec![],
    };
    let answered = m.serve(t0, 1, exchange).unwrap();
    assert!(matches!(
        answered.as_slice(),
        [Effect::Reply {
            reply: Message::LeafSet { .. },
            ..
        }]
    ));
    assert_eq!(exchanged(&m.tick(t0 + Duration::from_secs(1))), [0x0f00]);
    // Silent since: called again the round after.
    assert_eq!(
        exchanged(&m.tick(t0 + Duration::from_secs(2))),
        [0x1100, 0x0f00]
    );
}

#[test]
fn a_far_neighbour_that_exchanged_within_its_turns_is_left_out_of_the_next() {
    let (mut m, _) = member_of_sixteen();
    let t0 = Instant::now();
    let far = 0x8080;
    let exchange = Message::Exchange {
        node: node(far),
        leaf_set: vec![],
    };
    m.serve(t0, 1, exchange).unwrap();
    let calls_to_far = |m: &mut Membership, from: u64| {
        (from..from + FAR_EVERY)
            .filter(|&round| exchanged(&m.tick(t0 + Duration::from_secs(round))).contains(&far))
            .count()
    };
    assert_eq!(
        calls_to_far(&mut m, 0),
        0,
        "its turn came within the next rounds"
    );
    assert_eq!(
        calls_to_far(&mut m, FAR_EVERY),
        1,
        "silent since: called on its turn"
    );
}
