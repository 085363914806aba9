//! Taking connections off the listener: each one watched, or refused when the server is
//! full or its address holds its share of the handshakes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mio::net::TcpListener;
use mio::{Interest, Token};

use super::conn::{Conn, Start};
use super::{Handshake, Handshaking, Security, Shared};
use crate::net::Counters;

impl Shared {
    /// Takes every connection waiting on the listener.
    pub(super) fn accept_all(
        self: &Arc<Self>,
        listener: &TcpListener,
        handshaking: &mut Handshaking,
    ) {
        // Bounded: each pass takes a connection off the listener's queue, or ends.
        loop {
            match listener.accept() {
                Ok((socket, peer)) => {
                    Counters::bump(&self.common.counters.accepted);
                    self.admit(socket, peer, handshaking);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors and the like: the next readiness retries.
                    log::warn!("{}: accept failed: {e}", self.name);
                    return;
                }
            }
        }
    }

    fn admit(
        self: &Arc<Self>,
        mut socket: mio::net::TcpStream,
        peer: SocketAddr,
        hs: &mut Handshaking,
    ) {
        // A shutdown under way has closed what it found: nothing new is taken.
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let config = &self.config;
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("{}: dropping connection from {peer}: {e}", self.name);
            return;
        }
        let open = self.conns.lock().values().filter(|c| c.inbound).count();
        if open >= config.max_connections {
            log::warn!("{}: refusing {peer}: connection limit reached", self.name);
            refuse(&socket, &config.security);
            return;
        }
        let token = Token(self.next_token.fetch_add(1, Ordering::Relaxed));
        let handshake = match config.security.chosen() {
            Ok(Some(key)) => {
                // A busy host's many members are not turned away while there is room; once
                // half the slots are taken, no one address may take more of them unproven.
                let limit = if open >= config.max_connections / 2 {
                    config.max_handshakes_per_source
                } else {
                    usize::MAX
                };
                if !hs.enter(token, peer.ip(), limit) {
                    log::debug!("{}: closing {peer}: too many handshakes from it", self.name);
                    return;
                }
                match Handshake::responder(key) {
                    Ok(h) => Some(Box::new(h)),
                    Err(e) => {
                        log::warn!("{}: cannot start a handshake: {e}", self.name);
                        hs.leave(token);
                        return;
                    }
                }
            }
            _ => None,
        };
        let registered = self
            .common
            .registry
            .register(&mut socket, token, Interest::READABLE);
        if let Err(e) = registered {
            log::warn!("{}: cannot watch a connection: {e}", self.name);
            hs.leave(token);
            return;
        }
        let start = Start::Accepted(handshake);
        let conn = Arc::new(Conn::new(token, socket, peer, start, self));
        self.conns.lock().insert(token, conn);
        self.common.counters.open.fetch_add(1, Ordering::Relaxed);
    }
}

/// Tells a peer over the connection limit why it is dropped, when that costs nothing: an
/// insecure server says so in a frame; a keyed one cannot without a handshake, and the
/// caller sees the connection closed during its handshake, which it takes as busy.
fn refuse(socket: &mio::net::TcpStream, security: &Security) {
    if !matches!(security, Security::Insecure) {
        return;
    }
    let mut frame = bytes::BytesMut::new();
    let busy = crate::wire::Message::Error {
        code: crate::wire::RemoteCode::Busy,
        message: "too many connections".into(),
    };
    let stream = crate::net::stream_ids::CONNECTION_STREAM;
    crate::wire::encode(&busy, stream, crate::wire::Trailer::Crc, &mut frame);
    let _ = io::Write::write(&mut &*socket, &frame);
}
