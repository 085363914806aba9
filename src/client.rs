//! The client side of the object store (the StoreData program's library): finds a peer
//! through discovery (or a known peer), looks keys up, and puts, gets and deletes objects and
//! files on the node responsible for them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::discovery::DiscoveryLink;
use crate::error::{Error, Result};
use crate::id::{key_of, Key, NodeInfo};
use crate::net::{Conn, Counters, NetConfig, NetStats, Pool};
use crate::node::walk::{ask_route, is_hop_failure, route_budget, Target};
use crate::node::{Route, DEFAULT_MAX_HOPS};
use crate::transfer::{
    lossy, recv_record, send_whole_record, FileSink, FileSource, Sink, SliceSource, Source,
};
use crate::wire::{Message, RecordHead, RemoteCode};

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
    /// The version the holder gave it.
    pub version: u64,
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
    /// Whether an object was there.
    pub existed: bool,
    /// The route to the holder.
    pub route: Route,
}

/// A client of the overlay's object store.
///
/// `Send + Sync`: share one across threads; connections to nodes are pooled and reused, so a
/// small get or put costs the lookup plus one round trip.
pub struct Client {
    entry: Entry,
    config: ClientConfig,
    pool: Pool,
    counters: Arc<Counters>,
    /// The peer lookups start from, kept while it answers.
    start: Mutex<Option<NodeInfo>>,
}

impl Client {
    /// A client entering through the discovery node at `discovery`.
    pub fn new(discovery: SocketAddr) -> Client {
        Client::with_config(Entry::Discovery(discovery), ClientConfig::default())
    }

    /// A client entering through the node at `peer`, with no discovery.
    pub fn via_peer(peer: SocketAddr) -> Client {
        Client::with_config(Entry::Peer(peer), ClientConfig::default())
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
        self.retrying(|| self.lookup_once(key))
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

    /// Fetches the object `name` into memory.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Result<Fetched> {
        let name = name.as_ref();
        self.retrying(|| {
            let route = self.lookup_once(key_of(name))?;
            let mut data = Vec::new();
            let head = self.fetch(&route, name, &mut data)?;
            Ok(Fetched {
                key: route.key,
                data,
                version: head.version,
                route,
            })
        })
    }

    /// Fetches the object `name` into the file at `out`, streamed in chunks. The file appears
    /// only once the whole object has arrived and passed its checksum.
    pub fn retrieve_file(&self, name: impl AsRef<[u8]>, out: &Path) -> Result<Retrieved> {
        let name = name.as_ref();
        self.retrying(|| {
            let route = self.lookup_once(key_of(name))?;
            let mut sink = FileSink::create(out, self.config.sync_writes)?;
            let head = self.fetch(&route, name, &mut sink)?;
            sink.finish()?;
            Ok(Retrieved {
                key: route.key,
                size: head.size,
                version: head.version,
                route,
            })
        })
    }

    /// Deletes the object `name`.
    pub fn delete(&self, name: impl AsRef<[u8]>) -> Result<Deleted> {
        let name = name.as_ref();
        self.retrying(|| {
            let route = self.lookup_once(key_of(name))?;
            let holder = route.responsible();
            let request = Message::Delete {
                name: name.to_vec(),
            };
            let (existed, version, replicas) = match self
                .pool
                .call(holder.addr, &request)
                .map_err(|e| typed(name, e))?
            {
                Message::Deleted {
                    existed,
                    version,
                    replicas,
                } => (existed, version, replicas),
                other => return Err(Error::unexpected_reply(holder.addr, "Deleted", &other)),
            };
            let tombstone = RecordHead {
                name: name.to_vec(),
                size: 0,
                version,
                deleted: true,
                handoff: true,
            };
            self.write_replicas(&replicas, &tombstone, &mut || Ok(SliceSource(&[])))?;
            Ok(Deleted {
                key: route.key,
                existed,
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
        };
        self.retrying(|| {
            let route = self.lookup_once(key_of(name))?;
            let holder = route.responsible();
            let mut source = open()?;
            let (version, replicas) = self
                .pool
                .session(holder.addr, |conn| {
                    send_whole_record(conn, &head, &mut source)?;
                    match conn.recv_or_fail()? {
                        Message::Stored {
                            version, replicas, ..
                        } => Ok((version, replicas)),
                        other => Err(Error::unexpected_reply(holder.addr, "Stored", &other)),
                    }
                })
                .map_err(|e| typed(name, e))?;
            let copy = RecordHead {
                version,
                handoff: true,
                ..head.clone()
            };
            self.write_replicas(&replicas, &copy, open)?;
            Ok(Stored {
                key: route.key,
                size,
                version,
                route,
            })
        })
    }

    /// Writes the record `head` (with the version its holder gave it) to the other replica
    /// holders, from sources `open` makes, to all of them at once: a replicated write takes
    /// about as long as one copy. A holder that cannot be reached is skipped: the holders'
    /// maintenance restores the copy; a holder that refuses fails the write.
    fn write_replicas<S: Source + Send>(
        &self,
        replicas: &[NodeInfo],
        head: &RecordHead,
        open: &mut dyn FnMut() -> Result<S>,
    ) -> Result<()> {
        let sources = replicas
            .iter()
            .map(|_| open())
            .collect::<Result<Vec<S>>>()?;
        let mut copies = replicas.iter().copied().zip(sources);
        // One copy on this thread, the others on threads of their own: each copy costs its
        // holder file work (and an fsync), which the holders do side by side.
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let first = copies.next();
            let others: Vec<_> = copies
                .map(|(replica, mut source)| {
                    scope.spawn(move || self.write_copy(replica, head, &mut source))
                })
                .collect();
            let mut results = Vec::with_capacity(replicas.len());
            if let Some((replica, mut source)) = first {
                results.push(self.write_copy(replica, head, &mut source));
            }
            results.extend(
                others
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            );
            results
        });
        for (replica, written) in replicas.iter().zip(results) {
            match written {
                Ok(()) => {}
                Err(e @ (Error::Unreachable { .. } | Error::Timeout { .. })) => {
                    log::debug!("replica {replica} skipped: {e}");
                }
                Err(e) => return Err(typed(&head.name, e)),
            }
        }
        Ok(())
    }

    /// Writes one copy of the record `head` to `replica`.
    fn write_copy(
        &self,
        replica: NodeInfo,
        head: &RecordHead,
        source: &mut dyn Source,
    ) -> Result<()> {
        self.pool.session(replica.addr, |conn| {
            send_whole_record(conn, head, source)?;
            match conn.recv_or_fail()? {
                Message::Stored { .. } => Ok(()),
                other => Err(Error::unexpected_reply(replica.addr, "Stored", &other)),
            }
        })
    }

    /// Gets `name` from the end of `route` into `sink`; returns the record's head. If the
    /// holder lacks it (a copy not yet moved to a newly responsible node), the other nodes
    /// that keep copies are asked before the name counts as not found.
    fn fetch(&self, route: &Route, name: &[u8], sink: &mut dyn Sink) -> Result<RecordHead> {
        let holder = route.responsible();
        match self.fetch_from(holder, name, sink) {
            Err(Error::NotFound { .. }) => {}
            other => return other,
        }
        let replicas = match self
            .pool
            .call(holder.addr, &Message::Replicas { key: route.key })
        {
            Ok(Message::ReplicaSet { nodes }) => nodes,
            Ok(other) => return Err(Error::unexpected_reply(holder.addr, "ReplicaSet", &other)),
            Err(e) => return Err(e),
        };
        for replica in replicas {
            let mut counted = Counted { sink, written: 0 };
            match self.fetch_from(replica, name, &mut counted) {
                Ok(head) => return Ok(head),
                // Only a failure before any byte arrived leaves `sink` clean for the next copy.
                Err(e) if counted.written == 0 && (e.is_retryable() || is_not_found(&e)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotFound { name: lossy(name) })
    }

    /// Gets `name` from `holder` into `sink`.
    fn fetch_from(&self, holder: NodeInfo, name: &[u8], sink: &mut dyn Sink) -> Result<RecordHead> {
        self.pool
            .session(holder.addr, |conn: &mut Conn| {
                conn.send(&Message::Get {
                    name: name.to_vec(),
                })
                .map_err(|e| conn.error(crate::net::ReadError::Io(e)))?;
                match conn.recv_or_fail()? {
                    Message::Record(head) if head.name == name && !head.deleted => {
                        recv_record(conn, &head, sink)?;
                        Ok(head)
                    }
                    other => Err(Error::unexpected_reply(holder.addr, "Record", &other)),
                }
            })
            .map_err(|e| typed(name, e))
    }

    /// One lookup from the entry peer, no retries.
    fn lookup_once(&self, key: Key) -> Result<Route> {
        let start = self.start_peer()?;
        let hops = u8::try_from(self.config.max_hops).unwrap_or(u8::MAX);
        let wait = route_budget(&self.config.net);
        let path = ask_route(&self.pool, start.addr, key, hops, wait).inspect_err(|e| {
            *self.start.lock() = None;
            if is_hop_failure(e) {
                self.pool.forget(start.addr);
            }
        })?;
        Ok(Route { key, path })
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

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::NotFound { .. })
}

/// A sink that counts what passed through it.
struct Counted<'a> {
    sink: &'a mut dyn Sink,
    written: u64,
}

impl Sink for Counted<'_> {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.written += chunk.len() as u64;
        self.sink.write_chunk(chunk)
    }
}

/// The typed error for a holder's refusal about `name`.
fn typed(name: &[u8], e: Error) -> Error {
    let Error::Refused { code, message, .. } = &e else {
        return e;
    };
    match code {
        RemoteCode::NotFound => Error::NotFound { name: lossy(name) },
        RemoteCode::Corrupt => Error::Corrupt {
            name: lossy(name),
            what: message.clone(),
        },
        RemoteCode::InvalidName => Error::InvalidName {
            reason: message.clone(),
        },
        _ => e,
    }
}
