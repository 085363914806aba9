//! The message set, declared once: each message's type byte, name and fields with the codec
//! of each ([`fields`](super::fields)). The type bytes, [`type_of`], [`name_of`], the
//! encoder, the decoder and, for the tests, a sample of every message all derive from the
//! one table below. Decoding is total: any bytes give a message or a [`WireError`].

use bytes::BytesMut;

use super::super::message::Message;
use super::super::WireError;
use super::fields::{
    Bool, Cert, CertItem, Code, Field, Head, Ident, Inner, Key, List, Maybe, Name, NameVersion,
    Node, Rest, Sig, Text, U32, U64, U8,
};
use super::malformed;

/// Declares the message set: `Variant = type byte as CONSTANT { field: Codec, ... }`, with
/// the fields in wire order; the one tuple variant, `Record`, is written `(Codec)`.
macro_rules! message_set {
    (
        $($variant:ident = $byte:literal as $konst:ident { $($field:ident : $codec:ty),* }),*
        ;
        $tuple:ident = $tbyte:literal as $tkonst:ident ($tcodec:ty)
    ) => {
        /// Type byte of each message. Fixed on the wire: never renumber, only add.
        ///
        /// Free for later use: 8..=9 (generic), 34..=39 (object store and repair),
        /// 54.. (discovery and beyond).
        pub(super) mod ty {
            $(pub const $konst: u8 = $byte;)*
            pub const $tkonst: u8 = $tbyte;
            /// Every type byte, in the order declared.
            #[cfg(test)]
            pub const ALL: &[u8] = &[$($byte,)* $tbyte];
        }

        /// The type byte of a message.
        pub(crate) fn type_of(msg: &Message) -> u8 {
            match msg {
                $(Message::$variant { .. } => ty::$konst,)*
                Message::$tuple(_) => ty::$tkonst,
            }
        }

        /// The name of a known type byte, for errors; `None` for an unknown one.
        pub(crate) fn name_of(kind: u8) -> Option<&'static str> {
            Some(match kind {
                $(ty::$konst => stringify!($variant),)*
                ty::$tkonst => stringify!($tuple),
                _ => return None,
            })
        }

        /// Writes the payload of `msg`: its fields in the order declared.
        pub(super) fn put_payload(msg: &Message, buf: &mut BytesMut) {
            match msg {
                $(Message::$variant { $($field),* } => {
                    $(<$codec as Field>::put($field, buf);)*
                })*
                Message::$tuple(value) => <$tcodec as Field>::put(value, buf),
            }
        }

        /// Decodes the payload of a frame of type `ty` (named `kind`).
        pub(super) fn decode_body(
            ty: u8,
            kind: &'static str,
            payload: &[u8],
        ) -> Result<Message, WireError> {
            let mut r = super::fields::Reader::new(payload, kind);
            // Struct fields are evaluated in the order written, which is the wire order.
            let msg = match ty {
                $(ty::$konst => Message::$variant {
                    $($field: <$codec as Field>::take(&mut r)?,)*
                },)*
                ty::$tkonst => Message::$tuple(<$tcodec as Field>::take(&mut r)?),
                _ => return Err(WireError::UnknownType(ty)),
            };
            if !r.is_empty() {
                return Err(malformed(kind, "bytes after the message"));
            }
            Ok(msg)
        }

        /// A message of every type, its fields made from `seed` (0: the least values and
        /// empty lists, 1: the greatest and full ones, others: anything in between).
        #[cfg(test)]
        pub(super) fn examples(seed: u64) -> Vec<Message> {
            let mut seed = seed;
            let mut next = move || {
                let s = seed;
                seed = if s < 2 { s } else { crate::Rng::seeded(s).next_u64() | 2 };
                s
            };
            vec![
                $(Message::$variant { $($field: <$codec as Field>::example(next()),)* },)*
                Message::$tuple(<$tcodec as Field>::example(next())),
            ]
        }
    };
}

message_set! {
    Ack = 1 as ACK {},
    Error = 2 as ERROR { code: Code, message: Text },
    Credit = 3 as CREDIT { bytes: U32 },
    Cancel = 4 as CANCEL {},
    Hello = 5 as HELLO { node: Node, key: Key, cert: Maybe<Cert>, proof: Sig },
    Certified = 6 as CERTIFIED { cert: Cert },
    Vouched = 7 as VOUCHED { certs: List<CertItem>, message: Inner },
    Ping = 10 as PING {},
    Pong = 11 as PONG { node: Node, key: Key },
    Route = 12 as ROUTE { key: Ident, hops_left: U8, budget_ms: U32 },
    Routed = 13 as ROUTED { path: List<Node>, replicas: List<Node> },
    JoinHop = 14 as JOIN_HOP { joiner: Node, exclude: List<Ident> },
    JoinState = 15 as JOIN_STATE {
        node: Node, next: Node, rows: List<Node>, leaf_set: List<Node>
    },
    Announce = 16 as ANNOUNCE { node: Node },
    Depart = 17 as DEPART { node: Node, leaf_set: List<Node> },
    Exchange = 18 as EXCHANGE { node: Node, leaf_set: List<Node> },
    LeafSet = 19 as LEAF_SET { node: Node, leaf_set: List<Node> },
    // The data is the rest of the payload: no length needed, no copy to frame it.
    Chunk = 21 as CHUNK { data: Rest },
    RecordEnd = 22 as RECORD_END { crc: U32 },
    Stored = 23 as STORED {
        version: U64, kept: Bool, before: U64, before_live: Bool
    },
    Get = 24 as GET { name: Name, direct: Bool },
    Delete = 25 as DELETE { name: Name, request: U64, relayed: Bool, direct: Bool },
    Deleted = 26 as DELETED { existed: Bool, version: U64 },
    Pull = 27 as PULL { joiner: Node },
    Holds = 28 as HOLDS { records: List<NameVersion> },
    Lacking = 29 as LACKING { older: List<Name>, absent: List<Name> },
    Cell = 30 as CELL { row: U8, col: U8 },
    CellEntry = 31 as CELL_ENTRY { node: Maybe<Node> },
    Replicas = 32 as REPLICAS { key: Ident },
    ReplicaSet = 33 as REPLICA_SET { nodes: List<Node> },
    Register = 40 as REGISTER { node: Node },
    Admitted = 49 as ADMITTED { peer: Maybe<Node>, cert: Cert },
    Joined = 41 as JOINED { id: Ident },
    Deregister = 42 as DEREGISTER { node: Node },
    RandomPeer = 43 as RANDOM_PEER {},
    Peer = 44 as PEER { peer: Maybe<Node> },
    ListPeers = 45 as LIST_PEERS {},
    Peers = 46 as PEERS { peers: List<Node> },
    Alive = 47 as ALIVE { node: Node },
    Suspect = 48 as SUSPECT { node: Node },
    CompactPort = 50 as COMPACT_PORT {},
    CompactPortIs = 51 as COMPACT_PORT_IS { port: U32 },
    AppRoute = 52 as APP_ROUTE {
        app: Text, key: Ident, hops_left: U8, request: Bool, message: Rest
    },
    AppRouted = 53 as APP_ROUTED { path: List<Node>, delivered: Bool, reply: Rest };
    Record = 20 as RECORD (Head)
}

/// Whether a message of type `ty` may travel inside a [`Message::Vouched`]: one frame's
/// worth, not itself an envelope, and not part of a stream of records.
pub(super) fn may_be_inner(ty: u8) -> bool {
    !matches!(
        ty,
        ty::VOUCHED | ty::RECORD | ty::CHUNK | ty::RECORD_END | ty::CREDIT | ty::CANCEL
    )
}
