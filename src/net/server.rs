//! A synchronous TCP server: one acceptor thread and one thread per connection, bounded in
//! number, every thread joined at shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame_io::{Framed, ReadError, Side};
use super::secure::ReplayGuard;
use super::{Counters, NetConfig, Security, THREAD_STACK};
use crate::error::{Error, Result};
use crate::wire::{Message, RemoteCode};

/// Answers one request with one reply, on the request's [`Session`] (which streaming
/// requests use to read or write further frames). Called on connection threads, concurrently.
/// It may call another node only over a connection of its own (never waiting for a thread of
/// this server), and only along a chain that ends: then a busy server never deadlocks, since
/// every call is served by a thread of its own at the callee or refused there (Busy).
pub type Handler = Arc<dyn Fn(Message, &mut Session<'_>) -> Message + Send + Sync>;

/// The connection a request arrived on, lent to its handler.
pub struct Session<'a> {
    framed: &'a mut Framed,
    /// Set when the stream is out of step (an error mid-stream): the connection closes after
    /// the reply.
    broken: bool,
}

impl Session<'_> {
    /// The connection, to read or write the further frames of a streamed request.
    pub(crate) fn framed(&mut self) -> &mut Framed {
        self.framed
    }

    /// Closes the connection after the reply: the stream cannot continue in step.
    pub(crate) fn close_after_reply(&mut self) {
        self.broken = true;
    }
}

/// How often the acceptor looks at the stop flag when no connection arrives.
const ACCEPT_POLL: Duration = Duration::from_millis(250);

/// A running server. Dropping it shuts it down.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    name: String,
    config: NetConfig,
    handler: Handler,
    counters: Arc<Counters>,
    stop: AtomicBool,
    conns: Mutex<Conns>,
    /// The first handshake messages taken lately: a replayed one is refused.
    replays: Mutex<ReplayGuard>,
}

#[derive(Default)]
struct Conns {
    next: u64,
    /// Each open connection's socket (shared, not duplicated), so that shutdown can unblock
    /// its thread.
    open: HashMap<u64, Arc<TcpStream>>,
    threads: HashMap<u64, JoinHandle<()>>,
    /// Connections whose thread has ended and can be joined.
    finished: Vec<u64>,
    /// Connections still in their handshake, by source address.
    handshaking: Handshaking,
}

/// Connections not yet proven members, counted by source address: what one address may hold
/// of a server before it has shown the key is bounded.
#[derive(Default)]
struct Handshaking(HashMap<IpAddr, usize>);

impl Handshaking {
    /// Counts one more from `ip`, unless it already has `max`.
    fn enter(&mut self, ip: IpAddr, max: usize) -> bool {
        let count = self.0.entry(ip).or_default();
        if *count >= max {
            if *count == 0 {
                self.0.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    /// One from `ip` has finished its handshake, or given up.
    fn leave(&mut self, ip: IpAddr) {
        if let Some(count) = self.0.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&ip);
            }
        }
    }
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
    ) -> Result<Server> {
        config.security.chosen()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: (Ipv4Addr::UNSPECIFIED, 0).into(),
            source,
        })?;
        let listen_err = |source| Error::Listen {
            addr: local_addr,
            source,
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            config,
            handler,
            counters,
            stop: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
            replays: Mutex::new(ReplayGuard::default()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("{name}-accept"))
                .stack_size(THREAD_STACK)
                .spawn(move || accept_loop(&shared, &listener))
                .map_err(listen_err)?
        };
        Ok(Server {
            local_addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address the server listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and joins every thread. Idempotent.
    pub fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept at once; the accept timeout is the fallback.
        let _ = TcpStream::connect_timeout(&wake_addr(self.local_addr), ACCEPT_POLL);
        let _ = acceptor.join();
        let threads: Vec<JoinHandle<()>> = {
            let mut conns = self.shared.conns.lock();
            for stream in conns.open.values() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            conns.finished.clear();
            conns.threads.drain().map(|(_, t)| t).collect()
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    // accept() honours SO_RCVTIMEO on Linux: the acceptor wakes to check the stop flag.
    socket.set_read_timeout(Some(ACCEPT_POLL))?;
    Ok(socket.into())
}

/// Where to connect to reach a listener bound to `addr` (a wildcard address means loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        other => other,
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        reap(shared);
        match listener.accept() {
            Ok((stream, peer)) => {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                Counters::bump(&shared.counters.accepted);
                admit(shared, stream, peer);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                log::warn!("{}: accept failed: {e}", shared.name);
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Joins the threads of connections that have ended.
fn reap(shared: &Shared) {
    let done: Vec<JoinHandle<()>> = {
        let mut conns = shared.conns.lock();
        let ids = std::mem::take(&mut conns.finished);
        ids.iter()
            .filter_map(|id| conns.threads.remove(id))
            .collect()
    };
    for t in done {
        let _ = t.join();
    }
}

fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let config = &shared.config;
    let setup = stream
        .set_nodelay(true)
        .and_then(|_| stream.set_read_timeout(Some(config.idle_timeout)))
        .and_then(|_| stream.set_write_timeout(Some(config.io_timeout)));
    if let Err(e) = setup {
        log::debug!("{}: dropping connection from {peer}: {e}", shared.name);
        return;
    }
    let mut conns = shared.conns.lock();
    if conns.open.len() >= config.max_connections {
        drop(conns);
        log::warn!("{}: refusing {peer}: connection limit reached", shared.name);
        refuse(shared, stream, RemoteCode::Busy, "too many connections");
        return;
    }
    let keyed = !matches!(config.security, Security::Insecure);
    // A busy host's many members are not turned away while there is room; once half the
    // slots are taken, no one address may take more of them unproven.
    let limit = if conns.open.len() >= config.max_connections / 2 {
        config.max_handshakes_per_source
    } else {
        usize::MAX
    };
    if keyed && !conns.handshaking.enter(peer.ip(), limit) {
        drop(conns);
        log::debug!(
            "{}: closing {peer}: too many handshakes from it",
            shared.name
        );
        return;
    }
    let counters = Arc::clone(&shared.counters);
    let (idle, frame) = (config.idle_timeout, config.io_timeout);
    let Ok(framed) = Framed::new(stream, false, idle, frame, config.max_payload, counters) else {
        return;
    };
    let handle = framed.stream();
    let id = conns.next;
    conns.next += 1;
    let worker = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("{}-conn", shared.name))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            serve(&worker, framed);
            worker
                .counters
                .open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let mut conns = worker.conns.lock();
            conns.open.remove(&id);
            conns.finished.push(id);
        });
    match spawned {
        Ok(thread) => {
            shared
                .counters
                .open
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            conns.open.insert(id, handle);
            conns.threads.insert(id, thread);
        }
        Err(e) => {
            log::warn!("{}: cannot start a thread for {peer}: {e}", shared.name);
            if keyed {
                conns.handshaking.leave(peer.ip());
            }
        }
    }
}

/// Tells a peer why it is being dropped, best effort.
fn refuse(shared: &Shared, stream: TcpStream, code: RemoteCode, why: &str) {
    let reply = Message::Error {
        code,
        message: why.to_string(),
    };
    if !matches!(shared.config.security, Security::Insecure) {
        // Saying why takes a handshake, which the acceptor cannot afford: the caller sees
        // the connection closed during its handshake, which it takes as busy.
        return;
    }
    let timeout = shared.config.io_timeout;
    let counters = Arc::clone(&shared.counters);
    if let Ok(mut framed) = Framed::new(stream, false, timeout, timeout, 0, counters) {
        // No request has been read: the refusal is about the connection.
        framed.queue_for_connection(&reply);
        let _ = framed.flush();
    }
}

/// Serves one connection until it ends, idles out, errs, or the server stops.
fn serve(shared: &Shared, mut framed: Framed) {
    let peer = framed.peer();
    let within = shared.config.io_timeout;
    let side = Side::Responder(&shared.replays);
    let secured = framed.secure(&shared.config.security, side, within);
    if !matches!(shared.config.security, Security::Insecure) {
        shared.conns.lock().handshaking.leave(peer.ip());
    }
    if let Err(e) = secured {
        // A stranger learns nothing but that the connection closed.
        log::debug!("{}: closing connection from {peer}: {e:?}", shared.name);
        return;
    }
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match framed.recv_request() {
            Ok(m) => m,
            Err(ReadError::Io(e)) => {
                log::trace!("{}: connection from {peer} ends: {e}", shared.name);
                return;
            }
            Err(e) => {
                // A malformed frame, or one out of step, ends this connection only; the
                // server serves on.
                let why = framed.error(e);
                log::warn!("{}: closing connection from {peer}: {why}", shared.name);
                framed.queue_for_connection(&Message::Error {
                    code: RemoteCode::BadRequest,
                    message: why.to_string(),
                });
                let _ = framed.flush();
                return;
            }
        };
        let mut session = Session {
            framed: &mut framed,
            broken: false,
        };
        let reply = (shared.handler)(request, &mut session);
        let broken = session.broken;
        Counters::bump(&shared.counters.served);
        if let Err(e) = framed.send(&reply) {
            log::debug!("{}: cannot answer {peer}: {e}", shared.name);
            return;
        }
        if broken {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_share_of_handshakes() {
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let mut counts = Handshaking::default();
        assert!(counts.enter(a, 2) && counts.enter(a, 2));
        assert!(!counts.enter(a, 2), "a third from one address");
        assert!(counts.enter(b, 2), "another address is counted apart");
        counts.leave(a);
        assert!(counts.enter(a, 2), "a slot freed by a finished handshake");
        for _ in 0..3 {
            counts.leave(a);
            counts.leave(b);
        }
        assert!(counts.0.is_empty(), "nothing kept for addresses gone quiet");
        assert!(!counts.enter(a, 0) && counts.0.is_empty());
    }
}
