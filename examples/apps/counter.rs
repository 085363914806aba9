//! A distributed counter service on the Common API: each counter lives at the node
//! responsible for its name's key, which orders every increment, so that concurrent
//! increments from any nodes each get a value of their own.
//!
//! A small example, not a store: a count lives in the memory of the node that holds it, and
//! starts again from 0 on a node that takes the key over (a join nearer to it, or its holder
//! gone). Counts that must last belong in the object store.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pastry::{key_of, Application, Error, Key, Node};

/// The application's name on the nodes.
pub const APP: &str = "counter";

/// The counters this node holds.
#[derive(Default)]
pub struct Counters {
    values: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Counters {
    /// Registers the service on `node`.
    pub fn register(node: &Node) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        node.register_app(APP, counters.clone());
        counters
    }

    /// How many counters this node holds.
    pub fn held(&self) -> usize {
        self.values.lock().len()
    }
}

impl Application for Counters {
    /// A message is a counter's name; the reply is its value after one increment.
    fn deliver(&self, _key: Key, name: &[u8]) -> Vec<u8> {
        let mut values = self.values.lock();
        let value = values.entry(name.to_vec()).or_insert(0);
        *value += 1;
        value.to_be_bytes().to_vec()
    }
}

/// Increments the counter `name` through `node`; returns its new value.
pub fn increment(node: &Node, name: &str) -> pastry::Result<u64> {
    let answer = node.request(APP, key_of(name.as_bytes()), name.as_bytes())?;
    let bytes: [u8; 8] = answer.reply.as_slice().try_into().map_err(|_| {
        Error::Config(format!(
            "counter {name}: a reply of {} bytes",
            answer.reply.len()
        ))
    })?;
    Ok(u64::from_be_bytes(bytes))
}
