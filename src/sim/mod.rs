//! A deterministic simulator of a whole overlay on one thread: the nodes' own protocol state
//! machines ([`crate::protocol::membership`], the same code the threaded [`crate::Node`]
//! runs), their object protocol ([`crate::protocol::objects`]) on in-memory stores, and
//! discovery's registry ([`crate::protocol::registry`]) over an in-memory network with a
//! virtual clock, seeded latency (and so reordering), loss, partitions, crashes and restarts
//! (with or without the node's store), and clients' lookups and writes. The same seed gives the same run, event for event: [`Sim::trace_hash`] is the
//! same across runs and machines.
//!
//! ```
//! use pastry::sim::{Sim, SimConfig};
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(SimConfig { seed: 7, ..SimConfig::default() });
//! for id in [0x1000u16, 0x5000, 0x9000, 0xd000] {
//!     sim.join(pastry::Id(id));
//!     sim.run_for(Duration::from_millis(100));
//! }
//! sim.settle(60);
//! assert!(sim.check().is_empty());
//! ```
//!
//! The simulated network is a model: a message takes a random one-way delay from the
//! configured range and may be lost; a refused connection (nothing listens at the address) is
//! noticed after one delay, anything lost or cut off only when the caller's wait runs out.

mod copies;
mod network;
mod objects;
mod oracle;
pub mod scenario;
mod store;

pub use objects::Acked;
pub use oracle::Violation;

use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::id::{Id, Key, NodeInfo};
use crate::node::{DEFAULT_MAX_HOPS, DEFAULT_REPLICAS};
use crate::overlay::DEFAULT_LEAF_HALF;
use crate::protocol::membership::{self, Membership, OpId, Phase, Token};
use crate::protocol::registry::Registry;
use crate::rng::Rng;

use network::{Event, Pending, Scheduled};

/// The parameters of a simulation: the nodes' (as in [`crate::NodeConfig`]) and the
/// network's.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Leaf-set members on each side (`l`).
    pub leaf_half: usize,
    /// Copies kept of each object (`k`).
    pub replicas: usize,
    /// Most hops a route may take.
    pub max_hops: usize,
    /// How long a call waits for its answer (the nodes' I/O timeout).
    pub call_timeout: Duration,
    /// How often each node runs its maintenance round.
    pub maintenance_interval: Duration,
    /// The shortest one-way delay of a message.
    pub min_latency: Duration,
    /// The longest one-way delay of a message.
    pub max_latency: Duration,
    /// Messages lost, in parts per million.
    pub loss_ppm: u32,
}

impl Default for SimConfig {
    /// The nodes' defaults, on a network with 1–20 ms one-way delays and no loss.
    fn default() -> Self {
        let net = crate::NetConfig::default();
        SimConfig {
            seed: 0,
            leaf_half: DEFAULT_LEAF_HALF,
            replicas: DEFAULT_REPLICAS,
            max_hops: DEFAULT_MAX_HOPS,
            call_timeout: net.io_timeout,
            maintenance_interval: Duration::from_secs(1),
            min_latency: Duration::from_millis(1),
            max_latency: Duration::from_millis(20),
            loss_ppm: 0,
        }
    }
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Events processed (deliveries, answers, ticks).
    pub events: u64,
    /// Calls made (each a request and, unless lost, a reply).
    pub calls: u64,
    /// Calls made by joining nodes, and their announcements once joined.
    pub join_calls: u64,
    /// Messages lost or cut off by a partition.
    pub dropped: u64,
    /// Joins that failed (and were tried again).
    pub failed_joins: u64,
    /// Joins completed.
    pub joins: u64,
}

/// A lookup's end.
#[derive(Clone, Debug)]
pub struct LookupEnd {
    /// The key looked up.
    pub key: Key,
    /// The node it started at.
    pub from: Id,
    /// The path taken (the start first), or why it failed.
    pub path: Result<Vec<NodeInfo>, String>,
}

/// One incarnation of a node: a restart is a new one, at a new address.
#[derive(Debug)]
struct SimNode {
    core: Membership,
    alive: bool,
    /// Its side of a partition.
    group: u8,
    /// Joins tried so far.
    attempts: u32,
    /// Its object store and the object protocol's state.
    objects: objects::NodeObjects,
    /// When it stopped with its store lost (a crash, or a restart on a new disk); `None`
    /// while alive, after a graceful leave, or when a restart kept its store.
    store_lost_at: Option<Duration>,
}

/// The simulated overlay.
pub struct Sim {
    config: SimConfig,
    rng: Rng,
    /// The virtual clock's origin: only differences of instants are ever used.
    base: Instant,
    /// Virtual time elapsed.
    now: Duration,
    queue: BinaryHeap<Scheduled>,
    /// The events the queue refers to, by slot; `None` for a free slot.
    events: Vec<Option<Event>>,
    free_events: Vec<usize>,
    seq: u64,
    nodes: Vec<SimNode>,
    /// Each id's live incarnation.
    live: BTreeMap<Id, usize>,
    registry: Registry,
    partitioned: bool,
    /// Requests being served: who waits for each.
    pending: BTreeMap<Token, Pending>,
    next_token: Token,
    next_op: OpId,
    /// Lookups started and not ended.
    lookups: BTreeMap<OpId, (Key, Id)>,
    ended: Vec<LookupEnd>,
    trace: network::Trace,
    stats: SimStats,
    /// Lookups the object protocol made, by what they are for.
    object_lookups: BTreeMap<OpId, objects::Purpose>,
    /// What each object call's answer continues.
    conts: BTreeMap<membership::CallId, objects::Cont>,
    next_object_call: u64,
    /// Clients' writes not yet answered, with the incarnation they were made through.
    client_writes: BTreeMap<OpId, (usize, objects::ClientWrite)>,
    acked: Vec<Acked>,
    /// Every version a node gave to a client's write, with its data (`None` for a delete).
    issued: std::collections::HashMap<(Vec<u8>, u64), Option<bytes::Bytes>>,
}

/// Joins tried per incarnation before it gives up.
const MAX_JOIN_ATTEMPTS: u32 = 20;

impl Sim {
    /// An empty overlay.
    pub fn new(config: SimConfig) -> Sim {
        Sim {
            rng: Rng::seeded(config.seed),
            config,
            base: Instant::now(),
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free_events: Vec::new(),
            seq: 0,
            nodes: Vec::new(),
            live: BTreeMap::new(),
            registry: Registry::new(),
            partitioned: false,
            pending: BTreeMap::new(),
            next_token: 1,
            next_op: 1,
            lookups: BTreeMap::new(),
            ended: Vec::new(),
            trace: network::Trace::default(),
            stats: SimStats::default(),
            object_lookups: BTreeMap::new(),
            conts: BTreeMap::new(),
            next_object_call: 1,
            client_writes: BTreeMap::new(),
            acked: Vec::new(),
            issued: std::collections::HashMap::new(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Changes the loss rate from now on.
    pub fn set_loss_ppm(&mut self, ppm: u32) {
        self.config.loss_ppm = ppm;
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// Counts so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// The run's random generator, for scenarios that draw from the same seed.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// A hash of every event so far and of every live node's leaf set: equal for equal
    /// seeds and scenarios.
    pub fn trace_hash(&self) -> u64 {
        let mut trace = self.trace.clone();
        for slot in self.live.values() {
            for n in self.nodes[*slot].core.state().leaf_set().members() {
                trace.add(u64::from(n.id.0));
            }
        }
        trace.finish()
    }

    /// The ids with a live incarnation (joined or joining).
    pub fn live_ids(&self) -> Vec<Id> {
        self.live.keys().copied().collect()
    }

    /// The live nodes that have joined.
    pub fn members(&self) -> Vec<Id> {
        self.live
            .iter()
            .filter(|(_, slot)| self.nodes[**slot].core.phase() == Phase::Joined)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The protocol state of `id`'s live incarnation.
    pub fn node(&self, id: Id) -> Option<&Membership> {
        self.live.get(&id).map(|slot| &self.nodes[*slot].core)
    }

    /// Starts a new node with id `id` (a new incarnation, if `id` ran before) and has it
    /// join through discovery. Does nothing if `id` is live.
    pub fn join(&mut self, id: Id) {
        if self.live.contains_key(&id) {
            return;
        }
        let slot = self.nodes.len();
        let addr = address_of(slot);
        let me = NodeInfo { id, addr };
        let config = membership::Config {
            leaf_half: self.config.leaf_half,
            replicas: self.config.replicas,
            max_hops: self.config.max_hops,
            call_timeout: self.config.call_timeout,
            key: network::key_of(me),
        };
        self.nodes.push(SimNode {
            core: Membership::new(me, config),
            alive: true,
            group: 0,
            attempts: 0,
            objects: objects::NodeObjects::default(),
            store_lost_at: None,
        });
        self.live.insert(id, slot);
        self.try_join(slot);
    }

    /// Stops `id` at once, as a crash: nobody is told.
    pub fn crash(&mut self, id: Id) {
        if let Some(slot) = self.live.remove(&id) {
            self.stop_slot(slot);
            self.nodes[slot].store_lost_at = Some(self.now);
        }
    }

    /// Crashes `id` and starts it again at once at a new address, joining anew, with an
    /// empty store (a new disk).
    pub fn restart(&mut self, id: Id) {
        self.crash(id);
        self.join(id);
    }

    /// Crashes `id` and starts it again at once at a new address with the store it had,
    /// joining anew.
    pub fn restart_with_store(&mut self, id: Id) {
        let Some(&old) = self.live.get(&id) else {
            return;
        };
        let store = self.nodes[old].objects.store.clone();
        self.restart(id);
        self.nodes[old].store_lost_at = None;
        if let Some(&new) = self.live.get(&id) {
            self.nodes[new].objects.store = store;
        }
    }

    /// Has `id` leave gracefully: it hands its objects to their next holders, then tells
    /// discovery and every node it knows, and stops. It stays if the hand-off fails.
    pub fn leave(&mut self, id: Id) {
        let Some(&slot) = self.live.get(&id) else {
            return;
        };
        if self.nodes[slot].core.begin_leave().is_err() {
            return;
        }
        self.start_leave(slot);
    }

    /// `slot`'s hand-off is done: it departs and stops.
    fn depart(&mut self, slot: usize) {
        let now = self.instant();
        let effects = self.nodes[slot].core.depart(now);
        self.carry_out(slot, effects);
        let me = self.nodes[slot].core.me();
        let _ = self.registry.deregister(me, network::key_of(me));
        self.live.remove(&me.id);
        self.stop_slot(slot);
    }

    /// Splits the live nodes into two sides at random, `percent` of them on the second:
    /// messages between the sides are lost until [`heal`](Self::heal).
    pub fn partition(&mut self, percent: u8) {
        let slots: Vec<usize> = self.live.values().copied().collect();
        for slot in slots {
            let second = self.rng.below(100) < usize::from(percent);
            self.nodes[slot].group = u8::from(second);
        }
        self.partitioned = true;
    }

    /// Ends a partition.
    pub fn heal(&mut self) {
        self.partitioned = false;
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Starts a lookup of `key` at `from`; its end is among [`take_lookups`](Self::take_lookups)
    /// once the simulation has run long enough.
    pub fn lookup(&mut self, from: Id, key: Key) {
        let Some(&slot) = self.live.get(&from) else {
            return;
        };
        let op = self.next_op;
        self.next_op += 1;
        self.lookups.insert(op, (key, from));
        let now = self.instant();
        let effects = self.nodes[slot].core.lookup(now, op, key);
        self.carry_out(slot, effects);
    }

    /// Lookups started and not yet ended.
    pub fn lookups_in_flight(&self) -> usize {
        self.lookups.len()
    }

    /// The lookups that ended since the last call.
    pub fn take_lookups(&mut self) -> Vec<LookupEnd> {
        std::mem::take(&mut self.ended)
    }

    /// Runs the simulation for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(next) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(event) = self.queue.pop() else { break };
            self.now = event.at;
            self.handle(event);
        }
        self.now = until;
    }

    /// Runs until every lookup started has ended, at most `limit` of virtual time.
    pub fn run_until_lookups_end(&mut self, limit: Duration) {
        let step = Duration::from_millis(10);
        let until = self.now + limit;
        while !self.lookups.is_empty() && self.now < until {
            self.run_for(step.min(until - self.now));
        }
    }

    /// Runs maintenance rounds until the invariants hold, at most `max_rounds`; returns the
    /// rounds run (`max_rounds` if they never held).
    pub fn settle(&mut self, max_rounds: usize) -> usize {
        for round in 0..max_rounds {
            self.run_for(self.config.maintenance_interval);
            let quiet = self.lookups.is_empty() && self.client_writes.is_empty();
            if round % 4 == 3 && quiet && self.check().is_empty() {
                return round + 1;
            }
        }
        max_rounds
    }

    /// The current instant on the virtual clock.
    fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// The live incarnation listening at `addr`, if any.
    fn live_at(&self, addr: SocketAddr) -> Option<usize> {
        let slot = slot_of(addr)?;
        self.nodes.get(slot).filter(|n| n.alive)?;
        Some(slot)
    }

    fn stop_slot(&mut self, slot: usize) {
        let node = &mut self.nodes[slot];
        node.alive = false;
        node.core.stop();
        // Its own lookups end with it.
        let id = node.core.me().id;
        let ended: Vec<OpId> = self
            .lookups
            .iter()
            .filter(|(_, (_, from))| *from == id)
            .map(|(op, _)| *op)
            .collect();
        // So do the writes made through it: their outcome is unknown.
        self.client_writes.retain(|_, (via, _)| *via != slot);
        for op in ended {
            if let Some((key, from)) = self.lookups.remove(&op) {
                let path = Err("the node stopped".to_string());
                self.ended.push(LookupEnd { key, from, path });
            }
        }
        // Whoever waits for this node's answers waits in vain.
        let lost: Vec<Token> = self
            .pending
            .iter()
            .filter(|(_, p)| p.callee == slot)
            .map(|(t, _)| *t)
            .collect();
        for token in lost {
            if let Some(p) = self.pending.remove(&token) {
                self.time_out(p);
            }
        }
    }
}

/// The incarnation at `addr`, the inverse of [`address_of`].
fn slot_of(addr: SocketAddr) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [ten, a, b, c] = v4.ip().octets();
    let high = u8::try_from(v4.port().checked_sub(7000)?).ok()?;
    (ten == 10).then(|| u32::from_be_bytes([high, a, b, c]) as usize)
}

/// The address of incarnation `slot`: a label, never bound or connected to.
fn address_of(slot: usize) -> SocketAddr {
    let n = u32::try_from(slot).unwrap_or(u32::MAX);
    let [high, a, b, c] = n.to_be_bytes();
    SocketAddr::new(Ipv4Addr::new(10, a, b, c).into(), 7000 + u16::from(high))
}
