//! What a connection's other end proved of itself ([`Message::Hello`]): settled once per
//! connection, by whichever end's introduction it carries.
//!
//! [`Message::Hello`]: crate::wire::Message::Hello

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::identity::PeerIdentity;

/// The other end's identity, as far as it is known.
#[derive(Default)]
pub(crate) struct Introduction {
    known: Mutex<Known>,
    settled: Condvar,
}

#[derive(Default, Clone, Copy)]
enum Known {
    /// Nothing proved (a client's connection, or one not introduced yet).
    #[default]
    Nothing,
    /// A proof is being checked, or awaited: asking now waits for it.
    Pending,
    /// Settled: who it is, or nobody believed.
    Settled(Option<PeerIdentity>),
}

impl Introduction {
    /// Starts the one introduction of the connection; `false` if one has begun before.
    pub fn begin(&self) -> bool {
        let mut known = self.known.lock();
        if !matches!(*known, Known::Nothing) {
            return false;
        }
        *known = Known::Pending;
        true
    }

    /// Ends it: `identity` is who the other end proved to be, if believed.
    pub fn settle(&self, identity: Option<PeerIdentity>) {
        *self.known.lock() = Known::Settled(identity);
        self.settled.notify_all();
    }

    /// Who the other end proved to be; while its proof is being checked, waits for the
    /// outcome at most `wait`.
    pub fn get(&self, wait: Duration) -> Option<PeerIdentity> {
        let deadline = Instant::now() + wait;
        let mut known = self.known.lock();
        while matches!(*known, Known::Pending) {
            if self.settled.wait_until(&mut known, deadline).timed_out() {
                break;
            }
        }
        match *known {
            Known::Settled(identity) => identity,
            Known::Nothing | Known::Pending => None,
        }
    }
}
