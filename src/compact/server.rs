//! A small plaintext server of fixed-size requests, serving the tracker and the compact
//! listener alike: a thread accepts; a thread per connection reads a request, answers it,
//! and reads the next. Bounded: at most [`MAX_CONNECTIONS`] connections at once (one more
//! is closed at once), a connection silent for the idle timeout is closed, and a request
//! must arrive whole within the I/O timeout of its first byte. Every thread is joined when
//! the server stops.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::MAX_CONNECTIONS;
use crate::error::{Error, Result};

/// What to do after a request.
pub(super) enum Answer<const N: usize> {
    /// Send the reply and read the next request.
    Reply([u8; N]),
    /// Send the reply and close the connection.
    ReplyAndClose([u8; N]),
}

/// Serves one request of `N` bytes.
pub(super) type Serve<const N: usize> = Arc<dyn Fn(&[u8; N]) -> Answer<N> + Send + Sync>;

/// The connections being served: a clone of each socket, to close it at shutdown, and its
/// thread.
type Connections = Arc<Mutex<Vec<(TcpStream, JoinHandle<()>)>>>;

/// A running server; stops (joining its threads) when dropped.
pub(super) struct PlainServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    connections: Connections,
}

/// How long a server waits for a connection's next request, and for the rest of one.
#[derive(Clone, Copy)]
pub(super) struct Timeouts {
    pub idle: Duration,
    pub io: Duration,
}

impl Timeouts {
    /// The node's (or discovery's) own idle and I/O timeouts.
    pub fn of(net: &crate::NetConfig) -> Timeouts {
        Timeouts {
            idle: net.idle_timeout,
            io: net.io_timeout,
        }
    }
}

impl PlainServer {
    /// Listens on `addr` and serves requests of `N` bytes with `serve`.
    pub fn start<const N: usize>(
        name: &str,
        addr: SocketAddr,
        timeouts: Timeouts,
        serve: Serve<N>,
    ) -> Result<PlainServer> {
        let listen_error = |source| Error::Listen { addr, source };
        let listener = TcpListener::bind(addr).map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let connections: Connections = Arc::default();
        let accept = {
            let stopping = Arc::clone(&stopping);
            let connections = Arc::clone(&connections);
            let thread_name = name.to_owned();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    accept_loop(
                        &thread_name,
                        listener,
                        &stopping,
                        &connections,
                        timeouts,
                        serve,
                    )
                })
                .map_err(|source| Error::Local {
                    what: format!("starting the {name} thread"),
                    source,
                })?
        };
        Ok(PlainServer {
            addr,
            stopping,
            accept: Some(accept),
            connections,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stopping`.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections = std::mem::take(&mut *self.connections.lock());
        for (stream, thread) in connections {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

fn accept_loop<const N: usize>(
    name: &str,
    listener: TcpListener,
    stopping: &AtomicBool,
    connections: &Connections,
    timeouts: Timeouts,
    serve: Serve<N>,
) {
    // Bounded: ends when the server stops (its drop connects once to wake this).
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let mut live = connections.lock();
        // Joins the threads of connections that ended, so that they do not pile up.
        let (ended, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *live)
            .into_iter()
            .partition(|(_, t)| t.is_finished());
        *live = running;
        for (_, thread) in ended {
            let _ = thread.join();
        }
        if live.len() >= MAX_CONNECTIONS {
            log::warn!("{name}: {MAX_CONNECTIONS} connections open; one more closed");
            continue;
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let serve = Arc::clone(&serve);
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-conn"))
            .spawn(move || {
                if let Err(e) = serve_connection(stream, timeouts, &serve) {
                    log::debug!("compact connection ended: {e}");
                }
            });
        match spawned {
            Ok(thread) => live.push((clone, thread)),
            Err(e) => log::warn!("{name}: cannot start a thread: {e}"),
        }
    }
}

/// Serves one connection until it closes, goes silent, sends a request too slowly, or is
/// told to close.
fn serve_connection<const N: usize>(
    mut stream: TcpStream,
    timeouts: Timeouts,
    serve: &Serve<N>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let mut request = [0u8; N];
        if !read_request(&mut stream, &mut request, timeouts)? {
            return Ok(());
        }
        match serve(&request) {
            Answer::Reply(reply) => stream.write_all(&reply)?,
            Answer::ReplyAndClose(reply) => {
                stream.write_all(&reply)?;
                return stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Reads one whole request; false if the connection closed (or went idle) before its first
/// byte. A request begun must end within the I/O timeout: a half one is an error.
fn read_request(stream: &mut TcpStream, buf: &mut [u8], timeouts: Timeouts) -> io::Result<bool> {
    stream.set_read_timeout(Some(timeouts.idle))?;
    let first = match stream.read(buf) {
        Ok(0) => return Ok(false),
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    let deadline = Instant::now() + timeouts.io;
    let mut filled = first;
    // Bounded: each pass reads at least a byte, or fails, before the deadline.
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(true)
}
