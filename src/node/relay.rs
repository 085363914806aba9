//! The overlay's requests served with no thread waiting on another node. A route this node
//! forwards is sent on to the next hop and the handler returns; the next hop's answer, read
//! by the crew, is fed to the membership core, and the core's reply goes back to the asker
//! then ([`Session::reply_later`]). The crew's leader that read the route keeps leading
//! meanwhile (a handler waiting on the next hop handed the lead to a follower, woken for
//! it), and routes in flight hold no threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::driver::Done;
use super::Inner;
use crate::fast_hash::FastMap;
use crate::net::{Later, Session};
use crate::protocol::membership::{Call, Effect, Token};
use crate::wire::Message;

/// The requests whose replies wait on calls, by the token the core knows them by.
#[derive(Default)]
pub(super) struct Relays {
    next: AtomicU64,
    waiting: Mutex<FastMap<Token, Later>>,
}

impl Relays {
    /// The reply to the request `token` goes to `later` once the core gives it.
    fn hold(&self, token: Token, later: Later) {
        self.waiting.lock().insert(token, later);
    }

    /// Where the reply to the request `token` goes, if it waits on calls.
    pub(super) fn take(&self, token: Token) -> Option<Later> {
        self.waiting.lock().remove(&token)
    }
}

impl Inner {
    /// Serves a request of the overlay's protocols ([`Membership::serves`]): answered now if
    /// the core answers it at once, else once the calls it makes are answered (a reply the
    /// core gives together with calls of its own goes the same way). The request comes back
    /// as the error when it is not one of theirs after all.
    ///
    /// [`Membership::serves`]: crate::protocol::membership::Membership::serves
    pub(super) fn serve_overlay(
        self: &Arc<Self>,
        request: Message,
        session: &mut Session<'_>,
    ) -> Result<Message, Message> {
        let token = self.relays.next.fetch_add(1, Ordering::Relaxed);
        let effects = self.core.write().serve(Instant::now(), token, request)?;
        // The calls are those of this input: the answers to them bring the rest.
        let waits = effects.iter().any(|e| matches!(e, Effect::Call(_)));
        if waits {
            self.relays.hold(token, session.reply_later());
        }
        let done = self.drive_later(effects);
        Ok(match waits {
            true => Message::Ack, // dropped: the reply goes through `later`
            false => self.vouch(done.reply(token)),
        })
    }

    /// Carries out `effects`, the calls among them with no thread waiting for their answers.
    fn drive_later(self: &Arc<Self>, effects: Vec<Effect>) -> Done {
        self.drive_with(effects, &mut |call| {
            self.call_later(call);
            Vec::new()
        })
    }

    /// Makes `call`; its answer is fed to the core on a thread of the crew, and what that
    /// brings carried out there.
    fn call_later(self: &Arc<Self>, call: Call) {
        if !self.core.read().wants(call.id) {
            return; // dropped meanwhile: the node stopped
        }
        let this = Arc::downgrade(self);
        let id = call.id;
        let request = self.vouch(call.request);
        let then = Box::new(move |result: crate::Result<Message>| {
            let Some(inner) = this.upgrade() else {
                return; // the node is gone, and its core with it
            };
            let result = result.map(|answer| inner.unvouch(answer, None));
            let more = inner.core.write().answer(Instant::now(), id, result);
            inner.drive_later(more);
        });
        self.pool.call_then(call.to.addr, request, call.wait, then);
    }
}
