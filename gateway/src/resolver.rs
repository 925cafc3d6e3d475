//! Finds a device's owner the way nodes do: placement over the live members this
//! gateway hears heartbeats from.

use std::sync::Mutex;

use ractor::ActorRef;
use tokio::sync::watch;
use wafleet_cluster_config::{Placement, shard_of};
use wafleet_node::cluster::host::{HostMsg, find_host};
use wafleet_node::cluster::membership::Member;

use crate::remote::HostResolver;

/// Resolves owners from the live member view, caching the placement until the view
/// changes.
#[derive(Debug)]
pub struct PlacementResolver {
    shards: u32,
    members: watch::Receiver<Vec<String>>,
    /// The same members with their heartbeats' details, when the caller has them.
    details: Option<watch::Receiver<Vec<Member>>>,
    cached: Mutex<Option<(Vec<String>, Placement)>>,
}

impl PlacementResolver {
    pub fn new(shards: u32, members: watch::Receiver<Vec<String>>) -> PlacementResolver {
        PlacementResolver {
            shards,
            members,
            details: None,
            cached: Mutex::new(None),
        }
    }

    /// Describes the members with `details` (see
    /// `wafleet_node::cluster::ClusterHandle::member_details`).
    pub fn with_details(mut self, details: watch::Receiver<Vec<Member>>) -> PlacementResolver {
        self.details = Some(details);
        self
    }
}

impl HostResolver for PlacementResolver {
    fn owner_of(&self, device_id: &str) -> Option<String> {
        let members = self.members.borrow();
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        // Rebuilt only when the member view changed; a request copies nothing else.
        if cached.as_ref().is_none_or(|(m, _)| *m != *members) {
            *cached = Placement::new(self.shards, members.iter())
                .ok()
                .map(|p| (members.clone(), p));
        }
        let (_, placement) = cached.as_ref()?;
        Some(placement.owner(shard_of(device_id, self.shards)).to_owned())
    }

    fn host_named(&self, node: &str) -> Option<ActorRef<HostMsg>> {
        find_host(node)
    }

    fn nodes(&self) -> Vec<String> {
        self.members.borrow().clone()
    }

    fn members(&self) -> Vec<Member> {
        match &self.details {
            Some(details) => details.borrow().clone(),
            None => self.nodes().into_iter().map(Member::named).collect(),
        }
    }

    fn shards(&self) -> u32 {
        self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_member_view() {
        let (view, members) = watch::channel(Vec::new());
        let resolver = PlacementResolver::new(1024, members);
        assert_eq!(resolver.owner_of("dev-1"), None, "no live node");
        view.send_replace(vec!["a".into(), "b".into()]);
        let expected = Placement::new(1024, ["a", "b"]).unwrap();
        assert_eq!(
            resolver.owner_of("dev-1").as_deref(),
            Some(expected.owner_of("dev-1"))
        );
        view.send_replace(vec!["a".into()]);
        assert_eq!(resolver.owner_of("dev-1").as_deref(), Some("a"));
    }
}
