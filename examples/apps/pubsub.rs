//! Publish and subscribe on the Common API, in the manner of Scribe (Castro, Druschel,
//! Kermarrec, Rowstron, 2002): a topic's root is the node responsible for the topic's key; a
//! subscriber routes a join towards it, and every node the join passes becomes a parent of
//! the node it came from, until the join reaches a node already in the topic's tree. A
//! publish goes to the root, which passes it down the tree, each node to its children.
//!
//! The tree is soft state: every member of a tree sends its join again every
//! [`REFRESH`], and a parent forgets a child it has not heard from in three of them. So a
//! node that leaves or crashes is routed around: the joins of the nodes below it take
//! another way (to a new root, if it was the root) and the tree mends within a few
//! refreshes. A node may receive a publish twice while a tree mends.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pastry::{key_of, Application, Id, Key, Node, NodeInfo};

/// The application's name on the nodes.
pub const APP: &str = "pubsub";

/// How often a tree's members send their joins again.
pub const REFRESH: Duration = Duration::from_millis(200);

const JOIN: u8 = 0;
const PUBLISH: u8 = 1;
const DATA: u8 = 2;

/// One topic as this node sees it.
#[derive(Default)]
struct Topic {
    subscribed: bool,
    /// Children, with when they last joined.
    children: HashMap<Id, Instant>,
}

/// The application on one node.
pub struct PubSub {
    node: Weak<Node>,
    me: NodeInfo,
    topics: Mutex<HashMap<String, Topic>>,
    received: Mutex<Vec<(String, Vec<u8>)>>,
    stopping: Mutex<bool>,
    wake: Condvar,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

/// Encodes `kind`, an id, the topic and the rest.
fn encode(kind: u8, id: Id, topic: &str, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&id.0.to_be_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(rest);
    out
}

/// The kind, id, topic and rest of a message; `None` if malformed.
fn decode(message: &[u8]) -> Option<(u8, Id, String, &[u8])> {
    let (&kind, rest) = message.split_first()?;
    let id = Id(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let len = usize::from(u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?));
    let topic = std::str::from_utf8(rest.get(4..4 + len)?).ok()?.to_owned();
    Some((kind, id, topic, &rest[4 + len..]))
}

impl PubSub {
    /// Registers the application on `node` and starts its refreshes.
    pub fn start(node: &Arc<Node>) -> Arc<PubSub> {
        let app = Arc::new(PubSub {
            node: Arc::downgrade(node),
            me: node.info(),
            topics: Mutex::default(),
            received: Mutex::default(),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            refresher: Mutex::new(None),
        });
        node.register_app(APP, app.clone());
        let weak = Arc::downgrade(&app);
        let thread = std::thread::spawn(move || refresh_loop(&weak));
        *app.refresher.lock() = Some(thread);
        app
    }

    /// Stops the refreshes (joining their thread). The node keeps the application
    /// registered until it is unregistered or the node stops.
    pub fn stop(&self) {
        *self.stopping.lock() = true;
        self.wake.notify_all();
        if let Some(thread) = self.refresher.lock().take() {
            let _ = thread.join();
        }
    }

    /// Subscribes this node to `topic`: it joins the topic's tree now and at every refresh.
    pub fn subscribe(&self, topic: &str) -> pastry::Result<()> {
        self.topics
            .lock()
            .entry(topic.to_owned())
            .or_default()
            .subscribed = true;
        self.join(topic)
    }

    /// Publishes `payload` on `topic`, from any node: it goes to the root and down the tree.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> pastry::Result<()> {
        let node = self.node.upgrade().ok_or(pastry::Error::Shutdown)?;
        let message = encode(PUBLISH, self.me.id, topic, payload);
        node.route(APP, key_of(topic.as_bytes()), &message)?;
        Ok(())
    }

    /// Whether this node received `payload` on `topic`.
    pub fn received(&self, topic: &str, payload: &[u8]) -> bool {
        self.received
            .lock()
            .iter()
            .any(|(t, p)| t == topic && p == payload)
    }

    /// Sends this node's join for `topic` towards its root (nothing at the root itself).
    fn join(&self, topic: &str) -> pastry::Result<()> {
        let node = self.node.upgrade().ok_or(pastry::Error::Shutdown)?;
        let message = encode(JOIN, self.me.id, topic, &[]);
        node.route(APP, key_of(topic.as_bytes()), &message)?;
        Ok(())
    }

    /// Notes `child` as a child of this node in `topic`'s tree; says whether this node was
    /// in the tree before.
    fn adopt(&self, topic: &str, child: Id) -> bool {
        let mut topics = self.topics.lock();
        let entry = topics.entry(topic.to_owned()).or_default();
        let was_in = entry.subscribed || !entry.children.is_empty();
        if child != self.me.id {
            entry.children.insert(child, Instant::now());
        }
        was_in
    }

    /// Delivers `payload` here if subscribed, and passes it to every child.
    fn pass_down(&self, topic: &str, payload: &[u8]) {
        let (subscribed, children) = {
            let topics = self.topics.lock();
            match topics.get(topic) {
                Some(t) => (t.subscribed, t.children.keys().copied().collect::<Vec<_>>()),
                None => (false, Vec::new()),
            }
        };
        if subscribed {
            self.received
                .lock()
                .push((topic.to_owned(), payload.to_vec()));
        }
        let Some(node) = self.node.upgrade() else {
            return;
        };
        for child in children {
            let message = encode(DATA, child, topic, payload);
            // A child gone is forgotten when its joins stop coming.
            if let Err(e) = node.route(APP, child, &message) {
                log::debug!("pubsub: {topic} to {child}: {e}");
            }
        }
    }
}

impl Application for PubSub {
    fn deliver(&self, _key: Key, message: &[u8]) -> Vec<u8> {
        match decode(message) {
            // At the root: the join ends here.
            Some((JOIN, from, topic, _)) => {
                self.adopt(&topic, from);
            }
            Some((PUBLISH, _, topic, payload)) => self.pass_down(&topic, payload),
            // Routed to a child's id: only that child takes it (another node may be
            // responsible for the id once the child is gone).
            Some((DATA, target, topic, payload)) if target == self.me.id => {
                self.pass_down(&topic, payload)
            }
            _ => {}
        }
        Vec::new()
    }

    fn forward(&self, _key: Key, message: &mut Vec<u8>, _next: NodeInfo) -> bool {
        let Some((JOIN, from, topic, _)) = decode(message) else {
            return true;
        };
        if from == self.me.id {
            return true; // this node's own join, on its way
        }
        if self.adopt(&topic, from) {
            return false; // already in the tree: the join ends here
        }
        *message = encode(JOIN, self.me.id, &topic, &[]);
        true
    }
}

/// Sends the joins of every tree this node is in, and forgets silent children, every
/// [`REFRESH`], until the application stops.
fn refresh_loop(app: &Weak<PubSub>) {
    // Bounded: ends when the application stops or is gone.
    loop {
        let Some(app) = app.upgrade() else { return };
        if app.node.strong_count() == 0 {
            return; // the node is gone
        }
        {
            let mut stopping = app.stopping.lock();
            if !*stopping {
                app.wake.wait_for(&mut stopping, REFRESH);
            }
            if *stopping {
                return;
            }
        }
        let topics: Vec<String> = {
            let mut topics = app.topics.lock();
            for topic in topics.values_mut() {
                topic
                    .children
                    .retain(|_, heard| heard.elapsed() < REFRESH * 3);
            }
            topics
                .iter()
                .filter(|(_, t)| t.subscribed || !t.children.is_empty())
                .map(|(name, _)| name.clone())
                .collect()
        };
        for topic in topics {
            if let Err(e) = app.join(&topic) {
                log::debug!("pubsub: join of {topic}: {e}");
            }
        }
    }
}
