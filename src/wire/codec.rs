//! Encoding and decoding of frames (layout in the [module docs](super)). Long because the
//! encoder, the decoder and their tests (a sample of every message, every malformed payload)
//! sit together; declaring the message set once will let it split.
//!
//! Payload fields are big-endian: an [`Id`] is a `u16`; a `Vec` is a `u32` count then its items;
//! a `String` is a `u16` byte length then UTF-8; an `Option` is a `u8` tag (0 none, 1 some) then
//! the value; a [`SocketAddr`] is a `u8` family (4 or 6), 4 or 16 address bytes and a `u16` port
//! (IPv6 flow info and scope id are not sent); a [`RemoteCode`] is its `u8` value.
//!
//! A string longer than `u16::MAX` bytes (only ever an error's reason) is cut at a character
//! boundary, so every message can be encoded and none is misread.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::message::{Message, RecordHead, RemoteCode};
use super::{WireError, HEADER_LEN, MAGIC, TRAILER_LEN, VERSION};
use crate::id::{Id, NodeInfo};
use bytes::Bytes;

// CRC-32 over header and payload.
use crate::checksum::{crc32, Crc32Digest};

/// The message set, declared once: each message's type byte, constant and variant. The type
/// bytes, [`type_of`], [`name_of`] and the list of every type derive from it.
macro_rules! message_set {
    ($($variant:ident = $byte:literal as $konst:ident),* $(,)?) => {
        /// Type byte of each message. Fixed on the wire: never renumber, only add.
        ///
        /// Free for later use: 3..=9 (generic), 34..=39 (object store and repair),
        /// 48.. (discovery and beyond).
        mod ty {
            $(pub const $konst: u8 = $byte;)*
            /// Every type byte, in the order declared.
            #[cfg(test)]
            pub const ALL: &[u8] = &[$($byte),*];
        }

        /// The type byte of a message.
        pub(super) fn type_of(msg: &Message) -> u8 {
            match msg {
                $(Message::$variant { .. } => ty::$konst,)*
            }
        }

        /// The name of a known type byte, for errors; `None` for an unknown one.
        pub(super) fn name_of(kind: u8) -> Option<&'static str> {
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
}

/// Smallest encodings, used to refuse counts the payload cannot hold before allocating.
const ID_LEN: usize = 2;
const NODE_MIN_LEN: usize = ID_LEN + 1 + 4 + 2;

/// The parsed fixed-size start of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message type byte (known to this build).
    pub kind: u8,
    /// The payload length in bytes (at most the configured maximum).
    pub len: u32,
}

/// Appends one whole frame for `msg` to `buf` (header, payload, CRC-32).
///
pub fn encode(msg: &Message, buf: &mut BytesMut) {
    encode_with(type_of(msg), buf, |buf| put_payload(msg, buf));
}

/// Appends a [`Message::Chunk`] frame carrying `data`, straight from the slice: the data is
/// copied once, into the frame.
pub fn encode_chunk(data: &[u8], buf: &mut BytesMut) {
    encode_with(ty::CHUNK, buf, |buf| buf.put_slice(data));
}

/// The bytes before and after `data` in its chunk frame, so that a large chunk can be written
/// from where it lies (a vectored write) rather than copied into a frame first.
pub fn chunk_frame_parts(data: &[u8]) -> ([u8; HEADER_LEN], [u8; TRAILER_LEN]) {
    let mut header = [MAGIC, VERSION, ty::CHUNK, 0, 0, 0, 0];
    // Payloads are bounded by the configured maximum (far below 4 GiB) on every receiver.
    header[3..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = Crc32Digest::new();
    crc.update(&header);
    crc.update(data);
    (header, crc.finalize().to_be_bytes())
}

/// Appends a frame of type `kind` whose payload `payload` writes.
fn encode_with(kind: u8, buf: &mut BytesMut, payload: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_slice(&[MAGIC, VERSION, kind]);
    buf.put_u32(0); // length, patched below once the payload is written
    let body = buf.len();
    payload(buf);
    // Payloads are bounded by the configured maximum (far below 4 GiB) on every receiver.
    let len = (buf.len() - body) as u32;
    buf[start + 3..body].copy_from_slice(&len.to_be_bytes());
    let crc = crc32(&buf[start..]);
    buf.put_u32(crc);
}

/// Writes the payload of `msg`.
fn put_payload(msg: &Message, buf: &mut BytesMut) {
    match msg {
        Message::Ack | Message::Ping | Message::RandomPeer | Message::ListPeers => {}
        Message::Error { code, message } => {
            buf.put_u8(*code as u8);
            put_str(buf, message);
        }
        Message::Pong { node }
        | Message::Announce { node }
        | Message::Register { node }
        | Message::Alive { node } => put_node(buf, node),
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

/// Parses the first [`HEADER_LEN`] bytes of a frame.
///
/// Checks, in order, the magic, the version, that the type is known and that the length is at
/// most `max_payload` ([`WireError::TooLarge`]), so a reader can refuse a frame before reading or
/// allocating its body.
pub fn decode_header(
    header: &[u8; HEADER_LEN],
    max_payload: u32,
) -> Result<FrameHeader, WireError> {
    let [magic, version, kind, l0, l1, l2, l3] = *header;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    if name_of(kind).is_none() {
        return Err(WireError::UnknownType(kind));
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if len > max_payload {
        return Err(WireError::TooLarge {
            len,
            max: max_payload,
        });
    }
    Ok(FrameHeader { kind, len })
}

/// Decodes the body of a frame: `rest` is exactly the `len` payload bytes the header declares
/// followed by the [`TRAILER_LEN`] CRC bytes.
///
/// Re-checks the header, then the CRC (over header and payload), then decodes the payload. A
/// short `rest` gives [`WireError::Truncated`] (counted over the whole frame, header included);
/// a longer one, or payload bytes left after the message, gives [`WireError::Malformed`].
pub fn decode_payload(
    header: &[u8; HEADER_LEN],
    rest: &[u8],
    max_payload: u32,
) -> Result<Message, WireError> {
    Ok(match decode_frame_body(header, rest, max_payload)? {
        Body::Chunk(data) => Message::Chunk {
            data: Bytes::copy_from_slice(data),
        },
        Body::Message(msg) => msg,
    })
}

/// A decoded frame body: a chunk's data borrowed from the frame, or any other message.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The data of a [`Message::Chunk`], not copied out of the frame.
    Chunk(&'a [u8]),
    /// Any other message.
    Message(Message),
}

/// [`decode_payload`] without copying a chunk's data: the receiving end of a streamed record
/// hands it straight on.
pub fn decode_frame_body<'a>(
    header: &[u8; HEADER_LEN],
    rest: &'a [u8],
    max_payload: u32,
) -> Result<Body<'a>, WireError> {
    let h = decode_header(header, max_payload)?;
    let kind = name_of(h.kind).unwrap_or("unknown"); // always known: decode_header checked it
    let needed = frame_len(h.len as usize);
    let have = rest.len().saturating_add(HEADER_LEN);
    if have < needed {
        return Err(WireError::Truncated { needed, have });
    }
    if have > needed {
        return Err(malformed(kind, "bytes after the frame's checksum"));
    }
    // Cannot fail after the checks above; `split_last_chunk` keeps this total all the same.
    let Some((payload, crc)) = rest.split_last_chunk::<TRAILER_LEN>() else {
        return Err(WireError::Truncated { needed, have });
    };
    let expected = u32::from_be_bytes(*crc);
    let mut digest = Crc32Digest::new();
    digest.update(header);
    digest.update(payload);
    let actual = digest.finalize();
    if expected != actual {
        return Err(WireError::BadChecksum { expected, actual });
    }
    if h.kind == ty::CHUNK {
        return Ok(Body::Chunk(payload));
    }
    decode_body(h.kind, kind, payload).map(Body::Message)
}

/// Decodes one frame from the front of `input`: the message and the number of bytes the frame
/// used (bytes after it are left alone).
///
/// Input that ends inside the frame gives [`WireError::Truncated`]; a header that declares more
/// than `max_payload` gives [`WireError::TooLarge`] even when the body is missing.
pub fn decode(input: &[u8], max_payload: u32) -> Result<(Message, usize), WireError> {
    let have = input.len();
    let Some(header) = input.first_chunk::<HEADER_LEN>() else {
        return Err(WireError::Truncated {
            needed: HEADER_LEN,
            have,
        });
    };
    let h = decode_header(header, max_payload)?;
    let needed = frame_len(h.len as usize);
    let Some(rest) = input.get(HEADER_LEN..needed) else {
        return Err(WireError::Truncated { needed, have });
    };
    decode_payload(header, rest, max_payload).map(|msg| (msg, needed))
}

/// Whole-frame length for a payload length; saturates so 32-bit targets cannot overflow.
fn frame_len(payload: usize) -> usize {
    payload.saturating_add(HEADER_LEN + TRAILER_LEN)
}

fn malformed(kind: &'static str, what: &'static str) -> WireError {
    WireError::Malformed { kind, what }
}

/// Decodes the payload of a frame of type `ty` (named `kind`).
fn decode_body(ty: u8, kind: &'static str, payload: &[u8]) -> Result<Message, WireError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DEFAULT_MAX_PAYLOAD as MAX;

    fn node(id: u16, addr: &str) -> NodeInfo {
        NodeInfo {
            id: Id(id),
            addr: addr.parse().unwrap(),
        }
    }

    fn frame(msg: &Message) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode(msg, &mut buf);
        buf.to_vec()
    }

    /// A frame of type `kind` around `payload`, with a correct length and CRC.
    fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![MAGIC, VERSION, kind];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.extend_from_slice(&crc32(&f).to_be_bytes());
        f
    }

    /// Every variant, with empty and full vecs, IPv4 and IPv6, ids 0000 and ffff, every code.
    #[rustfmt::skip] // a table: one message a line reads better
    fn samples() -> Vec<Message> {
        use Message as M;
        let a = node(0x0000, "10.0.0.1:4000");
        let b = node(0xffff, "[2001:db8::7]:65535");
        let c = node(0x3a7f, "0.0.0.0:0");
        let mut v = vec![M::Ack, M::Ping, M::RandomPeer, M::ListPeers, M::Peer { peer: None }];
        for code in (1..=10).map(|c| RemoteCode::from_u8(c).unwrap()) {
            v.push(M::Error { code, message: String::new() });
            v.push(M::Error { code, message: "id 3a7f in use — ça".into() });
        }
        for n in [a, b] {
            v.extend([M::Pong { node: n }, M::Announce { node: n }, M::Register { node: n }]);
            v.push(M::Peer { peer: Some(n) });
        }
        v.extend([
            M::Route { key: Id(0), hops_left: 0, budget_ms: 0 },
            M::Route { key: Id(0xffff), hops_left: 255, budget_ms: u32::MAX },
            M::Routed { path: vec![], replicas: vec![] },
            M::Routed { path: vec![a, b, c], replicas: vec![b] },
            M::JoinHop { joiner: b, exclude: vec![] },
            M::JoinHop { joiner: a, exclude: vec![Id(0x1234)] },
            M::JoinState { node: a, next: a, rows: vec![], leaf_set: vec![] },
            M::JoinState { node: b, next: c, rows: vec![a, b], leaf_set: vec![c] },
            M::Depart { node: c, leaf_set: vec![] },
            M::Depart { node: c, leaf_set: vec![a, b, c] },
            M::Joined { id: Id(0) },
            M::Joined { id: Id(0xffff) },
            M::Deregister { node: node(0x00ff, "[::1]:7") },
            M::Peers { peers: vec![] },
            M::Peers { peers: vec![a, b, c] },
            M::Record(RecordHead { name: vec![], size: 0, version: 0, deleted: false, handoff: false, request: 0, existed: false, relayed: false }),
            M::Record(RecordHead { name: b"../\0x".to_vec(), size: u64::MAX, version: 7, deleted: true, handoff: true, request: u64::MAX, existed: true, relayed: true }),
            M::Chunk { data: Bytes::new() },
            M::Chunk { data: Bytes::from_static(&[0, 1, 2, 255]) },
            M::RecordEnd { crc: 0xdead_beef },
            M::Stored { version: u64::MAX, kept: false, before: u64::MAX, before_live: true },
            M::Stored { version: 1, kept: true, before: 0, before_live: false },
            M::Holds { records: vec![] },
            M::Holds { records: vec![(b"x".to_vec(), 7), (vec![], u64::MAX)] },
            M::Lacking { older: vec![], absent: vec![] },
            M::Lacking { older: vec![b"a/b".to_vec(), vec![]], absent: vec![b"c".to_vec()] },
            M::Get { name: b"hello.txt".to_vec() },
            M::Delete { name: vec![0xff; 300], request: 9, relayed: true },
            M::Deleted { existed: true, version: 3 },
            M::Deleted { existed: false, version: 0 },
            M::Pull { joiner: b },
            M::Exchange { node: a, leaf_set: vec![] },
            M::Alive { node: c },
            M::Cell { row: 3, col: 15 },
            M::Replicas { key: Id(0xbeef) },
            M::ReplicaSet { nodes: vec![] },
            M::ReplicaSet { nodes: vec![a, b] },
            M::CellEntry { node: None },
            M::CellEntry { node: Some(b) },
            M::LeafSet { node: b, leaf_set: vec![a, c] },
        ]);
        v
    }

    fn check_round_trip(msg: &Message) {
        let f = frame(msg);
        assert_eq!(decode(&f, MAX), Ok((msg.clone(), f.len())), "{msg:?}");
        let header: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
        let h = decode_header(header, MAX).unwrap();
        assert_eq!(
            (h.kind, h.len as usize),
            (type_of(msg), f.len() - HEADER_LEN - TRAILER_LEN)
        );
        assert_eq!(
            decode_payload(header, &f[HEADER_LEN..], MAX).as_ref(),
            Ok(msg)
        );
    }

    #[test]
    fn the_message_set_is_declared_once_and_every_type_has_a_sample() {
        let mut declared = std::collections::BTreeSet::new();
        for &kind in ty::ALL {
            assert!(declared.insert(kind), "type byte {kind} declared twice");
            assert!(name_of(kind).is_some(), "type byte {kind} has no name");
        }
        let sampled: std::collections::BTreeSet<u8> = samples().iter().map(type_of).collect();
        assert_eq!(
            sampled, declared,
            "every type, and only those, has a sample"
        );
        assert_eq!(name_of(3), None);
        assert_eq!(
            Message::LeafSet {
                node: node(1, "1.2.3.4:5"),
                leaf_set: vec![]
            }
            .name(),
            "LeafSet"
        );
    }

    #[test]
    fn round_trip_every_variant() {
        let samples = samples();
        let mut seen: Vec<u8> = samples.iter().map(type_of).collect();
        seen.sort_unstable();
        seen.dedup();
        let known: Vec<u8> = (0..=255).filter(|&t| name_of(t).is_some()).collect();
        assert_eq!(seen, known, "samples must cover every message type");
        let mut stream = BytesMut::new();
        for m in &samples {
            check_round_trip(m);
            encode(m, &mut stream);
        }
        // Back-to-back frames: each decode consumes exactly its own frame.
        let mut rest = &stream[..];
        for m in &samples {
            let (got, used) = decode(rest, MAX).unwrap();
            assert_eq!(&got, m);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
    }

    /// splitmix64: a tiny deterministic generator for the randomised tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn node(&mut self) -> NodeInfo {
            let (id, port, bits) = (self.next() as u16, self.next() as u16, self.next());
            let addr = if bits & 1 == 0 {
                SocketAddr::from((Ipv4Addr::from(bits as u32), port))
            } else {
                SocketAddr::from((
                    Ipv6Addr::from(u128::from(bits) * u128::from(self.next())),
                    port,
                ))
            };
            NodeInfo { id: Id(id), addr }
        }
        fn nodes(&mut self) -> Vec<NodeInfo> {
            (0..self.below(20)).map(|_| self.node()).collect()
        }
        fn bytes(&mut self) -> Vec<u8> {
            (0..self.below(40)).map(|_| self.next() as u8).collect()
        }
        fn ids(&mut self) -> Vec<Id> {
            (0..self.below(20))
                .map(|_| Id(self.next() as u16))
                .collect()
        }
        #[rustfmt::skip] // a table: one variant a line reads better
        fn message(&mut self) -> Message {
            use Message as M;
            match self.below(34) {
                0 => M::Ack,
                1 => M::Error {
                    code: RemoteCode::from_u8(1 + self.below(12) as u8).unwrap(),
                    message: (0..self.below(30))
                        .map(|_| ['a', 'é', '€', '😀'][self.below(4) as usize])
                        .collect(),
                },
                2 => M::Ping,
                3 => M::Pong { node: self.node() },
                4 => M::Route {
                    key: Id(self.next() as u16),
                    hops_left: self.next() as u8,
                    budget_ms: self.next() as u32,
                },
                5 => M::Routed { path: self.nodes(), replicas: self.nodes() },
                6 => M::JoinHop { joiner: self.node(), exclude: self.ids() },
                7 => M::JoinState {
                    node: self.node(), next: self.node(),
                    rows: self.nodes(), leaf_set: self.nodes(),
                },
                8 => M::Announce { node: self.node() },
                9 => M::Depart { node: self.node(), leaf_set: self.nodes() },
                10 => M::Register { node: self.node() },
                11 => M::Joined { id: Id(self.next() as u16) },
                12 => M::Deregister { node: self.node() },
                13 => M::RandomPeer,
                14 => M::Peer { peer: (self.next() & 1 == 1).then(|| self.node()) },
                15 => M::ListPeers,
                16 => M::Peers { peers: self.nodes() },
                17 => M::Record(RecordHead {
                    name: self.bytes(), size: self.next(), version: self.next(),
                    deleted: self.next() & 1 == 1, handoff: self.next() & 1 == 1,
                    request: self.next(), existed: self.next() & 1 == 1, relayed: self.next() & 1 == 1,
                }),
                18 => M::Chunk { data: Bytes::from(self.bytes()) },
                19 => M::RecordEnd { crc: self.next() as u32 },
                20 => M::Stored {
                    version: self.next(), kept: self.next() & 1 == 1,
                    before: self.next(), before_live: self.next() & 1 == 1,
                },
                21 => M::Get { name: self.bytes() },
                22 => M::Delete { name: self.bytes(), request: self.next(), relayed: self.next() & 1 == 1 },
                23 => M::Deleted { existed: self.next() & 1 == 1, version: self.next() },
                24 => M::Pull { joiner: self.node() },
                25 => M::Exchange { node: self.node(), leaf_set: self.nodes() },
                26 => M::Alive { node: self.node() },
                27 => M::Holds { records: (0..self.below(5)).map(|_| (self.bytes(), self.next())).collect() },
                28 => M::Lacking {
                    older: (0..self.below(5)).map(|_| self.bytes()).collect(),
                    absent: (0..self.below(5)).map(|_| self.bytes()).collect(),
                },
                29 => M::Cell { row: self.next() as u8, col: self.next() as u8 },
                30 => M::CellEntry { node: (self.next() & 1 == 1).then(|| self.node()) },
                31 => M::Replicas { key: Id(self.next() as u16) },
                32 => M::ReplicaSet { nodes: self.nodes() },
                _ => M::LeafSet { node: self.node(), leaf_set: self.nodes() },
            }
        }
    }

    #[test]
    fn random_round_trip() {
        let mut rng = Rng(0x5eed);
        for _ in 0..2000 {
            check_round_trip(&rng.message());
        }
    }

    #[test]
    fn every_strict_prefix_is_truncated() {
        for m in samples() {
            let f = frame(&m);
            for k in 0..f.len() {
                let needed = if k < HEADER_LEN { HEADER_LEN } else { f.len() };
                assert_eq!(
                    decode(&f[..k], MAX),
                    Err(WireError::Truncated { needed, have: k })
                );
            }
        }
    }

    #[test]
    fn oversized_is_refused_from_the_header_alone() {
        for (len, max) in [(101, 100), (u32::MAX, MAX), (1, 0)] {
            let mut h = [MAGIC, VERSION, ty::PEERS, 0, 0, 0, 0];
            h[3..].copy_from_slice(&len.to_be_bytes());
            let err = WireError::TooLarge { len, max };
            assert_eq!(decode_header(&h, max), Err(err.clone()));
            assert_eq!(decode(&h, max), Err(err.clone()));
            assert_eq!(decode_payload(&h, &[], max), Err(err));
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        for m in samples() {
            let f = frame(&m);
            for bit in 0..f.len() * 8 {
                let mut g = f.clone();
                g[bit / 8] ^= 1 << (bit % 8);
                let got = decode(&g, MAX);
                if bit >= HEADER_LEN * 8 {
                    assert!(
                        matches!(got, Err(WireError::BadChecksum { .. })),
                        "{m:?} bit {bit}: {got:?}"
                    );
                } else {
                    assert!(got.is_err(), "{m:?} bit {bit}: {got:?}");
                }
            }
        }
    }

    #[test]
    fn an_overlong_reason_is_cut_at_a_character_boundary() {
        let message = "é".repeat(40_000); // 80,000 bytes, two per character
        let (got, _) = decode(
            &frame(&Message::Error {
                code: RemoteCode::Internal,
                message,
            }),
            MAX,
        )
        .unwrap();
        let Message::Error { message, .. } = got else {
            panic!("{got:?}")
        };
        assert_eq!(message, "é".repeat(32_767));
    }

    #[test]
    fn chunk_frame_parts_frame_the_data_as_encode_chunk_does() {
        for len in [0, 1, 1000, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut whole = BytesMut::new();
            encode_chunk(&data, &mut whole);
            let (header, trailer) = chunk_frame_parts(&data);
            assert_eq!(whole[..], [&header[..], &data, &trailer].concat()[..]);
        }
    }

    #[test]
    fn bad_header_fields_have_typed_errors() {
        let f = raw_frame(3, &[]);
        let h: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
        assert_eq!(decode_header(h, MAX), Err(WireError::UnknownType(3)));
        assert_eq!(decode(&f, MAX), Err(WireError::UnknownType(3)));
        let mut f = frame(&Message::Ping);
        f[1] = VERSION + 1;
        assert_eq!(decode(&f, MAX), Err(WireError::BadVersion(VERSION + 1)));
        f[0] = 0x51;
        assert_eq!(decode(&f, MAX), Err(WireError::BadMagic(0x51)));
    }

    #[test]
    #[rustfmt::skip] // a table: one case a line reads better
    fn malformed_payloads_with_valid_crc() {
        let v4 = [0x12, 0x34, 4, 127, 0, 0, 1, 0x1f, 0x90];
        let v5 = [0x12, 0x34, 5, 127, 0, 0, 1, 0x1f, 0x90];
        let count = "count larger than the payload can hold";
        let cases: &[(u8, &str, &str, Vec<u8>)] = &[
            (ty::PEER, "Peer", "option tag is neither 0 nor 1", [&[2][..], &v4].concat()),
            (ty::PONG, "Pong", "address family is neither 4 nor 6", v5.to_vec()),
            (ty::ERROR, "Error", "string is not UTF-8", vec![1, 0, 2, 0xff, 0xfe]),
            (ty::ERROR, "Error", "string longer than the payload", vec![1, 0, 9, b'x']),
            (ty::PEERS, "Peers", count, [&[0, 0, 0x03, 0xe8][..], &v4, &v4].concat()),
            (ty::ROUTED, "Routed", count, vec![0, 0, 0, 2, 0, 1]),
            (ty::PING, "Ping", "bytes after the message", vec![0]),
            (ty::JOINED, "Joined", "bytes after the message", vec![0, 1, 2]),
            (ty::JOINED, "Joined", "payload ends inside a field", vec![0]),
            (ty::ERROR, "Error", "unknown error code", vec![13, 0, 0]),
            (ty::ERROR, "Error", "unknown error code", vec![0, 0, 0]),
            (ty::RECORD, "Record", "unknown flag bits", [&[0, 0, 0, 0][..], &[0; 24], &[16]].concat()),
            (ty::STORED, "Stored", "boolean is neither 0 nor 1", [&[0; 8][..], &[2]].concat()),
            (ty::GET, "Get", "byte string longer than the payload", vec![0, 0, 0, 9, b'x']),
        ];
        for (t, kind, what, payload) in cases {
            let got = decode(&raw_frame(*t, payload), MAX);
            assert_eq!(got, Err(WireError::Malformed { kind, what }), "{payload:?}");
        }
        // Bytes past the checksum handed to decode_payload are refused too.
        let f = [frame(&Message::Ack), vec![0]].concat();
        let h: &[u8; HEADER_LEN] = f.first_chunk().unwrap();
        assert!(matches!(
            decode_payload(h, &f[HEADER_LEN..], MAX),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Rng(42);
        let (mut ok, mut err) = (0, 0);
        let known: Vec<u8> = (0..=255).filter(|&t| name_of(t).is_some()).collect();
        for _ in 0..20_000 {
            let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
            let got = decode(&bytes, MAX);
            if bytes.first() != Some(&MAGIC) {
                assert!(got.is_err());
            }
            // Same bytes as the payload of a frame with a valid header and CRC; short payloads
            // so that some of them parse.
            let kind = known[rng.below(known.len() as u64) as usize];
            let payload = &bytes[..bytes.len().min(rng.below(30) as usize)];
            let f = raw_frame(kind, payload);
            match decode(&f, MAX) {
                // Every field has one encoding, so whatever decodes re-encodes to the same bytes.
                Ok((m, used)) => {
                    assert_eq!((frame(&m), used), (f.clone(), f.len()));
                    ok += 1;
                }
                Err(_) => err += 1,
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
    }
}
