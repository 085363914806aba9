//! The connections peers opened to a reactor and introduced (`Hello`), by the address each
//! peer listens on: this end's pool sends its own requests to that peer over them.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::Conn;
use crate::fast_hash::FastMap;

/// Introduced connections, held weakly: the reactor's table of connections owns them.
#[derive(Default)]
pub(super) struct Introduced(Mutex<FastMap<SocketAddr, Weak<Conn>>>);

impl Introduced {
    /// The open connection the peer listening at `addr` introduced, if any.
    pub fn get(&self, addr: SocketAddr) -> Option<Arc<Conn>> {
        let mut introduced = self.0.lock();
        let conn = introduced.get(&addr).and_then(Weak::upgrade);
        match conn {
            Some(conn) if !conn.is_closed() => Some(conn),
            _ => {
                introduced.remove(&addr);
                None
            }
        }
    }

    /// Notes that the peer at the other end of `conn` (which it opened) listens at `addr`,
    /// keeping at most `max` entries.
    pub fn note(&self, addr: SocketAddr, conn: &Arc<Conn>, max: usize) {
        let mut introduced = self.0.lock();
        // Bounded by the connections there can be: the closed ones' entries go first.
        if introduced.len() >= max {
            introduced.retain(|_, c| c.strong_count() > 0);
        }
        if introduced.len() < max {
            introduced.insert(addr, Arc::downgrade(conn));
        }
    }

    /// Forgets `conn`, which closed: a weak reference keeps a connection's memory until it
    /// is dropped.
    pub fn forget(&self, conn: &Arc<Conn>) {
        self.0
            .lock()
            .retain(|_, c| !std::ptr::eq(c.as_ptr(), Arc::as_ptr(conn)));
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }
}
