//! The payloads of the message set: each message's type byte, its fields' encoding and
//! their decoding. Decoding is total: any bytes give a message or a [`WireError`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::super::message::{Message, RecordHead, RemoteCode};
use super::super::WireError;
use super::malformed;
use crate::id::{Id, NodeInfo};

/// The message set, declared once: each message's type byte, constant and variant. The type
/// bytes, [`type_of`], [`name_of`] and the list of every type derive from it.
macro_rules! message_set {
    ($($variant:ident = $byte:literal as $konst:ident),* $(,)?) => {
        /// Type byte of each message. Fixed on the wire: never renumber, only add.
        ///
        /// Free for later use: 3..=9 (generic), 34..=39 (object store and repair),
        /// 49.. (discovery and beyond).
        pub(super) mod ty {
            $(pub const $konst: u8 = $byte;)*
            /// Every type byte, in the order declared.
            #[cfg(test)]
            pub const ALL: &[u8] = &[$($byte),*];
        }

        /// The type byte of a message.
        pub(crate) fn type_of(msg: &Message) -> u8 {
            match msg {
                $(Message::$variant { .. } => ty::$konst,)*
            }
        }

        /// The name of a known type byte, for errors; `None` for an unknown one.
        pub(crate) fn name_of(kind: u8) -> Option<&'static str> {
            Some(match kind {
                $(ty::$konst => stringify!($variant),)*
                _ => return None,
            })
        }
    };
}

message_set! {
    Ack = 1 as ACK,
    Error = 2 as ERROR,
    Ping = 10 as PING,
    Pong = 11 as PONG,
    Route = 12 as ROUTE,
    Routed = 13 as ROUTED,
    JoinHop = 14 as JOIN_HOP,
    JoinState = 15 as JOIN_STATE,
    Announce = 16 as ANNOUNCE,
    Depart = 17 as DEPART,
    Exchange = 18 as EXCHANGE,
    LeafSet = 19 as LEAF_SET,
    Record = 20 as RECORD,
    Chunk = 21 as CHUNK,
    RecordEnd = 22 as RECORD_END,
    Stored = 23 as STORED,
    Get = 24 as GET,
    Delete = 25 as DELETE,
    Deleted = 26 as DELETED,
    Pull = 27 as PULL,
    Holds = 28 as HOLDS,
    Lacking = 29 as LACKING,
    Cell = 30 as CELL,
    CellEntry = 31 as CELL_ENTRY,
    Replicas = 32 as REPLICAS,
    ReplicaSet = 33 as REPLICA_SET,
    Register = 40 as REGISTER,
    Joined = 41 as JOINED,
    Deregister = 42 as DEREGISTER,
    RandomPeer = 43 as RANDOM_PEER,
    Peer = 44 as PEER,
    ListPeers = 45 as LIST_PEERS,
    Peers = 46 as PEERS,
    Alive = 47 as ALIVE,
    Suspect = 48 as SUSPECT,
}

/// Smallest encodings, used to refuse counts the payload cannot hold before allocating.
const ID_LEN: usize = 2;
const NODE_MIN_LEN: usize = ID_LEN + 1 + 4 + 2;

/// Writes the payload of `msg`.
pub(super) fn put_payload(msg: &Message, buf: &mut BytesMut) {
    match msg {
        Message::Ack | Message::Ping | Message::RandomPeer | Message::ListPeers => {}
        Message::Error { code, message } => {
            buf.put_u8(*code as u8);
            put_str(buf, message);
        }
        Message::Pong { node }
        | Message::Announce { node }
        | Message::Register { node }
        | Message::Alive { node }
        | Message::Suspect { node } => put_node(buf, node),
        Message::Route {
            key,
            hops_left,
            budget_ms,
        } => {
            put_id(buf, *key);
            buf.put_u8(*hops_left);
            buf.put_u32(*budget_ms);
        }
        Message::Routed { path, replicas } => {
            put_vec(buf, path, put_node);
            put_vec(buf, replicas, put_node);
        }
        Message::JoinHop { joiner, exclude } => {
            put_node(buf, joiner);
            put_vec(buf, exclude, |b, id| put_id(b, *id));
        }
        Message::JoinState {
            node,
            next,
            rows,
            leaf_set,
        } => {
            put_node(buf, node);
            put_node(buf, next);
            put_vec(buf, rows, put_node);
            put_vec(buf, leaf_set, put_node);
        }
        Message::Depart { node, leaf_set }
        | Message::Exchange { node, leaf_set }
        | Message::LeafSet { node, leaf_set } => {
            put_node(buf, node);
            put_vec(buf, leaf_set, put_node);
        }
        Message::Record(head) => {
            put_bytes(buf, &head.name);
            buf.put_u64(head.size);
            buf.put_u64(head.version);
            buf.put_u64(head.request);
            buf.put_u8(
                u8::from(head.deleted)
                    | u8::from(head.handoff) << 1
                    | u8::from(head.existed) << 2
                    | u8::from(head.relayed) << 3,
            );
        }
        // The data is the rest of the payload: no length needed, no copy to frame it.
        Message::Chunk { data } => buf.put_slice(data),
        Message::RecordEnd { crc } => buf.put_u32(*crc),
        Message::Stored {
            version,
            kept,
            before,
            before_live,
        } => {
            buf.put_u64(*version);
            buf.put_u8(u8::from(*kept));
            buf.put_u64(*before);
            buf.put_u8(u8::from(*before_live));
        }
        Message::Get { name } => put_bytes(buf, name),
        Message::Delete {
            name,
            request,
            relayed,
        } => {
            put_bytes(buf, name);
            buf.put_u64(*request);
            buf.put_u8(u8::from(*relayed));
        }
        Message::Deleted { existed, version } => {
            buf.put_u8(u8::from(*existed));
            buf.put_u64(*version);
        }
        Message::Holds { records } => put_vec(buf, records, |b, (name, version)| {
            put_bytes(b, name);
            b.put_u64(*version);
        }),
        Message::Lacking { older, absent } => {
            put_vec(buf, older, |b, name| put_bytes(b, name));
            put_vec(buf, absent, |b, name| put_bytes(b, name));
        }
        Message::Pull { joiner } => put_node(buf, joiner),
        Message::Joined { id } | Message::Replicas { key: id } => put_id(buf, *id),
        Message::ReplicaSet { nodes } => put_vec(buf, nodes, put_node),
        Message::Deregister { node } => put_node(buf, node),
        Message::Cell { row, col } => buf.put_slice(&[*row, *col]),
        Message::CellEntry { node: peer } | Message::Peer { peer } => match peer {
            None => buf.put_u8(0),
            Some(node) => {
                buf.put_u8(1);
                put_node(buf, node);
            }
        },
        Message::Peers { peers } => put_vec(buf, peers, put_node),
    }
}

/// Writes a string's length (`u16`) and bytes, cut at a character boundary if too long.
fn put_str(buf: &mut BytesMut, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_u16(end as u16);
    buf.put_slice(&s.as_bytes()[..end]);
}

/// Writes a byte string's length (`u32`) and bytes.
fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    // A payload over 4 GiB is refused by every receiver long before this could wrap.
    buf.put_u32(b.len() as u32);
    buf.put_slice(b);
}

fn put_id(buf: &mut BytesMut, id: Id) {
    buf.put_u16(id.0);
}

fn put_node(buf: &mut BytesMut, node: &NodeInfo) {
    put_id(buf, node.id);
    match node.addr {
        SocketAddr::V4(a) => {
            buf.put_u8(4);
            buf.put_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            buf.put_u8(6);
            buf.put_slice(&a.ip().octets());
        }
    }
    buf.put_u16(node.addr.port());
}

fn put_vec<T>(buf: &mut BytesMut, items: &[T], put: impl Fn(&mut BytesMut, &T)) {
    // A Vec in memory never holds 2^32 wire items: each is at least 2 bytes of a payload.
    buf.put_u32(items.len() as u32);
    for item in items {
        put(buf, item);
    }
}

/// Decodes the payload of a frame of type `ty` (named `kind`).
pub(super) fn decode_body(
    ty: u8,
    kind: &'static str,
    payload: &[u8],
) -> Result<Message, WireError> {
    let mut r = Reader { buf: payload, kind };
    // Struct fields are evaluated in the order written, which is the wire order.
    let msg = match ty {
        ty::ACK => Message::Ack,
        ty::ERROR => Message::Error {
            code: r.code()?,
            message: r.string()?,
        },
        ty::PING => Message::Ping,
        ty::PONG => Message::Pong { node: r.node()? },
        ty::ROUTE => Message::Route {
            key: r.id()?,
            hops_left: r.u8()?,
            budget_ms: r.u32()?,
        },
        ty::ROUTED => Message::Routed {
            path: r.vec(NODE_MIN_LEN, Reader::node)?,
            replicas: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        ty::JOIN_HOP => Message::JoinHop {
            joiner: r.node()?,
            exclude: r.vec(ID_LEN, Reader::id)?,
        },
        ty::JOIN_STATE => Message::JoinState {
            node: r.node()?,
            next: r.node()?,
            rows: r.vec(NODE_MIN_LEN, Reader::node)?,
            leaf_set: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        ty::ANNOUNCE => Message::Announce { node: r.node()? },
        ty::DEPART => Message::Depart {
            node: r.node()?,
            leaf_set: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        ty::EXCHANGE => Message::Exchange {
            node: r.node()?,
            leaf_set: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        ty::LEAF_SET => Message::LeafSet {
            node: r.node()?,
            leaf_set: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        ty::RECORD => {
            let (name, size, version, request) = (r.bytes()?, r.u64()?, r.u64()?, r.u64()?);
            let flags = r.flags(0b1111)?;
            Message::Record(RecordHead {
                name,
                size,
                version,
                deleted: flags & 1 != 0,
                handoff: flags & 2 != 0,
                request,
                existed: flags & 4 != 0,
                relayed: flags & 8 != 0,
            })
        }
        ty::RECORD_END => Message::RecordEnd { crc: r.u32()? },
        ty::STORED => Message::Stored {
            version: r.u64()?,
            kept: r.bool()?,
            before: r.u64()?,
            before_live: r.bool()?,
        },
        ty::GET => Message::Get { name: r.bytes()? },
        ty::DELETE => Message::Delete {
            name: r.bytes()?,
            request: r.u64()?,
            relayed: r.bool()?,
        },
        ty::DELETED => Message::Deleted {
            existed: r.bool()?,
            version: r.u64()?,
        },
        ty::HOLDS => Message::Holds {
            records: r.vec(12, |r| Ok((r.bytes()?, r.u64()?)))?,
        },
        ty::LACKING => Message::Lacking {
            older: r.vec(4, Reader::bytes)?,
            absent: r.vec(4, Reader::bytes)?,
        },
        ty::PULL => Message::Pull { joiner: r.node()? },
        ty::REGISTER => Message::Register { node: r.node()? },
        ty::ALIVE => Message::Alive { node: r.node()? },
        ty::SUSPECT => Message::Suspect { node: r.node()? },
        ty::JOINED => Message::Joined { id: r.id()? },
        ty::REPLICAS => Message::Replicas { key: r.id()? },
        ty::REPLICA_SET => Message::ReplicaSet {
            nodes: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        ty::DEREGISTER => Message::Deregister { node: r.node()? },
        ty::RANDOM_PEER => Message::RandomPeer,
        ty::PEER => Message::Peer {
            peer: r.option(Reader::node)?,
        },
        ty::CELL => Message::Cell {
            row: r.u8()?,
            col: r.u8()?,
        },
        ty::CELL_ENTRY => Message::CellEntry {
            node: r.option(Reader::node)?,
        },
        ty::LIST_PEERS => Message::ListPeers,
        ty::PEERS => Message::Peers {
            peers: r.vec(NODE_MIN_LEN, Reader::node)?,
        },
        _ => return Err(WireError::UnknownType(ty)),
    };
    if !r.buf.is_empty() {
        return Err(malformed(kind, "bytes after the message"));
    }
    Ok(msg)
}

/// A cursor over a payload whose reads fail with [`WireError::Malformed`] instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &'static str) -> WireError {
        malformed(self.kind, what)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(self.err("payload ends inside a field"))?;
        self.buf = tail;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err("boolean is neither 0 nor 1")),
        }
    }

    /// A flags byte with no bits outside `known`.
    fn flags(&mut self, known: u8) -> Result<u8, WireError> {
        let f = self.u8()?;
        if f & !known != 0 {
            return Err(self.err("unknown flag bits"));
        }
        Ok(f)
    }

    /// A `u32` length, then that many bytes.
    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        let (bytes, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(self.err("byte string longer than the payload"))?;
        self.buf = tail;
        Ok(bytes.to_vec())
    }

    fn id(&mut self) -> Result<Id, WireError> {
        self.u16().map(Id)
    }

    fn addr(&mut self) -> Result<SocketAddr, WireError> {
        Ok(match self.u8()? {
            4 => {
                let ip = Ipv4Addr::from(self.array::<4>()?);
                SocketAddrV4::new(ip, self.u16()?).into()
            }
            6 => {
                let ip = Ipv6Addr::from(self.array::<16>()?);
                SocketAddrV6::new(ip, self.u16()?, 0, 0).into()
            }
            _ => return Err(self.err("address family is neither 4 nor 6")),
        })
    }

    fn node(&mut self) -> Result<NodeInfo, WireError> {
        Ok(NodeInfo {
            id: self.id()?,
            addr: self.addr()?,
        })
    }

    fn code(&mut self) -> Result<RemoteCode, WireError> {
        let v = self.u8()?;
        RemoteCode::from_u8(v).ok_or(self.err("unknown error code"))
    }

    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        let (bytes, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(self.err("string longer than the payload"))?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("string is not UTF-8"))?;
        self.buf = tail;
        Ok(s.to_owned())
    }

    /// Reads a count then that many items, each at least `min_len` bytes long: a count the
    /// remaining bytes cannot hold is refused before anything is allocated.
    fn vec<T>(
        &mut self,
        min_len: usize,
        item: impl Fn(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        if n.saturating_mul(min_len) > self.buf.len() {
            return Err(self.err("count larger than the payload can hold"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    fn option<T>(
        &mut self,
        item: impl Fn(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => item(self).map(Some),
            _ => Err(self.err("option tag is neither 0 nor 1")),
        }
    }
}
