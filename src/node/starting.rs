//! A node started and joined in one call, with an id drawn at random again while a member
//! of the overlay holds the one it tried.

use crate::client::Entry;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::rng::Rng;

use super::{kept_id, Node, NodeConfig};

/// Most ids tried for a node configured with none (the one kept in its data directory
/// counts). A random draw is refused only when a member holds that id (with m members, m
/// chances in 65,536), so eight refusals in a row mean an id space all but full.
pub const ID_DRAWS: usize = 8;

impl Node {
    /// Starts a node and joins it to the overlay that `entry` leads to: through the
    /// discovery node at its address ([`Node::join_discovery`]) or, with no discovery,
    /// through the member at its address ([`Node::join_peer`]).
    ///
    /// With no id configured (`config.id` of `None`) the node takes the id it last ran with
    /// in its data directory ([`ID_FILE`](super::ID_FILE)), or one drawn at random; when a
    /// member already holds it ([`Error::IdInUse`]) the node is stopped and started again
    /// with a new draw, [`ID_DRAWS`] tries at most. (Ids are 16 bits: among 100 nodes with
    /// random ids, two draw the same one about once in 14 overlays; among 1,000, in nearly
    /// every one. [`Node::start`] followed by a join leaves that case to the caller.) A
    /// configured id is never replaced: `IdInUse` is returned. On any other error the node
    /// is stopped and the error returned.
    pub fn start_joined(config: NodeConfig, entry: Entry) -> Result<Node> {
        let mut rng = Rng::from_entropy();
        start_drawing(config, entry, &mut || Id(rng.next_u64() as u16))
    }
}

/// [`Node::start_joined`], with the ids drawn by `draw`.
fn start_drawing(config: NodeConfig, entry: Entry, draw: &mut dyn FnMut() -> Id) -> Result<Node> {
    let drawn = config.id.is_none();
    // Tried first: the id the node last ran with in its data directory.
    let mut kept = kept_id::of(&config)?;
    let mut tries = 0;
    // Bounded: each pass returns, or tries again while fewer than ID_DRAWS were tried.
    loop {
        let mut this = config.clone();
        if drawn {
            this.id = Some(kept.take().unwrap_or_else(&mut *draw));
            tries += 1;
        }
        let node = Node::start(this)?;
        let joined = match entry {
            Entry::Discovery(addr) => node.join_discovery(addr),
            Entry::Peer(addr) => node.join_peer(addr),
        };
        match joined {
            Ok(()) => return Ok(node),
            Err(Error::IdInUse(id)) if drawn && tries < ID_DRAWS => {
                log::info!("the id {id} is in use: starting again with one drawn at random");
                node.shutdown();
            }
            Err(e) => {
                node.shutdown();
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterKey, Discovery};

    /// A draw handing out `ids` in turn, counting the draws.
    fn drawing(ids: Vec<Id>, draws: &mut usize) -> impl FnMut() -> Id + '_ {
        move || {
            *draws += 1;
            ids[(*draws - 1).min(ids.len() - 1)]
        }
    }

    #[test]
    fn a_drawn_id_in_use_at_discovery_is_drawn_again_and_the_node_joins() {
        let key = ClusterKey::generate().unwrap();
        let discovery = Discovery::start("127.0.0.1:0".parse().unwrap(), &key).unwrap();
        let entry = Entry::Discovery(discovery.local_addr());
        let holder = Node::start_joined(
            NodeConfig {
                id: Some(Id(0x1234)),
                ..NodeConfig::new(&key)
            },
            entry,
        )
        .unwrap();
        let mut draws = 0;
        let config = NodeConfig::new(&key);
        let node = start_drawing(
            config,
            entry,
            &mut drawing(vec![Id(0x1234), Id(0x9abc)], &mut draws),
        )
        .unwrap();
        assert_eq!(draws, 2);
        assert_eq!(node.id(), Id(0x9abc));
        assert!(node.is_joined());
        let ids: Vec<Id> = discovery.peers().iter().map(|p| p.id).collect();
        assert!(
            ids.contains(&Id(0x1234)) && ids.contains(&Id(0x9abc)),
            "{ids:?}"
        );
        let route = holder.lookup(Id(0x9abc)).unwrap();
        assert_eq!(route.responsible(), node.info());
        node.shutdown();
        holder.shutdown();
        discovery.shutdown();
    }

    #[test]
    fn a_drawn_id_held_by_a_member_is_drawn_again_when_joining_through_it() {
        let key = ClusterKey::generate().unwrap();
        let first = Node::start(NodeConfig {
            id: Some(Id(0x4000)),
            ..NodeConfig::new(&key)
        })
        .unwrap();
        first.create().unwrap();
        let mut draws = 0;
        let node = start_drawing(
            NodeConfig::new(&key),
            Entry::Peer(first.info().addr),
            &mut drawing(vec![Id(0x4000), Id(0xc000)], &mut draws),
        )
        .unwrap();
        assert_eq!((draws, node.id()), (2, Id(0xc000)));
        assert_eq!(first.lookup(Id(0xc000)).unwrap().responsible(), node.info());
        node.shutdown();
        first.shutdown();
    }

    #[test]
    fn a_configured_id_in_use_is_refused_and_draws_stop_at_their_bound() {
        let key = ClusterKey::generate().unwrap();
        let discovery = Discovery::start("127.0.0.1:0".parse().unwrap(), &key).unwrap();
        let entry = Entry::Discovery(discovery.local_addr());
        let taken = NodeConfig {
            id: Some(Id(0x0777)),
            ..NodeConfig::new(&key)
        };
        let holder = Node::start_joined(taken.clone(), entry).unwrap();
        let mut draws = 0;
        let refused = start_drawing(taken, entry, &mut drawing(vec![Id(1)], &mut draws));
        assert!(matches!(refused, Err(Error::IdInUse(Id(0x0777)))));
        assert_eq!(draws, 0, "a configured id is not drawn");
        let always_taken = start_drawing(
            NodeConfig::new(&key),
            entry,
            &mut drawing(vec![Id(0x0777)], &mut draws),
        );
        assert!(matches!(always_taken, Err(Error::IdInUse(Id(0x0777)))));
        assert_eq!(draws, ID_DRAWS);
        assert_eq!(discovery.peers().len(), 1);
        holder.shutdown();
        discovery.shutdown();
    }
}
