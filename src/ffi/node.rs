//! `PastryNode`: a node of the overlay.

use std::ffi::c_char;
use std::path::PathBuf;

use super::security::security_arg;
use super::PastrySecurity;
use super::{
    addr_arg, arg, guard, out_arg, str_arg, Failure, PastryNodeInfo, PastryNodeList, PastryStatus,
};
use crate::id::Id;
use crate::{Node, NodeConfig};

/// A running node. Thread-safe.
pub struct PastryNode(Node);

/// How to start a node. Fill it with `pastry_node_options_default`, then change fields.
#[repr(C)]
pub struct PastryNodeOptions {
    /// Address to listen on, such as `"127.0.0.1:0"` (port 0: the system chooses). NULL:
    /// `127.0.0.1:0`.
    pub listen: *const c_char,
    /// The node's id, `0..=65535`, or -1 for a random one.
    pub id: i32,
    /// Directory for the node's objects. NULL: a temporary directory removed when the node
    /// is freed.
    pub data_dir: *const c_char,
    /// Leaf-set members on each side; 0 for the default (8).
    pub leaf_half: u32,
    /// Copies kept of each object, from 1 to `leaf_half + 1`; 0 for the default (3).
    pub replicas: u32,
    /// The cluster key (or `pastry_security_insecure`); must be set. The node keeps its own
    /// copy.
    pub security: *const PastrySecurity,
}

/// Fills `options` with the defaults: loopback, random id, temporary data directory,
/// default leaf set and number of copies.
///
/// # Safety
/// `options` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_options_default(
    options: *mut PastryNodeOptions,
) -> PastryStatus {
    guard(|| {
        let options = out_arg(options, "options")?;
        *options = PastryNodeOptions {
            listen: std::ptr::null(),
            id: -1,
            data_dir: std::ptr::null(),
            leaf_half: 0,
            replicas: 0,
            security: std::ptr::null(),
        };
        Ok(())
    })
}

/// Starts a node's server. It is not part of an overlay until it joins. On success
/// `*node_out` is a new handle, owned by the caller: free it with `pastry_node_free`.
///
/// # Safety
/// `options` points to options whose strings are NULL or NUL-terminated; `node_out` points
/// to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_start(
    options: *const PastryNodeOptions,
    node_out: *mut *mut PastryNode,
) -> PastryStatus {
    guard(|| {
        let options = arg(options, "options")?;
        let node_out = out_arg(node_out, "node_out")?;
        let mut config = NodeConfig::new(security_arg(options.security, "options->security")?);
        if !options.listen.is_null() {
            config.listen = addr_arg(options.listen, "options->listen")?;
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
        if options.leaf_half != 0 {
            config.leaf_half = options.leaf_half as usize;
        }
        if options.replicas != 0 {
            config.replicas = options.replicas as usize;
        }
        let node = Node::start(config)?;
        *node_out = Box::into_raw(Box::new(PastryNode(node)));
        Ok(())
    })
}

/// Writes the node's id and address into `*info_out`.
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
        *info_out = node.0.info().into();
        Ok(())
    })
}

/// Joins the overlay tracked by the discovery node at `discovery` (such as
/// `"127.0.0.1:4000"`). `PASTRY_STATUS_ID_IN_USE` if the id is taken.
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
        Ok(node.0.join_discovery(discovery)?)
    })
}

/// Joins the overlay of the node at `peer`, with no discovery node.
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
        Ok(node.0.join_peer(peer)?)
    })
}

/// Starts a new overlay with this node as its only member, with no discovery node.
///
/// # Safety
/// `node` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_create(node: *const PastryNode) -> PastryStatus {
    guard(|| Ok(arg(node, "node")?.0.create()?))
}

/// Looks `key` up from this node. On success `*route_out` lists every node visited, this
/// one first and the responsible node last; owned by the caller: free it with
/// `pastry_node_list_free`.
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
        let route = node.0.lookup(Id(key))?;
        *route_out = PastryNodeList::boxed(route.path);
        Ok(())
    })
}

/// The leaf set: the clockwise side nearest first, then the counter-clockwise side nearest
/// first (a node on both sides, in a small network, is listed once). Free the list with
/// `pastry_node_list_free`.
///
/// # Safety
/// `node` is a live handle; `leaf_set_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_leaf_set(
    node: *const PastryNode,
    leaf_set_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let leaf_set_out = out_arg(leaf_set_out, "leaf_set_out")?;
        *leaf_set_out = PastryNodeList::boxed(node.0.leaf_set().members());
        Ok(())
    })
}

/// The routing table's entries, row by row. An entry's row is the number of leading hex
/// digits it shares with this node, its column its next digit. Free the list with
/// `pastry_node_list_free`.
///
/// # Safety
/// `node` is a live handle; `table_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_routing_table(
    node: *const PastryNode,
    table_out: *mut *mut PastryNodeList,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let table_out = out_arg(table_out, "table_out")?;
        *table_out = PastryNodeList::boxed(node.0.routing_table().entries());
        Ok(())
    })
}

/// One object a node holds.
#[repr(C)]
pub struct PastryObjectInfo {
    /// The object's name (not NUL-terminated; may hold any bytes).
    pub name: *mut u8,
    /// The name's length.
    pub name_len: usize,
    /// The object's key.
    pub key: u16,
    /// Its size in bytes.
    pub size: u64,
    /// Its version.
    pub version: u64,
}

/// The objects a node holds. Free with `pastry_object_list_free`.
#[repr(C)]
pub struct PastryObjectList {
    /// The objects, by key and name; NULL when `len` is 0.
    pub items: *mut PastryObjectInfo,
    /// How many.
    pub len: usize,
}

/// The objects this node holds. On success `*objects_out` is a new list, owned by the
/// caller: free it with `pastry_object_list_free`.
///
/// # Safety
/// `node` is a live handle; `objects_out` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_objects(
    node: *const PastryNode,
    objects_out: *mut *mut PastryObjectList,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let objects_out = out_arg(objects_out, "objects_out")?;
        let items: Box<[PastryObjectInfo]> = node
            .0
            .objects()?
            .into_iter()
            .map(|o| {
                let (name, name_len) = super::slice_to_c(o.name.into_boxed_slice());
                PastryObjectInfo {
                    name,
                    name_len,
                    key: o.key.0,
                    size: o.size,
                    version: o.version,
                }
            })
            .collect();
        let (items, len) = super::slice_to_c(items);
        *objects_out = Box::into_raw(Box::new(PastryObjectList { items, len }));
        Ok(())
    })
}

/// Frees an object list. NULL does nothing.
///
/// # Safety
/// `list` is NULL or a list from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn pastry_object_list_free(list: *mut PastryObjectList) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if list.is_null() {
            return;
        }
        let list = Box::from_raw(list);
        if !list.items.is_null() {
            let items = std::slice::from_raw_parts(list.items, list.len);
            for item in items {
                super::free_c_slice(item.name, item.name_len);
            }
        }
        super::free_c_slice(list.items, list.len);
    }));
}

/// Leaves the overlay gracefully: hands every object over, then tells discovery and the
/// neighbours. The handle stays valid (answering only pings) until freed.
///
/// # Safety
/// `node` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_leave(node: *const PastryNode) -> PastryStatus {
    guard(|| Ok(arg(node, "node")?.0.leave()?))
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
