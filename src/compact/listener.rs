//! The compact listener of a node: 9-byte inserts, lookups and deletes of 32-bit values,
//! carried out through a client of the object store that enters through the node itself
//! (so any key is served, with the store's retries, copies and ordering).

use std::net::SocketAddr;
use std::sync::Arc;

use super::format::{name_of, value_of, Op, Reply, Request, Status, MESSAGE_LEN};
use super::server::{Answer, PlainServer, Timeouts};
use crate::error::{Error, Result};
use crate::{Client, ClientConfig, Entry, NetConfig};

/// A running compact listener; stops when dropped.
pub(crate) struct CompactListener {
    server: PlainServer,
}

impl CompactListener {
    /// Listens on `addr`, serving through the node at `node` with the node's settings.
    pub fn start(addr: SocketAddr, node: SocketAddr, net: &NetConfig) -> Result<CompactListener> {
        let client = Client::with_config(
            Entry::Peer(node),
            ClientConfig {
                net: net.clone(),
                ..ClientConfig::default()
            },
        );
        let server = PlainServer::start(
            "pastry-compact",
            addr,
            Timeouts::of(net),
            Arc::new(move |bytes: &[u8; MESSAGE_LEN]| answer(&client, Request::decode(bytes))),
        )?;
        Ok(CompactListener { server })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// The reply to one request: the store's outcome in the protocol's terms.
fn answer(client: &Client, request: Request) -> Answer<MESSAGE_LEN> {
    let key = request.key;
    let reply = |status, value| Reply { status, key, value }.encode();
    let Some(op) = request.op else {
        return Answer::ReplyAndClose(reply(Status::Failed, 0));
    };
    let name = name_of(key);
    let outcome = match op {
        Op::Nothing => Ok((Status::Ok, 0)),
        Op::Insert => client
            .put(name, &request.value.to_be_bytes())
            .map(|_| (Status::Ok, request.value)),
        Op::Lookup => client.get(name).map(|got| match value_of(&got.data) {
            Some(value) => (Status::Ok, value),
            // Not a compact value (stored under this name by other means).
            None => (Status::Failed, 0),
        }),
        // The value removed is the one read just before; a write between the two is not
        // seen (the delete removes whatever is there).
        Op::Delete => client.get(name).and_then(|got| {
            let deleted = client.delete(name)?;
            Ok(match (deleted.existed, value_of(&got.data)) {
                (false, _) => (Status::NotFound, 0),
                (true, value) => (Status::Ok, value.unwrap_or(0)),
            })
        }),
    };
    match outcome {
        Ok((status, value)) => Answer::Reply(reply(status, value)),
        Err(Error::NotFound { .. }) => Answer::Reply(reply(Status::NotFound, 0)),
        Err(e) => {
            log::debug!("compact request for key {key:#010x} failed: {e}");
            Answer::Reply(reply(Status::Failed, 0))
        }
    }
}
