//! Introductions: the first request on a connection a node opens proves who opened it
//! ([`Message::Hello`]), and the answer proves who accepted it. Each end then believes what
//! the other says for its own node on that connection, and nothing it says for another.

use std::sync::Arc;
use std::time::Duration;

use super::frames::Frames;
use super::reactor::{Conn, StreamHandle};
use crate::identity::{Credentials, PeerIdentity, Proof};
use crate::net::secure::unix_ms;
use crate::wire::{Message, RemoteCode};

/// The introduction carrying `proof`.
fn hello(proof: Proof) -> Message {
    Message::Hello {
        node: proof.node,
        key: proof.key,
        cert: proof.cert,
        proof: Box::new(proof.signature),
    }
}

/// The proof an introduction carries, if it is one.
pub(crate) fn proof_of(msg: Message) -> Result<Proof, Message> {
    match msg {
        Message::Hello {
            node,
            key,
            cert,
            proof,
        } => Ok(Proof {
            node,
            key,
            cert,
            signature: *proof,
        }),
        other => Err(other),
    }
}

/// The accepting end's answer to the introduction `proof` on `handle`'s connection: judged
/// by `credentials` (none: believed as it is, for servers of the tests), settled on the
/// connection, and the connection noted as the way to the node when it is a member.
pub(crate) fn answer(
    credentials: Option<&Credentials>,
    handle: &StreamHandle,
    proof: Proof,
) -> Message {
    let conn = handle.conn();
    if !conn.introduction().begin() {
        return refuse("a connection is introduced once");
    }
    if !conn.member_credential() {
        conn.introduction().settle(None);
        if let Some(credentials) = credentials {
            let why = "it holds the client key, not the cluster key";
            credentials.note_refusal(proof.key, "introduction", why);
        }
        return refuse("a holder of the client key is served as a client only");
    }
    let judged = match credentials {
        Some(credentials) => credentials.judge(&proof, &conn.binding(), true, unix_ms()),
        None => Ok(PeerIdentity {
            node: proof.node,
            key: proof.key,
            member: true,
        }),
    };
    let identity = match judged {
        Ok(identity) => identity,
        Err(why) => {
            conn.introduction().settle(None);
            if let Some(credentials) = credentials {
                credentials.note_refusal(proof.key, "introduction", &why.to_string());
            }
            return refuse(&format!("introduction not believed: {why}"));
        }
    };
    if identity.member && !conn.introduce(identity.node.addr) {
        conn.introduction().settle(None);
        return refuse("an introduction is believed only on a connection from its host");
    }
    conn.introduction().settle(Some(identity));
    match credentials.and_then(|c| Some((c, c.me()?))) {
        Some((credentials, me)) => hello(credentials.prove(me, &conn.binding(), false)),
        None => Message::Ack,
    }
}

/// The opening end introduces itself on `conn`, just opened, and learns who accepted it
/// from the answer, within `within`. Returns whether the peer believed it: one that did
/// not still serves requests on the connection, as a client's.
pub(crate) fn introduce(credentials: &Credentials, conn: &Arc<Conn>, within: Duration) -> bool {
    let Some(me) = credentials.me() else {
        return true;
    };
    if !conn.introduction().begin() {
        return true;
    }
    let Ok(stream) = conn.open_stream() else {
        conn.introduction().settle(None);
        return false;
    };
    let mut handle = StreamHandle::new(Arc::clone(conn), stream, within);
    let binding = conn.binding();
    let sent = handle.send(&hello(credentials.prove(me, &binding, true)));
    let (believed, identity) = match sent.map(|()| handle.recv()) {
        Ok(Ok(answer)) => match proof_of(answer) {
            Ok(proof) => match credentials.judge(&proof, &binding, false, unix_ms()) {
                Ok(identity) => (true, Some(identity)),
                // Not kept: the peer may be about to be certified (a node restarting).
                Err(why) => {
                    credentials.note_refusal(proof.key, "introduction", &why.to_string());
                    (false, None)
                }
            },
            // A peer with no identity of its own (discovery).
            Err(Message::Ack) => (true, None),
            Err(other) => {
                log::debug!("{}: introduction not taken: {other:?}", conn.peer());
                (false, None)
            }
        },
        other => {
            log::debug!("{}: introduction not taken: {other:?}", conn.peer());
            (false, None)
        }
    };
    conn.introduction().settle(identity);
    let _ = handle.finish();
    believed
}

fn refuse(why: &str) -> Message {
    Message::Error {
        code: RemoteCode::BadRequest,
        message: why.into(),
    }
}
