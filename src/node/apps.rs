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
//! routing rule) for the rest of the route, and routing around a next hop that fails. As a
//! forwarded lookup, a message passing through a node holds no thread there while the rest
//! of its route is under way: the next hop's answer is passed back when it comes.
//!
//! **Threads.** `forward` and `deliver` run on the threads serving the node's requests (the
//! sender's own `forward` on the caller's thread; a `deliver` that follows a next hop's
//! failure on the thread that learnt of it); `update` runs in the node's maintenance pass,
//! one pass at a time. A handler may block, for instance on another node (calling
//! [`Node::route`] from inside one is fine: every request gets a thread at the node it
//! reaches, up to `NetConfig::max_workers`, or a busy refusal), but while it does the message
//! waits, and so does every other `update`.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::{Inner, Node};
use crate::calls::route::is_hop_failure;
use crate::error::{Error, Result};
use crate::id::{Id, Key, NodeInfo};
use crate::net::Session;
use crate::protocol::membership::Phase;
use crate::wire::{Message, RemoteCode};

/// Largest application message (and reply), in bytes: one frame carries it whole.
pub const MAX_APP_MESSAGE: usize = 1 << 20;

/// How many failed next hops one node routes around before it gives up on a message.
const MAX_DETOURS: usize = 16;

/// What to do with where an application's message went.
type AppDone = Box<dyn FnOnce(Result<AppRoute>) + Send>;

/// An application's message on its way through this node.
struct AppHop {
    app: String,
    key: Key,
    hops_left: u8,
    request: bool,
    message: Vec<u8>,
    /// The application's handlers here, if it is registered here.
    handlers: Option<Arc<dyn Application>>,
    /// Next hops that failed, routed around.
    exclude: Vec<Id>,
    last_failure: Option<Error>,
    /// Whether the application's `forward` has seen it here.
    forwarded: bool,
}

impl AppHop {
    fn new(
        node: &Inner,
        app: &str,
        key: Key,
        hops_left: u8,
        request: bool,
        message: Vec<u8>,
    ) -> AppHop {
        AppHop {
            app: app.to_owned(),
            key,
            hops_left,
            request,
            message,
            handlers: node.apps.registered.read().get(app).cloned(),
            exclude: Vec::new(),
            last_failure: None,
            forwarded: false,
        }
    }

    /// Delivers the message at `me`, the node responsible for its key.
    fn deliver(self, me: NodeInfo) -> Result<AppRoute> {
        let Some(handlers) = self.handlers else {
            return Err(Error::Refused {
                addr: me.addr,
                code: RemoteCode::BadRequest,
                message: format!("no application {:?} on node {}", self.app, me.id),
            });
        };
        let reply = handlers.deliver(self.key, &self.message);
        Ok(AppRoute {
            path: vec![me],
            delivered: true,
            reply: if self.request { reply } else { Vec::new() },
        })
    }
}

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
        self: &Arc<Self>,
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
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let hop = AppHop::new(self, app, key, hops, request, message.to_vec());
        self.route_app(hop, Box::new(move |end| drop(tx.send(end))));
        // Every call of the route ends within its wait, so the route does within all of them.
        crate::net::may_block();
        let most = self.app_hop_wait() * (MAX_DETOURS as u32 + 1);
        rx.recv_timeout(most).unwrap_or(Err(Error::Shutdown))
    }

    /// Serves a message routed here by another node: answered once its route ends, with no
    /// thread waiting for the next hop meanwhile (as a forwarded lookup, `relay.rs`).
    pub(super) fn serve_app_route(
        self: &Arc<Self>,
        hop: (String, Key, u8, bool, Bytes),
        session: &mut Session<'_>,
    ) -> Message {
        let (app, key, hops_left, request, message) = hop;
        if !matches!(self.phase(), Phase::Joined | Phase::Leaving) {
            return self.core.read().not_joined();
        }
        if message.len() > MAX_APP_MESSAGE {
            return refusal(RemoteCode::BadRequest, "application message too long");
        }
        let later = session.reply_later();
        let hop = AppHop::new(self, &app, key, hops_left, request, message.to_vec());
        self.route_app(
            hop,
            Box::new(move |end| {
                later.send(match end {
                    Ok(end) => Message::AppRouted {
                        path: end.path,
                        delivered: end.delivered,
                        reply: end.reply.into(),
                    },
                    Err(Error::Refused { code, message, .. }) => refusal(code, message),
                    Err(e) => refusal(RemoteCode::Unroutable, e.to_string()),
                })
            }),
        );
        Message::Ack // dropped: the reply goes through `later`
    }

    /// How long a node waits for the rest of an application's route from its next hop, and
    /// a deliver at its end.
    fn app_hop_wait(&self) -> Duration {
        self.config.net.io_timeout * 2
    }

    /// Takes the message one hop further (routing around a next hop that fails), or
    /// delivers it here; `done` is handed where it went, here or on a thread of the crew
    /// once the next hop answers.
    fn route_app(self: &Arc<Self>, mut hop: AppHop, done: AppDone) {
        let next = self
            .core
            .read()
            .state()
            .route(hop.key, |id| hop.exclude.contains(&id));
        if next.id == self.me.id {
            return done(hop.deliver(self.me));
        }
        if hop.hops_left == 0 || hop.exclude.len() >= MAX_DETOURS {
            return done(Err(hop.last_failure.unwrap_or(Error::RouteTooLong {
                key: hop.key,
                hops: self.config.max_hops,
            })));
        }
        if !std::mem::replace(&mut hop.forwarded, true) {
            if let Some(handlers) = &hop.handlers {
                if !handlers.forward(hop.key, &mut hop.message, next) {
                    return done(Ok(AppRoute {
                        path: vec![self.me],
                        delivered: false,
                        reply: Vec::new(),
                    }));
                }
                if hop.message.len() > MAX_APP_MESSAGE {
                    return done(Err(Error::Config(format!(
                        "application {:?} made a message of {} bytes",
                        hop.app,
                        hop.message.len()
                    ))));
                }
            }
        }
        let ask = Message::AppRoute {
            app: hop.app.clone(),
            key: hop.key,
            hops_left: hop.hops_left - 1,
            request: hop.request,
            message: Bytes::copy_from_slice(&hop.message),
        };
        let this = Arc::downgrade(self);
        let then = Box::new(move |answer: Result<Message>| {
            let Some(inner) = this.upgrade() else {
                return done(Err(Error::Shutdown));
            };
            let failure = match answer {
                Ok(Message::AppRouted {
                    path,
                    delivered,
                    reply,
                }) if !path.is_empty() && path.len() <= usize::from(hop.hops_left) => {
                    let mut full = Vec::with_capacity(path.len() + 1);
                    full.push(inner.me);
                    full.extend(path);
                    return done(Ok(AppRoute {
                        path: full,
                        delivered,
                        reply: reply.to_vec(),
                    }));
                }
                Ok(other) => Error::unexpected_reply(next.addr, "AppRouted", &other),
                Err(e) if is_hop_failure(&e) => e,
                Err(e) => return done(Err(e)),
            };
            hop.exclude.push(next.id);
            hop.last_failure = Some(failure);
            inner.route_app(hop, done);
        });
        self.pool
            .call_then(next.addr, ask, self.app_hop_wait(), then);
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
