//! The codecs of the fields messages are made of, each a type naming one encoding of one
//! kind of value: the table of the message set ([`payload`](super::payload)) lists the codec
//! of every field, and the encoder, the decoder and the test examples follow from these.

use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};

use super::super::message::{Message, RecordHead, RemoteCode};
use super::super::WireError;
use super::malformed;
use crate::id::{Id, NodeInfo};
use crate::identity::{Certificate, PublicKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// One encoding of one kind of value.
pub(super) trait Field {
    /// The value's type in [`Message`](super::super::Message).
    type Value;
    /// The fewest bytes an encoded value takes: a list's count is refused when the payload
    /// left cannot hold that many, before anything is allocated.
    const MIN_LEN: usize;
    /// Appends the value.
    fn put(value: &Self::Value, buf: &mut BytesMut);
    /// Reads a value, or says what is wrong with the bytes.
    fn take(r: &mut Reader<'_>) -> Result<Self::Value, WireError>;
    /// A value made from `seed` for the tests: 0 the least (empty), 1 the greatest (full),
    /// others anything in between.
    #[cfg(test)]
    fn example(seed: u64) -> Self::Value;
}

/// A byte.
pub(super) struct U8;
/// A big-endian `u32`.
pub(super) struct U32;
/// A big-endian `u64`.
pub(super) struct U64;
/// A boolean: one byte, 0 or 1.
pub(super) struct Bool;
/// An id: a big-endian `u16`.
pub(super) struct Ident;
/// A node: its id, then its address: a family byte (4 or 6), the address bytes and a
/// `u16` port (IPv6 flow info and scope id are not sent).
pub(super) struct Node;
/// A byte string (an object's name): a `u32` length, then the bytes.
pub(super) struct Name;
/// A human-readable reason: a `u16` length, then UTF-8, cut at a character boundary when
/// longer than `u16::MAX` bytes, so that every message can be encoded and none is misread.
pub(super) struct Text;
/// An error code: its `u8` value.
pub(super) struct Code;
/// A list: a `u32` count, then the items.
pub(super) struct List<C>(PhantomData<C>);
/// An optional value: a tag byte (0 none, 1 some), then the value.
pub(super) struct Maybe<C>(PhantomData<C>);
/// A name and the version held of it.
pub(super) struct NameVersion;
/// A record's head: name, size, version, request, then one byte of flags.
pub(super) struct Head;
/// A chunk's data: the rest of the payload, with no length.
pub(super) struct Rest;
/// A message inside another ([`Message::Vouched`]): its type byte, then its payload, to
/// the end of the outer one. Never a `Vouched` itself, a record or a chunk.
///
/// [`Message::Vouched`]: super::super::Message::Vouched
pub(super) struct Inner;
/// A certificate in a list: as [`Cert`], unboxed (the list is on the heap already).
pub(super) struct CertItem;
/// A public key: its 32 bytes.
pub(super) struct Key;
/// A signature: its 64 bytes.
pub(super) struct Sig;
/// A certificate: the node, its key, the expiry (`u64` milliseconds since the Unix epoch),
/// the authority's key and its signature.
pub(super) struct Cert;

/// Mixes `seed` into a pseudo-random `u64` (test examples).
#[cfg(test)]
fn mix(seed: u64) -> u64 {
    crate::Rng::seeded(seed).next_u64()
}

/// The example of `seed` for a number: 0, the greatest, or anything.
#[cfg(test)]
fn number(seed: u64, max: u64) -> u64 {
    match seed {
        0 => 0,
        1 => max,
        s => mix(s) % max.saturating_add(1).max(1),
    }
}

/// The big-endian unsigned integers: one codec each, alike but for the width.
macro_rules! unsigned {
    ($($codec:ident: $t:ty),*) => {$(
        impl Field for $codec {
            type Value = $t;
            const MIN_LEN: usize = std::mem::size_of::<$t>();
            fn put(value: &$t, buf: &mut BytesMut) {
                buf.put_slice(&value.to_be_bytes());
            }
            fn take(r: &mut Reader<'_>) -> Result<$t, WireError> {
                r.array().map(<$t>::from_be_bytes)
            }
            #[cfg(test)]
            fn example(seed: u64) -> $t {
                number(seed, u64::from(<$t>::MAX)) as $t
            }
        }
    )*};
}

unsigned!(U8: u8, U32: u32, U64: u64);

impl Field for Bool {
    type Value = bool;
    const MIN_LEN: usize = 1;
    fn put(value: &bool, buf: &mut BytesMut) {
        buf.put_u8(u8::from(*value));
    }
    fn take(r: &mut Reader<'_>) -> Result<bool, WireError> {
        match U8::take(r)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(r.err("boolean is neither 0 nor 1")),
        }
    }
    #[cfg(test)]
    fn example(seed: u64) -> bool {
        number(seed, 1) == 1
    }
}

impl Field for Ident {
    type Value = Id;
    const MIN_LEN: usize = 2;
    fn put(value: &Id, buf: &mut BytesMut) {
        buf.put_u16(value.0);
    }
    fn take(r: &mut Reader<'_>) -> Result<Id, WireError> {
        r.array().map(u16::from_be_bytes).map(Id)
    }
    #[cfg(test)]
    fn example(seed: u64) -> Id {
        Id(number(seed, u16::MAX.into()) as u16)
    }
}

impl Field for Node {
    type Value = NodeInfo;
    const MIN_LEN: usize = Ident::MIN_LEN + 1 + 4 + 2;
    fn put(node: &NodeInfo, buf: &mut BytesMut) {
        Ident::put(&node.id, buf);
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
    fn take(r: &mut Reader<'_>) -> Result<NodeInfo, WireError> {
        let id = Ident::take(r)?;
        let addr: SocketAddr = match U8::take(r)? {
            4 => {
                let ip = Ipv4Addr::from(r.array::<4>()?);
                SocketAddrV4::new(ip, r.array().map(u16::from_be_bytes)?).into()
            }
            6 => {
                let ip = Ipv6Addr::from(r.array::<16>()?);
                SocketAddrV6::new(ip, r.array().map(u16::from_be_bytes)?, 0, 0).into()
            }
            _ => return Err(r.err("address family is neither 4 nor 6")),
        };
        Ok(NodeInfo { id, addr })
    }
    #[cfg(test)]
    fn example(seed: u64) -> NodeInfo {
        let port = number(seed, u16::MAX.into()) as u16;
        let addr = match seed {
            0 => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            1 => SocketAddr::from((Ipv6Addr::from(u128::MAX), port)),
            s if mix(s) & 1 == 0 => SocketAddr::from((Ipv4Addr::from(mix(s + 1) as u32), port)),
            s => SocketAddr::from((Ipv6Addr::from(u128::from(mix(s + 1)) << 64), port)),
        };
        NodeInfo {
            id: Ident::example(seed),
            addr,
        }
    }
}

impl Field for Key {
    type Value = PublicKey;
    const MIN_LEN: usize = PUBLIC_KEY_LEN;
    fn put(value: &PublicKey, buf: &mut BytesMut) {
        buf.put_slice(&value.0);
    }
    fn take(r: &mut Reader<'_>) -> Result<PublicKey, WireError> {
        r.array().map(PublicKey)
    }
    #[cfg(test)]
    fn example(seed: u64) -> PublicKey {
        PublicKey(std::array::from_fn(|i| mix(seed + i as u64) as u8))
    }
}

impl Field for Sig {
    // Boxed: messages are moved about, and most carry no signature.
    type Value = Box<[u8; SIGNATURE_LEN]>;
    const MIN_LEN: usize = SIGNATURE_LEN;
    fn put(value: &Box<[u8; SIGNATURE_LEN]>, buf: &mut BytesMut) {
        buf.put_slice(&value[..]);
    }
    fn take(r: &mut Reader<'_>) -> Result<Box<[u8; SIGNATURE_LEN]>, WireError> {
        r.array().map(Box::new)
    }
    #[cfg(test)]
    fn example(seed: u64) -> Box<[u8; SIGNATURE_LEN]> {
        Box::new(std::array::from_fn(|i| mix(seed + 64 + i as u64) as u8))
    }
}

impl Field for Cert {
    // Boxed: a certificate is larger than any other field, and messages are moved about.
    type Value = Box<Certificate>;
    const MIN_LEN: usize = Node::MIN_LEN + 2 * Key::MIN_LEN + U64::MIN_LEN + Sig::MIN_LEN;
    fn put(cert: &Box<Certificate>, buf: &mut BytesMut) {
        CertItem::put(cert, buf);
    }
    fn take(r: &mut Reader<'_>) -> Result<Box<Certificate>, WireError> {
        CertItem::take(r).map(Box::new)
    }
    #[cfg(test)]
    fn example(seed: u64) -> Box<Certificate> {
        Box::new(Certificate {
            node: Node::example(seed),
            key: Key::example(seed),
            expires_ms: U64::example(seed),
            authority: Key::example(seed + 1),
            signature: *Sig::example(seed),
        })
    }
}

impl Field for Inner {
    type Value = Box<Message>;
    const MIN_LEN: usize = 1;
    fn put(msg: &Box<Message>, buf: &mut BytesMut) {
        buf.put_u8(super::type_of(msg));
        super::payload::put_payload(msg, buf);
    }
    fn take(r: &mut Reader<'_>) -> Result<Box<Message>, WireError> {
        let ty = U8::take(r)?;
        if !super::payload::may_be_inner(ty) {
            return Err(r.err("a message that cannot be carried inside another"));
        }
        let kind = super::name_of(ty).ok_or(WireError::UnknownType(ty))?;
        let payload = r.slice(r.buf.len(), "")?;
        super::payload::decode_body(ty, kind, payload).map(Box::new)
    }
    #[cfg(test)]
    fn example(seed: u64) -> Box<Message> {
        Box::new(Message::LeafSet {
            node: Node::example(seed),
            leaf_set: List::<Node>::example(seed),
        })
    }
}

impl Field for CertItem {
    type Value = Certificate;
    const MIN_LEN: usize = Cert::MIN_LEN;
    fn put(cert: &Certificate, buf: &mut BytesMut) {
        Node::put(&cert.node, buf);
        Key::put(&cert.key, buf);
        U64::put(&cert.expires_ms, buf);
        Key::put(&cert.authority, buf);
        buf.put_slice(&cert.signature);
    }
    fn take(r: &mut Reader<'_>) -> Result<Certificate, WireError> {
        Ok(Certificate {
            node: Node::take(r)?,
            key: Key::take(r)?,
            expires_ms: U64::take(r)?,
            authority: Key::take(r)?,
            signature: r.array()?,
        })
    }
    #[cfg(test)]
    fn example(seed: u64) -> Certificate {
        *Cert::example(seed)
    }
}

impl Field for Name {
    type Value = Vec<u8>;
    const MIN_LEN: usize = 4;
    fn put(value: &Vec<u8>, buf: &mut BytesMut) {
        // A payload over 4 GiB is refused by every receiver long before this could wrap.
        buf.put_u32(value.len() as u32);
        buf.put_slice(value);
    }
    fn take(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
        let n = U32::take(r)? as usize;
        r.slice(n, "byte string longer than the payload")
            .map(<[u8]>::to_vec)
    }
    #[cfg(test)]
    fn example(seed: u64) -> Vec<u8> {
        match seed {
            0 => Vec::new(),
            1 => b"../\0x\xff".to_vec(),
            s => (0..mix(s) % 12).map(|i| mix(s + i) as u8).collect(),
        }
    }
}

impl Field for Text {
    type Value = String;
    const MIN_LEN: usize = 2;
    fn put(value: &String, buf: &mut BytesMut) {
        let mut end = value.len().min(usize::from(u16::MAX));
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        buf.put_u16(end as u16);
        buf.put_slice(&value.as_bytes()[..end]);
    }
    fn take(r: &mut Reader<'_>) -> Result<String, WireError> {
        let n = usize::from(r.array().map(u16::from_be_bytes)?);
        let kind = r.kind;
        let bytes = r.slice(n, "string longer than the payload")?;
        let s = std::str::from_utf8(bytes).map_err(|_| malformed(kind, "string is not UTF-8"))?;
        Ok(s.to_owned())
    }
    #[cfg(test)]
    fn example(seed: u64) -> String {
        let chars = ['a', 'é', '€', '😀'];
        let len = match seed {
            0 => 0,
            1 => 300,
            s => mix(s) % 30,
        };
        (0..len)
            .map(|i| chars[(mix(seed + i) % 4) as usize])
            .collect()
    }
}

impl Field for Code {
    type Value = RemoteCode;
    const MIN_LEN: usize = 1;
    fn put(value: &RemoteCode, buf: &mut BytesMut) {
        buf.put_u8(*value as u8);
    }
    fn take(r: &mut Reader<'_>) -> Result<RemoteCode, WireError> {
        let v = U8::take(r)?;
        RemoteCode::from_u8(v).ok_or(r.err("unknown error code"))
    }
    #[cfg(test)]
    fn example(seed: u64) -> RemoteCode {
        // Codes are numbered from 1 with no gaps: the greatest is the last one that exists.
        let last = (1..=u8::MAX)
            .take_while(|v| RemoteCode::from_u8(*v).is_some())
            .last()
            .unwrap_or(1);
        let v = match seed {
            0 => 1,
            1 => last,
            s => 1 + (mix(s) % u64::from(last)) as u8,
        };
        RemoteCode::from_u8(v).unwrap_or(RemoteCode::Internal)
    }
}

impl<C: Field> Field for List<C> {
    type Value = Vec<C::Value>;
    const MIN_LEN: usize = 4;
    fn put(items: &Vec<C::Value>, buf: &mut BytesMut) {
        // A Vec in memory never holds 2^32 wire items: each is at least a byte of a payload.
        buf.put_u32(items.len() as u32);
        for item in items {
            C::put(item, buf);
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Vec<C::Value>, WireError> {
        let n = U32::take(r)? as usize;
        if n.saturating_mul(C::MIN_LEN.max(1)) > r.buf.len() {
            return Err(r.err("count larger than the payload can hold"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(C::take(r)?);
        }
        Ok(out)
    }
    #[cfg(test)]
    fn example(seed: u64) -> Vec<C::Value> {
        match seed {
            0 => Vec::new(),
            1 => vec![C::example(0), C::example(1), C::example(7)],
            s => (0..mix(s) % 5)
                .map(|i| C::example(mix(s + i) | 2))
                .collect(),
        }
    }
}

impl<C: Field> Field for Maybe<C> {
    type Value = Option<C::Value>;
    const MIN_LEN: usize = 1;
    fn put(value: &Option<C::Value>, buf: &mut BytesMut) {
        match value {
            None => buf.put_u8(0),
            Some(v) => {
                buf.put_u8(1);
                C::put(v, buf);
            }
        }
    }
    fn take(r: &mut Reader<'_>) -> Result<Option<C::Value>, WireError> {
        match U8::take(r)? {
            0 => Ok(None),
            1 => C::take(r).map(Some),
            _ => Err(r.err("option tag is neither 0 nor 1")),
        }
    }
    #[cfg(test)]
    fn example(seed: u64) -> Option<C::Value> {
        (seed == 1 || (seed > 1 && mix(seed) & 1 == 1)).then(|| C::example(seed))
    }
}

impl Field for NameVersion {
    type Value = (Vec<u8>, u64);
    const MIN_LEN: usize = Name::MIN_LEN + U64::MIN_LEN;
    fn put((name, version): &(Vec<u8>, u64), buf: &mut BytesMut) {
        Name::put(name, buf);
        U64::put(version, buf);
    }
    fn take(r: &mut Reader<'_>) -> Result<(Vec<u8>, u64), WireError> {
        Ok((Name::take(r)?, U64::take(r)?))
    }
    #[cfg(test)]
    fn example(seed: u64) -> (Vec<u8>, u64) {
        (Name::example(seed), U64::example(seed))
    }
}

/// The flag bits of a record's head.
const DELETED: u8 = 1;
const HANDOFF: u8 = 2;
const EXISTED: u8 = 4;
const RELAYED: u8 = 8;
const DIRECT: u8 = 16;

impl Field for Head {
    type Value = RecordHead;
    const MIN_LEN: usize = Name::MIN_LEN + 3 * U64::MIN_LEN + 1;
    fn put(head: &RecordHead, buf: &mut BytesMut) {
        Name::put(&head.name, buf);
        buf.put_u64(head.size);
        buf.put_u64(head.version);
        buf.put_u64(head.request);
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        buf.put_u8(
            flag(head.deleted, DELETED)
                | flag(head.handoff, HANDOFF)
                | flag(head.existed, EXISTED)
                | flag(head.relayed, RELAYED)
                | flag(head.direct, DIRECT),
        );
    }
    fn take(r: &mut Reader<'_>) -> Result<RecordHead, WireError> {
        let (name, size, version, request) =
            (Name::take(r)?, U64::take(r)?, U64::take(r)?, U64::take(r)?);
        let flags = U8::take(r)?;
        if flags & !(DELETED | HANDOFF | EXISTED | RELAYED | DIRECT) != 0 {
            return Err(r.err("unknown flag bits"));
        }
        Ok(RecordHead {
            name,
            size,
            version,
            deleted: flags & DELETED != 0,
            handoff: flags & HANDOFF != 0,
            request,
            existed: flags & EXISTED != 0,
            relayed: flags & RELAYED != 0,
            direct: flags & DIRECT != 0,
        })
    }
    #[cfg(test)]
    fn example(seed: u64) -> RecordHead {
        let bit = |b: u64| Bool::example(if seed < 2 { seed } else { mix(seed + b) | 2 });
        RecordHead {
            name: Name::example(seed),
            size: U64::example(seed),
            version: U64::example(seed),
            deleted: bit(1),
            handoff: bit(2),
            request: U64::example(seed),
            existed: bit(3),
            relayed: bit(4),
            direct: bit(5),
        }
    }
}

impl Field for Rest {
    type Value = bytes::Bytes;
    const MIN_LEN: usize = 0;
    fn put(value: &bytes::Bytes, buf: &mut BytesMut) {
        buf.put_slice(value);
    }
    fn take(r: &mut Reader<'_>) -> Result<bytes::Bytes, WireError> {
        let rest = r.slice(r.buf.len(), "")?;
        Ok(bytes::Bytes::copy_from_slice(rest))
    }
    #[cfg(test)]
    fn example(seed: u64) -> bytes::Bytes {
        bytes::Bytes::from(Name::example(seed))
    }
}

/// A cursor over a payload whose reads fail with [`WireError::Malformed`] instead of panicking.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of the payload of a message named `kind`.
    pub(super) fn new(buf: &'a [u8], kind: &'static str) -> Reader<'a> {
        Reader { buf, kind }
    }

    /// Whether every byte was read.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

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

    /// The next `n` bytes; `what` if there are fewer.
    fn slice(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let (bytes, tail) = self.buf.split_at_checked(n).ok_or(self.err(what))?;
        self.buf = tail;
        Ok(bytes)
    }
}
