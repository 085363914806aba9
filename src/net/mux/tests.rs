//! Two ends of a multiplexed connection wired back to back, bytes moved by hand.

use super::*;
use crate::wire::{Trailer, DEFAULT_MAX_PAYLOAD};

const WINDOW: u32 = 1 << 20;
const CHUNK: usize = 256 * 1024;

fn config() -> LinkConfig {
    config_with(WINDOW)
}

fn config_with(window: u32) -> LinkConfig {
    LinkConfig {
        window,
        max_peer_streams: 8,
        max_payload: DEFAULT_MAX_PAYLOAD,
        trailer: Trailer::Crc,
    }
}

fn frame(stream: u32, msg: &Message) -> Bytes {
    let mut buf = BytesMut::new();
    wire::encode(msg, stream, Trailer::Crc, &mut buf);
    buf.freeze()
}

fn chunk(stream: u32, fill: u8) -> Bytes {
    let mut buf = BytesMut::new();
    wire::encode_chunk(&vec![fill; CHUNK], stream, Trailer::Crc, &mut buf);
    buf.freeze()
}

/// The end that opened the connection and the end that accepted it.
struct Pair {
    opener: Link,
    acceptor: Link,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_windows(WINDOW, WINDOW)
    }

    fn with_windows(opener: u32, acceptor: u32) -> Pair {
        Pair {
            opener: Link::new(true, config_with(opener)),
            acceptor: Link::new(false, config_with(acceptor)),
        }
    }

    /// Moves at most `limit` bytes of output from `from` to `to`, in pieces of `piece`
    /// bytes; returns the events and the bytes moved.
    fn carry(from: &mut Link, to: &mut Link, limit: usize, piece: usize) -> (Vec<Event>, usize) {
        let mut out = Vec::new();
        from.output(&mut out, limit);
        let mut events = Vec::new();
        for part in out.chunks(piece) {
            to.receive(part, &mut events).unwrap();
        }
        (events, out.len())
    }

    fn send_to_acceptor(&mut self, limit: usize) -> Vec<Event> {
        Self::carry(&mut self.opener, &mut self.acceptor, limit, 70_000).0
    }

    fn send_to_opener(&mut self, limit: usize) -> Vec<Event> {
        Self::carry(&mut self.acceptor, &mut self.opener, limit, 70_000).0
    }
}

fn message(inbound: Option<Inbound>) -> Message {
    match inbound {
        Some(Inbound::Message(msg)) => msg,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn requests_in_flight_both_ways_are_answered_on_their_own_streams() {
    let mut p = Pair::new();
    let (a1, a3) = (p.opener.open().unwrap(), p.opener.open().unwrap());
    let b2 = p.acceptor.open().unwrap();
    assert_eq!((a1, a3, b2), (1, 3, 2));
    p.opener.send(a1, frame(a1, &Message::Ping)).unwrap();
    p.opener.send(a3, frame(a3, &Message::ListPeers)).unwrap();
    p.acceptor
        .send(b2, frame(b2, &Message::RandomPeer))
        .unwrap();
    assert_eq!(
        p.send_to_acceptor(usize::MAX),
        [Event::Opened(1), Event::Opened(3)]
    );
    assert_eq!(p.send_to_opener(usize::MAX), [Event::Opened(2)]);
    // Answered out of order, each on its request's stream.
    assert_eq!(message(p.acceptor.take(3).unwrap()), Message::ListPeers);
    p.acceptor
        .send(3, frame(3, &Message::Peers { peers: vec![] }))
        .unwrap();
    assert_eq!(message(p.acceptor.take(1).unwrap()), Message::Ping);
    p.acceptor.send(1, frame(1, &Message::Ack)).unwrap();
    p.acceptor.close(1);
    p.acceptor.close(3);
    assert_eq!(message(p.opener.take(2).unwrap()), Message::RandomPeer);
    p.opener
        .send(2, frame(2, &Message::Peer { peer: None }))
        .unwrap();
    p.opener.close(2);
    assert_eq!(
        p.send_to_opener(usize::MAX),
        [Event::Readable(3), Event::Readable(1)]
    );
    assert_eq!(p.send_to_acceptor(usize::MAX), [Event::Readable(2)]);
    assert_eq!(message(p.opener.take(1).unwrap()), Message::Ack);
    assert!(matches!(
        message(p.opener.take(3).unwrap()),
        Message::Peers { .. }
    ));
    assert_eq!(
        message(p.acceptor.take(2).unwrap()),
        Message::Peer { peer: None }
    );
    for s in [1, 3] {
        p.opener.close(s);
    }
    p.acceptor.close(2);
    assert_eq!((p.opener.open_streams(), p.acceptor.open_streams()), (0, 0));
    assert_eq!((p.opener.held(), p.acceptor.held()), (0, 0));
    assert!(!p.opener.has_output() && !p.acceptor.has_output());
    assert!(!p.opener.is_spent());
    assert!(
        p.opener.is_idle() && p.acceptor.is_idle(),
        "done with every stream, each end lets go of its streams and queues"
    );
}

#[test]
fn a_large_transfer_delays_a_small_request_by_one_frame_at_most() {
    let mut p = Pair::new();
    let bulk = p.opener.open().unwrap();
    for i in 0..16 {
        p.opener.send(bulk, chunk(bulk, i)).unwrap();
    }
    // Two chunks out already, then a small request.
    let mut out = Vec::new();
    p.opener.output(&mut out, 2 * CHUNK);
    let small = p.opener.open().unwrap();
    p.opener.send(small, frame(small, &Message::Ping)).unwrap();
    let mut next = Vec::new();
    p.opener.output(&mut next, CHUNK + 100);
    let ping = frame(small, &Message::Ping);
    let at = next
        .windows(ping.len())
        .position(|w| w == &ping[..])
        .expect("the request goes out in the next frame or two");
    assert!(
        at <= CHUNK + HEADER_LEN + TRAILER_LEN,
        "behind more than one chunk: {at}"
    );
}

#[test]
fn a_taker_that_stops_holds_a_window_and_one_frame_and_stalls_no_other_stream() {
    let mut p = Pair::new();
    let bulk = p.opener.open().unwrap();
    for i in 0..64 {
        p.opener.send(bulk, chunk(bulk, i)).unwrap();
    }
    p.opener
        .send(bulk, frame(bulk, &Message::RecordEnd { crc: 0 }))
        .unwrap();
    // The acceptor takes nothing of it: the opener stops at the window.
    for _ in 0..10 {
        p.send_to_acceptor(usize::MAX);
    }
    let frame_len = CHUNK + HEADER_LEN + TRAILER_LEN;
    assert!(
        p.acceptor.held() <= WINDOW as usize + frame_len,
        "{}",
        p.acceptor.held()
    );
    assert!(
        p.opener.queued(bulk) > 50 * CHUNK,
        "the rest waits at its sender"
    );
    // Another request passes all the same.
    let small = p.opener.open().unwrap();
    p.opener.send(small, frame(small, &Message::Ping)).unwrap();
    assert_eq!(p.send_to_acceptor(usize::MAX), [Event::Opened(small)]);
    assert_eq!(message(p.acceptor.take(small).unwrap()), Message::Ping);
    // Taking grants credit, and the transfer runs to its end, whole and in order, never
    // holding more than a window and a frame.
    let mut got = 0u8;
    let mut most_held = 0;
    for _ in 0..1000 {
        while let Some(inbound) = p.acceptor.take(bulk).unwrap() {
            match inbound {
                Inbound::Chunk(data) => {
                    assert_eq!((data.len(), data[0]), (CHUNK, got));
                    got += 1;
                }
                Inbound::Message(msg) => {
                    assert_eq!((msg, got), (Message::RecordEnd { crc: 0 }, 64));
                    return;
                }
            }
        }
        p.send_to_opener(usize::MAX);
        p.send_to_acceptor(usize::MAX);
        most_held = most_held.max(p.acceptor.held());
        assert!(most_held <= WINDOW as usize + frame_len, "{most_held}");
    }
    panic!("the transfer did not end: {got} chunks");
}

/// Sends `chunks` chunks and an end on `stream` from one end of `p` to the other (the
/// acceptor if `to_acceptor`), the receiver taking all it has between carries; checks the
/// data and that the receiver never holds more than `most` bytes of the stream.
fn transfer(p: &mut Pair, stream: u32, to_acceptor: bool, chunks: u8, most: usize) {
    let (from, to) = if to_acceptor {
        (&mut p.opener, &mut p.acceptor)
    } else {
        (&mut p.acceptor, &mut p.opener)
    };
    for i in 0..chunks {
        from.send(stream, chunk(stream, i)).unwrap();
    }
    let end = Message::RecordEnd { crc: 0 };
    from.send(stream, frame(stream, &end)).unwrap();
    let mut got = 0u8;
    for _ in 0..10 * usize::from(chunks) + 10 {
        Pair::carry(from, to, usize::MAX, 70_000);
        assert!(to.held() <= most, "held {} of at most {most}", to.held());
        while let Some(inbound) = to.take(stream).unwrap() {
            match inbound {
                Inbound::Chunk(data) => {
                    assert_eq!((data.len(), data[0]), (CHUNK, got));
                    got += 1;
                }
                Inbound::Message(msg) => {
                    assert_eq!((msg, got), (end.clone(), chunks));
                    return;
                }
            }
        }
        // The receiver's grants go back.
        Pair::carry(to, from, usize::MAX, 70_000);
    }
    panic!("the transfer stalled after {got} of {chunks} chunks");
}

#[test]
fn ends_configured_with_different_windows_agree_and_each_receiver_holds_its_own() {
    let frame_len = CHUNK + HEADER_LEN + TRAILER_LEN;
    let held_at_most = |window: u32| window.max(INITIAL_CREDIT) as usize + frame_len;
    for (opener, acceptor) in [
        (4 << 20, 1 << 20),
        (1 << 20, 4 << 20),
        (256 << 10, 4 << 20),
        (4 << 20, 256 << 10),
        // The least a link is given (`stream_window: 0` is taken as 1).
        (1, 1 << 20),
        (1 << 20, 1),
    ] {
        let mut p = Pair::with_windows(opener, acceptor);
        let s = p.opener.open().unwrap();
        // A request of 24 chunks, then a reply of as many on its stream.
        transfer(&mut p, s, true, 24, held_at_most(acceptor));
        transfer(&mut p, s, false, 24, held_at_most(opener));
    }
}

#[test]
fn frames_split_anywhere_are_put_back_together() {
    let mut p = Pair::new();
    let s = p.opener.open().unwrap();
    p.opener.send(s, frame(s, &Message::Ping)).unwrap();
    p.opener.send(s, chunk(s, 9)).unwrap();
    p.opener.send(s, frame(s, &Message::Ack)).unwrap();
    let (events, moved) = Pair::carry(&mut p.opener, &mut p.acceptor, usize::MAX, 1);
    assert!(moved > CHUNK);
    assert_eq!(
        events,
        [Event::Opened(s), Event::Readable(s), Event::Readable(s)]
    );
    assert_eq!(message(p.acceptor.take(s).unwrap()), Message::Ping);
    assert_eq!(
        p.acceptor.take(s).unwrap(),
        Some(Inbound::Chunk(Bytes::from(vec![9; CHUNK])))
    );
    assert_eq!(message(p.acceptor.take(s).unwrap()), Message::Ack);
    assert_eq!(p.acceptor.take(s).unwrap(), None);
    assert!(!p.acceptor.is_mid_frame());
}

#[test]
fn a_cancel_reaches_the_other_end_and_frees_both() {
    let mut p = Pair::new();
    let s = p.opener.open().unwrap();
    p.opener.send(s, frame(s, &Message::Ping)).unwrap();
    p.send_to_acceptor(usize::MAX);
    p.acceptor.send(s, chunk(s, 1)).unwrap();
    p.opener.cancel(s);
    assert!(p.opener.has_output(), "the cancel is to be sent");
    assert_eq!(p.opener.send(s, frame(s, &Message::Ack)), Err(Gone));
    assert_eq!(p.send_to_acceptor(usize::MAX), [Event::Cancelled(s)]);
    assert_eq!(
        p.acceptor.take(s),
        Err(Gone),
        "the server's side sees it given up"
    );
    assert_eq!(p.acceptor.queued(s), 0, "what it queued is dropped");
    p.acceptor.close(s);
    assert_eq!((p.opener.open_streams(), p.acceptor.open_streams()), (0, 0));
    // Frames still under way for it are dropped quietly.
    let mut events = Vec::new();
    p.opener
        .receive(&frame(s, &Message::Ack), &mut events)
        .unwrap();
    assert!(events.is_empty() && p.opener.held() == 0);
    assert!(p.opener.is_idle() && p.acceptor.is_idle());
}

#[test]
fn streams_past_the_limit_are_refused_busy_and_the_rest_served() {
    let mut p = Pair::new();
    let streams: Vec<u32> = (0..10).map(|_| p.opener.open().unwrap()).collect();
    for &s in &streams {
        p.opener.send(s, frame(s, &Message::Ping)).unwrap();
    }
    let opened = p.send_to_acceptor(usize::MAX);
    assert_eq!(opened.len(), 8, "{opened:?}");
    p.send_to_opener(usize::MAX);
    for &s in &streams[8..] {
        match message(p.opener.take(s).unwrap()) {
            Message::Error { code, .. } => assert_eq!(code, RemoteCode::Busy),
            other => panic!("{other:?}"),
        }
    }
    // Once one ends, a new one is served.
    p.acceptor.close(streams[0]);
    let s = p.opener.open().unwrap();
    p.opener.send(s, frame(s, &Message::Ping)).unwrap();
    assert_eq!(p.send_to_acceptor(usize::MAX), [Event::Opened(s)]);
}

/// Feeds `bytes` to a fresh accepting end.
fn fed(bytes: &[u8]) -> Result<Link, LinkError> {
    let mut link = Link::new(false, config());
    link.receive(bytes, &mut Vec::new()).map(|()| link)
}

#[test]
fn a_peer_out_of_step_ends_the_connection_with_a_typed_error() {
    let ping = |s| frame(s, &Message::Ping);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a stream of the acceptor's it never opened",
            ping(2).to_vec(),
        ),
        ("a request on the connection's stream", ping(0).to_vec()),
        ("not a frame", vec![0u8; 32]),
    ];
    for (what, bytes) in cases {
        assert!(fed(&bytes).is_err(), "{what}");
    }
    let ended = frame(
        0,
        &Message::Error {
            code: RemoteCode::Busy,
            message: "full".into(),
        },
    );
    assert!(matches!(
        fed(&ended),
        Err(LinkError::Ended {
            code: RemoteCode::Busy,
            ..
        })
    ));
    // Past its credit: a window's worth of chunks and one more, none taken.
    let mut bytes = Vec::new();
    for i in 0..=(WINDOW as usize / CHUNK) {
        bytes.extend_from_slice(&chunk(1, i as u8));
    }
    assert!(matches!(fed(&bytes), Err(LinkError::Overrun(1))));
    // A header claiming 4 MiB pins only what arrived.
    let mut huge = BytesMut::new();
    wire::encode_chunk(&vec![0u8; 4 << 20], 1, Trailer::Crc, &mut huge);
    let link = fed(&huge[..HEADER_LEN + 10]).unwrap();
    assert!(link.is_mid_frame() && link.held() == HEADER_LEN + 10);
    let mut too_large = BytesMut::new();
    wire::encode_chunk(&vec![0u8; (4 << 20) + 1], 1, Trailer::Crc, &mut too_large);
    assert!(matches!(
        fed(&too_large[..HEADER_LEN]),
        Err(LinkError::Wire(WireError::TooLarge { .. }))
    ));
}
