//! `PastryNode`: a node of the overlay.

use std::ffi::{c_char, CString};
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::time::Duration;

use super::net::give_stats;
use super::security::security_arg;
use super::sized::{self, Growable};
use super::{
    addr_arg, arg, c_string, guard, out_arg, str_arg, Failure, PastryNetOptions, PastryNetStats,
    PastryNodeInfo, PastryNodeList, PastrySecurity, PastryStatus,
};
use crate::id::Id;
use crate::{Entry, Node, NodeConfig};

/// A running node. Thread-safe.
pub struct PastryNode {
    pub(super) node: Node,
    /// The options it started with, as `pastry_node_options_of` gives them (its strings and
    /// net options point into the fields below, which are here only to own what they point
    /// to).
    options: PastryNodeOptions,
    _listen: CString,
    _data_dir: CString,
    _net: Box<PastryNetOptions>,
}

// SAFETY: the raw pointers in `options` point into the handle's own fields, which are
// never changed after the handle is made.
unsafe impl Send for PastryNode {}
unsafe impl Sync for PastryNode {}

/// How to start a node. Fill it with `pastry_node_options_init(&options, sizeof options)`,
/// then change fields. Fields are only ever added at the end: a program built against an
/// older header passes a smaller struct, and the fields it does not know take their
/// defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PastryNodeOptions {
    /// `sizeof(PastryNodeOptions)` as the program knows it: set by `pastry_node_options_init`.
    pub size: usize,
    /// Address to listen on, such as `"127.0.0.1:0"` (port 0: the system chooses). NULL:
    /// `127.0.0.1:0`.
    pub listen: *const c_char,
    /// Address other nodes use to reach this one (port 0: the port listened on). NULL: the
    /// address listened on, which must then not be a wildcard such as `0.0.0.0`.
    pub advertise: *const c_char,
    /// Directory for the node's objects, created if missing and kept when the node is freed.
    /// NULL: a new temporary directory, removed when the node is freed.
    pub data_dir: *const c_char,
    /// The cluster key (or `pastry_security_insecure`); must be set. The node keeps its own
    /// copy.
    pub security: *const PastrySecurity,
    /// The node's id, `0..=65535`, or -1 (the default): the one it last ran with in
    /// `data_dir` (kept in its file `node-id`), else one drawn at random.
    pub id: i32,
    /// Leaf-set members on each side. Default 8.
    pub leaf_half: u32,
    /// Copies kept of each object, from 1 to `leaf_half + 1`. Default 3.
    pub replicas: u32,
    /// Most hops a route may take before a lookup fails. Default 32.
    pub max_hops: u32,
    /// How often the node checks its neighbours and retries work left undone, in ms. A
    /// crashed neighbour is noticed within about this long. Default 1,000.
    pub maintenance_interval_ms: u32,
    /// Nonzero (the default): each write is synced to disk before it is acknowledged. Zero:
    /// a write survives a crash of the process but not of the machine.
    pub sync_writes: u32,
    /// How long a deletion record is kept after its delete, in ms. Default a day.
    pub tombstone_grace_ms: u64,
    /// Socket timeouts and limits; NULL for the defaults.
    pub net: *const PastryNetOptions,
    /// Objects of at most this many bytes live in the node's store log (one append, its
    /// sync shared by the writes of the same moment); larger ones are files of their own.
    /// Default 65,536; above 1 MiB is taken as 1 MiB.
    pub small_object_max: u64,
}

// SAFETY: repr(C), `size` first; 4 pointers, 6 four-byte fields, a u64, a pointer, a u64:
// no padding.
unsafe impl Growable for PastryNodeOptions {
    const NAME: &'static str = "PastryNodeOptions";
    // The first release: everything up to `security`, the one field that must be set.
    const MIN_SIZE: usize = offset_of!(PastryNodeOptions, security) + size_of::<usize>();
    fn defaults() -> Self {
        let d = NodeConfig::default();
        PastryNodeOptions {
            size: size_of::<PastryNodeOptions>(),
            listen: std::ptr::null(),
            advertise: std::ptr::null(),
            data_dir: std::ptr::null(),
            security: std::ptr::null(),
            id: -1,
            leaf_half: d.leaf_half as u32,
            replicas: d.replicas as u32,
            max_hops: d.max_hops as u32,
            maintenance_interval_ms: millis32(d.maintenance_interval),
            sync_writes: d.sync_writes.into(),
            tombstone_grace_ms: u64::try_from(d.tombstone_grace.as_millis()).unwrap_or(u64::MAX),
            net: std::ptr::null(),
            small_object_max: d.small_object_max as u64,
        }
    }
}

fn millis32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Fills `options` with the defaults: loopback, random id, temporary data directory, and
/// the defaults each field states. `size` is `sizeof *options` (the struct as the program
/// knows it). Returns `PASTRY_STATUS_OK`, `PASTRY_STATUS_NULL_PARAMETER`, or
/// `PASTRY_STATUS_INVALID_ARGUMENT` for a size smaller than the first release's struct.
///
/// # Safety
/// `options` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_options_init(
    options: *mut PastryNodeOptions,
    size: usize,
) -> PastryStatus {
    guard(|| sized::init(options, size, "options"))
}

/// The Rust settings for C options.
///
/// # Safety
/// As `pastry_node_start`.
unsafe fn config_of(options: &PastryNodeOptions) -> Result<NodeConfig, Failure> {
    let security = security_arg(options.security, "options->security")?;
    let mut config = NodeConfig {
        net: PastryNetOptions::config_from(options.net, security, "options->net")?,
        leaf_half: options.leaf_half as usize,
        replicas: options.replicas as usize,
        max_hops: options.max_hops as usize,
        maintenance_interval: Duration::from_millis(options.maintenance_interval_ms.into()),
        sync_writes: options.sync_writes != 0,
        tombstone_grace: Duration::from_millis(options.tombstone_grace_ms),
        small_object_max: usize::try_from(options.small_object_max).unwrap_or(usize::MAX),
        ..NodeConfig::default()
    };
    if !options.listen.is_null() {
        config.listen = addr_arg(options.listen, "options->listen")?;
    }
    if !options.advertise.is_null() {
        config.advertise = Some(addr_arg(options.advertise, "options->advertise")?);
    }
    config.id = match options.id {
        -1 => None,
        id => Some(Id(u16::try_from(id).map_err(|_| {
            Failure::invalid(format!("options->id {id} is neither -1 nor 0..=65535"))
        })?)),
    };
    if !options.data_dir.is_null() {
        config.data_dir = Some(PathBuf::from(str_arg(
            options.data_dir,
            "options->data_dir",
        )?));
    }
    if options.maintenance_interval_ms == 0 {
        return Err(Failure::invalid("options->maintenance_interval_ms is 0"));
    }
    Ok(config)
}

/// Starts a node's server. It is not part of an overlay until it joins. On success
/// `*node_out` is a new handle, owned by the caller: free it with `pastry_node_free`.
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_INVALID_ARGUMENT` (an address, id,
/// size or setting out of range), or `_IO` (the address cannot be listened on, or the data
/// directory cannot be made or opened).
///
/// # Safety
/// `options` is NULL or points to options whose `size` is right and whose strings are NULL
/// or NUL-terminated; `node_out` is NULL or points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_start(
    options: *const PastryNodeOptions,
    node_out: *mut *mut PastryNode,
) -> PastryStatus {
    guard(|| start_with(options, node_out, Node::start))
}

/// Starts a node and joins it to the overlay that the discovery node at `discovery`
/// tracks, in one call: `pastry_node_start` and `pastry_node_join_discovery`, except that
/// a node whose id is drawn at random (`options->id` of -1) and found in use is started
/// again with another, 8 draws at most (among 100 nodes with random ids, two draw the same
/// one about once in 14 overlays). On success `*node_out` is a new handle, owned by the
/// caller: free it with `pastry_node_free`; on failure no node is left running.
///
/// Returns the statuses of `pastry_node_start` and of `pastry_node_join_discovery`
/// (`_ID_IN_USE` for a configured id, or when every draw was in use).
///
/// # Safety
/// As `pastry_node_start`; `discovery` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_start_joined(
    options: *const PastryNodeOptions,
    discovery: *const c_char,
    node_out: *mut *mut PastryNode,
) -> PastryStatus {
    guard(|| {
        let discovery = addr_arg(discovery, "discovery")?;
        start_with(options, node_out, |config| {
            Node::start_joined(config, Entry::Discovery(discovery))
        })
    })
}

/// A node started from `options` by `start`, its handle written to `*node_out`.
///
/// # Safety
/// As `pastry_node_start`.
unsafe fn start_with(
    options: *const PastryNodeOptions,
    node_out: *mut *mut PastryNode,
    start: impl FnOnce(NodeConfig) -> crate::Result<Node>,
) -> Result<(), Failure> {
    let options = sized::read(options, "options")?;
    let node_out = out_arg(node_out, "node_out")?;
    let config = config_of(&options)?;
    let net = Box::new(PastryNetOptions::from(&config.net));
    let node = start(config.clone())?;
    let listen = c_string(node.info().addr.to_string());
    let data_dir = c_string(node.data_dir().display().to_string());
    let options = PastryNodeOptions {
        size: size_of::<PastryNodeOptions>(),
        listen: listen.as_ptr(),
        advertise: listen.as_ptr(),
        data_dir: data_dir.as_ptr(),
        security: std::ptr::null(),
        id: node.id().0.into(),
        ..options
    };
    let net_ptr: *const PastryNetOptions = &*net;
    *node_out = Box::into_raw(Box::new(PastryNode {
        node,
        options: PastryNodeOptions {
            net: net_ptr,
            ..options
        },
        _listen: listen,
        _data_dir: data_dir,
        _net: net,
    }));
    Ok(())
}

/// Writes the options the node runs with into `*options_out` (whose `size` the caller set,
/// as `pastry_node_options_init` does): its address as `listen` and `advertise`, its data
/// directory (the temporary one too), its id, and every setting; `security` is NULL. The
/// strings and `net` belong to the node and stay valid until it is freed. Returns
/// `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (a wrong size).
///
/// # Safety
/// `node` is NULL or a live handle; `options_out` is NULL or points to a struct whose size
/// field is right.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_options_of(
    node: *const PastryNode,
    options_out: *mut PastryNodeOptions,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        sized::write(options_out, node.options, "options_out")
    })
}

/// Writes the node's id and address into `*info_out`.
///
/// Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `node` is a live handle; `info_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_info(
    node: *const PastryNode,
    info_out: *mut PastryNodeInfo,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let info_out = out_arg(info_out, "info_out")?;
        *info_out = node.node.info().into();
        Ok(())
    })
}

/// Joins the overlay tracked by the discovery node at `discovery` (such as
/// `"127.0.0.1:4000"`). `PASTRY_STATUS_ID_IN_USE` if the id is taken.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_INVALID_ARGUMENT` (not an address),
/// `_ID_IN_USE`, `_UNREACHABLE` (discovery or the peer it named did not answer),
/// `_REFUSED`, or `_NOT_JOINED` when the node has joined already or has left (a node that
/// left cannot join again: free it and start a new one, with the same id and data directory
/// if wanted).
///
/// # Safety
/// `node` is a live handle; `discovery` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_join_discovery(
    node: *const PastryNode,
    discovery: *const c_char,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let discovery = addr_arg(discovery, "discovery")?;
        Ok(node.node.join_discovery(discovery)?)
    })
}

/// Joins the overlay of the node at `peer`, with no discovery node.
///
/// Returns the statuses of `pastry_node_join_discovery`.
///
/// # Safety
/// `node` is a live handle; `peer` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_join_peer(
    node: *const PastryNode,
    peer: *const c_char,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let peer = addr_arg(peer, "peer")?;
        Ok(node.node.join_peer(peer)?)
    })
}

/// Starts a new overlay with this node as its only member, with no discovery node.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, or `_NOT_JOINED` when the node has joined
/// already or has left.
///
/// # Safety
/// `node` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_create(node: *const PastryNode) -> PastryStatus {
    guard(|| Ok(arg(node, "node")?.node.create()?))
}

/// Looks `key` up from this node. On success `*route_out` lists every node visited, this
/// one first and the responsible node last; owned by the caller: free it with
/// `pastry_node_list_free`.
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_NOT_JOINED` (not joined yet, or left),
/// or `_UNREACHABLE` (the route failed or grew longer than `max_hops`).
///
/// # Safety
/// `node` is a live handle; `route_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_lookup(
    node: *const PastryNode,
    key: u16,
    route_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let route_out = out_arg(route_out, "route_out")?;
        let route = node.node.lookup(Id(key))?;
        *route_out = PastryNodeList::boxed(route.path);
        Ok(())
    })
}

/// Makes `discovery` (such as `"127.0.0.1:4000"`) the discovery node this node reports
/// to from now on (a node that joined through a peer, or whose discovery node moved).
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_INVALID_ARGUMENT`.
///
/// # Safety
/// `node` is NULL or a live handle; `discovery` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_use_discovery(
    node: *const PastryNode,
    discovery: *const c_char,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let discovery = addr_arg(discovery, "discovery")?;
        node.node.use_discovery(discovery);
        Ok(())
    })
}

/// Writes the node's traffic counters into `*stats_out`, whose `size` the caller set
/// (`PastryNetStats stats = { sizeof stats };`). Returns `PASTRY_STATUS_OK`,
/// `_NULL_PARAMETER` or `_INVALID_ARGUMENT` (a wrong size).
///
/// # Safety
/// `node` is NULL or a live handle; `stats_out` is NULL or points to a struct whose size
/// field is right.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_stats(
    node: *const PastryNode,
    stats_out: *mut PastryNetStats,
) -> PastryStatus {
    guard(|| give_stats(stats_out, arg(node, "node")?.node.stats()))
}

/// Leaves the overlay gracefully: hands every object over, then tells discovery and the
/// neighbours. The handle stays valid until freed: the node then answers peers' pings and
/// nothing else (a peer's request is refused as from a node not joined), its own lookups and
/// joins give `PASTRY_STATUS_NOT_JOINED`, and its snapshots and stats still work. It cannot
/// join again: free it and start a new node (with the same id and data directory if
/// wanted).
///
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER`, `_NOT_JOINED` (not joined, or left
/// already), or `_UNREACHABLE`, `_REFUSED` or `_IO` when an object could not be handed over
/// (the node then stays joined and may try again).
///
/// # Safety
/// `node` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_leave(node: *const PastryNode) -> PastryStatus {
    guard(|| Ok(arg(node, "node")?.node.leave()?))
}

/// Stops the node (without leaving: call `pastry_node_leave` first for a graceful exit),
/// joins its threads and frees the handle. NULL does nothing.
///
/// # Safety
/// `node` is NULL or a live handle; no other call may use it during or after this one.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_free(node: *mut PastryNode) {
    super::free_box(node);
}
