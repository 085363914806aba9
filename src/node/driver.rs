//! The threaded driver of the membership core ([`crate::protocol::membership`]): carries out
//! the effects of one input on the thread that brought it. For the node's own inputs (its
//! lookups, join, maintenance and leave) a call is made there and then (the thread waits
//! for the answer) and its answer fed back at once, so an input's effects, and theirs in
//! turn, are done depth first, in the order the core asked for them, before the thread goes
//! on. Requests from other nodes and clients are driven without waiting (`relay.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::calls::discovery::DiscoveryLink;
use crate::calls::route::RouteEnd;
use crate::error::{Error, Result};
use crate::id::NodeInfo;
use crate::identity::Certificate;
use crate::net::unix_ms;
use crate::protocol::membership::{Call, Effect, Token};
use crate::wire::Message;

use super::Inner;

/// What the effects of one input came to.
#[derive(Default)]
pub(super) struct Done {
    replies: Vec<(Token, Message)>,
    looked: Option<Result<RouteEnd>>,
    walked: bool,
    join_failed: Option<Error>,
}

impl Done {
    /// The reply to the request `token`.
    pub(super) fn reply(mut self, token: Token) -> Message {
        let at = self.replies.iter().position(|(t, _)| *t == token);
        match at {
            Some(at) => self.replies.swap_remove(at).1,
            // Every request the core takes is answered before its effects run out.
            None => Message::Error {
                code: crate::wire::RemoteCode::Internal,
                message: "the request was not answered".into(),
            },
        }
    }

    /// The end of the lookup.
    pub(super) fn looked(self) -> Result<RouteEnd> {
        self.looked.unwrap_or(Err(Error::Shutdown))
    }

    /// Whether the join walk ended well (it ends within its input's effects, unless the
    /// node stopped meanwhile).
    pub(super) fn walked(self) -> Result<()> {
        match self.join_failed {
            Some(e) => Err(e),
            None if self.walked => Ok(()),
            None => Err(Error::Shutdown),
        }
    }
}

impl Inner {
    /// Carries out `effects` and everything they lead to, each call made here, waiting for
    /// its answer.
    pub(super) fn drive(&self, effects: Vec<Effect>) -> Done {
        self.drive_with(effects, &mut |call| {
            if !self.core.read().wants(call.id) {
                return Vec::new(); // dropped meanwhile: the node stopped maintenance
            }
            let result = self
                .pool
                .call_within(call.to.addr, &self.vouch(call.request), call.wait)
                .map(|answer| self.unvouch(answer, None));
            self.core.write().answer(Instant::now(), call.id, result)
        })
    }

    /// Carries out `effects`, each call through `call`, which returns what its answer led
    /// to (nothing yet, for a call whose answer no thread waits for: `relay.rs`). A reply to
    /// a request answered later goes to that request.
    pub(super) fn drive_with(
        &self,
        effects: Vec<Effect>,
        call: &mut dyn FnMut(Call) -> Vec<Effect>,
    ) -> Done {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut done = Done::default();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Call(c) => {
                    for e in call(c).into_iter().rev() {
                        queue.push_front(e);
                    }
                }
                Effect::Reply { token, reply } => match self.relays.take(token) {
                    Some(later) => later.send(self.vouch(reply)),
                    None => done.replies.push((token, reply)),
                },
                Effect::Looked { result, .. } => done.looked = Some(result),
                Effect::JoinWalked => done.walked = true,
                Effect::JoinFailed(e) => done.join_failed = Some(e),
                Effect::Dead(node) => {
                    self.pool.forget(node.addr);
                    self.report_dead(node);
                }
                Effect::Departed(node) => self.pool.forget(node.addr),
                Effect::LeafSetChanged => self.wake_maintenance(),
                Effect::Heartbeat => {
                    self.heartbeat_discovery();
                    self.note_alive_when_due();
                }
            }
        }
        done
    }

    /// Tells discovery that `node` seems dead, so that it hands it out no more once it has
    /// checked.
    fn report_dead(&self, node: NodeInfo) {
        let discovery = *self.discovery.lock();
        self.tell_discovery(discovery, log::Level::Debug, |link| link.suspect(node));
    }

    /// Tells the discovery node at `addr`, if any, with `tell`; a failure is logged at
    /// `level`: the overlay does not depend on discovery.
    pub(super) fn tell_discovery(
        &self,
        addr: Option<SocketAddr>,
        level: log::Level,
        tell: impl FnOnce(&DiscoveryLink<'_>) -> Result<()>,
    ) {
        let Some(addr) = addr else { return };
        let link = DiscoveryLink {
            pool: &self.pool,
            addr,
        };
        if let Err(e) = tell(&link) {
            log::log!(level, "node {}: discovery at {addr} not told: {e}", self.me);
        }
    }

    /// Closes the connections idle too long: those to the peers this node talks to all the
    /// time (its leaf set and routing table, and discovery) after the pool's idle timeout,
    /// the others sooner (the pool's `LINGER`).
    pub(super) fn close_idle_connections(&self) {
        let known = self.core.read().state().known();
        let mut regular: Vec<SocketAddr> = known.iter().map(|n| n.addr).collect();
        regular.extend(*self.discovery.lock());
        regular.sort_unstable();
        self.pool
            .close_idle(|addr| regular.binary_search(&addr).is_ok());
    }

    /// The maintenance round: leaf-set exchanges and the routing-table refresh.
    pub(super) fn maintain_overlay(&self) {
        let effects = self.core.write().tick(Instant::now());
        self.drive(effects);
    }

    /// Reminds discovery that this node is alive, so that a restarted discovery relearns it,
    /// and takes the renewed certificate.
    pub(super) fn heartbeat_discovery(&self) {
        let discovery = *self.discovery.lock();
        self.tell_discovery(discovery, log::Level::Debug, |link| {
            let cert = link.alive(self.me)?;
            // A node that joined without discovery stays uncertified, as its peers are: it
            // would refuse them all.
            match self.credentials.trusted_authority() {
                Some(_) => self.take_certificate(*cert),
                None => Ok(()),
            }
        });
    }

    /// Takes `cert`, from discovery, as this node's certificate.
    pub(super) fn take_certificate(&self, cert: Certificate) -> Result<()> {
        self.credentials
            .certify(cert, self.me, unix_ms())
            .map_err(|e| Error::Config(format!("discovery's certificate refused: {e}")))
    }
}
