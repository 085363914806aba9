//! A node's overlay protocols as one state machine: join, routing, leave, failure detection
//! and repair (the Pastry paper's §2). No sockets, threads or clock: requests, the answers to
//! this node's own calls, the maintenance tick and the calls of the API come in with `now`;
//! effects go out (calls to make, replies to give, results of API calls, news for the
//! driver). Request/reply correlation, retries and deadlines are state here, never a blocked
//! thread.
//!
//! Two drivers run it: the threaded node ([`crate::Node`]), which makes each call on the
//! thread that caused it and feeds the answer back, and the simulator ([`crate::sim`]), which
//! runs any number of nodes on one thread over an in-memory network.
//!
//! Every public method returns the effects of that one input, so that a driver serving
//! several inputs at once on several threads gets back exactly the effects of its own.

mod exchange;
mod join;
mod routing;
mod upkeep;

pub use routing::{is_hop_failure, route_answer, route_request, RouteEnd};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fast_hash::FastMap;
use crate::id::{Id, Key, NodeInfo};
use crate::identity::PublicKey;
use crate::overlay::OverlayState;
use crate::wire::{Message, RemoteCode};

use super::health::Health;

/// Identifies one call this node makes, in its [`Effect::Call`] and its answer.
pub type CallId = u64;

/// Identifies one request this node serves, chosen by the driver: the [`Effect::Reply`] to it
/// carries it back.
pub type Token = u64;

/// Identifies one API call (a lookup), chosen by the driver.
pub type OpId = u64;

/// Whom to ask: an address, and the id when known (the first hop of a join through a known
/// address has none yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node's id, if known.
    pub id: Option<Id>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl From<NodeInfo> for Target {
    fn from(n: NodeInfo) -> Self {
        Target {
            id: Some(n.id),
            addr: n.addr,
        }
    }
}

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Serving, but not part of an overlay yet.
    Idle,
    /// Building its tables from other nodes.
    Joining,
    /// A full member of the overlay.
    Joined,
    /// Handing its objects over before it leaves: routes and serves gets, takes no writes.
    Leaving,
    /// Has left; answers only pings.
    Left,
}

/// The parameters of the protocols.
#[derive(Clone, Debug)]
pub struct Config {
    /// Leaf-set members kept on each side (`l`).
    pub leaf_half: usize,
    /// Copies kept of each object (`k`), reported with every route's end.
    pub replicas: usize,
    /// Most hops a route may take.
    pub max_hops: usize,
    /// How long a call waits for its answer, unless it says otherwise.
    pub call_timeout: Duration,
    /// The node's public key, which it names when asked who it is ([`Message::Pong`]).
    pub key: PublicKey,
}

impl Config {
    /// The most time a lookup takes: twice the call timeout, so that a next hop that does not
    /// answer within it leaves as long again to route around it.
    pub fn route_budget(&self) -> Duration {
        self.call_timeout * 2
    }
}

/// A call to make: send `request` to `to`, and feed back its answer (or the failure) with
/// [`Membership::answer`] within `wait`.
#[derive(Debug)]
pub struct Call {
    /// The call's id, for the answer.
    pub id: CallId,
    /// Whom to ask.
    pub to: Target,
    /// What to ask.
    pub request: Message,
    /// How long to wait for the answer.
    pub wait: Duration,
}

/// What an input asks of the driver.
#[derive(Debug)]
pub enum Effect {
    /// Make this call.
    Call(Call),
    /// Answer the request `token` with `reply`.
    Reply {
        /// The request answered.
        token: Token,
        /// The answer.
        reply: Message,
    },
    /// The lookup `op` ended.
    Looked {
        /// The lookup.
        op: OpId,
        /// The path from this node to the responsible one, and the other holders of the key;
        /// or why it failed.
        result: Result<RouteEnd>,
    },
    /// The join has built this node's tables: fetch the copies this node is to keep, then
    /// call [`Membership::finish_join`].
    JoinWalked,
    /// The join failed; call [`Membership::abort_join`] (after withdrawing from discovery).
    JoinFailed(Error),
    /// This node found `node` dead: tell discovery, and close connections to it.
    Dead(NodeInfo),
    /// `node` left: close connections to it.
    Departed(NodeInfo),
    /// The leaf set changed: the best-placed holders of some keys may have changed.
    LeafSetChanged,
    /// Time to remind discovery that this node is alive (so that a discovery that
    /// restarted relearns it, and a node it forgot is handed out again).
    Heartbeat,
}

/// Maintenance rounds between reminders to discovery that this node is alive.
pub const HEARTBEAT_EVERY: u64 = 5;

/// Calls an idle node's table of outstanding calls keeps room for: a round's probes.
const IDLE_CALLS: usize = 8;

/// What an outstanding call is for.
#[derive(Debug)]
enum Waiting {
    /// A hop of a route this node forwards (boxed: the largest of these by far, and
    /// the table of calls is sized for the largest).
    Route(Box<routing::RouteTask>),
    /// A step of this node's join.
    JoinHop,
    /// Telling a node of this node's join.
    Announce,
    /// A leaf-set exchange with a neighbour.
    Exchange,
    /// A routing-table entry's rows, for the periodic refresh.
    Refresh,
    /// A peer's entry for a routing-table cell left empty.
    Cell(upkeep::CellTask),
    /// Telling a node of this node's leave.
    Depart,
    /// Whether a node found silent answers again.
    Probe,
    /// A route of this node's own id through another node, which should end here.
    SelfCheck,
    /// Whether a node heard of second hand is alive, before it enters the routing table;
    /// with the refill it serves, if any.
    Vouch(Option<upkeep::CellTask>),
}

impl Waiting {
    /// Calls of the periodic maintenance: dropped when the node stops being a member.
    fn is_maintenance(&self) -> bool {
        matches!(
            self,
            Waiting::Exchange
                | Waiting::Refresh
                | Waiting::Cell(_)
                | Waiting::Probe
                | Waiting::SelfCheck
                | Waiting::Vouch(_)
        )
    }
}

/// One node's overlay protocols.
#[derive(Debug)]
pub struct Membership {
    me: NodeInfo,
    config: Config,
    phase: Phase,
    state: OverlayState,
    health: Health,
    calls: FastMap<CallId, (Target, Waiting)>,
    next_call: CallId,
    join: Option<join::JoinWalk>,
    /// Nodes found dead by their silence, and since when: they may be cut off rather than
    /// dead, and are asked again (see [`upkeep`]).
    silent: std::collections::BTreeMap<Id, (NodeInfo, Instant)>,
    /// What this node last told each neighbour of its leaf set (see [`exchange`]).
    told: exchange::Told,
    /// Maintenance rounds so far.
    round: u64,
    /// Effects of the input being handled.
    out: Vec<Effect>,
}

impl Membership {
    /// A node that knows nobody yet.
    pub fn new(me: NodeInfo, config: Config) -> Membership {
        Membership {
            me,
            state: OverlayState::new(me, config.leaf_half),
            config,
            phase: Phase::Idle,
            health: Health::default(),
            calls: FastMap::default(),
            next_call: 1,
            join: None,
            silent: std::collections::BTreeMap::new(),
            told: exchange::Told::default(),
            round: 0,
            out: Vec::new(),
        }
    }

    /// This node.
    pub fn me(&self) -> NodeInfo {
        self.me
    }

    /// Where the node is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What this node knows of the overlay.
    pub fn state(&self) -> &OverlayState {
        &self.state
    }

    /// The parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the call `id` is still wanted: a driver that makes calls one after another
    /// skips those dropped meanwhile (maintenance of a node that started leaving).
    pub fn wants(&self, id: CallId) -> bool {
        self.calls.contains_key(&id)
    }

    /// Calls made and not answered yet.
    pub fn calls_outstanding(&self) -> usize {
        self.calls.len()
    }

    /// The nodes besides this one that keep copies of `key`, as this node sees them.
    pub fn other_replicas(&self, key: Key) -> Vec<NodeInfo> {
        let mut set = self.state.replica_set(key, self.config.replicas);
        set.retain(|n| n.id != self.me.id);
        set
    }

    /// Idle to Joining: the start of a join.
    pub fn begin_join(&mut self) -> Result<()> {
        match self.phase {
            Phase::Idle => {
                self.phase = Phase::Joining;
                Ok(())
            }
            Phase::Left => Err(Error::Shutdown),
            _ => Err(Error::AlreadyJoined(self.me.id)),
        }
    }

    /// Joins through `via` (after [`begin_join`](Self::begin_join)), or starts a new overlay
    /// when there is nobody to join through.
    pub fn join(&mut self, now: Instant, via: Option<Target>) -> Vec<Effect> {
        match via {
            Some(start) => self.start_join_walk(now, start),
            None => {
                log::info!("node {}: first node of a new overlay", self.me);
                self.phase = Phase::Joined;
                log::info!("node {} joined", self.me);
            }
        }
        self.take_out()
    }

    /// Ends a join whose walk is done and whose copies are fetched: the node is a member and
    /// tells every node in its tables.
    pub fn finish_join(&mut self, _now: Instant) -> Vec<Effect> {
        if self.phase != Phase::Joining {
            return self.take_out();
        }
        // Answer requests before anyone knows of us, so that no request finds us not joined.
        self.phase = Phase::Joined;
        log::info!("node {} joined", self.me);
        let announce = Message::Announce { node: self.me };
        for node in self.state.known() {
            self.call(node.into(), announce.clone(), None, Waiting::Announce);
        }
        // Objects kept from an earlier life may belong elsewhere now.
        self.out.push(Effect::LeafSetChanged);
        self.take_out()
    }

    /// Back to Idle after a failed join, knowing nobody.
    pub fn abort_join(&mut self) {
        self.phase = Phase::Idle;
        self.join = None;
        self.calls.clear();
        self.state = OverlayState::new(self.me, self.config.leaf_half);
    }

    /// Starts a lookup of `key` from this node; [`Effect::Looked`] ends it.
    pub fn lookup(&mut self, now: Instant, op: OpId, key: Key) -> Vec<Effect> {
        if self.phase != Phase::Joined {
            let result = Err(Error::NotJoined(self.me.id));
            self.out.push(Effect::Looked { op, result });
        } else {
            let hops = u8::try_from(self.config.max_hops).unwrap_or(u8::MAX);
            let deadline = now + self.config.route_budget();
            self.start_route(now, key, hops, deadline, routing::RouteFor::Api(op));
        }
        self.take_out()
    }

    /// Whether `request` is one of these protocols' (which [`serve`](Self::serve) answers).
    pub fn serves(request: &Message) -> bool {
        matches!(
            request,
            Message::Ping
                | Message::Route { .. }
                | Message::JoinHop { .. }
                | Message::Exchange { .. }
                | Message::Announce { .. }
                | Message::Depart { .. }
                | Message::Replicas { .. }
                | Message::Cell { .. }
        )
    }

    /// Serves a request from another node or a client. Gives the request back when it is not
    /// one of these protocols' (an object request, for the store's side of the node).
    pub fn serve(
        &mut self,
        now: Instant,
        token: Token,
        request: Message,
    ) -> std::result::Result<Vec<Effect>, Message> {
        // A leaving node still routes until it has handed everything over.
        let routing = matches!(self.phase, Phase::Joined | Phase::Leaving);
        let reply = match request {
            Message::Ping => Message::Pong {
                node: self.me,
                key: self.config.key,
            },
            Message::Route {
                key,
                hops_left,
                budget_ms,
            } if routing => {
                // However long the asker says it waits, a route is answered within our own
                // budget for one.
                let budget =
                    Duration::from_millis(budget_ms.into()).min(self.config.route_budget());
                let to = routing::RouteFor::Peer(token);
                self.start_route(now, key, hops_left, now + budget, to);
                return Ok(self.take_out());
            }
            Message::JoinHop { joiner, exclude } if routing => self.join_state(joiner, &exclude),
            Message::Exchange { node, leaf_set } if routing => {
                self.serve_exchange(now, node, &leaf_set)
            }
            Message::Announce { node } if routing => {
                self.health.rejoined(node.id);
                if node.id != self.me.id && self.change(|s| s.learn(node)) {
                    log::debug!("node {}: learnt {node}", self.me);
                }
                Message::Ack
            }
            Message::Depart { node, leaf_set } if routing => {
                // Gone for good: a neighbour that has not heard yet must not hand it back.
                self.health.departed(node.id, now);
                self.change(|s| s.forget(node.id));
                self.learn_leaf_set_of(now, None, &leaf_set);
                self.out.push(Effect::Departed(node));
                log::debug!("node {}: {node} departed", self.me);
                Message::Ack
            }
            Message::Replicas { key } if routing => Message::ReplicaSet {
                nodes: self.other_replicas(key),
            },
            Message::Cell { row, col } if routing => Message::CellEntry {
                node: self.state.table().get(row.into(), col.into()),
            },
            Message::Route { .. }
            | Message::JoinHop { .. }
            | Message::Announce { .. }
            | Message::Exchange { .. }
            | Message::Depart { .. }
            | Message::Replicas { .. }
            | Message::Cell { .. } => self.not_joined(),
            other => return Err(other),
        };
        self.out.push(Effect::Reply { token, reply });
        Ok(self.take_out())
    }

    /// The refusal of a node that is not part of an overlay.
    pub fn not_joined(&self) -> Message {
        Message::Error {
            code: RemoteCode::NotJoined,
            message: format!("node {} is not part of an overlay", self.me.id),
        }
    }

    /// The answer to call `id`: the reply, or why there is none (a refusal is an
    /// [`Error::Refused`]). An answer to a call no longer wanted is ignored.
    pub fn answer(&mut self, now: Instant, id: CallId, result: Result<Message>) -> Vec<Effect> {
        let Some((to, waiting)) = self.calls.remove(&id) else {
            return self.take_out();
        };
        if self.calls.len() <= IDLE_CALLS / 2 && self.calls.capacity() > 2 * IDLE_CALLS {
            // A join's burst of calls (one to every node told of it) left a table sized
            // for it: an idle node keeps one sized for its rounds.
            self.calls.shrink_to(IDLE_CALLS);
        }
        match waiting {
            Waiting::Route(task) => self.route_answered(now, to, *task, result),
            Waiting::JoinHop => self.join_answered(now, to, result),
            Waiting::Announce => {
                if let Err(e) = result {
                    log::debug!("node {}: {to:?} not told of join: {e}", self.me);
                    self.suspect(now, to, &e);
                }
            }
            Waiting::Depart => {
                if let Err(e) = result {
                    log::debug!("node {}: {to:?} not told of leave: {e}", self.me);
                }
            }
            Waiting::Exchange => self.exchanged(now, to, result),
            Waiting::Refresh => self.refreshed(now, to, result),
            Waiting::Cell(task) => self.cell_answered(now, task, result),
            Waiting::Probe => self.probed(now, to, result),
            Waiting::SelfCheck => self.self_checked(to, result),
            Waiting::Vouch(task) => self.vouched(now, to, task, result),
        }
        self.take_out()
    }

    /// The maintenance tick, every maintenance interval: exchanges leaf sets with every
    /// neighbour (the liveness check and the repair) and refreshes the routing table.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        if self.phase == Phase::Joined {
            self.probe_neighbours();
            self.refresh_table();
            self.probe_silent(now);
            self.check_own_place();
            self.health.forget_old(now);
            if self.round % HEARTBEAT_EVERY == 0 {
                self.out.push(Effect::Heartbeat);
            }
            self.round += 1;
        }
        self.take_out()
    }

    /// Joined to Leaving: the start of a graceful leave. Maintenance stops.
    pub fn begin_leave(&mut self) -> Result<()> {
        if self.phase != Phase::Joined {
            return Err(Error::NotJoined(self.me.id));
        }
        self.phase = Phase::Leaving;
        self.calls.retain(|_, (_, w)| !w.is_maintenance());
        Ok(())
    }

    /// Back to Joined: the leave could not hand everything over.
    pub fn abort_leave(&mut self) {
        if self.phase == Phase::Leaving {
            self.phase = Phase::Joined;
        }
    }

    /// Ends a leave: tells every node in the tables, handing over the leaf set, from which
    /// the neighbours repair theirs. The node then answers only pings.
    pub fn depart(&mut self, _now: Instant) -> Vec<Effect> {
        let depart = Message::Depart {
            node: self.me,
            leaf_set: self.state.leaf_set().members(),
        };
        for node in self.state.known() {
            self.call(node.into(), depart.clone(), None, Waiting::Depart);
        }
        self.phase = Phase::Left;
        self.take_out()
    }

    /// Stops: the node answers only pings and makes no more calls.
    pub fn stop(&mut self) {
        self.phase = Phase::Left;
        self.calls.clear();
        self.join = None;
    }

    /// Records a call to make.
    fn call(&mut self, to: Target, request: Message, wait: Option<Duration>, why: Waiting) {
        let id = self.next_call;
        self.next_call += 1;
        self.calls.insert(id, (to, why));
        self.out.push(Effect::Call(Call {
            id,
            to,
            request,
            wait: wait.unwrap_or(self.config.call_timeout),
        }));
    }

    /// Changes the overlay state with `f`, noting a change of the leaf set.
    fn change<T>(&mut self, f: impl FnOnce(&mut OverlayState) -> T) -> T {
        let before = self.state.leaf_set().clone();
        let out = f(&mut self.state);
        if *self.state.leaf_set() != before {
            self.told.leaf_set_changed();
            self.out.push(Effect::LeafSetChanged);
        }
        out
    }

    fn take_out(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests;
