//! What one process can tell of the whole cluster: the live nodes (devices running,
//! shards held and placed), and the shards being recovered. A gateway answers
//! `GET /v1/cluster` with it; the rules live here, next to the keeper that makes them
//! true.
//!
//! # Rules
//! - The nodes are the live members of this process's view, as their last heartbeats
//!   described them.
//! - A shard is **placed** on the node placement over those members gives it (the same
//!   placement the keepers and the gateways compute).
//! - A shard is **held** by the node whose lease on it is live: not expired by the
//!   wall clock of the process that asks (leases carry the holder's wall clock; the
//!   keepers judge other nodes' leases by their own monotonic clock, so around an
//!   expiry the two may differ by the clock skew).
//! - A shard is **recovering** while its placement owner does not hold a live lease on
//!   it: a failover (the old holder died; its lease runs out, then the new owner takes
//!   it) or a hand-off (a node joined; the old holder releases, the new owner takes it)
//!   is under way. Its devices may be unavailable meanwhile (commands answer 503).

use wafleet_cluster_config::Placement;

use super::membership::Member;
use crate::store::Lease;

/// How the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One process, devices unfenced, no shards.
    Standalone,
    /// Nodes leasing shards, reached by gateways.
    Cluster,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Cluster => "cluster",
        }
    }
}

/// A live node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOverview {
    pub name: String,
    /// Where it serves HTTP, if it said.
    pub http_addr: Option<String>,
    pub devices_running: u32,
    /// Shards it holds a live lease on.
    pub shards_held: u32,
    /// Shards placement gives it.
    pub shards_placed: u32,
}

/// A shard whose placement owner does not hold it (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovering {
    pub shard: u32,
    /// The node placement gives it to.
    pub placed_on: String,
    /// The node that holds a live lease on it now; `None` when none does.
    pub held_by: Option<String>,
}

/// The cluster as one process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOverview {
    pub mode: Mode,
    /// The cluster's shard count (0 in standalone).
    pub shards: u32,
    pub nodes: Vec<NodeOverview>,
    /// By shard.
    pub recovering: Vec<Recovering>,
}

impl ClusterOverview {
    /// A standalone process: one node, no shards, nothing to recover.
    pub fn standalone(node: &str, devices_running: u32) -> ClusterOverview {
        ClusterOverview {
            mode: Mode::Standalone,
            shards: 0,
            nodes: vec![NodeOverview {
                name: node.to_owned(),
                http_addr: None,
                devices_running,
                shards_held: 0,
                shards_placed: 0,
            }],
            recovering: Vec::new(),
        }
    }

    /// A cluster of `shards` shards over the live `members`, with the store's `leases`
    /// (held ones, expired or not) judged at `now_ms`. With no live member nothing is
    /// placed, so nothing is counted as recovering.
    pub fn cluster(
        shards: u32,
        members: &[Member],
        leases: &[Lease],
        now_ms: i64,
    ) -> ClusterOverview {
        let placement = Placement::new(shards, members.iter().map(|m| m.name.as_str())).ok();
        let mut holders: Vec<Option<&str>> = vec![None; shards as usize];
        for lease in leases.iter().filter(|l| !l.is_expired(now_ms)) {
            if let Some(slot) = holders.get_mut(lease.shard as usize) {
                *slot = Some(lease.holder.as_str());
            }
        }
        let nodes = members
            .iter()
            .map(|member| NodeOverview {
                name: member.name.clone(),
                http_addr: Some(member.http_addr.clone()).filter(|a| !a.is_empty()),
                devices_running: member.devices_running,
                shards_held: count(holders.iter().filter(|h| **h == Some(&member.name))),
                shards_placed: placement
                    .as_ref()
                    .map_or(0, |p| count(p.shards_of(&member.name))),
            })
            .collect();
        let recovering = match &placement {
            None => Vec::new(),
            Some(placement) => (0..shards)
                .filter_map(|shard| {
                    let placed_on = placement.owner(shard);
                    let held_by = holders[shard as usize];
                    (held_by != Some(placed_on)).then(|| Recovering {
                        shard,
                        placed_on: placed_on.to_owned(),
                        held_by: held_by.map(str::to_owned),
                    })
                })
                .collect(),
        };
        ClusterOverview {
            mode: Mode::Cluster,
            shards,
            nodes,
            recovering,
        }
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, running: u32) -> Member {
        Member {
            name: name.into(),
            http_addr: format!("{name}:8080"),
            devices_running: running,
        }
    }

    #[test]
    fn a_shard_recovers_until_its_owner_holds_a_live_lease() {
        let members = [member("a", 2), member("b", 0)];
        let placement = Placement::new(8, ["a", "b"]).unwrap();
        let now = 1_000;
        // Every shard held by its owner but shard 0, which a dead node "c" still holds
        // live, and shard 1, whose lease ran out.
        let leases: Vec<Lease> = (0..8)
            .map(|shard| match shard {
                0 => Lease::held(0, "c", now + 5_000),
                1 => Lease::held(1, placement.owner(1), now),
                s => Lease::held(s, placement.owner(s), now + 5_000),
            })
            .collect();
        let overview = ClusterOverview::cluster(8, &members, &leases, now);
        assert_eq!(overview.mode, Mode::Cluster);
        assert_eq!(
            overview.recovering,
            [
                Recovering {
                    shard: 0,
                    placed_on: placement.owner(0).into(),
                    held_by: Some("c".into()),
                },
                Recovering {
                    shard: 1,
                    placed_on: placement.owner(1).into(),
                    held_by: None,
                },
            ]
        );
        for node in &overview.nodes {
            let placed = count(placement.shards_of(&node.name));
            let lost = count(
                [0, 1]
                    .into_iter()
                    .filter(|s| placement.owner(*s) == node.name),
            );
            assert_eq!(node.shards_placed, placed);
            assert_eq!(node.shards_held, placed - lost, "{}", node.name);
            assert_eq!(
                node.http_addr.as_deref(),
                Some(&*format!("{}:8080", node.name))
            );
        }
        assert_eq!(overview.nodes[0].devices_running, 2);
    }

    #[test]
    fn no_live_member_places_nothing() {
        let overview = ClusterOverview::cluster(4, &[], &[Lease::held(0, "a", i64::MAX)], 0);
        assert!(overview.nodes.is_empty());
        assert!(overview.recovering.is_empty());
        let alone = ClusterOverview::standalone("local", 3);
        assert_eq!(alone.mode.as_str(), "standalone");
        assert_eq!(alone.nodes[0].devices_running, 3);
    }
}
