//! The codec's tests: the table's examples of every message, random ones, every malformed
//! payload.

use bytes::BytesMut;

use super::payload::{self, ty};
use super::*;
use crate::checksum::crc32;
use crate::id::{Id, NodeInfo};
use crate::wire::{RemoteCode, DEFAULT_MAX_PAYLOAD as MAX};

fn node(id: u16, addr: &str) -> NodeInfo {
    NodeInfo {
        id: Id(id),
        addr: addr.parse().unwrap(),
    }
}

/// The stream the tests' frames travel on: any will do, and one with every byte different
/// shows that the header keeps them in order.
const STREAM: u32 = 0x0102_0304;

fn frame(msg: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(msg, STREAM, Trailer::Crc, &mut buf);
    buf.to_vec()
}

/// A frame of type `kind` around `payload`, with a correct length and CRC.
fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header_bytes(kind, STREAM, payload.len() as u32).to_vec();
    f.extend_from_slice(payload);
    f.extend_from_slice(&crc32(&f).to_be_bytes());
    f
}

/// Messages of every type from the table's own examples: the least values and empty lists,
/// the greatest and full ones, and a few in between.
fn samples() -> Vec<Message> {
    (0..6).flat_map(payload::examples).collect()
}

fn check_round_trip(msg: &Message) {
    let f = frame(msg);
    assert_eq!(decode(&f, MAX), Ok((msg.clone(), f.len())), "{msg:?}");
    let header: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
    let h = decode_header(header, MAX).unwrap();
    assert_eq!(
        (h.kind, h.stream, h.len as usize),
        (type_of(msg), STREAM, f.len() - HEADER_LEN - TRAILER_LEN)
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
    assert_eq!(name_of(8), None);
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
    let mut bytes = BytesMut::new();
    for (stream, m) in (1..).step_by(2).zip(&samples) {
        check_round_trip(m);
        encode(m, stream, Trailer::Crc, &mut bytes);
    }
    // Back-to-back frames: each decode consumes exactly its own frame, on its own stream.
    let mut rest = &bytes[..];
    for (stream, m) in (1..).step_by(2).zip(&samples) {
        let header = decode_header(rest.first_chunk().unwrap(), MAX).unwrap();
        let (got, used) = decode(rest, MAX).unwrap();
        assert_eq!((header.stream, &got), (stream, m));
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
    /// A random message of a random type.
    fn message(&mut self) -> Message {
        let all = payload::examples(self.next() | 2);
        let at = self.below(all.len() as u64) as usize;
        all[at].clone()
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
        let h = header_bytes(ty::PEERS, STREAM, len);
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
        for kind in [Trailer::Crc, Trailer::Zero] {
            let mut whole = BytesMut::new();
            encode_chunk(&data, STREAM, kind, &mut whole);
            let (header, trailer) = chunk_frame_parts(&data, STREAM, kind);
            assert_eq!(whole[..], [&header[..], &data, &trailer].concat()[..]);
        }
    }
}

#[test]
fn a_frame_for_a_sealed_connection_has_a_zero_trailer_and_is_refused_with_any_other() {
    let msg = Message::Error {
        code: RemoteCode::Busy,
        message: "a payload".into(),
    };
    let mut sealed = BytesMut::new();
    encode(&msg, STREAM, Trailer::Zero, &mut sealed);
    let plain = frame(&msg);
    // The same bytes but the last four: zero where the CRC was.
    let cut = plain.len() - TRAILER_LEN;
    assert_eq!(sealed[..cut], plain[..cut]);
    assert_eq!(sealed[cut..], [0; TRAILER_LEN]);
    fn body(f: &[u8], kind: Trailer) -> Result<Body<'_>, WireError> {
        let (header, rest) = f.split_first_chunk::<HEADER_LEN>().unwrap();
        decode_frame_body(header, rest, MAX, kind)
    }
    assert_eq!(body(&sealed, Trailer::Zero), Ok(Body::Message(msg.clone())));
    // Each end refuses the other's trailer: a peer that checksums is not one that seals.
    assert!(matches!(
        body(&sealed, Trailer::Crc),
        Err(WireError::BadChecksum { expected: 0, .. })
    ));
    assert!(matches!(
        body(&plain, Trailer::Zero),
        Err(WireError::BadChecksum { actual: 0, .. })
    ));
}

#[test]
fn a_chunk_frame_is_written_into_room_made_once() {
    // Grown by doubling, a 256 KiB chunk was copied again for its 4-byte trailer.
    let mut frame = BytesMut::new();
    encode_chunk(&vec![1u8; 256 * 1024], STREAM, Trailer::Crc, &mut frame);
    assert!(frame.capacity() <= frame.len() + 64, "{}", frame.capacity());
}

#[test]
fn bad_header_fields_have_typed_errors() {
    let f = raw_frame(8, &[]);
    let h: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
    assert_eq!(decode_header(h, MAX), Err(WireError::UnknownType(8)));
    assert_eq!(decode(&f, MAX), Err(WireError::UnknownType(8)));
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
        (ty::ERROR, "Error", "unknown error code", vec![14, 0, 0]),
        (ty::ERROR, "Error", "unknown error code", vec![0, 0, 0]),
        (ty::RECORD, "Record", "unknown flag bits", [&[0, 0, 0, 0][..], &[0; 24], &[32]].concat()),
        (ty::STORED, "Stored", "boolean is neither 0 nor 1", [&[0; 8][..], &[2]].concat()),
        (ty::GET, "Get", "byte string longer than the payload", vec![0, 0, 0, 9, b'x', 0]),
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
