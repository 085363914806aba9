//! The Common API for applications on the overlay (Dabek, Zhao, Druschel, Kubiatowicz,
//! Stoica, "Towards a Common API for Structured Peer-to-Peer Overlays", IPTPS 2003):
//! key-based routing of an application's messages. An application registers by name on
//! each node; [`Node::route`] sends a message to the node responsible for a key, calling
//! [`Application::forward`] at every node on the way (the sender's included) and
//! [`Application::deliver`] at the end; [`Node::request`] does the same and brings back
//! what `deliver` answered; [`Application::update`] tells an application that its node's
//! leaf set changed.
//!
//! Messages travel hop by hop like lookups, each node asking its next hop (chosen by the same
//! routing rule) for the rest of the route, and routing around a next hop that fails.
//!
//! **Threads.** `forward` and `deliver` run on the threads serving the node's requests, one
//! per message passing through (the sender's own `forward` on the caller's thread); `update`
//! runs in the node's maintenance pass, one pass at a time. A handler may block, for
//! instance on another node (calling [`Node::route`] from inside one is fine: every request
//! gets a thread of its own at the node it reaches, up to `NetConfig::max_workers`, or a busy
//! refusal), but while it does the message waits, and so does every other `update`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::{Inner, Node};
use crate::calls::route::is_hop_failure;
use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::protocol::membership::Phase;
use crate::wire::{Message, RemoteCode};

/// Largest application message (and reply), in bytes: one frame carries it whole.
pub const MAX_APP_MESSAGE: usize = 1 << 20;

/// How many failed next hops one node routes around before it gives up on a message.
const MAX_DETOURS: usize = 16;

/// An application's handlers on one node: the Common API's upcalls.
pub trait Application: Send + Sync {
    /// The message reached the node responsible for `key` (this one). For a
    /// [`Node::request`], what it returns is the reply; for a [`Node::route`], it is dropped.
    fn deliver(&self, key: Key, message: &[u8]) -> Vec<u8>;

    /// The message is at this node on its way to `key` and goes to `next` unless this
    /// returns false, which stops it here (the sender learns where). It may change the
    /// message (up to [`MAX_APP_MESSAGE`] bytes). The default passes it on unchanged.
    fn forward(&self, key: Key, message: &mut Vec<u8>, next: NodeInfo) -> bool {
        let _ = (key, message, next);
        true
    }

    /// `node` joined this node's leaf set (`joined`) or left it. The default ignores it.
    fn update(&self, node: NodeInfo, joined: bool) {
        let _ = (node, joined);
    }
}

/// Where an application's message went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRoute {
    /// The nodes it passed, this one first.
    pub path: Vec<NodeInfo>,
    /// True when the last node of `path` is the responsible one and delivered it; false when
    /// an application's `forward` stopped it there.
    pub delivered: bool,
    /// What `deliver` answered (empty for [`Node::route`], or when stopped on the way).
    pub reply: Vec<u8>,
}

/// The applications registered on a node, and the leaf set they last heard of.
#[derive(Default)]
pub(super) struct Apps {
    registered: RwLock<HashMap<String, Arc<dyn Application>>>,
    leaf_set: Mutex<Vec<NodeInfo>>,
}

impl Node {
    /// Registers `app` under `name` on this node, replacing an application registered
    /// under that name before. Every node of an overlay that may see the application's
    /// messages should register it; a node without it passes them on, and refuses to
    /// deliver them.
    pub fn register_app(&self, name: &str, app: Arc<dyn Application>) {
        self.inner
            .apps
            .registered
            .write()
            .insert(name.to_owned(), app);
    }

    /// Removes the application registered under `name`, if any.
    pub fn unregister_app(&self, name: &str) {
        self.inner.apps.registered.write().remove(name);
    }

    /// Sends `message` to application `app` on the node responsible for `key` (one way):
    /// returns once it was delivered there, or stopped on the way.
    pub fn route(&self, app: &str, key: Key, message: &[u8]) -> Result<AppRoute> {
        self.inner.route_app_from_here(app, key, message, false)
    }

    /// Sends `message` to application `app` on the node responsible for `key` and returns
    /// what its `deliver` answered (in [`AppRoute::reply`]).
    pub fn request(&self, app: &str, key: Key, message: &[u8]) -> Result<AppRoute> {
        self.inner.route_app_from_here(app, key, message, true)
    }
}

impl Inner {
    fn route_app_from_here(
        &self,
        app: &str,
        key: Key,
        message: &[u8],
        request: bool,
    ) -> Result<AppRoute> {
        if !matches!(self.phase(), Phase::Joined | Phase::Leaving) {
            return Err(Error::NotJoined(self.me.id));
        }
        if message.len() > MAX_APP_MESSAGE {
            return Err(Error::Config(format!(
                "an application message is at most {MAX_APP_MESSAGE} bytes, not {}",
                message.len()
            )));
        }
        let hops = u8::try_from(self.config.max_hops).unwrap_or(u8::MAX);
        self.route_app(app, key, hops, request, message.to_vec())
    }

    /// Serves a message routed here by another node.
    pub(super) fn serve_app_route(
        &self,
        app: String,
        key: Key,
        hops_left: u8,
        request: bool,
        message: Bytes,
    ) -> Message {
        if !matches!(self.phase(), Phase::Joined | Phase::Leaving) {
            return self.core.read().not_joined();
        }
        if message.len() > MAX_APP_MESSAGE {
            return refusal(RemoteCode::BadRequest, "application message too long");
        }
        match self.route_app(&app, key, hops_left, request, message.to_vec()) {
            Ok(end) => Message::AppRouted {
                path: end.path,
                delivered: end.delivered,
                reply: end.reply.into(),
            },
            Err(Error::Refused { code, message, .. }) => refusal(code, message),
            Err(e) => refusal(RemoteCode::Unroutable, e.to_string()),
        }
    }

    /// Takes the message one hop further, or delivers it here.
    fn route_app(
        &self,
        app: &str,
        key: Key,
        hops_left: u8,
        request: bool,
        mut message: Vec<u8>,
    ) -> Result<AppRoute> {
        let handlers = self.apps.registered.read().get(app).cloned();
        let mut exclude: Vec<Id> = Vec::new();
        let mut forwarded = false;
        let mut last_failure = None;
        // Bounded: each pass ends the route or excludes one more next hop, at most
        // MAX_DETOURS of them.
        loop {
            let next = self
                .core
                .read()
                .state()
                .route(key, |id| exclude.contains(&id));
            if next.id == self.me.id {
                let Some(handlers) = handlers else {
                    return Err(Error::Refused {
                        addr: self.me.addr,
                        code: RemoteCode::BadRequest,
                        message: format!("no application {app:?} on node {}", self.me.id),
                    });
                };
                let reply = handlers.deliver(key, &message);
                return Ok(AppRoute {
                    path: vec![self.me],
                    delivered: true,
                    reply: if request { reply } else { Vec::new() },
                });
            }
            if hops_left == 0 || exclude.len() >= MAX_DETOURS {
                return Err(last_failure.unwrap_or(Error::RouteTooLong {
                    key,
                    hops: self.config.max_hops,
                }));
            }
            if !forwarded {
                forwarded = true;
                if let Some(handlers) = &handlers {
                    if !handlers.forward(key, &mut message, next) {
                        return Ok(AppRoute {
                            path: vec![self.me],
                            delivered: false,
                            reply: Vec::new(),
                        });
                    }
                    if message.len() > MAX_APP_MESSAGE {
                        return Err(Error::Config(format!(
                            "application {app:?} made a message of {} bytes",
                            message.len()
                        )));
                    }
                }
            }
            let ask = Message::AppRoute {
                app: app.to_owned(),
                key,
                hops_left: hops_left - 1,
                request,
                message: Bytes::copy_from_slice(&message),
            };
            crate::net::may_block();
            // The rest of the route, and a deliver at its end, within two I/O timeouts.
            let wait = self.config.net.io_timeout * 2;
            match self.pool.call_within(next.addr, &ask, wait) {
                Ok(Message::AppRouted {
                    path,
                    delivered,
                    reply,
                }) if !path.is_empty() && path.len() <= usize::from(hops_left) => {
                    let mut full = Vec::with_capacity(path.len() + 1);
                    full.push(self.me);
                    full.extend(path);
                    return Ok(AppRoute {
                        path: full,
                        delivered,
                        reply: reply.to_vec(),
                    });
                }
                Ok(other) => {
                    let e = Error::unexpected_reply(next.addr, "AppRouted", &other);
                    exclude.push(next.id);
                    last_failure = Some(e);
                }
                Err(e) if is_hop_failure(&e) => {
                    exclude.push(next.id);
                    last_failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tells the applications how the leaf set changed since they last heard: called by the
    /// maintenance pass.
    pub(super) fn update_apps(&self) {
        let apps: Vec<Arc<dyn Application>> =
            self.apps.registered.read().values().cloned().collect();
        let now = self.core.read().state().leaf_set().members();
        let before = std::mem::replace(&mut *self.apps.leaf_set.lock(), now.clone());
        if apps.is_empty() {
            return;
        }
        for node in now.iter().filter(|n| !before.contains(n)) {
            apps.iter().for_each(|app| app.update(*node, true));
        }
        for node in before.iter().filter(|n| !now.contains(n)) {
            apps.iter().for_each(|app| app.update(*node, false));
        }
    }
}

fn refusal(code: RemoteCode, message: impl Into<String>) -> Message {
    Message::Error {
        code,
        message: message.into(),
    }
}
