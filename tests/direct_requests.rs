//! A client's requests sent straight to the node it believes responsible: one round trip
//! once it has met a key's holders, refused by any node that is not responsible (and never
//! passed on), routed instead when the guess is wrong, whatever joins or leaves meanwhile.

mod common;

use std::time::Duration;

use common::*;
use pastry::wire::{Message, RemoteCode};
use pastry::{key_of, Client, Error, Id, Rng};

#[test]
fn small_values_cost_one_round_trip_once_the_client_has_met_their_holders() {
    let mut rng = Rng::seeded(6);
    let net = Network::new(&random_ids(&mut rng, 16));
    let writer = Client::new(net.discovery.local_addr(), key());
    for i in 0..50u32 {
        writer.put(format!("k{i}"), &i.to_be_bytes()).unwrap();
    }
    let client = Client::new(net.discovery.local_addr(), key());
    for i in 0..50u32 {
        let before = client.stats().sent;
        let got = client.get(format!("k{i}")).unwrap();
        assert_eq!(got.data, i.to_be_bytes());
        // At most: discovery's peer (the first time), a guess refused by a node met that
        // is not responsible, the lookup through the entry peer, the get.
        assert!(client.stats().sent - before <= 4, "{:?}", got.route);
    }
    let warm = client.stats();
    for i in 0..50u32 {
        let before = client.stats().sent;
        let got = client.get(format!("k{i}")).unwrap();
        assert_eq!(got.data, i.to_be_bytes());
        // The get itself, at the responsible node, met on the first round.
        assert_eq!(client.stats().sent - before, 1, "{:?}", got.route);
        assert_eq!(got.route.path.len(), 1);
        assert_eq!(
            got.route.responsible().id,
            oracle_responsible(got.key, &net.ids())
        );
        let put = client.put(format!("k{i}"), &(i + 1).to_be_bytes()).unwrap();
        assert_eq!(
            put.route.path, got.route.path,
            "the put went straight there too"
        );
        let deleted = client.delete(format!("k{i}")).unwrap();
        assert!(deleted.existed);
        assert_eq!(deleted.route.path, got.route.path);
    }
    assert_eq!(
        client.stats().opened,
        warm.opened,
        "connections were reused"
    );
    for i in 0..50u32 {
        assert!(matches!(
            writer.get(format!("k{i}")),
            Err(Error::NotFound { .. })
        ));
    }
}

/// Asserts that `reply` refuses a request as not the responsible node's.
fn not_responsible(reply: Message) {
    assert!(
        matches!(
            reply,
            Message::Error {
                code: RemoteCode::NotResponsible,
                ..
            }
        ),
        "{reply:?}"
    )
}

#[test]
fn direct_requests_are_taken_only_by_the_responsible_node_and_large_puts_are_routed() {
    let mut rng = Rng::seeded(62);
    let net = Network::new(&random_ids(&mut rng, 8));
    let client = Client::new(net.discovery.local_addr(), key());
    let name = "guessed";
    let stored = client.put(name, b"value").unwrap();
    let responsible = stored.route.responsible();
    let holders = holders(&net.nodes, name);
    let other = net
        .nodes
        .iter()
        .find(|n| n.id() != responsible.id && holders.contains(&n.id()));
    let other = other.expect("another holder").info();
    let get = |direct| Message::Get {
        name: name.into(),
        direct,
    };
    // Another holder refuses a direct get and a direct delete, and passes neither on.
    not_responsible(tell(other.addr, &get(true)));
    let delete = Message::Delete {
        name: name.into(),
        request: 77,
        relayed: false,
        direct: true,
    };
    not_responsible(tell(other.addr, &delete));
    assert_eq!(
        client.get(name).unwrap().data,
        b"value",
        "the delete was not relayed"
    );
    // Asked as a holder (not direct), it serves its copy; the responsible node serves both.
    for (to, direct) in [(other, false), (responsible, true), (responsible, false)] {
        assert!(
            matches!(tell(to.addr, &get(direct)), Message::Record(_)),
            "{to} {direct}"
        );
    }
    // A put larger than a chunk is never a guess: the lookup, then the put.
    let large = vec![7u8; pastry::CHUNK_SIZE + 1];
    let before = client.stats().sent;
    let put = client.put(name, &large).unwrap();
    assert_eq!(client.stats().sent - before, 2);
    assert_eq!(put.route.responsible(), responsible);
    let before = client.stats().sent;
    assert_eq!(client.get(name).unwrap().data, large);
    assert_eq!(
        client.stats().sent - before,
        1,
        "a get of any size is sent direct"
    );
}

#[test]
fn a_node_that_sees_no_other_holder_refuses_direct_gets_and_routed_ones_are_served() {
    let net = Network::new(&[Id(0x4000)]);
    let client = Client::new(net.discovery.local_addr(), key());
    client.put("alone", b"here").unwrap();
    let node = net.nodes[0].info();
    let reply = tell(
        node.addr,
        &Message::Get {
            name: b"alone".to_vec(),
            direct: true,
        },
    );
    not_responsible(reply);
    let got = client.get("alone").unwrap();
    assert_eq!(
        (got.data.as_slice(), got.route.responsible()),
        (&b"here"[..], node)
    );
}

#[test]
fn a_client_that_met_a_key_holder_follows_the_key_to_a_newcomer_and_past_departures() {
    let mut rng = Rng::seeded(61);
    let ids = random_ids(&mut rng, 16);
    let mut net = Network::new(&ids);
    let writer = Client::new(net.discovery.local_addr(), key());
    let reader = Client::new(net.discovery.local_addr(), key());
    // A name whose key is no node's id: a newcomer with that id takes the key over.
    let name = &(0..100)
        .map(|i| format!("moving-{i}"))
        .find(|name| !ids.contains(&key_of(name.as_bytes())))
        .unwrap();
    let newcomer = key_of(name.as_bytes());
    let first = writer.put(name, b"one").unwrap();
    let holder = first.route.responsible().id;
    assert_eq!(reader.get(name).unwrap().route.responsible().id, holder);
    assert!(newcomer.closer_to(first.key, holder));
    net.join(newcomer);
    assert!(
        wait_until(Duration::from_secs(20), || holders(&net.nodes, name)
            .contains(&newcomer)),
        "the newcomer took the object over"
    );
    assert!(
        holders(&net.nodes, name).contains(&holder),
        "still a copy there"
    );
    // The clients' guess, the old holder, keeps a copy but refuses to serve or take the
    // write: the lookup finds the newcomer. Three requests: the guess, the lookup, the op.
    let sent = |client: &Client| client.stats().sent;
    let before = sent(&writer);
    let stored = writer.put(name, b"two").unwrap();
    assert_eq!(stored.route.responsible().id, newcomer);
    assert_eq!(sent(&writer) - before, 3, "{:?}", stored.route);
    let before = sent(&reader);
    let got = reader.get(name).unwrap();
    assert_eq!(
        (got.data.as_slice(), got.route.responsible().id),
        (&b"two"[..], newcomer)
    );
    assert_eq!(sent(&reader) - before, 3, "{:?}", got.route);
    let again = reader.get(name).unwrap();
    assert_eq!(
        again.route.path.len(),
        1,
        "met on the way: {:?}",
        again.route
    );
    // The node the clients know leaves; the next get finds the one that took over.
    let at = net.nodes.iter().position(|n| n.id() == newcomer).unwrap();
    let gone = net.nodes.remove(at);
    gone.leave().unwrap();
    gone.shutdown();
    let got = reader.get(name).unwrap();
    assert_eq!(got.data, b"two");
    assert_eq!(
        got.route.responsible().id,
        oracle_responsible(got.key, &net.ids())
    );
}
