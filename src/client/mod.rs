//! The client side of the object store (the StoreData program's library): finds a peer
//! through discovery (or a known peer), looks keys up, and puts, gets and deletes objects and
//! files on the node responsible for them.

mod failures;
mod known;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::calls::discovery::DiscoveryLink;
use crate::calls::refusal::typed;
use crate::calls::route::{ask_route, is_hop_failure, route_budget, Target};
use crate::error::{Error, Result};
use crate::id::{key_of, Key, NodeInfo};
use crate::net::{Counters, NetConfig, NetStats, Pool, Security};
use crate::node::{Route, DEFAULT_MAX_HOPS};
use crate::rng::Rng;
use crate::store::CHUNK_SIZE;
use crate::transfer::{
    get_record, send_whole_record, FileSink, FileSource, ReadAt, Refill, Sink, SliceSource, Source,
    WriteAt,
};
use crate::wire::{Message, RecordHead};
use failures::{can_serve_elsewhere, is_busy_or_gone, is_no_node_there, misdirected};

/// Where a client enters the overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Through the discovery node at this address, which hands out a random peer.
    Discovery(SocketAddr),
    /// Through the node at this address, with no discovery.
    Peer(SocketAddr),
}

/// How a client behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Socket timeouts and limits.
    pub net: NetConfig,
    /// Most hops a route may take. Default [`DEFAULT_MAX_HOPS`].
    pub max_hops: usize,
    /// How long an operation keeps retrying while the overlay changes under it (a node
    /// joining, leaving or failing). Default 10 s.
    pub retry_for: Duration,
    /// Whether a retrieved file is synced to disk before it is renamed into place, so that
    /// after a crash it is whole or absent. Default true; false leaves the writing to the
    /// operating system (faster, as `NodeConfig::sync_writes` for a node).
    pub sync_writes: bool,
}

impl ClientConfig {
    /// The default settings with `security` chosen: the cluster's key, or
    /// [`Security::Insecure`].
    pub fn new(security: impl Into<Security>) -> ClientConfig {
        ClientConfig {
            net: NetConfig::with(security),
            ..ClientConfig::default()
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            net: NetConfig::default(),
            max_hops: DEFAULT_MAX_HOPS,
            retry_for: Duration::from_secs(10),
            sync_writes: true,
        }
    }
}

/// What a put or a file store did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The object's key.
    pub key: Key,
    /// Bytes stored.
    pub size: u64,
    /// The version the responsible node gave this write. Versions of one name are unique and
    /// ordered as the responsible node ordered the writes.
    pub version: u64,
    /// False when a newer write of the same name (one with a higher version) had already
    /// been stored when this one finished: this write was ordered before it, and a get
    /// returns the newer one.
    pub kept: bool,
    /// The route to the holder; its last node holds the object.
    pub route: Route,
}

/// What a get found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The object's key.
    pub key: Key,
    /// The object's bytes.
    pub data: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// The route to the holder.
    pub route: Route,
}

/// What a file retrieval wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retrieved {
    /// The object's key.
    pub key: Key,
    /// Bytes written.
    pub size: u64,
    /// Its version.
    pub version: u64,
    /// The route to the holder.
    pub route: Route,
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The object's key.
    pub key: Key,
    /// Whether an object was there just before this delete, in the order the responsible
    /// node gave the writes of the name.
    pub existed: bool,
    /// The version the responsible node gave this delete (its deletion record's).
    pub version: u64,
    /// The route to the holder.
    pub route: Route,
}

/// A client of the overlay's object store.
///
/// `Send + Sync`: share one across threads; connections to nodes are pooled and reused. The
/// client keeps the nodes its lookups met and sends a request for a key straight to the one
/// it believes responsible, which serves it only if it is; so once the client has met a
/// key's holders, a small get, put or delete (a put of at most one chunk) costs one round
/// trip, and otherwise a lookup and more.
pub struct Client {
    entry: Entry,
    config: ClientConfig,
    pool: Pool,
    counters: Arc<Counters>,
    /// The peer lookups start from, kept while it answers.
    start: Mutex<Option<NodeInfo>>,
    /// The nodes lookups met: where a request goes first.
    known: known::Known,
    /// Makes the ids of writes, the same on every retry of one write.
    requests: Mutex<Rng>,
}

impl Client {
    /// A client entering through the discovery node at `discovery`, holding the cluster's
    /// key (or [`Security::Insecure`] for a network without one).
    pub fn new(discovery: SocketAddr, security: impl Into<Security>) -> Client {
        Client::with_config(Entry::Discovery(discovery), ClientConfig::new(security))
    }

    /// A client entering through the node at `peer`, with no discovery.
    pub fn via_peer(peer: SocketAddr, security: impl Into<Security>) -> Client {
        Client::with_config(Entry::Peer(peer), ClientConfig::new(security))
    }

    /// A client with explicit settings.
    pub fn with_config(entry: Entry, config: ClientConfig) -> Client {
        let counters = Arc::new(Counters::default());
        Client {
            entry,
            pool: Pool::new(config.net.clone(), Arc::clone(&counters)),
            counters,
            config,
            start: Mutex::new(None),
            known: known::Known::default(),
            requests: Mutex::new(Rng::from_entropy()),
        }
    }

    /// The peers discovery lists (an error for a client entering through a peer).
    pub fn peers(&self) -> Result<Vec<NodeInfo>> {
        match self.entry {
            Entry::Discovery(addr) => DiscoveryLink {
                pool: &self.pool,
                addr,
            }
            .peers(),
            Entry::Peer(_) => Err(Error::Config("this client has no discovery node".into())),
        }
    }

    /// Counts of this client's connections and requests so far.
    pub fn stats(&self) -> NetStats {
        self.counters.snapshot()
    }

    /// Finds the node responsible for `key`; the route starts at the client's entry peer.
    pub fn lookup(&self, key: Key) -> Result<Route> {
        self.retrying(|| self.lookup_once(key).map(|(route, _)| route))
    }

    /// Stores `data` under `name` on the node responsible for `key_of(name)`.
    pub fn put(&self, name: impl AsRef<[u8]>, data: &[u8]) -> Result<Stored> {
        let name = name.as_ref();
        self.store(name, data.len() as u64, &mut || Ok(SliceSource(data)))
    }

    /// Stores the file at `path` under its base name, streamed in chunks.
    pub fn store_file(&self, path: &Path) -> Result<Stored> {
        let name = path.file_name().ok_or_else(|| Error::InvalidName {
            reason: format!("{} has no file name", path.display()),
        })?;
        let (_, size) = FileSource::open(path)?;
        let source = &mut || FileSource::open(path).map(|(source, _)| source);
        self.store(name.as_encoded_bytes(), size, source)
    }

    /// Stores `size` bytes under `name`, asking `read(offset, buf)` for them a chunk at a
    /// time (a positional read, as `pread`: it fills some of `buf` with the bytes from
    /// `offset` and says how many). A retry after a failure part way reads again from
    /// offset 0. Reading fewer than `size` bytes in all is an error, and so is an error of
    /// `read`, which ends the put without retrying.
    pub fn put_with<F>(&self, name: impl AsRef<[u8]>, size: u64, read: F) -> Result<Stored>
    where
        F: FnMut(u64, &mut [u8]) -> std::io::Result<usize> + Send,
    {
        let read = Mutex::new(read);
        self.store(name.as_ref(), size, &mut || Ok(ReadAt::new(&read, size)))
    }

    /// Fetches the object `name`, handing its bytes to `write(offset, chunk)` in order, no
    /// more than a chunk held at once. If a holder fails part way, the object is sent again
    /// from offset 0 by another. An error of `write` ends the get.
    pub fn get_with<F>(&self, name: impl AsRef<[u8]>, write: F) -> Result<Retrieved>
    where
        F: FnMut(u64, &[u8]) -> std::io::Result<()>,
    {
        let name = name.as_ref();
        let mut sink = WriteAt::new(write);
        self.retrying(|| self.fetch(name, &mut sink))
    }

    /// Fetches the object `name` into memory.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Result<Fetched> {
        let mut data = Vec::new();
        let got = self.get_with(name, |offset, chunk| {
            // A holder that failed part way is followed by another from offset 0.
            data.truncate(usize::try_from(offset).unwrap_or(usize::MAX));
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(Fetched {
            key: got.key,
            data,
            version: got.version,
            route: got.route,
        })
    }

    /// Fetches the object `name` into the file at `out`, streamed in chunks. The file appears
    /// only once the whole object has arrived and passed its checksum.
    pub fn retrieve_file(&self, name: impl AsRef<[u8]>, out: &Path) -> Result<Retrieved> {
        let name = name.as_ref();
        self.retrying(|| {
            let mut sink = FileSink::create(out, self.config.sync_writes)?;
            let retrieved = self.fetch(name, &mut sink)?;
            sink.finish()?;
            Ok(retrieved)
        })
    }

    /// Deletes the object `name`.
    pub fn delete(&self, name: impl AsRef<[u8]>) -> Result<Deleted> {
        let name = name.as_ref();
        let request = self.new_request_id();
        let delete = |holder: NodeInfo, direct| {
            let request = Message::Delete {
                name: name.to_vec(),
                request,
                relayed: false,
                direct,
            };
            match self.pool.call(holder.addr, &request) {
                Ok(Message::Deleted { existed, version }) => Ok((existed, version)),
                Ok(other) => Err(Error::unexpected_reply(holder.addr, "Deleted", &other)),
                Err(e) => Err(typed(name, e)),
            }
        };
        self.retrying(|| {
            let ((existed, version), route) = self.write(key_of(name), true, delete)?;
            Ok(Deleted {
                key: route.key,
                existed,
                version,
                route,
            })
        })
    }

    /// Puts `size` bytes from the source `open` makes (again for each try) under `name`.
    fn store<S: Source + Send>(
        &self,
        name: &[u8],
        size: u64,
        open: &mut dyn FnMut() -> Result<S>,
    ) -> Result<Stored> {
        let head = RecordHead {
            name: name.to_vec(),
            size,
            version: 0,
            deleted: false,
            handoff: false,
            request: self.new_request_id(),
            existed: false,
            relayed: false,
            direct: false,
        };
        let mut put = |holder: NodeInfo, direct| {
            let head = RecordHead {
                direct,
                ..head.clone()
            };
            let mut source = open()?;
            self.pool
                .session(holder.addr, |conn| {
                    send_whole_record(conn, &head, &mut source)?;
                    match conn.recv_or_fail()? {
                        Message::Stored { version, kept, .. } => Ok((version, kept)),
                        other => Err(Error::unexpected_reply(holder.addr, "Stored", &other)),
                    }
                })
                .map_err(|e| typed(name, e))
        };
        // A guess that is wrong costs the bytes sent before the refusal: only one chunk's.
        let guess = size <= CHUNK_SIZE as u64;
        self.retrying(|| {
            let ((version, kept), route) = self.write(key_of(name), guess, &mut put)?;
            Ok(Stored {
                key: route.key,
                size,
                version,
                kept,
                route,
            })
        })
    }

    /// Runs `op` at the responsible node at the end of `route`; if it fails in a way that
    /// `other_may` says another holder may get around, runs it at the other holders in turn
    /// (a holder passes a write on to the responsible node over its own connection). Returns
    /// the first success, or the responsible node's error. A failure of that node `tried`
    /// just now, as a guess, stands for its own: it is not asked twice (a hung node would
    /// cost two timeouts).
    fn at_holders<T>(
        &self,
        route: &Route,
        replicas: &[NodeInfo],
        tried: Tried,
        other_may: fn(&Error) -> bool,
        mut op: impl FnMut(NodeInfo) -> Result<T>,
    ) -> Result<T> {
        let first = match tried {
            Some((node, e)) if node == route.responsible() && other_may(&e) => e,
            _ => match op(route.responsible()) {
                Err(e) if other_may(&e) => e,
                done => return done,
            },
        };
        log::debug!("asking the other holders after: {first}");
        for &holder in replicas {
            match op(holder) {
                Ok(done) => return Ok(done),
                Err(e) => log::debug!("holder {holder}: {e}"),
            }
        }
        Err(first)
    }

    /// A write (put or delete) of `key`: at the node this client believes responsible, if
    /// it may `guess` and knows one, else (or if that node is not responsible, busy or gone)
    /// routed; `op(holder, direct)` makes the request. The outcome and the route taken.
    fn write<T>(
        &self,
        key: Key,
        guess: bool,
        mut op: impl FnMut(NodeInfo, bool) -> Result<T>,
    ) -> Result<(T, Route)> {
        let tried = if guess {
            match self.at_guess(key, misdirected, |node| op(node, true)) {
                Guess::Done(done) => return done,
                Guess::Route(tried) => tried,
            }
        } else {
            None
        };
        let (route, replicas) = self.lookup_once(key)?;
        let done = self.at_holders(&route, &replicas, tried, is_busy_or_gone, |h| op(h, false))?;
        Ok((done, route))
    }

    /// Gets `name` into `sink`: from the node this client believes responsible, if it knows
    /// one; else (or if that node cannot serve it) from the end of a route, and if the
    /// responsible node cannot serve it (busy, unreachable, its copy corrupt, or not yet
    /// moved to it), from the other holders, `sink` starting over for each.
    fn fetch(&self, name: &[u8], sink: &mut dyn Refill) -> Result<Retrieved> {
        let key = key_of(name);
        let reroute = |e: &Error| misdirected(e) || can_serve_elsewhere(e);
        let guessed = self.at_guess(key, reroute, |node| {
            sink.reset()?;
            self.fetch_from(node, name, true, sink)
        });
        let (head, route) = match guessed {
            Guess::Done(done) => done.map_err(|e| typed(name, e))?,
            Guess::Route(tried) => {
                let (route, replicas) = self.lookup_once(key)?;
                sink.reset()?;
                let mut tries = 0;
                let head = self
                    .at_holders(&route, &replicas, tried, can_serve_elsewhere, |holder| {
                        tries += 1;
                        if tries > 1 {
                            sink.reset()?;
                        }
                        self.fetch_from(holder, name, false, sink)
                    })
                    .map_err(|e| typed(name, e))?;
                (head, route)
            }
        };
        Ok(Retrieved {
            key,
            size: head.size,
            version: head.version,
            route,
        })
    }

    /// Runs `op` at the node met that is closest to `key`, as a direct request: the
    /// outcome, with the one-node route; or, if no node is known or `reroute` says the
    /// failure is one for a route to get around (the node is not responsible, busy, out of
    /// reach, or no longer a node of the overlay: then it is forgotten), to route it.
    fn at_guess<T>(
        &self,
        key: Key,
        reroute: impl Fn(&Error) -> bool,
        op: impl FnOnce(NodeInfo) -> Result<T>,
    ) -> Guess<T> {
        let Some(node) = self.known.responsible(key, Instant::now()) else {
            return Guess::Route(None);
        };
        match op(node) {
            Ok(done) => Guess::Done(Ok((
                done,
                Route {
                    key,
                    path: vec![node],
                },
            ))),
            Err(e) if reroute(&e) => {
                log::debug!("{key} at {node}, as guessed: {e}; routing it");
                if is_no_node_there(&e) {
                    self.known.forget(node);
                }
                Guess::Route(Some((node, e)))
            }
            Err(e) => Guess::Done(Err(e)),
        }
    }

    /// Gets `name` from `holder` into `sink`; a refusal stays [`Error::Refused`].
    fn fetch_from<K: Sink + ?Sized>(
        &self,
        holder: NodeInfo,
        name: &[u8],
        direct: bool,
        sink: &mut K,
    ) -> Result<RecordHead> {
        self.pool
            .session(holder.addr, |conn| {
                get_record(conn, name, direct, |_| Ok(sink))
            })
            .map(|(head, _)| head)
    }

    /// One lookup from the entry peer, no retries: the route, and the other holders of `key`.
    fn lookup_once(&self, key: Key) -> Result<(Route, Vec<NodeInfo>)> {
        let start = self.start_peer()?;
        let hops = u8::try_from(self.config.max_hops).unwrap_or(u8::MAX);
        let wait = route_budget(&self.config.net);
        let (path, replicas) =
            ask_route(&self.pool, start.addr, key, hops, wait).inspect_err(|e| {
                *self.start.lock() = None;
                if is_hop_failure(e) {
                    self.pool.forget(start.addr);
                }
            })?;
        self.known
            .learn(path.iter().chain(&replicas), Instant::now());
        Ok((Route { key, path }, replicas))
    }

    /// Where lookups start: the known peer, or a random one from discovery.
    fn start_peer(&self) -> Result<Target> {
        if let Some(peer) = *self.start.lock() {
            return Ok(peer.into());
        }
        match self.entry {
            Entry::Peer(addr) => Ok(Target { id: None, addr }),
            Entry::Discovery(addr) => {
                let link = DiscoveryLink {
                    pool: &self.pool,
                    addr,
                };
                let peer = link.random_peer()?.ok_or(Error::NoPeers)?;
                *self.start.lock() = Some(peer);
                Ok(peer.into())
            }
        }
    }

    /// Runs `op` until it succeeds, fails for good, or `retry_for` passes. Retries are for a
    /// changing overlay: a holder that is no longer responsible, or a node that went away.
    fn retrying<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + self.config.retry_for;
        let mut pause = Duration::from_millis(5);
        loop {
            match op() {
                Err(e) if e.is_retryable() && Instant::now() + pause < deadline => {
                    log::debug!("retrying after: {e}");
                    *self.start.lock() = None; // perhaps the entry peer is the one gone
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }
}

/// A node tried as a guess, and how it failed.
type Tried = Option<(NodeInfo, Error)>;

/// What a guess came to.
enum Guess<T> {
    /// The operation's outcome, and the one-node route.
    Done(Result<(T, Route)>),
    /// To be routed, after the guess (if any) failed so.
    Route(Tried),
}

impl Client {
    /// A new id for a write: random, so that ids from different clients do not meet.
    fn new_request_id(&self) -> u64 {
        let mut requests = self.requests.lock();
        // 0 means "no id" on the wire.
        std::iter::repeat_with(|| requests.next_u64())
            .find(|&id| id != 0)
            .unwrap_or(1)
    }
}
