//! Tests of a connection's state: frames sealed into records and opened from them, however
//! the reads split them.

use super::*;
use crate::net::mux::{Inbound, LinkConfig};
use crate::net::secure::{channel_pair, ClusterKey};
use bytes::{Bytes, BytesMut};

/// The state of an accepted connection whose cipher is `channel`.
fn accepted(channel: Channel) -> State {
    end(channel, false)
}

/// The state of a connection whose cipher is `channel`, opened at this end or accepted.
fn end(channel: Channel, opened_here: bool) -> State {
    let config = LinkConfig {
        window: 8 << 20,
        max_peer_streams: 64,
        max_payload: wire::DEFAULT_MAX_PAYLOAD,
        trailer: wire::Trailer::Zero,
    };
    State::new(Phase::Open, Link::new(opened_here, config), Some(channel))
}

#[test]
fn a_frame_put_out_from_its_parts_arrives_as_the_same_frames_in_records_of_the_most() {
    let key = ClusterKey::from_bytes([7; 32]);
    let (sealer, opener) = channel_pair(&key);
    let mut sender = accepted(sealer);
    let replays = Mutex::new(ReplayGuard::default());
    // Chunks whose frames end inside a record, on one, and before the first one ends.
    let chunks: Vec<Vec<u8>> = [3 * MAX_PLAIN + 100, MAX_PLAIN - 15, 10]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|b| (b * 7 + i) as u8).collect())
        .collect();
    for (i, data) in chunks.iter().enumerate() {
        let (header, trailer) =
            wire::chunk_frame_parts(data, 2 * i as u32 + 1, wire::Trailer::Zero);
        sender.put_out(&[&header, data, &trailer]).unwrap();
    }
    // Records of the most plaintext each but a frame's last.
    let mut at = 0;
    let mut records = 0;
    while at < sender.output.len() {
        let len = record_len(&sender.output[at..]).unwrap();
        assert!(len <= 2 + MAX_PLAIN + RECORD_OVERHEAD - 2);
        at += len;
        records += 1;
    }
    assert_eq!(at, sender.output.len());
    assert_eq!(records, 4 + 1 + 1);
    let mut receiver = accepted(opener);
    let mut events = Vec::new();
    let mut wire_bytes = sender.output.clone();
    let taken = receiver.take_input(&mut wire_bytes, &replays, &mut events);
    assert!(taken.is_ok(), "{:?}", taken.err().map(|f| f.why));
    for (i, data) in chunks.iter().enumerate() {
        let got = receiver.link.take(2 * i as u32 + 1).unwrap();
        assert_eq!(
            got,
            Some(Inbound::Chunk(Bytes::from(data.clone()))),
            "chunk {i}"
        );
    }
}

#[test]
fn records_split_anywhere_between_reads_bring_every_frame_once_in_order() {
    let key = ClusterKey::from_bytes([9; 32]);
    // Requests of many sizes on streams 1, 3, 5, ..., sealed in records of every size
    // from a few bytes to the most, as one stream of bytes.
    let (mut sealer, opener) = channel_pair(&key);
    let mut frames = Vec::new();
    for (i, len) in [0, 1, 100, 5_000, 65_519, 70_000, 256 * 1024, 3]
        .iter()
        .enumerate()
    {
        let mut buf = BytesMut::new();
        wire::encode_chunk(
            &vec![i as u8; *len],
            2 * i as u32 + 1,
            wire::Trailer::Zero,
            &mut buf,
        );
        frames.push(buf.freeze());
    }
    let plain: Vec<u8> = frames.concat();
    let mut sealed = Vec::new();
    let mut at = 0usize;
    for piece in [7, MAX_PLAIN, 1, 40_000, MAX_PLAIN, 12, usize::MAX] {
        let end = plain.len().min(at.saturating_add(piece));
        seal_all(&mut sealer, &plain[at..end], &mut sealed).unwrap();
        at = end;
    }
    assert_eq!(at, plain.len());
    // Read in pieces that cut records anywhere: before, inside and across lengths.
    let mut state = accepted(opener);
    let replays = Mutex::new(ReplayGuard::default());
    let mut events = Vec::new();
    let mut rest = &sealed[..];
    for read in [1, 2, 3, 65_536, 17, 100_000, 64 * 1024 + 18]
        .iter()
        .cycle()
    {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*read).min(rest.len()));
        let taken = state.take_input(&mut now.to_vec(), &replays, &mut events);
        assert!(taken.is_ok(), "{:?}", taken.err().map(|f| f.why));
        rest = later;
    }
    let opened: Vec<Event> = (0..frames.len())
        .map(|i| Event::Opened(2 * i as u32 + 1))
        .collect();
    assert_eq!(events, opened);
    for (i, frame) in frames.iter().enumerate() {
        let got = state.link.take(2 * i as u32 + 1).unwrap();
        let data =
            Bytes::copy_from_slice(&frame[wire::HEADER_LEN..frame.len() - wire::TRAILER_LEN]);
        assert_eq!(got, Some(Inbound::Chunk(data)), "frame {i}");
    }
    assert!(
        state.input.is_empty() && state.input.capacity() == 0,
        "nothing held"
    );
}

#[test]
fn a_tick_tells_how_long_after_another_it_is_across_the_wrap() {
    let (a, b) = (Tick(1_000), Tick(3_500));
    assert_eq!(b.since(a), Duration::from_millis(2_500));
    assert_eq!(a.since(b), Duration::ZERO, "not after: zero");
    // The count wraps after 49 days; what is near it still compares.
    let (before, after) = (Tick(u32::MAX - 99), Tick(400));
    assert_eq!(after.since(before), Duration::from_millis(500));
    let _ = Tick::now(); // the process's epoch, before `now`
    let now = Instant::now();
    let later = Tick::at(now + Duration::from_secs(2));
    assert_eq!(later.since(Tick::at(now)), Duration::from_secs(2));
}

/// Encodes `msg` as a frame of `stream`.
fn frame_of(msg: &Message, stream: u32) -> Bytes {
    let mut buf = BytesMut::new();
    wire::encode(msg, stream, wire::Trailer::Zero, &mut buf);
    buf.freeze()
}

/// Hands what `from` has sealed (and whatever its link queued) to `to`, as written; the
/// events it brought.
fn deliver(from: &mut State, to: &mut State) -> Vec<Event> {
    let replays = Mutex::new(ReplayGuard::default());
    from.refill().unwrap();
    assert!(from.written < from.output.len(), "something to send");
    let mut bytes = from.output[from.written..].to_vec();
    from.written = from.output.len();
    let mut events = Vec::new();
    let taken = to.take_input(&mut bytes, &replays, &mut events);
    assert!(taken.is_ok(), "{:?}", taken.err().map(|f| f.why));
    events
}

#[test]
fn a_request_and_its_answer_in_small_frames_arrive_whole_and_leave_nothing_held() {
    let key = ClusterKey::from_bytes([7; 32]);
    let (sealer, opener) = channel_pair(&key);
    let (mut asker, mut answerer) = (end(sealer, true), accepted(opener));
    // Each a small frame that comes whole, taken as it lies rather than gathered first: the
    // request queued on its link, the answer sealed past the queue from where it lies (as a
    // stream's flush sends one when nothing is queued before it).
    let s = asker.link.open().unwrap();
    asker.link.send(s, frame_of(&Message::Ping, s)).unwrap();
    assert_eq!(deliver(&mut asker, &mut answerer), vec![Event::Opened(s)]);
    assert_eq!(
        answerer.link.take(s).unwrap(),
        Some(Inbound::Message(Message::Ping))
    );
    let answer = Message::Error {
        code: RemoteCode::NotFound,
        message: "nothing here".into(),
    };
    let frame = frame_of(&answer, s);
    assert!(
        answerer.link.send_now(s, frame.len()).unwrap(),
        "nothing queued before it"
    );
    answerer.put_out(&[&frame]).unwrap();
    answerer.link.close(s);
    deliver(&mut answerer, &mut asker);
    assert_eq!(asker.link.take(s).unwrap(), Some(Inbound::Message(answer)));
    asker.link.close(s);
    for end in [&asker, &answerer] {
        assert_eq!(end.link.open_streams(), 0, "done with its one stream");
        assert!(
            end.link.is_idle() && end.input.capacity() == 0,
            "an idle connection holds no streams, queues or partial input"
        );
    }
}
