//! The simulator's network and event loop: calls become deliveries after a random delay,
//! replies become answers, losses and crashes become timeouts, and every effect a node's
//! state machine asks for is carried out here.

use std::cmp::Ordering;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::net::refusal_to_error;
use crate::protocol::membership::{Call, CallId, Effect, Phase, Target, Token};
use crate::protocol::registry::Registration;
use crate::wire::{Message, RemoteCode};

use super::objects::{Records, OBJECT_CALL};
use super::{LookupEnd, Sim, MAX_JOIN_ATTEMPTS};

/// How long a node waits before it tries a failed join again.
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// An event due at a virtual time; ties are broken by the order they were scheduled in. The
/// event itself waits in [`Sim::events`]: the heap moves only these few bytes.
pub(super) struct Scheduled {
    pub at: Duration,
    seq: u64,
    slot: usize,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: the heap's top is the earliest event.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What happens at a virtual time.
pub(super) enum Event {
    /// A request reaches `to`.
    Deliver {
        to: usize,
        token: Token,
        request: Message,
        /// The data of a record sent with the request.
        body: Bytes,
    },
    /// The answer to call `call` reaches `to`.
    Answer {
        to: usize,
        call: CallId,
        from: SocketAddr,
        outcome: Outcome,
    },
    /// `node`'s maintenance round.
    Tick { node: usize },
    /// `node` tries to join (again).
    Join { node: usize },
}

/// How a call ended, as its caller sees it.
pub(super) enum Outcome {
    /// The reply, and the records sent with it (a pull's).
    Reply(Message, Records),
    /// Nothing listens at the address.
    Refused,
    /// No answer within the wait.
    TimedOut(Duration),
}

/// A request being served, and who waits for its answer.
pub(super) struct Pending {
    pub callee: usize,
    caller: usize,
    call: CallId,
    to: SocketAddr,
    /// When the caller stops waiting.
    deadline: Duration,
    wait: Duration,
}

/// FNV-1a over the run's events: cheap, stable across machines and Rust versions.
#[derive(Clone, Debug)]
pub(super) struct Trace(u64);

impl Default for Trace {
    fn default() -> Self {
        Trace(0xcbf2_9ce4_8422_2325)
    }
}

impl Trace {
    pub fn add(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Sim {
    fn schedule(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        let at = self.now + after;
        let slot = match self.free_events.pop() {
            Some(slot) => {
                self.events[slot] = Some(event);
                slot
            }
            None => {
                self.events.push(Some(event));
                self.events.len() - 1
            }
        };
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            slot,
        });
    }

    /// One message's delay, drawn from the configured range.
    fn latency(&mut self) -> Duration {
        let (lo, hi) = (self.config.min_latency, self.config.max_latency);
        let span = u64::try_from(hi.saturating_sub(lo).as_micros()).unwrap_or(u64::MAX);
        let extra = self.rng.next_u64() % span.saturating_add(1);
        lo + Duration::from_micros(extra)
    }

    /// Whether the next message between `a` and `b` is lost.
    fn lost(&mut self, a: usize, b: usize) -> bool {
        let cut = self.partitioned && self.nodes[a].group != self.nodes[b].group;
        let lost = cut
            || (self.config.loss_ppm > 0
                && self.rng.below(1_000_000) < self.config.loss_ppm as usize);
        if lost {
            self.stats.dropped += 1;
        }
        lost
    }

    pub(super) fn handle(&mut self, scheduled: Scheduled) {
        self.stats.events += 1;
        self.trace
            .add(u64::try_from(scheduled.at.as_nanos()).unwrap_or(u64::MAX));
        let Some(event) = self.events[scheduled.slot].take() else {
            return;
        };
        self.free_events.push(scheduled.slot);
        match event {
            Event::Deliver {
                to,
                token,
                request,
                body,
            } => {
                self.trace.add(1 << 32 | to as u64);
                if !self.nodes[to].alive {
                    if let Some(p) = self.pending.remove(&token) {
                        self.time_out(p);
                    }
                    return;
                }
                let Some(request) = self.serve_object(to, token, request, body) else {
                    return;
                };
                let now = self.instant();
                let effects = match self.nodes[to].core.serve(now, token, request) {
                    Ok(effects) => effects,
                    Err(other) => vec![Effect::Reply {
                        token,
                        reply: Message::Error {
                            code: RemoteCode::BadRequest,
                            message: format!("a node does not answer {}", other.name()),
                        },
                    }],
                };
                self.carry_out(to, effects);
            }
            Event::Answer {
                to,
                call,
                from,
                outcome,
            } => {
                self.trace.add(2 << 32 | to as u64);
                if !self.nodes[to].alive {
                    self.conts.remove(&call);
                    return;
                }
                let mut records = Vec::new();
                let result: Result<Message> = match outcome {
                    Outcome::Reply(reply, with) => {
                        records = with;
                        refusal_to_error(from, reply)
                    }
                    Outcome::Refused => Err(Error::Unreachable {
                        addr: from,
                        source: io::ErrorKind::ConnectionRefused.into(),
                    }),
                    Outcome::TimedOut(after) => Err(Error::Timeout { addr: from, after }),
                };
                if call & OBJECT_CALL != 0 {
                    return self.object_answer(to, call, result, records);
                }
                let now = self.instant();
                let effects = self.nodes[to].core.answer(now, call, result);
                self.carry_out(to, effects);
            }
            Event::Tick { node } => {
                self.trace.add(3 << 32 | node as u64);
                if !self.nodes[node].alive {
                    return;
                }
                let now = self.instant();
                let effects = self.nodes[node].core.tick(now);
                self.carry_out(node, effects);
                self.start_rebalance(node);
                let interval = self.config.maintenance_interval;
                self.schedule(interval, Event::Tick { node });
            }
            Event::Join { node } => {
                self.trace.add(4 << 32 | node as u64);
                if self.nodes[node].alive {
                    self.try_join(node);
                }
            }
        }
    }

    /// Registers `slot` with discovery and starts its join through a random member.
    pub(super) fn try_join(&mut self, slot: usize) {
        let me = self.nodes[slot].core.me();
        let now = self.instant();
        self.nodes[slot].attempts += 1;
        let mut decision = self.registry.register(me, key_of(me), now);
        if let Registration::AskHolder(held, _) = decision {
            // Discovery asks the holder whether it is alive.
            let alive = self.live_at(held.addr).is_some();
            if alive || !self.registry.holder_gone(me, key_of(me), held, now) {
                return self.join_later(slot);
            }
            decision = Registration::Accepted;
        }
        if decision != Registration::Accepted {
            return self.join_later(slot);
        }
        let pick = self.rng.next_u64();
        let peer = self
            .registry
            .joined_peer(pick, now)
            .filter(|p| p.id != me.id);
        if self.nodes[slot].core.begin_join().is_err() {
            return;
        }
        let effects = self.nodes[slot].core.join(now, peer.map(Target::from));
        if peer.is_none() {
            self.joined(slot); // the first node: a member at once
        }
        self.carry_out(slot, effects);
    }

    fn join_later(&mut self, slot: usize) {
        if self.nodes[slot].attempts < MAX_JOIN_ATTEMPTS {
            self.schedule(JOIN_RETRY, Event::Join { node: slot });
        }
    }

    /// Carries out the effects of one input to `slot`.
    pub(super) fn carry_out(&mut self, slot: usize, effects: Vec<Effect>) {
        for effect in effects {
            if self.object_effect(slot, &effect) {
                continue;
            }
            match effect {
                Effect::Call(call) => self.send(slot, call),
                Effect::Reply { token, reply } => self.reply(token, reply),
                Effect::Looked { op, result } => {
                    if let Some((key, from)) = self.lookups.remove(&op) {
                        let path = result.map(|(path, _)| path).map_err(|e| e.to_string());
                        if let Ok(path) = &path {
                            for n in path {
                                self.trace.add(u64::from(n.id.0));
                            }
                        }
                        self.ended.push(LookupEnd { key, from, path });
                    }
                }
                Effect::JoinWalked => self.start_pulls(slot),
                Effect::JoinFailed(e) => {
                    let me = self.nodes[slot].core.me();
                    log::debug!("sim: join of {me} failed: {e}");
                    self.stats.failed_joins += 1;
                    self.nodes[slot].core.abort_join();
                    let _ = self.registry.deregister(me, key_of(me));
                    self.join_later(slot);
                }
                // Discovery asks the node itself (it is never cut off in this model).
                Effect::Dead(node) => {
                    if self.live_at(node.addr).is_none() {
                        self.registry.deregister_dead(node);
                    }
                }
                Effect::Heartbeat => {
                    let me = self.nodes[slot].core.me();
                    let now = self.instant();
                    self.registry.heartbeat(me, key_of(me), now);
                }
                Effect::Departed(_) | Effect::LeafSetChanged => {}
            }
        }
    }

    /// `slot` is a member: discovery may hand it out, and its maintenance starts.
    pub(super) fn joined(&mut self, slot: usize) {
        let me = self.nodes[slot].core.me();
        self.stats.joins += 1;
        let now = self.instant();
        let _ = self.registry.joined(me.id, key_of(me), now);
        // Rounds start at a random phase, as nodes started at random times would.
        let micros = u64::try_from(self.config.maintenance_interval.as_micros()).unwrap_or(1);
        let phase = Duration::from_micros(self.rng.next_u64() % micros.max(1));
        self.schedule(phase, Event::Tick { node: slot });
    }

    fn send(&mut self, caller: usize, call: Call) {
        let joining = self.nodes[caller].core.phase() == Phase::Joining;
        if joining || matches!(call.request, Message::Announce { .. }) {
            self.stats.join_calls += 1;
        }
        let Call {
            id,
            to,
            request,
            wait,
        } = call;
        self.send_with(caller, id, to, request, Bytes::new(), wait);
    }

    /// Sends `request` (with the data `body`) from `caller` as its call `id`.
    pub(super) fn send_with(
        &mut self,
        caller: usize,
        id: CallId,
        to: Target,
        request: Message,
        body: Bytes,
        wait: Duration,
    ) {
        self.stats.calls += 1;
        let Some(callee) = self.live_at(to.addr) else {
            let delay = self.latency() * 2;
            let answer = Event::Answer {
                to: caller,
                call: id,
                from: to.addr,
                outcome: Outcome::Refused,
            };
            return self.schedule(delay.min(wait), answer);
        };
        let pending = Pending {
            callee,
            caller,
            call: id,
            to: to.addr,
            deadline: self.now + wait,
            wait,
        };
        if self.lost(caller, callee) {
            return self.time_out(pending);
        }
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, pending);
        let delay = self.latency();
        let deliver = Event::Deliver {
            to: callee,
            token,
            request,
            body,
        };
        self.schedule(delay, deliver);
    }

    fn reply(&mut self, token: Token, reply: Message) {
        self.reply_with(token, reply, Vec::new());
    }

    /// Answers the request `token` with `reply` and the records sent with it.
    pub(super) fn reply_with(&mut self, token: Token, reply: Message, records: Records) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        if self.lost(p.callee, p.caller) {
            return self.time_out(p);
        }
        let arrives = self.now + self.latency();
        if arrives > p.deadline {
            return self.time_out(p);
        }
        let answer = Event::Answer {
            to: p.caller,
            call: p.call,
            from: p.to,
            outcome: Outcome::Reply(reply, records),
        };
        self.schedule(arrives - self.now, answer);
    }

    /// The caller of `p` gets no answer: it times out at its deadline.
    pub(super) fn time_out(&mut self, p: Pending) {
        let answer = Event::Answer {
            to: p.caller,
            call: p.call,
            from: p.to,
            outcome: Outcome::TimedOut(p.wait),
        };
        let after = p.deadline.saturating_sub(self.now);
        self.schedule(after, answer);
    }
}

/// The key a simulated node holds: one per address, so that a node restarted at its address
/// claims its id back at once, as a real one restarted on its data directory does. The
/// simulator checks no proofs: its messages are believed as they come.
pub(super) fn key_of(node: crate::id::NodeInfo) -> crate::identity::PublicKey {
    let mut key = [0; 32];
    let text = node.addr.to_string();
    for (k, b) in key.iter_mut().zip(text.bytes()) {
        *k = b;
    }
    crate::identity::PublicKey(key)
}
