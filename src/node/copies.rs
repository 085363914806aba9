//! A write's copies, sent to the other holders with no thread waiting for their answers. The
//! thread that orders a write sends the copies, writes this node's own meanwhile and goes
//! back to its crew; the holders' answers come to the crew as they arrive, and whichever part
//! is in last (an answer, or this node's own write) completes the write: its outcome is
//! worked out and the client answered ([`Session::reply_later`]). A write so holds a thread
//! for its own disk work only, not for the other holders'.
//!
//! [`Session::reply_later`]: crate::net::Session::reply_later

use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

use super::Inner;
use crate::error::Result;
use crate::id::NodeInfo;
use crate::protocol::objects::{copy_answer, CopyAnswer};
use crate::wire::{Message, RecordHead};

/// What completes a write: this node's own result, and the answers of the holders that took
/// their copies.
type Finish<T> = Box<dyn FnOnce(&Inner, T, Vec<CopyAnswer>) + Send>;

/// A write's parts still out, and what the others brought.
struct Pending<T> {
    left: usize,
    local: Option<T>,
    copies: Vec<(NodeInfo, Result<CopyAnswer>)>,
    finish: Option<Finish<T>>,
}

/// A write's parts, shared by whoever brings one in.
struct Parts<T> {
    node: Weak<Inner>,
    pending: Mutex<Pending<T>>,
}

impl<T> Parts<T> {
    /// Adds what one part brought; the last completes the write, on this thread. Should the
    /// node be gone by then, the write's reply is dropped (its asker is told).
    fn add(&self, part: impl FnOnce(&mut Pending<T>)) {
        let mut pending = self.pending.lock();
        part(&mut pending);
        pending.left -= 1;
        if pending.left > 0 {
            return;
        }
        let local = pending.local.take();
        let copies = std::mem::take(&mut pending.copies);
        let finish = pending.finish.take();
        drop(pending);
        if let (Some(local), Some(finish), Some(node)) = (local, finish, self.node.upgrade()) {
            let answers = node.collect(copies.into_iter().map(Ok).collect());
            finish(&node, local, answers);
        }
    }
}

impl Inner {
    /// Sends the record `head` holding `data` to each of `holders`, runs `local` on this
    /// thread meanwhile, and hands what it returned and the holders' answers to `finish`
    /// once all are in. A holder that cannot take its copy (busy, unreachable, leaving)
    /// does not fail the write: its answer is missing, and this node's maintenance brings it
    /// up to date later.
    pub(super) fn copy_then<T: Send + 'static>(
        self: &Arc<Self>,
        holders: &[NodeInfo],
        head: &RecordHead,
        data: Bytes,
        local: impl FnOnce() -> T,
        finish: impl FnOnce(&Inner, T, Vec<CopyAnswer>) + Send + 'static,
    ) {
        let parts = Arc::new(Parts {
            node: Arc::downgrade(self),
            pending: Mutex::new(Pending {
                left: holders.len() + 1,
                local: None,
                copies: Vec::with_capacity(holders.len()),
                finish: Some(Box::new(finish)),
            }),
        });
        for &holder in holders {
            let parts = Arc::clone(&parts);
            let then = Box::new(move |reply: Result<Message>| {
                let answer = reply.and_then(|reply| copy_answer(holder, reply));
                parts.add(|p| p.copies.push((holder, answer)));
            });
            let wait = self.config.net.io_timeout;
            let copy = head.clone();
            (self.pool).send_record_then(holder.addr, copy, data.clone(), wait, then);
        }
        let done = local();
        parts.add(|p| p.local = Some(done));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::id::Id;
    use crate::node::versions::{next_version, wall_clock_ns};
    use crate::node::{Node, NodeConfig};
    use crate::{ClusterKey, Discovery};

    /// What a finished write was handed: this node's part, and the holders' answers.
    type Finished = (u32, Vec<CopyAnswer>);

    fn copy_of(name: &[u8], writer: &Node) -> RecordHead {
        RecordHead {
            name: name.to_vec(),
            size: 3,
            version: next_version(wall_clock_ns(), None, writer.info().id).expect("a version"),
            deleted: false,
            handoff: true,
            request: 1,
            existed: false,
            relayed: false,
            direct: false,
        }
    }

    /// Runs `copy_then` from `node` to `holders`, its local part returning `local` after
    /// `local_takes`; what `finish` was handed, within a bound.
    fn write(
        node: &Node,
        holders: &[NodeInfo],
        head: &RecordHead,
        local: u32,
        local_takes: Duration,
    ) -> Finished {
        let (finished, handed) = mpsc::channel();
        let finish = move |_: &Inner, local: u32, answers: Vec<CopyAnswer>| {
            // On a thread of the crew: a test gone meanwhile is no reason to panic there.
            let _ = finished.send((local, answers));
        };
        let data = Bytes::from_static(b"abc");
        let run_local = || {
            std::thread::sleep(local_takes);
            local
        };
        node.inner.copy_then(holders, head, data, run_local, finish);
        handed
            .recv_timeout(Duration::from_secs(30))
            .expect("the write finished")
    }

    #[test]
    fn the_last_part_in_completes_the_write_whichever_it_is() {
        let key = ClusterKey::generate().unwrap();
        let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let discovery = Discovery::start(localhost, &key).unwrap();
        let nodes: Vec<Node> = [0x1000, 0x2000]
            .iter()
            .map(|&id| {
                let config = NodeConfig {
                    id: Some(Id(id)),
                    ..NodeConfig::new(&key)
                };
                let node = Node::start(config).unwrap();
                node.join_discovery(discovery.local_addr()).unwrap();
                node
            })
            .collect();
        let (writer, holder) = (&nodes[0], nodes[1].info());

        // No other holder: this node's part is the last.
        let head = copy_of(b"alone", writer);
        assert_eq!(write(writer, &[], &head, 7, Duration::ZERO), (7, vec![]));

        // A holder that cannot be reached fails at once; the write waits for its own part.
        let gone = {
            let listener = TcpListener::bind(localhost).unwrap();
            listener.local_addr().unwrap()
        };
        let unreachable = NodeInfo {
            id: Id(0x3000),
            addr: gone,
        };
        let slow = Duration::from_millis(200);
        assert_eq!(write(writer, &[unreachable], &head, 8, slow), (8, vec![]));

        // A live holder's answer, in before this node's part (slow) or after it (at once).
        for (name, local_takes) in [(&b"first"[..], slow), (b"second", Duration::ZERO)] {
            let head = copy_of(name, writer);
            let (local, answers) = write(writer, &[holder, unreachable], &head, 9, local_takes);
            assert_eq!(local, 9);
            let expected = CopyAnswer {
                version: head.version,
                kept: true,
                before: None,
            };
            assert_eq!(answers, vec![expected], "{name:?}");
            let (meta, data) = nodes[1].inner.objects.store.get(name).expect("the copy");
            assert_eq!((meta.version, &data[..]), (head.version, &b"abc"[..]));
        }
    }
}
