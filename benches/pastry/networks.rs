//! The networks the sections measure, built once per size and profile and reused.

use super::*;

/// The key every benchmarked network holds: its connections are encrypted, as a real
/// cluster's are.
pub(crate) fn key() -> &'static pastry::ClusterKey {
    static KEY: std::sync::OnceLock<pastry::ClusterKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| pastry::ClusterKey::generate().expect("random key"))
}

/// How the nodes of a network are configured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Profile {
    /// `NodeConfig::new(key)` (only the data directory set).
    Default,
    /// Default but `sync_writes: false`: writes are not fsynced.
    NoSync,
    /// `sync_writes: false` and one copy per object (`replicas: 1`): no replication.
    NoSyncOneCopy,
    /// `NoSyncOneCopy` on plaintext connections (`Security::Insecure`): the same code with
    /// no handshake and no cipher, to measure what encryption costs.
    PlainOneCopy,
    /// Default but `net.pool_per_peer: 0`: no connection is kept, every request opens its
    /// own. When this was written, the only setting with which more than about 130 nodes
    /// fitted in one process under the 20,000-descriptor limit (see BENCHMARKS.md).
    NoPool,
    /// `NoPool` and `maintenance_interval` of 10 s: 1,000 nodes in one process on 2 cores.
    Large,
    /// `NoPool` and `maintenance_interval` of one hour: no background traffic, so that the
    /// messages of a join can be counted exactly.
    Quiet,
}

impl Profile {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::NoSync => "nosync",
            Profile::NoSyncOneCopy => "nosync-1copy",
            Profile::PlainOneCopy => "plain-1copy",
            Profile::NoPool => "nopool",
            Profile::Large => "large",
            Profile::Quiet => "quiet",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Profile::Default => "`NodeConfig::new(key)`",
            Profile::NoSync => "default but `sync_writes: false`",
            Profile::NoSyncOneCopy => "default but `sync_writes: false, replicas: 1`",
            Profile::PlainOneCopy => {
                "`Security::Insecure` (plaintext), `sync_writes: false, replicas: 1`"
            }
            Profile::NoPool => "default but `pool_per_peer: 0`",
            Profile::Large => "default but `pool_per_peer: 0, maintenance_interval: 10 s`",
            Profile::Quiet => "default but `pool_per_peer: 0, maintenance_interval: 3600 s`",
        }
    }

    /// The client's configuration: it syncs retrieved files as the nodes sync their copies.
    pub(crate) fn client(self, discovery: SocketAddr) -> Client {
        let config = ClientConfig {
            sync_writes: self.config(PathBuf::new()).sync_writes,
            ..ClientConfig::new(self.security())
        };
        Client::with_config(Entry::Discovery(discovery), config)
    }

    /// The cluster key, or none for the plaintext profile.
    pub(crate) fn security(self) -> Security {
        match self {
            Profile::PlainOneCopy => Security::Insecure,
            _ => key().into(),
        }
    }

    pub(crate) fn config(self, dir: PathBuf) -> NodeConfig {
        let mut c = NodeConfig {
            data_dir: Some(dir),
            ..NodeConfig::new(self.security())
        };
        match self {
            Profile::Default => {}
            Profile::NoSync => c.sync_writes = false,
            Profile::NoSyncOneCopy | Profile::PlainOneCopy => {
                c.sync_writes = false;
                c.replicas = 1;
            }
            Profile::NoPool => c.net.pool_per_peer = 0,
            Profile::Large => {
                c.net.pool_per_peer = 0;
                c.maintenance_interval = Duration::from_secs(10);
            }
            Profile::Quiet => {
                c.net.pool_per_peer = 0;
                c.maintenance_interval = Duration::from_secs(3600);
            }
        }
        c
    }
}

/// A discovery node and `built` nodes joined through it one after another.
pub(crate) struct Net {
    pub(crate) profile: Profile,
    pub(crate) built: usize,
    pub(crate) discovery: Discovery,
    pub(crate) nodes: Vec<Node>,
    pub(crate) dir: PathBuf,
    pub(crate) build_time: Duration,
    /// Process resources before the network started and once it had settled.
    pub(crate) before: Resources,
    pub(crate) settled: Resources,
}

impl Net {
    pub(crate) fn build(n: usize, profile: Profile, dir: &Path, seed: u64) -> Result<Net, String> {
        trim_heap();
        let before = Resources::now();
        let t0 = Instant::now();
        let discovery = Discovery::start("127.0.0.1:0".parse().unwrap(), profile.security())
            .map_err(|e| format!("discovery does not start: {e}"))?;
        let mut rng = Rng::seeded(seed);
        let mut used = std::collections::HashSet::new();
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        // Sampled every 10 nodes: once descriptors run out, /proc/self/fd cannot be read.
        let mut sampled = (0, before);
        while nodes.len() < n {
            let id = Id(rng.next_u64() as u16);
            if !used.insert(id) {
                continue;
            }
            let i = nodes.len();
            let config = NodeConfig {
                id: Some(id),
                ..profile.config(dir.join(format!("{i}")))
            };
            let joined = Node::start(config).and_then(|node| {
                node.join_discovery(discovery.local_addr())?;
                Ok(node)
            });
            match joined {
                Ok(node) => nodes.push(node),
                Err(e) => {
                    let (at, r) = sampled;
                    let msg = format!(
                        "node {} of {n} failed after {:.1} s: {e}. With {at} nodes the process \
                         had {} threads and {} descriptors open (limit {})",
                        i + 1,
                        t0.elapsed().as_secs_f64(),
                        r.threads,
                        r.fds,
                        fd_limit()
                    );
                    eprintln!("  {msg}");
                    drop(nodes);
                    let _ = fs::remove_dir_all(dir);
                    return Err(msg);
                }
            }
            if (i + 1) % 10 == 0 {
                let r = Resources::now();
                if r.fds > 0 {
                    sampled = (i + 1, r); // 0: /proc/self/fd could not be opened
                }
            }
            if (i + 1) % 250 == 0 && i + 1 < n {
                let r = Resources::now();
                eprintln!(
                    "  ... {} nodes joined in {:.1} s ({} threads, {} descriptors)",
                    i + 1,
                    t0.elapsed().as_secs_f64(),
                    r.threads,
                    r.fds
                );
            }
        }
        let build_time = t0.elapsed();
        // Let joins' after-effects and a few maintenance rounds pass before measuring.
        let settle = match profile {
            Profile::Quiet | Profile::Large => Duration::from_secs(2),
            _ => Duration::from_secs(3),
        };
        thread::sleep(settle);
        let settled = Resources::now();
        eprintln!(
            "  built {n} nodes ({}) in {:.1} s: {} threads, {} descriptors, RSS {} MiB",
            profile.name(),
            build_time.as_secs_f64(),
            settled.threads,
            settled.fds,
            settled.rss_kb / 1024
        );
        Ok(Net {
            profile,
            built: n,
            discovery,
            nodes,
            dir: dir.to_path_buf(),
            build_time,
            before,
            settled,
        })
    }

    pub(crate) fn random_node(&self, rng: &mut Rng) -> &Node {
        &self.nodes[rng.below(self.nodes.len())]
    }

    /// Whether `holder` is the live node closest to `key` (ties to the larger id).
    pub(crate) fn is_responsible(&self, key: Id, holder: Id) -> bool {
        pastry::responsible(key, self.nodes.iter().map(|n| n.id())) == Some(holder)
    }

    pub(crate) fn total_sent(&self) -> u64 {
        self.nodes.iter().map(|n| n.stats().sent).sum()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.shutdown();
        }
        self.discovery.shutdown();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Lookups of random keys from random nodes: latencies and hop counts, and failures.
#[derive(Default)]
pub(crate) struct Lookups {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) hops: Vec<usize>,
    pub(crate) failures: usize,
    /// Lookups that ended at a node other than the live node closest to the key.
    pub(crate) wrong: usize,
    pub(crate) first_error: Option<String>,
}

impl Lookups {
    pub(crate) fn extend(&mut self, more: Lookups) {
        self.latencies.extend(more.latencies);
        self.hops.extend(more.hops);
        self.failures += more.failures;
        self.wrong += more.wrong;
        if self.first_error.is_none() {
            self.first_error = more.first_error;
        }
    }
}

pub(crate) fn random_lookups(net: &Net, count: usize, rng: &mut Rng) -> Lookups {
    let mut out = Lookups {
        latencies: Vec::with_capacity(count),
        hops: Vec::with_capacity(count),
        ..Lookups::default()
    };
    for _ in 0..count {
        let node = net.random_node(rng);
        let key = Id(rng.next_u64() as u16);
        let t = Instant::now();
        match node.lookup(key) {
            Ok(route) => {
                out.latencies.push(t.elapsed());
                out.hops.push(route.hops());
                if !net.is_responsible(key, route.responsible().id) {
                    out.wrong += 1;
                }
            }
            Err(e) => {
                out.failures += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out
}

/// Lookups from random nodes until the nodes hold their pooled connections, as in a network
/// that has been running: rounds of N lookups until one opens fewer than N / 50 connections
/// (at most 40 rounds; with no pool every hop opens one, so one round).
pub(crate) fn warm_up(net: &Net, rng: &mut Rng) {
    let opened = || net.nodes.iter().map(|n| n.stats().opened).sum::<u64>();
    let n = net.nodes.len();
    let pooled = net.profile.config(PathBuf::new()).net.pool_per_peer > 0;
    for _ in 0..40 {
        let before = opened();
        let _ = random_lookups(net, n, rng);
        if !pooled || (opened() - before) * 50 < n as u64 {
            return;
        }
    }
}
