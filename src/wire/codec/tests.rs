//! The codec's tests: a sample of every message, random messages, every malformed payload.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};

use super::payload::ty;
use super::*;
use crate::checksum::crc32;
use crate::id::{Id, NodeInfo};
use crate::wire::{RecordHead, RemoteCode, DEFAULT_MAX_PAYLOAD as MAX};

fn node(id: u16, addr: &str) -> NodeInfo {
    NodeInfo {
        id: Id(id),
        addr: addr.parse().unwrap(),
    }
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(msg, &mut buf);
    buf.to_vec()
}

/// A frame of type `kind` around `payload`, with a correct length and CRC.
fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![MAGIC, VERSION, kind];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.extend_from_slice(&crc32(&f).to_be_bytes());
    f
}

/// Every variant, with empty and full vecs, IPv4 and IPv6, ids 0000 and ffff, every code.
#[rustfmt::skip] // a table: one message a line reads better
fn samples() -> Vec<Message> {
    use Message as M;
    let a = node(0x0000, "10.0.0.1:4000");
    let b = node(0xffff, "[2001:db8::7]:65535");
    let c = node(0x3a7f, "0.0.0.0:0");
    let mut v = vec![M::Ack, M::Ping, M::RandomPeer, M::ListPeers, M::Peer { peer: None }];
    for code in (1..=10).map(|c| RemoteCode::from_u8(c).unwrap()) {
        v.push(M::Error { code, message: String::new() });
        v.push(M::Error { code, message: "id 3a7f in use — ça".into() });
    }
    for n in [a, b] {
        v.extend([M::Pong { node: n }, M::Announce { node: n }, M::Register { node: n }]);
        v.push(M::Peer { peer: Some(n) });
    }
    v.extend([
        M::Route { key: Id(0), hops_left: 0, budget_ms: 0 },
        M::Route { key: Id(0xffff), hops_left: 255, budget_ms: u32::MAX },
        M::Routed { path: vec![], replicas: vec![] },
        M::Routed { path: vec![a, b, c], replicas: vec![b] },
        M::JoinHop { joiner: b, exclude: vec![] },
        M::JoinHop { joiner: a, exclude: vec![Id(0x1234)] },
        M::JoinState { node: a, next: a, rows: vec![], leaf_set: vec![] },
        M::JoinState { node: b, next: c, rows: vec![a, b], leaf_set: vec![c] },
        M::Depart { node: c, leaf_set: vec![] },
        M::Depart { node: c, leaf_set: vec![a, b, c] },
        M::Joined { id: Id(0) },
        M::Joined { id: Id(0xffff) },
        M::Deregister { node: node(0x00ff, "[::1]:7") },
        M::Peers { peers: vec![] },
        M::Peers { peers: vec![a, b, c] },
        M::Record(RecordHead { name: vec![], size: 0, version: 0, deleted: false, handoff: false, request: 0, existed: false, relayed: false }),
        M::Record(RecordHead { name: b"../\0x".to_vec(), size: u64::MAX, version: 7, deleted: true, handoff: true, request: u64::MAX, existed: true, relayed: true }),
        M::Chunk { data: Bytes::new() },
        M::Chunk { data: Bytes::from_static(&[0, 1, 2, 255]) },
        M::RecordEnd { crc: 0xdead_beef },
        M::Stored { version: u64::MAX, kept: false, before: u64::MAX, before_live: true },
        M::Stored { version: 1, kept: true, before: 0, before_live: false },
        M::Holds { records: vec![] },
        M::Holds { records: vec![(b"x".to_vec(), 7), (vec![], u64::MAX)] },
        M::Lacking { older: vec![], absent: vec![] },
        M::Lacking { older: vec![b"a/b".to_vec(), vec![]], absent: vec![b"c".to_vec()] },
        M::Get { name: b"hello.txt".to_vec() },
        M::Delete { name: vec![0xff; 300], request: 9, relayed: true },
        M::Deleted { existed: true, version: 3 },
        M::Deleted { existed: false, version: 0 },
        M::Pull { joiner: b },
        M::Exchange { node: a, leaf_set: vec![] },
        M::Alive { node: c },
        M::Suspect { node: a },
        M::Cell { row: 3, col: 15 },
        M::Replicas { key: Id(0xbeef) },
        M::ReplicaSet { nodes: vec![] },
        M::ReplicaSet { nodes: vec![a, b] },
        M::CellEntry { node: None },
        M::CellEntry { node: Some(b) },
        M::LeafSet { node: b, leaf_set: vec![a, c] },
    ]);
    v
}

fn check_round_trip(msg: &Message) {
    let f = frame(msg);
    assert_eq!(decode(&f, MAX), Ok((msg.clone(), f.len())), "{msg:?}");
    let header: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
    let h = decode_header(header, MAX).unwrap();
    assert_eq!(
        (h.kind, h.len as usize),
        (type_of(msg), f.len() - HEADER_LEN - TRAILER_LEN)
    );
    assert_eq!(
        decode_payload(header, &f[HEADER_LEN..], MAX).as_ref(),
        Ok(msg)
    );
}

#[test]
fn the_message_set_is_declared_once_and_every_type_has_a_sample() {
    let mut declared = std::collections::BTreeSet::new();
    for &kind in ty::ALL {
        assert!(declared.insert(kind), "type byte {kind} declared twice");
        assert!(name_of(kind).is_some(), "type byte {kind} has no name");
    }
    let sampled: std::collections::BTreeSet<u8> = samples().iter().map(type_of).collect();
    assert_eq!(
        sampled, declared,
        "every type, and only those, has a sample"
    );
    assert_eq!(name_of(3), None);
    assert_eq!(
        Message::LeafSet {
            node: node(1, "1.2.3.4:5"),
            leaf_set: vec![]
        }
        .name(),
        "LeafSet"
    );
}

#[test]
fn round_trip_every_variant() {
    let samples = samples();
    let mut seen: Vec<u8> = samples.iter().map(type_of).collect();
    seen.sort_unstable();
    seen.dedup();
    let known: Vec<u8> = (0..=255).filter(|&t| name_of(t).is_some()).collect();
    assert_eq!(seen, known, "samples must cover every message type");
    let mut stream = BytesMut::new();
    for m in &samples {
        check_round_trip(m);
        encode(m, &mut stream);
    }
    // Back-to-back frames: each decode consumes exactly its own frame.
    let mut rest = &stream[..];
    for m in &samples {
        let (got, used) = decode(rest, MAX).unwrap();
        assert_eq!(&got, m);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

/// splitmix64: a tiny deterministic generator for the randomised tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn node(&mut self) -> NodeInfo {
        let (id, port, bits) = (self.next() as u16, self.next() as u16, self.next());
        let addr = if bits & 1 == 0 {
            SocketAddr::from((Ipv4Addr::from(bits as u32), port))
        } else {
            SocketAddr::from((
                Ipv6Addr::from(u128::from(bits) * u128::from(self.next())),
                port,
            ))
        };
        NodeInfo { id: Id(id), addr }
    }
    fn nodes(&mut self) -> Vec<NodeInfo> {
        (0..self.below(20)).map(|_| self.node()).collect()
    }
    fn bytes(&mut self) -> Vec<u8> {
        (0..self.below(40)).map(|_| self.next() as u8).collect()
    }
    fn ids(&mut self) -> Vec<Id> {
        (0..self.below(20))
            .map(|_| Id(self.next() as u16))
            .collect()
    }
    #[rustfmt::skip] // a table: one variant a line reads better
    fn message(&mut self) -> Message {
        use Message as M;
        match self.below(35) {
            0 => M::Ack,
            1 => M::Error {
                code: RemoteCode::from_u8(1 + self.below(12) as u8).unwrap(),
                message: (0..self.below(30))
                    .map(|_| ['a', 'é', '€', '😀'][self.below(4) as usize])
                    .collect(),
            },
            2 => M::Ping,
            3 => M::Pong { node: self.node() },
            4 => M::Route {
                key: Id(self.next() as u16),
                hops_left: self.next() as u8,
                budget_ms: self.next() as u32,
            },
            5 => M::Routed { path: self.nodes(), replicas: self.nodes() },
            6 => M::JoinHop { joiner: self.node(), exclude: self.ids() },
            7 => M::JoinState {
                node: self.node(), next: self.node(),
                rows: self.nodes(), leaf_set: self.nodes(),
            },
            8 => M::Announce { node: self.node() },
            9 => M::Depart { node: self.node(), leaf_set: self.nodes() },
            10 => M::Register { node: self.node() },
            11 => M::Joined { id: Id(self.next() as u16) },
            12 => M::Deregister { node: self.node() },
            13 => M::RandomPeer,
            14 => M::Peer { peer: (self.next() & 1 == 1).then(|| self.node()) },
            15 => M::ListPeers,
            16 => M::Peers { peers: self.nodes() },
            17 => M::Record(RecordHead {
                name: self.bytes(), size: self.next(), version: self.next(),
                deleted: self.next() & 1 == 1, handoff: self.next() & 1 == 1,
                request: self.next(), existed: self.next() & 1 == 1, relayed: self.next() & 1 == 1,
            }),
            18 => M::Chunk { data: Bytes::from(self.bytes()) },
            19 => M::RecordEnd { crc: self.next() as u32 },
            20 => M::Stored {
                version: self.next(), kept: self.next() & 1 == 1,
                before: self.next(), before_live: self.next() & 1 == 1,
            },
            21 => M::Get { name: self.bytes() },
            22 => M::Delete { name: self.bytes(), request: self.next(), relayed: self.next() & 1 == 1 },
            23 => M::Deleted { existed: self.next() & 1 == 1, version: self.next() },
            24 => M::Pull { joiner: self.node() },
            25 => M::Exchange { node: self.node(), leaf_set: self.nodes() },
            26 => M::Alive { node: self.node() },
            27 => M::Holds { records: (0..self.below(5)).map(|_| (self.bytes(), self.next())).collect() },
            28 => M::Lacking {
                older: (0..self.below(5)).map(|_| self.bytes()).collect(),
                absent: (0..self.below(5)).map(|_| self.bytes()).collect(),
            },
            29 => M::Cell { row: self.next() as u8, col: self.next() as u8 },
            30 => M::CellEntry { node: (self.next() & 1 == 1).then(|| self.node()) },
            31 => M::Replicas { key: Id(self.next() as u16) },
            32 => M::ReplicaSet { nodes: self.nodes() },
            33 => M::Suspect { node: self.node() },
            _ => M::LeafSet { node: self.node(), leaf_set: self.nodes() },
        }
    }
}

#[test]
fn random_round_trip() {
    let mut rng = Rng(0x5eed);
    for _ in 0..2000 {
        check_round_trip(&rng.message());
    }
}

#[test]
fn every_strict_prefix_is_truncated() {
    for m in samples() {
        let f = frame(&m);
        for k in 0..f.len() {
            let needed = if k < HEADER_LEN { HEADER_LEN } else { f.len() };
            assert_eq!(
                decode(&f[..k], MAX),
                Err(WireError::Truncated { needed, have: k })
            );
        }
    }
}

#[test]
fn oversized_is_refused_from_the_header_alone() {
    for (len, max) in [(101, 100), (u32::MAX, MAX), (1, 0)] {
        let mut h = [MAGIC, VERSION, ty::PEERS, 0, 0, 0, 0];
        h[3..].copy_from_slice(&len.to_be_bytes());
        let err = WireError::TooLarge { len, max };
        assert_eq!(decode_header(&h, max), Err(err.clone()));
        assert_eq!(decode(&h, max), Err(err.clone()));
        assert_eq!(decode_payload(&h, &[], max), Err(err));
    }
}

#[test]
fn any_flipped_bit_is_detected() {
    for m in samples() {
        let f = frame(&m);
        for bit in 0..f.len() * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            let got = decode(&g, MAX);
            if bit >= HEADER_LEN * 8 {
                assert!(
                    matches!(got, Err(WireError::BadChecksum { .. })),
                    "{m:?} bit {bit}: {got:?}"
                );
            } else {
                assert!(got.is_err(), "{m:?} bit {bit}: {got:?}");
            }
        }
    }
}

#[test]
fn an_overlong_reason_is_cut_at_a_character_boundary() {
    let message = "é".repeat(40_000); // 80,000 bytes, two per character
    let (got, _) = decode(
        &frame(&Message::Error {
            code: RemoteCode::Internal,
            message,
        }),
        MAX,
    )
    .unwrap();
    let Message::Error { message, .. } = got else {
        panic!("{got:?}")
    };
    assert_eq!(message, "é".repeat(32_767));
}

#[test]
fn chunk_frame_parts_frame_the_data_as_encode_chunk_does() {
    for len in [0, 1, 1000, 70_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut whole = BytesMut::new();
        encode_chunk(&data, &mut whole);
        let (header, trailer) = chunk_frame_parts(&data);
        assert_eq!(whole[..], [&header[..], &data, &trailer].concat()[..]);
    }
}

#[test]
fn bad_header_fields_have_typed_errors() {
    let f = raw_frame(3, &[]);
    let h: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
    assert_eq!(decode_header(h, MAX), Err(WireError::UnknownType(3)));
    assert_eq!(decode(&f, MAX), Err(WireError::UnknownType(3)));
    let mut f = frame(&Message::Ping);
    f[1] = VERSION + 1;
    assert_eq!(decode(&f, MAX), Err(WireError::BadVersion(VERSION + 1)));
    f[0] = 0x51;
    assert_eq!(decode(&f, MAX), Err(WireError::BadMagic(0x51)));
}

#[test]
#[rustfmt::skip] // a table: one case a line reads better
fn malformed_payloads_with_valid_crc() {
    let v4 = [0x12, 0x34, 4, 127, 0, 0, 1, 0x1f, 0x90];
    let v5 = [0x12, 0x34, 5, 127, 0, 0, 1, 0x1f, 0x90];
    let count = "count larger than the payload can hold";
    let cases: &[(u8, &str, &str, Vec<u8>)] = &[
        (ty::PEER, "Peer", "option tag is neither 0 nor 1", [&[2][..], &v4].concat()),
        (ty::PONG, "Pong", "address family is neither 4 nor 6", v5.to_vec()),
        (ty::ERROR, "Error", "string is not UTF-8", vec![1, 0, 2, 0xff, 0xfe]),
        (ty::ERROR, "Error", "string longer than the payload", vec![1, 0, 9, b'x']),
        (ty::PEERS, "Peers", count, [&[0, 0, 0x03, 0xe8][..], &v4, &v4].concat()),
        (ty::ROUTED, "Routed", count, vec![0, 0, 0, 2, 0, 1]),
        (ty::PING, "Ping", "bytes after the message", vec![0]),
        (ty::JOINED, "Joined", "bytes after the message", vec![0, 1, 2]),
        (ty::JOINED, "Joined", "payload ends inside a field", vec![0]),
        (ty::ERROR, "Error", "unknown error code", vec![13, 0, 0]),
        (ty::ERROR, "Error", "unknown error code", vec![0, 0, 0]),
        (ty::RECORD, "Record", "unknown flag bits", [&[0, 0, 0, 0][..], &[0; 24], &[16]].concat()),
        (ty::STORED, "Stored", "boolean is neither 0 nor 1", [&[0; 8][..], &[2]].concat()),
        (ty::GET, "Get", "byte string longer than the payload", vec![0, 0, 0, 9, b'x']),
    ];
    for (t, kind, what, payload) in cases {
        let got = decode(&raw_frame(*t, payload), MAX);
        assert_eq!(got, Err(WireError::Malformed { kind, what }), "{payload:?}");
    }
    // Bytes past the checksum handed to decode_payload are refused too.
    let f = [frame(&Message::Ack), vec![0]].concat();
    let h: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
    assert!(matches!(
        decode_payload(h, &f[HEADER_LEN..], MAX),
        Err(WireError::Malformed { .. })
    ));
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(42);
    let (mut ok, mut err) = (0, 0);
    let known: Vec<u8> = (0..=255).filter(|&t| name_of(t).is_some()).collect();
    for _ in 0..20_000 {
        let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        let got = decode(&bytes, MAX);
        if bytes.first() != Some(&MAGIC) {
            assert!(got.is_err());
        }
        // Same bytes as the payload of a frame with a valid header and CRC; short payloads
        // so that some of them parse.
        let kind = known[rng.below(known.len() as u64) as usize];
        let payload = &bytes[..bytes.len().min(rng.below(30) as usize)];
        let f = raw_frame(kind, payload);
        match decode(&f, MAX) {
            // Every field has one encoding, so whatever decodes re-encodes to the same bytes.
            Ok((m, used)) => {
                assert_eq!((frame(&m), used), (f.clone(), f.len()));
                ok += 1;
            }
            Err(_) => err += 1,
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
