//! A Pastry node: its server, join, lookup and leave.

mod absence;
mod apps;
mod config;
mod copies;
mod damage;
mod driver;
mod handler;
mod kept_id;
mod maintenance;
mod migrate;
mod objects;
mod relay;
mod senders;
mod starting;
#[cfg(test)]
mod trust_tests;
mod versions;
mod vouching;
mod writes;

pub use absence::LAST_ALIVE_FILE;
pub use apps::{AppRoute, Application, MAX_APP_MESSAGE};
pub use config::{
    NodeConfig, DEFAULT_MAX_HOPS, DEFAULT_REPLICAS, DEFAULT_TOMBSTONE_GRACE, MIN_MAX_PAYLOAD,
};
pub use kept_id::ID_FILE;
pub use starting::ID_DRAWS;
pub use versions::MAX_VERSION_AHEAD;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::calls::discovery::DiscoveryLink;
use crate::calls::route::Target;
use crate::compact::CompactListener;
use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::identity::{Credentials, Identity, PublicKey};
use crate::net::{Counters, Handler, NetStats, Pool, Server};
use crate::overlay::{LeafSet, RoutingTable};
use crate::protocol::membership::{self, Membership, Phase};
use crate::rng::Rng;
use crate::store::{ObjectStore, RecordMeta, StoreOptions};

/// Peers a node joining through discovery tries, one after another while the walk fails on
/// a peer that does not answer.
const JOIN_ENTRIES: usize = 3;

/// The route a lookup took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The key looked up.
    pub key: Key,
    /// Every node visited, starting with the one the lookup began at; the last is responsible
    /// for `key`. For a client's request sent straight to the node it believed responsible,
    /// that node alone.
    pub path: Vec<NodeInfo>,
}

impl Route {
    /// The node responsible for the key: the last node of the path.
    ///
    /// # Panics
    /// If `path` is empty, which no lookup returns.
    pub fn responsible(&self) -> NodeInfo {
        // A route always holds at least the node it started at.
        self.path[self.path.len() - 1]
    }

    /// Hops taken: nodes visited after the first.
    pub fn hops(&self) -> usize {
        self.path.len().saturating_sub(1)
    }
}

/// The state shared by the node handle and its handler threads.
pub(crate) struct Inner {
    me: NodeInfo,
    config: NodeConfig,
    /// The overlay protocols' state machine, driven by [`driver`].
    core: RwLock<Membership>,
    pool: Arc<Pool>,
    counters: Arc<Counters>,
    /// Requests of the overlay answered once their calls are (`relay.rs`).
    relays: relay::Relays,
    discovery: Mutex<Option<SocketAddr>>,
    /// When its maintenance is due (`maintenance.rs`).
    maintenance: Mutex<maintenance::Schedule>,
    objects: Objects,
    /// The port of the compact listener, 0 when there is none: a tracker asks for it.
    compact_port: std::sync::atomic::AtomicU32,
    /// The applications registered on the node (the Common API).
    apps: apps::Apps,
    /// Its identity, certificate and the discovery it trusts.
    credentials: Arc<Credentials>,
}

/// The node's objects: its store, and the state of the writes it orders and the copies it
/// keeps.
struct Objects {
    store: ObjectStore,
    /// Where the store lives, and whether it is ours to remove at shutdown.
    data_dir: DataDir,
    /// Writes hold it shared; leaving takes it exclusively to let writes in flight finish.
    write_gate: RwLock<()>,
    /// Gives the versions of the writes this node orders.
    versions: versions::VersionClock,
    /// What recent writes did, for their retries.
    outcomes: Mutex<crate::protocol::outcomes::Outcomes>,
    /// Damaged copies to replace.
    repairs: Mutex<crate::protocol::repairs::Repairs>,
    /// When this node started after an absence longer than the tombstone grace, if it was
    /// away that long: its records from before then are unconfirmed.
    unconfirmed_before: Option<u64>,
    /// When this node last noted in its data directory that it is alive (ns).
    alive_noted: std::sync::atomic::AtomicU64,
}

/// A node's data directory.
struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    /// The configured directory, or a new temporary one.
    fn new(configured: Option<&Path>, id: Id) -> DataDir {
        if let Some(path) = configured {
            return DataDir {
                path: path.to_path_buf(),
                temporary: false,
            };
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("pastry-{id}-{}-{n}", std::process::id());
        DataDir {
            path: std::env::temp_dir().join(name),
            temporary: true,
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A running Pastry node. Dropping it shuts it down (without leaving: that is a crash, as far
/// as the others can tell; call [`Node::leave`] first to leave gracefully).
///
/// `Send + Sync`: share it by reference or in an `Arc`; every method may be called from any
/// thread.
pub struct Node {
    inner: Arc<Inner>,
    server: Mutex<Option<Server>>,
    /// The compact protocol's listener, when configured.
    compact: Mutex<Option<CompactListener>>,
}

impl Node {
    /// Starts a node's server. The node is not part of any overlay until it joins.
    pub fn start(config: NodeConfig) -> Result<Node> {
        config.validate()?;
        let listener = Server::bind(config.listen)?;
        let local = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let mut addr = config.advertise.unwrap_or(local);
        if addr.port() == 0 {
            addr.set_port(local.port()); // advertise the port the OS chose
        }
        if addr.ip().is_unspecified() {
            return Err(Error::Config(format!(
                "listening on {local}: set an address to advertise to other nodes"
            )));
        }
        let id = config
            .id
            .or(kept_id::of(&config)?)
            .unwrap_or_else(|| Id(Rng::from_entropy().next_u64() as u16));
        let me = NodeInfo { id, addr };
        let data_dir = DataDir::new(config.data_dir.as_deref(), id);
        // Kept with the data, and the id with them: a node restarted on its directory is
        // the same node to discovery, which gives its id back to its key at once.
        let identity = match &config.data_dir {
            Some(dir) => {
                let identity = Identity::in_dir(dir)?;
                kept_id::keep(dir, id)?;
                identity
            }
            None => Identity::generate()?,
        };
        let credentials = Arc::new(Credentials::node(identity, me));
        let store_options = StoreOptions {
            sync: config.sync_writes,
            small_object_max: config.small_object_max,
        };
        let store = ObjectStore::open_options(&data_dir.path, store_options)
            .map_err(|e| Error::from_store(b"", e))?;
        let now = versions::wall_clock_ns();
        let unconfirmed_before =
            absence::unconfirmed_before(&data_dir.path, now, config.tombstone_grace);
        absence::note_alive(&data_dir.path, now);
        let counters = Arc::new(Counters::default());
        let inner = Arc::new(Inner {
            me,
            relays: relay::Relays::default(),
            core: RwLock::new(Membership::new(
                me,
                membership_config(&config, credentials.public()),
            )),
            pool: Arc::new(Pool::new(config.net.clone(), Arc::clone(&counters))),
            counters: Arc::clone(&counters),
            discovery: Mutex::new(None),
            maintenance: Mutex::new(maintenance::Schedule::new(
                std::time::Instant::now() + config.maintenance_interval,
            )),
            objects: Objects {
                store,
                data_dir,
                write_gate: RwLock::new(()),
                versions: versions::VersionClock::new(id),
                outcomes: Mutex::new(crate::protocol::outcomes::Outcomes::default()),
                repairs: Mutex::new(crate::protocol::repairs::Repairs::default()),
                unconfirmed_before,
                alive_noted: std::sync::atomic::AtomicU64::new(now),
            },
            compact_port: Default::default(),
            apps: apps::Apps::default(),
            credentials: Arc::clone(&credentials),
            config,
        });
        let handler: Handler = {
            let inner = Arc::clone(&inner);
            Arc::new(move |request, session| inner.handle(request, session))
        };
        let server = Server::start(
            &format!("pastry-{id}"),
            listener,
            inner.config.net.clone(),
            handler,
            counters,
            Some(Arc::clone(&credentials)),
        )?;
        inner.pool.read_through(server.reactor(), Some(credentials));
        let chore: std::sync::Weak<dyn crate::net::Chore> = Arc::downgrade(&inner) as _;
        server.reactor().add_chore(chore);
        let node = Node {
            inner,
            server: Mutex::new(Some(server)),
            compact: Mutex::new(None),
        };
        if let Some(addr) = node.inner.config.compact_listen {
            let listener = CompactListener::start(addr, me.addr, &node.inner.config.net)?;
            let port = listener.local_addr().port();
            node.inner
                .compact_port
                .store(port.into(), Ordering::Relaxed);
            log::info!("node {me}: compact protocol on {}", listener.local_addr());
            *node.compact.lock() = Some(listener);
        }
        log::info!("node {me} started");
        Ok(node)
    }

    /// Where the compact protocol is served, if `NodeConfig::compact_listen` asked for it.
    pub fn compact_addr(&self) -> Option<SocketAddr> {
        self.compact
            .lock()
            .as_ref()
            .map(CompactListener::local_addr)
    }

    /// This node's id and address.
    pub fn info(&self) -> NodeInfo {
        self.inner.me
    }

    /// This node's public key: its identity, kept in its data directory, which discovery's
    /// certificate binds to its id and address.
    pub fn public_key(&self) -> PublicKey {
        self.inner.credentials.public()
    }

    /// This node's id.
    pub fn id(&self) -> Id {
        self.inner.me.id
    }

    /// Whether the node is a member of an overlay now.
    pub fn is_joined(&self) -> bool {
        self.inner.phase() == Phase::Joined
    }

    /// Joins the overlay that the discovery node at `discovery` tracks: registers (refused if
    /// the id is in use), joins through the random peer discovery hands out (or starts a new
    /// overlay when there is none), then tells discovery it has joined.
    pub fn join_discovery(&self, discovery: SocketAddr) -> Result<()> {
        let inner = &self.inner;
        inner.begin_join()?;
        let link = DiscoveryLink {
            pool: &inner.pool,
            addr: discovery,
        };
        let joined = link
            .register_patiently(inner.me)
            .and_then(|(peer, cert)| inner.take_certificate(*cert).map(|()| peer))
            .and_then(|peer| match peer {
                Some(peer) => inner.join_through_one_of(&link, peer),
                None => {
                    let effects = inner.core.write().join(Instant::now(), None);
                    inner.drive(effects);
                    Ok(())
                }
            });
        if let Err(e) = joined {
            inner.abort_join();
            // Withdraw the registration so the id is not held by a node that never joined
            // (discovery ignores this if the id is registered to another node).
            let _ = link.deregister(inner.me);
            return Err(e);
        }
        *inner.discovery.lock() = Some(discovery);
        // The node is a member now, whatever discovery says: the overlay does not depend on it.
        if let Err(e) = link.joined(inner.me.id) {
            log::warn!("node {}: discovery not told of the join: {e}", inner.me);
        }
        Ok(())
    }

    /// Joins the overlay that the node at `peer` belongs to, with no discovery node.
    pub fn join_peer(&self, peer: SocketAddr) -> Result<()> {
        self.inner.begin_join()?;
        self.inner.credentials.open_without_discovery();
        let target = Target {
            id: None,
            addr: peer,
        };
        self.inner
            .join_through(target)
            .inspect_err(|_| self.inner.abort_join())
    }

    /// Has this node report to the discovery node at `discovery` from now on: that it is
    /// alive (so that a discovery node that restarted relearns it), and which nodes it finds
    /// dead. For a node that joined through a peer while discovery was down.
    pub fn use_discovery(&self, discovery: SocketAddr) {
        *self.inner.discovery.lock() = Some(discovery);
        self.inner.heartbeat_discovery();
    }

    /// Starts a new overlay with this node as its only member, with no discovery node.
    pub fn create(&self) -> Result<()> {
        self.inner.begin_join()?;
        self.inner.credentials.open_without_discovery();
        let effects = self.inner.core.write().join(Instant::now(), None);
        self.inner.drive(effects);
        Ok(())
    }

    /// Finds the node responsible for `key`, starting here; returns the route taken.
    pub fn lookup(&self, key: Key) -> Result<Route> {
        self.inner.lookup(key)
    }

    /// Leaves the overlay gracefully: hands every object it holds to the node that becomes
    /// responsible for it (each confirmed before it is deleted here), then tells discovery and
    /// every node in its tables, handing over its leaf set, from which the neighbours repair
    /// theirs. Until the objects are handed over the node still routes and serves gets, but
    /// refuses writes (clients retry them at the new holder). If an object cannot be handed
    /// over the node stays joined and the error is returned. The server keeps running,
    /// answering only pings, until [`Node::shutdown`].
    pub fn leave(&self) -> Result<()> {
        let inner = &self.inner;
        {
            // Taking the gate waits for writes in flight, so none lands after the hand-off.
            let _writes = inner.objects.write_gate.write();
            inner.core.write().begin_leave()?;
        }
        let handed = match inner.hand_off_all() {
            Ok(handed) => handed,
            Err(e) => {
                inner.core.write().abort_leave();
                return Err(e);
            }
        };
        let discovery = inner.discovery.lock().take();
        inner.tell_discovery(discovery, log::Level::Warn, |link| {
            link.deregister(inner.me)
        });
        let effects = inner.core.write().depart(Instant::now());
        inner.drive(effects);
        // Only now, when nobody routes here any more, are the handed-over copies dropped.
        for meta in handed {
            if let Err(e) = inner.objects.store.remove(&meta.name, meta.version) {
                log::warn!("node {}: keeping a handed-over copy: {e}", inner.me);
            }
        }
        log::info!("node {} left", inner.me);
        Ok(())
    }

    /// The objects this node holds (not deletion records), by key and name.
    pub fn objects(&self) -> Result<Vec<RecordMeta>> {
        let records = self.records()?;
        Ok(records.into_iter().filter(|r| !r.deleted).collect())
    }

    /// Every record this node holds, deletion records included, by key and name.
    pub fn records(&self) -> Result<Vec<RecordMeta>> {
        self.inner
            .objects
            .store
            .records()
            .map_err(|e| Error::from_store(b"", e))
    }

    /// The directory this node keeps its objects in.
    pub fn data_dir(&self) -> &Path {
        &self.inner.objects.data_dir.path
    }

    /// Counts of this node's connections and requests so far.
    pub fn stats(&self) -> NetStats {
        self.inner.counters.snapshot()
    }

    /// A copy of the leaf set.
    pub fn leaf_set(&self) -> LeafSet {
        self.inner.core.read().state().leaf_set().clone()
    }

    /// A copy of the routing table.
    pub fn routing_table(&self) -> RoutingTable {
        self.inner.core.read().state().table().clone()
    }

    /// Stops the server, closes every connection and joins every thread. Idempotent; also
    /// done on drop. Does not leave: call [`Node::leave`] first for a graceful exit.
    pub fn shutdown(&self) {
        // First: its requests are carried out through this node's server.
        drop(self.compact.lock().take());
        let server = self.server.lock().take();
        if let Some(mut server) = server {
            server.shutdown();
            // The server's shutdown waited for a maintenance pass under way; none starts
            // after it.
            self.inner.core.write().stop();
            log::info!("node {} stopped", self.inner.me);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The membership protocols' parameters in `config`.
fn membership_config(config: &NodeConfig, key: PublicKey) -> membership::Config {
    membership::Config {
        leaf_half: config.leaf_half,
        replicas: config.replicas,
        max_hops: config.max_hops,
        call_timeout: config.net.io_timeout,
        key,
    }
}

impl Inner {
    /// Where the node is in its life.
    fn phase(&self) -> Phase {
        self.core.read().phase()
    }

    /// Routes `key` from here to the node responsible for it.
    fn lookup(&self, key: Key) -> Result<Route> {
        let effects = self.core.write().lookup(Instant::now(), 0, key);
        let path = self.drive(effects).looked()?.0;
        Ok(Route { key, path })
    }

    fn begin_join(&self) -> Result<()> {
        self.core.write().begin_join()
    }

    fn abort_join(&self) {
        self.core.write().abort_join();
    }

    /// Joins through `peer`, a peer discovery handed out, or, should the walk fail on a peer
    /// that does not answer (this one may have crashed a moment ago, or a node on the way),
    /// through another one discovery hands out, [`JOIN_ENTRIES`] peers in all. Each peer
    /// tried in vain is reported to discovery, which forgets it if it does not answer.
    fn join_through_one_of(&self, discovery: &DiscoveryLink<'_>, peer: NodeInfo) -> Result<()> {
        let mut peer = peer;
        let mut tried = 1;
        // Bounded: each pass returns or tries one more peer, JOIN_ENTRIES at most.
        loop {
            match self.join_through(peer.into()) {
                Err(e) if e.is_peer_failure() && tried < JOIN_ENTRIES => {
                    log::info!(
                        "node {}: the join through {peer} failed ({e}), trying another peer",
                        self.me
                    );
                    self.abort_join();
                    self.begin_join()?;
                    // Discovery checks it, and hands it out no more if it does not answer.
                    if let Err(e) = discovery.suspect(peer) {
                        log::debug!("node {}: discovery not told of {peer}: {e}", self.me);
                    }
                    match discovery.random_peer()? {
                        Some(next) if next.id != self.me.id => peer = next,
                        _ => return Err(e),
                    }
                    tried += 1;
                }
                other => return other,
            }
        }
    }

    /// The join protocol, through `start`: the walk builds the tables; the copies this node
    /// is to keep are fetched before it becomes a member, so that no get finds it
    /// empty-handed once it is known; then it announces itself.
    fn join_through(&self, start: Target) -> Result<()> {
        let effects = self.core.write().join(Instant::now(), Some(start));
        self.drive(effects).walked()?;
        self.pull_from_neighbours();
        let effects = self.core.write().finish_join(Instant::now());
        self.drive(effects);
        Ok(())
    }
}
