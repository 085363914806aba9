//! The messages of the node and discovery protocols.
//!
//! Every exchange is one request frame answered by one reply frame on the same connection.

use bytes::Bytes;

use crate::id::{Id, NodeInfo};
use crate::identity::{Certificate, PublicKey, SIGNATURE_LEN};

/// Why a peer refused a request, carried by [`Message::Error`].
///
/// Values are fixed on the wire and never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RemoteCode {
    /// The identifier is used by a live or joining node.
    IdInUse = 1,
    /// The receiver is not part of an overlay (not joined yet, or leaving).
    NotJoined = 2,
    /// The receiver has no room for another connection.
    Busy = 3,
    /// The request makes no sense to the receiver (a reply sent as a request, a node message sent
    /// to discovery, ...).
    BadRequest = 4,
    /// What was asked for does not exist.
    NotFound = 5,
    /// Any other failure on the receiver's side.
    Internal = 6,
    /// A stored object failed its checksum.
    Corrupt = 7,
    /// The receiver is not (or no longer) responsible for the key: look it up again.
    NotResponsible = 8,
    /// An object name is empty or too long.
    InvalidName = 9,
    /// The receiver could not route the request onward: the nodes after it failed or the time
    /// ran out. The receiver itself is fine.
    Unroutable = 10,
    /// The object was deleted: the responsible node holds its deletion record, so no other
    /// copy is worth asking for.
    Gone = 11,
    /// A record's version lies too far ahead of the receiver's clock, or no newer version
    /// can be given.
    BadVersion = 12,
    /// Sent on a connection's own stream as the sender closes it idle: it had nothing of the
    /// receiver's in hand, so a request the receiver sent that crossed the close was never
    /// seen and may be sent again on another connection.
    Closing = 13,
}

impl RemoteCode {
    /// The code for a wire value, if it is one.
    pub fn from_u8(v: u8) -> Option<RemoteCode> {
        Some(match v {
            1 => RemoteCode::IdInUse,
            2 => RemoteCode::NotJoined,
            3 => RemoteCode::Busy,
            4 => RemoteCode::BadRequest,
            5 => RemoteCode::NotFound,
            6 => RemoteCode::Internal,
            7 => RemoteCode::Corrupt,
            8 => RemoteCode::NotResponsible,
            9 => RemoteCode::InvalidName,
            10 => RemoteCode::Unroutable,
            11 => RemoteCode::Gone,
            12 => RemoteCode::BadVersion,
            13 => RemoteCode::Closing,
            _ => return None,
        })
    }
}

/// The head of a record streamed in chunks: an object, or the record of its deletion.
///
/// A record travels as [`Message::Record`], then [`Message::Chunk`]s carrying exactly `size`
/// bytes, then [`Message::RecordEnd`] with the CRC-32 of those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead {
    /// The object's name (its key is the digest of it).
    pub name: Vec<u8>,
    /// Bytes of data that follow.
    pub size: u64,
    /// The record's version: newer wins. Ignored in a client's put, where the holder assigns
    /// it.
    pub version: u64,
    /// A deletion record (tombstone): no data.
    pub deleted: bool,
    /// Sent by a node handing the record over, not by a client: kept whatever the receiver's
    /// view of responsibility, if newer than what it holds.
    pub handoff: bool,
    /// The client's id for this write (0: none), the same on every retry, so that a retried
    /// write is answered with the outcome of its first execution. On the responsible node's
    /// copies to the other holders: the write whose outcome the copy carries.
    pub request: u64,
    /// On the responsible node's copy of a deletion record: whether the deleted object existed
    /// (the delete's outcome, remembered with `request`).
    pub existed: bool,
    /// A client's put passed on by a node that is not responsible to the one it thinks is; not
    /// passed on again.
    pub relayed: bool,
    /// A client's put sent to the node it believes responsible from the nodes it has met,
    /// not found by a route: written only if the receiver is responsible, never passed on
    /// (refused `NotResponsible` otherwise, and the client routes it).
    pub direct: bool,
}

/// A message of the node or discovery protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Generic success reply.
    Ack,
    /// Generic failure reply.
    Error {
        /// What kind of failure.
        code: RemoteCode,
        /// A human-readable reason.
        message: String,
    },

    // ---- streams of a multiplexed connection ----
    /// The receiver of a stream's frames may be sent `bytes` more of them (whole frames,
    /// headers and checksums counted): what it has taken of what it held. Flows back on the
    /// stream it is about.
    Credit {
        /// Bytes of frames granted.
        bytes: u32,
    },
    /// The sender gives the stream up (a caller stopped waiting): its other end drops what
    /// it holds of it and stops working on it.
    Cancel,
    /// The end that opened a connection tells the other which node it is (its id and the
    /// address it listens on) and proves it, so that the other believes what it says for
    /// that node on this connection and sends its own requests to it over this connection
    /// rather than open another. Answered by the other end's own [`Message::Hello`] (or
    /// [`Message::Ack`] from one with no identity to prove).
    Hello {
        /// The node it is.
        node: NodeInfo,
        /// The key it proves.
        key: PublicKey,
        /// Discovery's certificate binding `node` to `key` (none before its first
        /// registration).
        cert: Option<Box<Certificate>>,
        /// Its signature, with `key`, over the connection's handshake hash, which end it is,
        /// `node` and `key`: valid on this connection only.
        proof: Box<[u8; SIGNATURE_LEN]>,
    },
    /// `message`, with the certificates of the nodes it names: a node enters nodes it
    /// learns of into its tables only with a certificate from its discovery. Never inside
    /// another.
    Vouched {
        /// Certificates of nodes `message` names (the sender's own among them).
        certs: Vec<Certificate>,
        /// The message.
        message: Box<Message>,
    },
    /// A certificate discovery issued: the answer to [`Message::Alive`], renewing the
    /// node's.
    Certified {
        /// The certificate.
        cert: Box<Certificate>,
    },

    // ---- node protocol ----
    /// Liveness probe; answered by [`Message::Pong`].
    Ping,
    /// Answer to [`Message::Ping`]: who is here.
    Pong {
        /// The answering node.
        node: NodeInfo,
        /// Its public key: discovery checks that a node claiming an address answers there
        /// with its key, and that the holder of an id claimed again is gone.
        key: PublicKey,
    },
    /// A lookup, routed recursively: the receiver forwards it to its next hop (or answers when
    /// responsible) and relays the answer. Answered by [`Message::Routed`].
    Route {
        /// The key being routed.
        key: Id,
        /// Most hops the route may take after the receiver.
        hops_left: u8,
        /// Milliseconds the sender waits for the answer: the receiver answers sooner (with
        /// [`RemoteCode::Unroutable`] if it must), so that a failure further on is reported to
        /// the sender in time for it to try another way.
        budget_ms: u32,
    },
    /// Answer to [`Message::Route`].
    Routed {
        /// The nodes from the receiver to the node responsible for the key, both included.
        path: Vec<NodeInfo>,
        /// The other nodes that keep copies of the key, best placed first, as the responsible
        /// node sees them: where to read or write if it cannot serve.
        replicas: Vec<NodeInfo>,
    },
    /// A routing step of a join, asked by the joiner of each node in turn: where the joiner's id
    /// goes next, with the state the joiner needs. Answered by [`Message::JoinState`]. Also
    /// asked by a member of its routing-table entries, to refresh its table from their rows.
    JoinHop {
        /// The node joining.
        joiner: NodeInfo,
        /// Nodes the joiner found unreachable.
        exclude: Vec<Id>,
    },
    /// Answer to [`Message::JoinHop`].
    JoinState {
        /// The answering node.
        node: NodeInfo,
        /// The next hop for the joiner's id; equal to `node` when the answering node is
        /// responsible for it.
        next: NodeInfo,
        /// The routing-table entries of rows `0..=shared_prefix(node, joiner)`.
        rows: Vec<NodeInfo>,
        /// The answering node's leaf set.
        leaf_set: Vec<NodeInfo>,
    },
    /// "I have joined: put me in your tables." Answered by [`Message::Ack`].
    Announce {
        /// The new node.
        node: NodeInfo,
    },
    /// "I am leaving: take me out of your tables, and repair your leaf set from mine."
    /// Answered by [`Message::Ack`].
    Depart {
        /// The leaving node.
        node: NodeInfo,
        /// Its leaf set, from which neighbours repair theirs.
        leaf_set: Vec<NodeInfo>,
    },

    /// Periodic check between leaf-set neighbours: "I am alive, and this is my leaf set".
    /// Answered by [`Message::LeafSet`]. Both sides learn from the other's leaf set, which
    /// repairs gaps and settles concurrent joins.
    Exchange {
        /// The asking node.
        node: NodeInfo,
        /// Its leaf set.
        leaf_set: Vec<NodeInfo>,
    },
    /// Answer to [`Message::Exchange`].
    LeafSet {
        /// The answering node.
        node: NodeInfo,
        /// Its leaf set.
        leaf_set: Vec<NodeInfo>,
    },

    /// Asks for the routing-table entry at `row`, `col`, to fill the same cell here after its
    /// node died. Answered by [`Message::CellEntry`].
    Cell {
        /// The row.
        row: u8,
        /// The column.
        col: u8,
    },
    /// Answer to [`Message::Cell`].
    CellEntry {
        /// The entry, if the cell is filled.
        node: Option<NodeInfo>,
    },

    // ---- object protocol ----
    /// Asks which nodes keep copies of `key`. Answered by [`Message::ReplicaSet`].
    Replicas {
        /// The key.
        key: Id,
    },
    /// Answer to [`Message::Replicas`]: the other nodes that keep copies, best placed first.
    ReplicaSet {
        /// The nodes.
        nodes: Vec<NodeInfo>,
    },
    /// Starts a record: as a request, a put or hand-off (answered by [`Message::Stored`]); as a
    /// reply, the start of a get's or pull's answer.
    Record(RecordHead),
    /// Part of a record's data, at most the store's chunk size.
    Chunk {
        /// The bytes.
        data: Bytes,
    },
    /// Ends a record.
    RecordEnd {
        /// CRC-32 (ISO-HDLC) of the record's data.
        crc: u32,
    },
    /// Answer to a put or hand-off. The responsible node answers a put once its own copy is
    /// durable and it has written the other copies (or given up on those it could not reach).
    Stored {
        /// The version the write got (the version held, for a hand-off not kept).
        version: u64,
        /// False when the receiver already held a newer version and kept that: a put ordered
        /// before a newer one that finished first.
        kept: bool,
        /// The version the receiver held before (the one kept, if not `kept`); 0 for none.
        /// Tells the responsible node what its copies held, should its own copy be behind.
        before: u64,
        /// Whether that record was an object rather than a deletion record.
        before_live: bool,
    },
    /// Asks for an object. Answered by a record or [`Message::Error`] (`NotFound`, ...).
    Get {
        /// The object's name.
        name: Vec<u8>,
        /// Sent to the node the client believes responsible, not found by a route or named
        /// as a holder: served only by a responsible node, as [`RecordHead::direct`].
        direct: bool,
    },
    /// Deletes an object. Answered by [`Message::Deleted`] once the responsible node has
    /// written the deletion record on its own disk and to the other holders.
    Delete {
        /// The object's name.
        name: Vec<u8>,
        /// The client's id for this delete (0: none), as [`RecordHead::request`].
        request: u64,
        /// Passed on by a node that is not responsible, as [`RecordHead::relayed`].
        relayed: bool,
        /// Sent to the node the client believes responsible, as [`RecordHead::direct`].
        direct: bool,
    },
    /// Answer to [`Message::Delete`].
    Deleted {
        /// Whether there was a live object just before this delete, in the order the
        /// responsible node gave the writes of the name.
        existed: bool,
        /// The version of the deletion record.
        version: u64,
    },
    /// "Do you hold these records, at these versions or newer?" Answered by
    /// [`Message::Lacking`]. Lets a node check its replicas without moving any data.
    Holds {
        /// Names and versions.
        records: Vec<(Vec<u8>, u64)>,
    },
    /// Answer to [`Message::Holds`]: the names held at an older version, and those not held
    /// at all (no object, no deletion record).
    Lacking {
        /// Names held at an older version.
        older: Vec<Vec<u8>>,
        /// Names not held at all.
        absent: Vec<Vec<u8>>,
    },
    /// A joining node asks its future neighbour for copies of the records it will be
    /// responsible for. Answered by those records, one after another, then [`Message::Ack`].
    Pull {
        /// The node joining.
        joiner: NodeInfo,
    },

    // ---- discovery protocol ----
    /// A node asks to join with this id, on a connection where it proved its key
    /// ([`Message::Hello`]). Answered by [`Message::Admitted`] or [`Message::Error`] with
    /// [`RemoteCode::IdInUse`].
    Register {
        /// The node asking.
        node: NodeInfo,
    },
    /// Answer to [`Message::Register`]: a random joined peer to join through (none for the
    /// first node), and the node's certificate.
    Admitted {
        /// The peer.
        peer: Option<NodeInfo>,
        /// Discovery's certificate of the node's id, address and key.
        cert: Box<Certificate>,
    },
    /// A registered node has finished joining: discovery may now hand it out.
    Joined {
        /// The node's id.
        id: Id,
    },
    /// A node has left (or a registration is withdrawn). Discovery forgets the id only if it is
    /// registered at the same address, so that a stale request cannot remove its new holder.
    /// Answered by [`Message::Ack`].
    Deregister {
        /// The node.
        node: NodeInfo,
    },
    /// Asks discovery for a random joined peer. Answered by [`Message::Peer`].
    RandomPeer,
    /// A peer, or none when no node has joined.
    Peer {
        /// The peer handed out.
        peer: Option<NodeInfo>,
    },
    /// Asks discovery for every joined peer. Answered by [`Message::Peers`].
    ListPeers,
    /// A joined node reminds discovery that it is alive, so that a discovery node that
    /// restarted relearns it. Answered by [`Message::Ack`], or [`Message::Error`] with
    /// [`RemoteCode::IdInUse`] if another node holds the id.
    Alive {
        /// The node.
        node: NodeInfo,
    },
    /// Answer to [`Message::ListPeers`], sorted by id.
    Peers {
        /// The joined peers.
        peers: Vec<NodeInfo>,
    },
    /// A node reports to discovery that `node` did not answer it. Discovery asks `node`
    /// itself before it forgets it: a node cut off from the reporter (a partition) may be
    /// alive, and forgetting every node on the other side would leave newcomers none to join
    /// through. Answered by [`Message::Ack`].
    Suspect {
        /// The node found dead.
        node: NodeInfo,
    },
    /// Asks a node for the port of its compact listener (the tracker seed's protocol),
    /// which the tracker hands out. Answered by [`Message::CompactPortIs`].
    CompactPort,
    /// Answer to [`Message::CompactPort`]: the TCP port, 0 when the node has no compact
    /// listener.
    CompactPortIs {
        /// The port (at most 65,535).
        port: u32,
    },
    /// An application's message routed to the node responsible for `key` (the Common API's
    /// `route`), forwarded hop by hop like a lookup; each node on the way shows it to its
    /// instance of the application (`forward`), which may change or stop it. Answered by
    /// [`Message::AppRouted`].
    AppRoute {
        /// The application's name, as registered on the nodes.
        app: String,
        /// Where it goes.
        key: Id,
        /// Hops it may still take.
        hops_left: u8,
        /// Whether the sender waits for the application's reply at the responsible node.
        request: bool,
        /// The message.
        message: Bytes,
    },
    /// Answer to [`Message::AppRoute`]: the nodes it passed, from the one asked; whether the
    /// last delivered it (or an application on the way stopped it there); the reply.
    AppRouted {
        /// The nodes from the one asked to the last.
        path: Vec<NodeInfo>,
        /// True when the last node is the responsible one and delivered it.
        delivered: bool,
        /// The application's reply (empty for a one-way message).
        reply: Bytes,
    },
}

impl Message {
    /// The message type's name, for logs and error texts.
    pub fn name(&self) -> &'static str {
        super::codec::name_of(super::codec::type_of(self)).unwrap_or("unknown")
    }
}
