//! A synchronous request server over the reactor: every connection watched by the thread
//! leading the reactor's crew, each request answered on a thread of the crew (most often the
//! one that read it), every thread joined at shutdown.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

use parking_lot::Mutex;

use socket2::{Domain, Protocol, Socket, Type};

use super::frames::Frames;
use super::reactor::{Reactor, ReactorHandle, Serve, StreamHandle};
use super::{introductions, Counters, NetConfig};
use crate::error::{Error, Result};
use crate::identity::{Credentials, PeerIdentity};
use crate::wire::Message;

/// Answers one request with one reply, on the request's [`Session`] (which streaming
/// requests use to read or write further frames). Called on handler threads, concurrently.
/// It may call another node, and only along a chain that ends: then a busy server never
/// deadlocks, since a request finds a handler thread at the callee or is refused there
/// (Busy) at once.
pub type Handler = Arc<dyn Fn(Message, &mut Session<'_>) -> Message + Send + Sync>;

/// The request being answered, lent to its handler.
pub struct Session<'a> {
    frames: &'a mut dyn Frames,
    /// Set when the request's frames are out of step (an error mid-stream): the request
    /// is given up after the reply.
    broken: bool,
    /// Who the request's connection proved to be: a node, or none for a client.
    peer: Option<PeerIdentity>,
    /// Where the reply goes once the handler has returned, if it asked for that.
    later: Option<Arc<Mutex<Slot>>>,
}

impl Session<'_> {
    /// Who sent the request, as its connection proved: the node (a member when certified),
    /// or none for a client. What a request says for a node is believed only of this one.
    pub(crate) fn peer(&self) -> Option<PeerIdentity> {
        self.peer
    }

    /// The request's frames, to read or write the further frames of a streamed request.
    pub(crate) fn framed(&mut self) -> &mut dyn Frames {
        self.frames
    }

    /// Gives the request up after the reply: its frames cannot continue in step.
    pub(crate) fn close_after_reply(&mut self) {
        self.broken = true;
    }

    /// The request is answered through the returned [`Later`], from any thread, after its
    /// handler has returned or before; what the handler returns is dropped. For a handler
    /// whose answer waits on another node's: no thread waits with it.
    pub(crate) fn reply_later(&mut self) -> Later {
        let slot = self
            .later
            .get_or_insert_with(|| Arc::new(Mutex::new(Slot::Handler)));
        Later(Arc::clone(slot))
    }
}

/// The reply to a request, to be given once ([`Session::reply_later`]). Dropped without a
/// reply, the request is given up (its sender is told).
pub(crate) struct Later(Arc<Mutex<Slot>>);

/// Where a request answered later stands.
enum Slot {
    /// Its handler has not returned.
    Handler,
    /// Its handler returned: the stream, to answer on.
    Stream(StreamHandle, Arc<Counters>),
    /// Answered before its handler returned: the reply, to send when it does.
    Reply(Message),
    Done,
}

impl Later {
    /// Answers the request with `reply`.
    pub(crate) fn send(self, reply: Message) {
        let mut slot = self.0.lock();
        match std::mem::replace(&mut *slot, Slot::Done) {
            Slot::Stream(handle, counters) => {
                drop(slot);
                deliver(handle, &reply, &counters, false);
            }
            Slot::Handler => *slot = Slot::Reply(reply),
            Slot::Reply(_) | Slot::Done => {}
        }
    }
}

/// A running server. Dropping it shuts it down.
pub struct Server {
    local_addr: SocketAddr,
    reactor: Reactor,
}

impl Server {
    /// Binds `addr` (port 0: the OS chooses) for a server to be started on it.
    pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
        bind(addr).map_err(|source| Error::Listen { addr, source })
    }

    /// Starts serving `listener` (from [`Server::bind`]) with `handler`, counting into
    /// `counters`. `name` labels threads and logs.
    pub(crate) fn start(
        name: &str,
        listener: TcpListener,
        config: NetConfig,
        handler: Handler,
        counters: Arc<Counters>,
        credentials: Option<Arc<Credentials>>,
    ) -> Result<Server> {
        config.security.chosen()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: (Ipv4Addr::UNSPECIFIED, 0).into(),
            source,
        })?;
        let served = Arc::clone(&counters);
        let serve: Serve =
            Arc::new(move |handle| answer(&handler, &served, credentials.as_deref(), handle));
        let reactor =
            Reactor::serve(name, listener, config, counters, serve).map_err(|source| {
                Error::Listen {
                    addr: local_addr,
                    source,
                }
            })?;
        Ok(Server {
            local_addr,
            reactor,
        })
    }

    /// The address the server listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its reactor, for a pool to hand its outbound connections to: one reactor per node,
    /// and requests a peer sends back over a connection this node opened are served too.
    pub(crate) fn reactor(&self) -> ReactorHandle {
        self.reactor.handle()
    }

    /// Stops accepting, closes every connection and joins every thread. Idempotent.
    pub fn shutdown(&mut self) {
        self.reactor.shutdown();
    }
}

/// Answers the request on `handle`: its first frame, the handler, the reply.
fn answer(
    handler: &Handler,
    counters: &Arc<Counters>,
    credentials: Option<&Credentials>,
    mut handle: StreamHandle,
) {
    let peer = handle.peer();
    let request = match handle.recv() {
        Ok(request) => request,
        Err(e) => {
            log::debug!("request from {peer} lost: {}", handle.error(e));
            return;
        }
    };
    let request = match introductions::proof_of(request) {
        Ok(proof) => {
            // The connection's own business, not the handler's.
            let reply = introductions::answer(credentials, &handle, proof);
            if handle.send(&reply).is_ok() {
                let _ = handle.finish();
            }
            return;
        }
        Err(request) => request,
    };
    let identity = handle.conn().introduction().get(handle.timeout());
    let mut session = Session {
        frames: &mut handle,
        broken: false,
        peer: identity,
        later: None,
    };
    let reply = handler(request, &mut session);
    let (broken, later) = (session.broken, session.later);
    let Some(later) = later else {
        return deliver(handle, &reply, counters, broken);
    };
    let mut slot = later.lock();
    match std::mem::replace(&mut *slot, Slot::Done) {
        Slot::Reply(reply) => {
            drop(slot);
            deliver(handle, &reply, counters, false);
        }
        Slot::Handler => *slot = Slot::Stream(handle, Arc::clone(counters)),
        Slot::Stream(..) | Slot::Done => {}
    }
}

/// Sends `reply` on `handle` and ends the request: given up (dropped unfinished) when
/// `broken`, out of step, so that what the peer still sends is dropped.
fn deliver(mut handle: StreamHandle, reply: &Message, counters: &Counters, broken: bool) {
    Counters::bump(&counters.served);
    if let Err(e) = handle.send(reply) {
        log::debug!("cannot answer {}: {e}", handle.peer());
        return;
    }
    if !broken {
        let _ = handle.finish();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::super::reactor::Handshaking;
    use mio::Token;
    use std::net::IpAddr;

    #[test]
    fn each_address_holds_at_most_its_share_of_handshakes() {
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let mut counts = Handshaking::default();
        assert!(counts.enter(Token(1), a, 2) && counts.enter(Token(2), a, 2));
        assert!(!counts.enter(Token(3), a, 2), "a third from one address");
        assert!(
            counts.enter(Token(4), b, 2),
            "another address is counted apart"
        );
        counts.leave(Token(1));
        counts.leave(Token(1));
        assert!(
            counts.enter(Token(5), a, 2),
            "a slot freed by a finished handshake"
        );
        for t in [2, 3, 4, 5] {
            counts.leave(Token(t));
        }
        assert!(counts.is_empty(), "nothing kept for addresses gone quiet");
        assert!(!counts.enter(Token(6), a, 0) && counts.is_empty());
    }
}

#[cfg(test)]
mod later_tests {
    use super::*;
    use crate::net::{Counters, NetConfig, Pool};
    use std::time::Duration;

    fn config() -> NetConfig {
        NetConfig::with(crate::ClusterKey::from_bytes([5; 32]))
    }

    /// The threads a test's handlers started, joined at its end.
    type Threads = Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>;

    /// A server whose handler answers through [`Session::reply_later`]: from another thread
    /// (kept in `threads`) after `delay`, after the handler has returned, or before it
    /// returns (`None`).
    fn server(delay: Option<Duration>, threads: &Threads) -> Server {
        let threads = Arc::clone(threads);
        let handler: Handler = Arc::new(move |request, session| {
            let later = session.reply_later();
            let reply = match request {
                Message::Ping => Message::Ack,
                other => other,
            };
            match delay {
                Some(delay) => threads.lock().push(std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    later.send(reply);
                })),
                None => later.send(reply),
            }
            Message::Error {
                code: crate::wire::RemoteCode::Internal,
                message: "this reply is dropped".into(),
            }
        });
        let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let counters = Arc::new(Counters::default());
        Server::start("later", listener, config(), handler, counters, None).unwrap()
    }

    #[test]
    fn a_reply_given_later_from_another_thread_is_the_one_the_caller_gets() {
        let threads = Threads::default();
        let server = server(Some(Duration::from_millis(50)), &threads);
        let pool = Pool::new(config(), Arc::new(Counters::default()));
        for _ in 0..3 {
            assert_eq!(
                pool.call(server.local_addr(), &Message::Ping).unwrap(),
                Message::Ack
            );
        }
        for thread in threads.lock().drain(..) {
            thread.join().unwrap();
        }
    }

    #[test]
    fn a_reply_given_before_the_handler_returns_is_sent_once_it_has() {
        let server = server(None, &Threads::default());
        let pool = Pool::new(config(), Arc::new(Counters::default()));
        assert_eq!(
            pool.call(server.local_addr(), &Message::Ping).unwrap(),
            Message::Ack
        );
    }

    #[test]
    fn a_request_whose_reply_is_dropped_unsent_is_given_up_not_left_hanging() {
        let handler: Handler = Arc::new(|_, session| {
            drop(session.reply_later());
            Message::Ack
        });
        let listener = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let counters = Arc::new(Counters::default());
        let server = Server::start("dropped", listener, config(), handler, counters, None).unwrap();
        let pool = Pool::new(
            NetConfig {
                io_timeout: Duration::from_secs(30),
                ..config()
            },
            Arc::new(Counters::default()),
        );
        let asked = std::time::Instant::now();
        let result = pool.call(server.local_addr(), &Message::Ping);
        assert!(result.is_err(), "{result:?}");
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "the caller waited for its timeout"
        );
    }
}
