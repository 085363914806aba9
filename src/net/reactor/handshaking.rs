//! The connections a server holds that have not yet proven the key, counted by source
//! address.

use std::collections::HashMap;
use std::net::IpAddr;

use mio::Token;

use crate::fast_hash::FastMap;

/// Connections not yet proven members, counted by source address: what one address may hold
/// of a server before it has shown the key is bounded.
#[derive(Default)]
pub(crate) struct Handshaking {
    by_ip: HashMap<IpAddr, usize>,
    /// The connections counted, and their address.
    conns: FastMap<Token, IpAddr>,
}

impl Handshaking {
    /// Counts one more from `ip`, unless it already has `max`.
    pub fn enter(&mut self, token: Token, ip: IpAddr, max: usize) -> bool {
        let count = self.by_ip.entry(ip).or_default();
        if *count >= max {
            if *count == 0 {
                self.by_ip.remove(&ip);
            }
            return false;
        }
        *count += 1;
        self.conns.insert(token, ip);
        true
    }

    /// Whether nothing is counted.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty() && self.conns.is_empty()
    }

    /// The connection `token` has finished its handshake, or given up.
    pub fn leave(&mut self, token: Token) {
        let Some(ip) = self.conns.remove(&token) else {
            return;
        };
        if let Some(count) = self.by_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}
