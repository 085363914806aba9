//! Snapshots of a node's state handed to C: its leaf set by side, its routing table by cell,
//! the objects it holds. Each is the caller's, with its `_free`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::PastryStatus;
use super::{arg, free_c_slice, guard, out_arg, slice_to_c, PastryNode, PastryNodeInfo};
use crate::id::NodeInfo;
use crate::overlay::RoutingTable;

/// A node's leaf set, side by side, in the order the `peer` program prints it: around the
/// ring from the farthest counter-clockwise member to the farthest clockwise one. In a
/// network of fewer than `2 * leaf_half + 1` nodes a node may be on both sides.
#[repr(C)]
pub struct PastryLeafSet {
    /// The counter-clockwise side (smaller ids, wrapping), farthest first; NULL when
    /// `counter_clockwise_len` is 0.
    pub counter_clockwise: *mut PastryNodeInfo,
    /// How many on that side (at most `leaf_half`).
    pub counter_clockwise_len: usize,
    /// The clockwise side (larger ids, wrapping), nearest first; NULL when `clockwise_len`
    /// is 0.
    pub clockwise: *mut PastryNodeInfo,
    /// How many on that side (at most `leaf_half`).
    pub clockwise_len: usize,
}

fn infos<'a>(nodes: impl Iterator<Item = &'a NodeInfo>) -> (*mut PastryNodeInfo, usize) {
    slice_to_c(nodes.map(|n| PastryNodeInfo::from(*n)).collect())
}

/// The node's leaf set. On success `*leaf_set_out` is the caller's: free it with
/// `pastry_leaf_set_free`. Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `node` is NULL or a live handle; `leaf_set_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_leaf_set(
    node: *const PastryNode,
    leaf_set_out: *mut *mut PastryLeafSet,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let leaf_set_out = out_arg(leaf_set_out, "leaf_set_out")?;
        let leaf_set = node.node.leaf_set();
        let (counter_clockwise, counter_clockwise_len) = infos(leaf_set.ccw().iter().rev());
        let (clockwise, clockwise_len) = infos(leaf_set.cw().iter());
        *leaf_set_out = Box::into_raw(Box::new(PastryLeafSet {
            counter_clockwise,
            counter_clockwise_len,
            clockwise,
            clockwise_len,
        }));
        Ok(())
    })
}

/// Frees a leaf set. NULL does nothing.
///
/// # Safety
/// `leaf_set` is NULL or a leaf set from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn pastry_leaf_set_free(leaf_set: *mut PastryLeafSet) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !leaf_set.is_null() {
            let leaf_set = Box::from_raw(leaf_set);
            free_c_slice(leaf_set.counter_clockwise, leaf_set.counter_clockwise_len);
            free_c_slice(leaf_set.clockwise, leaf_set.clockwise_len);
        }
    }));
}

/// One filled cell of a routing table.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PastryRoutingEntry {
    /// The row: how many leading hex digits the entry shares with the node (0 to 3).
    pub row: u8,
    /// The column: the entry's next hex digit (0 to 15, never the node's own).
    pub column: u8,
    /// The node in the cell.
    pub node: PastryNodeInfo,
}

/// The filled cells of a routing table, row by row, by column within a row. Free with
/// `pastry_routing_table_free`.
#[repr(C)]
pub struct PastryRoutingTable {
    /// The entries; NULL when `len` is 0.
    pub items: *mut PastryRoutingEntry,
    /// How many.
    pub len: usize,
}

/// The node's routing table. On success `*table_out` is the caller's: free it with
/// `pastry_routing_table_free`. Returns `PASTRY_STATUS_OK` or `_NULL_PARAMETER`.
///
/// # Safety
/// `node` is NULL or a live handle; `table_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn pastry_node_routing_table(
    node: *const PastryNode,
    table_out: *mut *mut PastryRoutingTable,
) -> PastryStatus {
    guard(|| {
        let node = arg(node, "node")?;
        let table_out = out_arg(table_out, "table_out")?;
        let own = node.node.id();
        let entries: Box<[PastryRoutingEntry]> = node
            .node
            .routing_table()
            .entries()
            .filter_map(|n| {
                let (row, column) = RoutingTable::cell_of(own, n.id)?;
                Some(PastryRoutingEntry {
                    row: row as u8,
                    column: column as u8,
                    node: n.into(),
                })
            })
            .collect();
        let (items, len) = slice_to_c(entries);
        *table_out = Box::into_raw(Box::new(PastryRoutingTable { items, len }));
        Ok(())
    })
}

/// Frees a routing table. NULL does nothing.
///
/// # Safety
/// `table` is NULL or a table from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn pastry_routing_table_free(table: *mut PastryRoutingTable) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !table.is_null() {
            let table = Box::from_raw(table);
            free_c_slice(table.items, table.len);
        }
    }));
}

/// One object a node holds.
#[repr(C)]
pub struct PastryObjectInfo {
    /// The object's name (not NUL-terminated; may hold any bytes).
    pub name: *const u8,
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
/// Returns `PASTRY_STATUS_OK`, `_NULL_PARAMETER` or `_IO` (the store cannot be read).
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
            .node
            .objects()?
            .into_iter()
            .map(|o| {
                let (name, name_len) = slice_to_c(o.name.into_boxed_slice());
                PastryObjectInfo {
                    name: name.cast_const(),
                    name_len,
                    key: o.key.0,
                    size: o.size,
                    version: o.version,
                }
            })
            .collect();
        let (items, len) = slice_to_c(items);
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
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if list.is_null() {
            return;
        }
        let list = Box::from_raw(list);
        if !list.items.is_null() {
            let items = std::slice::from_raw_parts(list.items, list.len);
            for item in items {
                free_c_slice(item.name.cast_mut(), item.name_len);
            }
        }
        free_c_slice(list.items, list.len);
    }));
}
