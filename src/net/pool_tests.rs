//! The pool against servers of the crate's own on loopback.

use super::*;
use crate::net::Server;

/// A key for this module's tests: their connections are encrypted, as members' are.
fn test_key() -> crate::ClusterKey {
    crate::ClusterKey::from_bytes([7; 32])
}

fn servers(n: usize, counters: &Arc<Counters>) -> Vec<Server> {
    let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
    (0..n)
        .map(|i| {
            let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let config = NetConfig::with(test_key());
            let name = format!("test-{i}");
            let handler = Arc::clone(&handler);
            Server::start(&name, listener, config, handler, Arc::clone(counters), None).unwrap()
        })
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_connection_carries_every_request_to_a_peer_until_it_idles() {
    const THREADS: usize = 8;
    let counters = Arc::new(Counters::default());
    let server = servers(1, &counters).remove(0);
    let config = NetConfig {
        pool_idle_timeout: Duration::from_millis(300),
        ..NetConfig::with(test_key())
    };
    let client_counters = Arc::new(Counters::default());
    let pool = Arc::new(Pool::new(config, Arc::clone(&client_counters)));
    let addr = server.local_addr();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let pool = Arc::clone(&pool);
            scope.spawn(move || {
                for _ in 0..20 {
                    assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
                }
            });
        }
    });
    assert_eq!(
        client_counters.snapshot().opened,
        1,
        "one connection for all"
    );
    assert_eq!(counters.snapshot().open_connections, 1);
    assert_eq!(counters.snapshot().served, 160);
    assert_eq!(
        pool.connecting.lock().capacity(),
        0,
        "the turns to connect, taken by 8 callers at once, are all let go"
    );
    // Closed once idle past the timeout, at both ends.
    wait_for("the idle connection stayed open", || {
        pool.close_idle(|_| true);
        counters.snapshot().open_connections == 0
    });
    assert_eq!(pool.kept_count(), 0);
    pool.call(addr, &Message::Ping).unwrap();
    assert_eq!(client_counters.snapshot().opened, 2, "a new one after it");
}

#[test]
fn a_connection_to_a_peer_met_once_closes_sooner_than_one_to_a_regular_peer() {
    let counters = Arc::new(Counters::default());
    let mut servers = servers(2, &counters);
    let config = NetConfig {
        pool_idle_timeout: Duration::from_secs(600),
        ..NetConfig::with(test_key())
    };
    let pool = Pool::new(config, Arc::new(Counters::default()));
    let (regular, met_once) = (servers[0].local_addr(), servers[1].local_addr());
    pool.call(regular, &Message::Ping).unwrap();
    // Before the call: its connection's last input, which the linger counts from, is later.
    let started = Instant::now();
    pool.call(met_once, &Message::Ping).unwrap();
    wait_for("the connection to the peer met once stayed open", || {
        pool.close_idle(|addr| addr == regular);
        pool.kept_count() == 1
    });
    assert!(started.elapsed() >= LINGER, "closed before its linger");
    assert!(
        pool.kept(regular).is_some(),
        "the regular peer's was closed"
    );
    assert!(pool.kept(met_once).is_none());
    wait_for("the server did not see it close", || {
        counters.snapshot().open_connections == 1
    });
    for server in &mut servers {
        server.shutdown();
    }
}

#[test]
fn a_stalled_transfer_does_not_hold_up_other_requests_on_its_connection() {
    // A server that takes a transfer's chunks only as the test lets it.
    let (gate, opened) = std::sync::mpsc::channel::<()>();
    let opened = Arc::new(parking_lot::Mutex::new(opened));
    let (arrived, first_chunk) = std::sync::mpsc::channel::<()>();
    let arrived = parking_lot::Mutex::new(arrived);
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler: crate::net::Handler = {
        let (opened, taken) = (Arc::clone(&opened), Arc::clone(&taken));
        Arc::new(move |request, session| {
            if request != Message::Ack {
                return Message::Pong {
                    node: crate::id::NodeInfo {
                        id: crate::id::Id(1),
                        addr: "127.0.0.1:1".parse().unwrap(),
                    },
                    key: crate::identity::PublicKey([1; 32]),
                };
            }
            // Bounded: the sender sends CHUNKS chunks and an end.
            loop {
                match session.framed().recv() {
                    Ok(Message::Chunk { data }) => {
                        let _ = arrived.lock().send(());
                        let _ = opened.lock().recv_timeout(Duration::from_secs(10));
                        taken.fetch_add(data.len(), std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => return Message::Ack,
                }
            }
        })
    };
    let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let counters = Arc::new(Counters::default());
    let config = NetConfig::with(test_key());
    let server = Server::start("stall", listener, config, handler, counters, None).unwrap();
    let addr = server.local_addr();
    let client_counters = Arc::new(Counters::default());
    let pool = Pool::new(NetConfig::with(test_key()), Arc::clone(&client_counters));
    const CHUNKS: usize = 64;
    let chunk = vec![5u8; 256 * 1024];
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            pool.session(addr, |frames| {
                frames.queue(&Message::Ack);
                for _ in 0..CHUNKS {
                    frames
                        .send_chunk(&chunk)
                        .map_err(|e| frames.error(ReadError::Io(e)))?;
                }
                frames
                    .send(&Message::Ping)
                    .map_err(|e| frames.error(ReadError::Io(e)))?;
                frames.recv_or_fail()
            })
        });
        // The transfer is stuck on its credit, the server taking none of it; a request
        // on the same connection is answered all the same, however long it stays stuck.
        first_chunk.recv_timeout(Duration::from_secs(10)).unwrap();
        for _ in 0..20 {
            let reply = pool.call(addr, &Message::Ping).unwrap();
            assert!(matches!(reply, Message::Pong { .. }), "{reply:?}");
        }
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(!sender.is_finished(), "the transfer is still stuck");
        assert_eq!(client_counters.snapshot().opened, 1, "on one connection");
        for _ in 0..CHUNKS {
            gate.send(()).unwrap();
        }
        assert_eq!(sender.join().unwrap().unwrap(), Message::Ack);
    });
    assert_eq!(
        taken.load(std::sync::atomic::Ordering::SeqCst),
        CHUNKS * chunk.len()
    );
}

#[test]
fn connections_kept_are_capped_in_all() {
    let counters = Arc::new(Counters::default());
    let servers = servers(5, &counters);
    let config = NetConfig {
        pool_max_idle: 3,
        ..NetConfig::with(test_key())
    };
    let pool = Pool::new(config, Arc::new(Counters::default()));
    for server in &servers {
        pool.call(server.local_addr(), &Message::Ping).unwrap();
    }
    // Five peers called, three connections kept: the other two are closed.
    assert_eq!(pool.kept_count(), 3);
    wait_for("the evicted connections stayed open", || {
        counters.snapshot().open_connections == 3
    });
    // The most recently used peers kept theirs.
    let kept: Vec<SocketAddr> = pool.conns.lock().keys().copied().collect();
    for server in &servers[2..] {
        assert!(kept.contains(&server.local_addr()));
    }
}

#[test]
fn two_nodes_calling_each_other_share_one_connection() {
    let ends: Vec<(Server, Pool, Arc<Counters>)> = (0..2u16)
        .map(|i| {
            let counters = Arc::new(Counters::default());
            let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
            let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            // Idle soon, so that the test sees a's connection close.
            let config = NetConfig {
                pool_idle_timeout: Duration::from_millis(300),
                ..NetConfig::with(test_key())
            };
            let server = Server::start(
                "both",
                listener,
                config.clone(),
                handler,
                Arc::clone(&counters),
                None,
            )
            .unwrap();
            let pool = Pool::new(config, Arc::clone(&counters));
            let me = crate::id::NodeInfo {
                id: crate::Id(i),
                addr: server.local_addr(),
            };
            let identity = crate::identity::Identity::generate().unwrap();
            let credentials = crate::identity::Credentials::node(identity, me);
            pool.read_through(server.reactor(), Some(Arc::new(credentials)));
            (server, pool, counters)
        })
        .collect();
    let (a, b) = (&ends[0], &ends[1]);
    assert_eq!(
        a.1.call(b.0.local_addr(), &Message::Ping).unwrap(),
        Message::Ack
    );
    // The connection a opened carries b's requests to a, both ways at once.
    assert_eq!(
        b.1.call(a.0.local_addr(), &Message::Ping).unwrap(),
        Message::Ack
    );
    assert_eq!(
        a.1.call(b.0.local_addr(), &Message::Ping).unwrap(),
        Message::Ack
    );
    let (sa, sb) = (a.2.snapshot(), b.2.snapshot());
    assert_eq!((sa.opened, sa.accepted), (1, 0), "{sa:?}");
    assert_eq!((sb.opened, sb.accepted), (0, 1), "{sb:?}");
    assert_eq!(b.0.reactor().introduced_held(), 1);
    // Closed by a, the connection leaves b's table of introduced ones (whose reference
    // would keep its memory).
    wait_for("the connection a opened stayed open", || {
        a.1.close_idle(|_| true);
        a.1.kept_count() == 0 && b.2.snapshot().open_connections == 0
    });
    assert_eq!(b.0.reactor().introduced_held(), 0);
}

#[test]
fn a_connection_the_peer_closed_is_replaced() {
    let counters = Arc::new(Counters::default());
    let mut server = servers(1, &counters).remove(0);
    let addr = server.local_addr();
    let pool = Pool::new(NetConfig::with(test_key()), Arc::new(Counters::default()));
    pool.call(addr, &Message::Ping).unwrap();
    server.shutdown();
    assert!(
        pool.call(addr, &Message::Ping).is_err(),
        "the server is gone"
    );
    let listener = Server::bind(addr).unwrap();
    let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
    let config = NetConfig::with(test_key());
    let _again = Server::start("again", listener, config, handler, counters, None).unwrap();
    assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
}

/// A stand-in for a peer on `listener`: answers a first request, then takes a second on the
/// same connection and closes it unanswered, saying it closes as idle if `as_idle` (as if
/// its idle close had crossed the request). Then, if `as_idle`, answers the request again
/// on a new connection. Returns the listener, for a look at what is left in its queue.
fn crossing_peer(listener: std::net::TcpListener, as_idle: bool) -> std::net::TcpListener {
    let net = NetConfig::with(test_key());
    let serve = |conn: &mut crate::net::Connection| {
        assert_eq!(conn.recv().unwrap(), Message::Ping);
        conn.send(&Message::Ack).unwrap();
    };
    let mut first = crate::net::Connection::accept(listener.accept().unwrap().0, &net).unwrap();
    serve(&mut first);
    assert_eq!(first.recv().unwrap(), Message::Ping);
    if as_idle {
        let closing = Message::Error {
            code: RemoteCode::Closing,
            message: "idle".into(),
        };
        let mut frame = bytes::BytesMut::new();
        crate::wire::encode(
            &closing,
            crate::net::stream_ids::CONNECTION_STREAM,
            crate::wire::Trailer::Zero,
            &mut frame,
        );
        first.send_bytes(&frame).unwrap();
    }
    drop(first);
    if as_idle {
        serve(&mut crate::net::Connection::accept(accept_within(&listener), &net).unwrap());
    }
    listener
}

/// The next connection to `listener`, waited for within a bound.
fn accept_within(listener: &std::net::TcpListener) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut stream = None;
    wait_for("no new connection came", || {
        stream = listener.accept().ok();
        stream.is_some()
    });
    let stream = stream.unwrap().0;
    stream.set_nonblocking(false).unwrap();
    stream
}

/// A listener for a stand-in peer, its address, and a pool with `config` counting into the
/// counters.
fn peer_and_pool(config: NetConfig) -> (std::net::TcpListener, SocketAddr, Arc<Counters>, Pool) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let pool = Pool::new(config, Arc::clone(&counters));
    (listener, addr, counters, pool)
}

#[test]
fn a_request_crossing_the_peers_idle_close_is_sent_again_on_a_new_connection() {
    let (listener, addr, counters, pool) = peer_and_pool(NetConfig::with(test_key()));
    std::thread::scope(|scope| {
        let peer = scope.spawn(|| crossing_peer(listener, true));
        assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
        assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
        peer.join().unwrap();
    });
    assert_eq!(
        counters.snapshot().opened,
        2,
        "sent again on a second connection"
    );
}

#[test]
fn a_request_whose_connection_merely_broke_is_not_sent_again() {
    let (listener, addr, counters, pool) = peer_and_pool(NetConfig::with(test_key()));
    let listener = std::thread::scope(|scope| {
        let peer = scope.spawn(|| crossing_peer(listener, false));
        assert_eq!(pool.call(addr, &Message::Ping).unwrap(), Message::Ack);
        // The peer may have served it before the connection broke: not the pool's to repeat.
        assert!(matches!(
            pool.call(addr, &Message::Ping),
            Err(Error::Unreachable { .. })
        ));
        peer.join().unwrap()
    });
    // A connection the pool opened would wait in the queue: connecting ends before the call.
    listener.set_nonblocking(true).unwrap();
    let queued = listener.accept();
    assert!(
        matches!(&queued, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "{queued:?}"
    );
    assert_eq!(counters.snapshot().opened, 1);
}

#[test]
fn a_server_closing_an_idle_connection_says_so() {
    let counters = Arc::new(Counters::default());
    let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = NetConfig {
        idle_timeout: Duration::from_millis(200),
        ..NetConfig::with(test_key())
    };
    let handler: crate::net::Handler = Arc::new(|_, _| Message::Ack);
    let server = Server::start("idle", listener, config, handler, counters, None).unwrap();
    let mut conn =
        crate::net::Connection::open(server.local_addr(), &NetConfig::with(test_key())).unwrap();
    conn.send(&Message::Ping).unwrap();
    assert_eq!(conn.recv().unwrap(), Message::Ack);
    // Bounded by the connection's read timeout; the close comes within a sweep of 200 ms.
    assert_eq!(
        conn.recv().unwrap(),
        Message::Error {
            code: RemoteCode::Closing,
            message: "idle".into()
        }
    );
}

#[test]
fn a_reply_sent_just_before_the_peer_closes_is_received() {
    // The reply and the close often arrive together, the close read before the caller
    // looks: many rounds, each on a connection of its own (none kept, so that none is
    // found closed before its request).
    const ROUNDS: usize = 200;
    let (listener, addr, counters, pool) = peer_and_pool(NetConfig {
        pool_per_peer: 0,
        ..NetConfig::with(test_key())
    });
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let net = NetConfig::with(test_key());
            for _ in 0..ROUNDS {
                let mut conn = crate::net::Connection::accept(accept_within(&listener), &net);
                let conn = conn.as_mut().unwrap();
                assert_eq!(conn.recv().unwrap(), Message::Ping);
                conn.send(&Message::Ack).unwrap();
            }
        });
        for round in 0..ROUNDS {
            assert_eq!(
                pool.call(addr, &Message::Ping).unwrap(),
                Message::Ack,
                "{round}"
            );
        }
    });
    assert_eq!(counters.snapshot().opened, ROUNDS as u64);
}
