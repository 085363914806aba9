//! Frames on real loopback sockets: timeouts, trickles, growth, and the sealed channel.

use super::*;
use crate::net::secure::MAX_PLAIN;
use std::net::TcpListener;

/// A connected pair on loopback: the raw sending end, and the receiving end framed with
/// `first_byte` and `frame_timeout`.
fn pair(first_byte: Duration, frame_timeout: Duration) -> (TcpStream, Framed) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (received, _) = listener.accept().unwrap();
    received.set_read_timeout(Some(first_byte)).unwrap();
    let framed = Framed::new(
        received,
        false,
        first_byte,
        frame_timeout,
        wire::DEFAULT_MAX_PAYLOAD,
        Arc::new(Counters::default()),
    )
    .unwrap();
    (sender, framed)
}

#[test]
fn frames_of_every_size_pass_a_secure_pair_in_order_and_whole() {
    let (sender, mut receiver) = pair(Duration::from_secs(5), Duration::from_secs(5));
    sender
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sender = Framed::new(
        sender,
        true,
        Duration::from_secs(5),
        Duration::from_secs(5),
        wire::DEFAULT_MAX_PAYLOAD,
        Arc::new(Counters::default()),
    )
    .unwrap();
    let security = Security::Key(crate::ClusterKey::from_bytes([3; 32]));
    let guard = parking_lot::Mutex::default();
    let within = Duration::from_secs(5);
    std::thread::scope(|scope| {
        scope.spawn(|| sender.secure(&security, Side::Initiator, within).unwrap());
        receiver
            .secure(&security, Side::Responder(&guard), within)
            .unwrap();
    });
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let sizes = [
        0usize,
        1,
        100,
        big.len(),
        5,
        MAX_PLAIN - 7,
        MAX_PLAIN + 1,
        2,
    ];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            sender.open_stream().unwrap();
            for &n in &sizes {
                sender.send_chunk(&big[..n]).unwrap();
            }
            sender.send(&Message::Ping).unwrap();
        });
        for (i, &n) in sizes.iter().enumerate() {
            // The first frame opens the sender's stream; the rest continue it.
            let got = if i == 0 {
                receiver.recv_any()
            } else {
                receiver.recv()
            };
            match got.unwrap() {
                Message::Chunk { data } => assert_eq!(&data[..], &big[..n], "{n} bytes"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(receiver.recv().unwrap(), Message::Ping);
        assert!(receiver.reader.buffer().is_empty(), "nothing left over");
    });
}

#[test]
fn a_header_claiming_megabytes_pins_only_what_arrives() {
    let (mut sender, mut framed) = pair(Duration::from_secs(5), Duration::from_millis(300));
    let claimed = vec![0u8; 4 << 20];
    let (header, _) = wire::chunk_frame_parts(&claimed, 1, wire::Trailer::Crc);
    sender.write_all(&header).unwrap();
    sender.write_all(&[1; 10]).unwrap();
    let started = Instant::now();
    let e = framed.recv_any().unwrap_err();
    assert!(
        matches!(&e, ReadError::Io(io) if matches!(io.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        framed.body.capacity() <= 2 * GROW_STEP,
        "{} bytes held for 10 received",
        framed.body.capacity()
    );
}

#[test]
fn a_frame_trickled_a_byte_at_a_time_ends_at_its_deadline_not_at_the_idle_timeout() {
    let (mut sender, mut framed) = pair(Duration::from_secs(30), Duration::from_millis(500));
    let mut frame = BytesMut::new();
    wire::encode(&Message::Ping, 1, wire::Trailer::Crc, &mut frame);
    let trickler = std::thread::spawn(move || {
        // Each byte well within the idle timeout, the whole far beyond the frame's.
        for b in frame.iter() {
            if sender.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let started = Instant::now();
    assert!(
        framed.recv_any().is_err(),
        "a frame that took too long was accepted"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(framed); // ends the trickler's writes
    trickler.join().unwrap();
}

#[test]
fn frames_that_arrive_in_time_are_read_however_they_are_split() {
    let (mut sender, mut framed) = pair(Duration::from_secs(5), Duration::from_secs(2));
    let mut frames = BytesMut::new();
    let big = Message::Chunk {
        data: bytes::Bytes::from(vec![7u8; 600_000]),
    };
    wire::encode(&big, 1, wire::Trailer::Crc, &mut frames);
    wire::encode(&Message::Ping, 1, wire::Trailer::Crc, &mut frames);
    let writer = std::thread::spawn(move || {
        for piece in frames.chunks(50_000) {
            sender.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        sender
    });
    assert_eq!(framed.recv_any().unwrap(), big);
    assert_eq!(framed.recv().unwrap(), Message::Ping);
    // The large frame's buffer is let go once small frames follow.
    assert!(framed.body.capacity() < 600_000);
    drop(writer.join().unwrap());
}

#[test]
fn frames_are_read_only_from_the_stream_they_belong_to() {
    let (mut sender, mut framed) = pair(Duration::from_secs(5), Duration::from_secs(5));
    let frame = |stream: u32, msg: &Message| {
        let mut buf = BytesMut::new();
        wire::encode(msg, stream, wire::Trailer::Crc, &mut buf);
        buf
    };
    // The peer opened the connection: its requests are odd and increasing.
    sender.write_all(&frame(3, &Message::Ping)).unwrap();
    assert_eq!(framed.recv_any().unwrap(), Message::Ping);
    let mut reply = BytesMut::new();
    framed.queue(&Message::Ack);
    std::mem::swap(&mut reply, &mut framed.out);
    assert_eq!(
        reply,
        frame(3, &Message::Ack),
        "the reply travels on the request's stream"
    );
    sender.write_all(&frame(0, &Message::Ack)).unwrap();
    assert_eq!(
        framed.recv().unwrap(),
        Message::Ack,
        "the connection's own stream"
    );
    sender.write_all(&frame(3, &Message::Ack)).unwrap();
    assert_eq!(framed.recv().unwrap(), Message::Ack, "the current one");
    for (stream, why) in [(5, "a stream not yet opened"), (2, "this end's parity")] {
        sender.write_all(&frame(stream, &Message::Ping)).unwrap();
        let got = framed.recv();
        assert!(
            matches!(got, Err(ReadError::Stream { want: 3, got }) if got == stream),
            "{why}: {got:?}"
        );
    }
    sender.write_all(&frame(9, &Message::Ping)).unwrap();
    assert_eq!(framed.recv_any().unwrap(), Message::Ping, "a later one");
    assert_eq!(framed.streams.current, 9);
    sender.write_all(&frame(1, &Message::Ping)).unwrap();
    assert_eq!(
        framed.recv_any().unwrap(),
        Message::Ping,
        "an earlier one not yet seen"
    );
    for (stream, why) in [(3, "one seen before"), (4, "this end's, never opened")] {
        sender.write_all(&frame(stream, &Message::Ping)).unwrap();
        let got = framed.recv_any();
        assert!(
            matches!(got, Err(ReadError::Stream { got, .. }) if got == stream),
            "{why}: {got:?}"
        );
    }
}
