//! Who is alive, from one process's point of view: itself (for a node) and every peer
//! heard from within the failure timeout.
//!
//! Liveness comes from heartbeats, not from TCP: a frozen process keeps its connections
//! open, so only silence tells it apart from a live one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wafleet_protocol::cluster::Heartbeat;

/// A peer as last heard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    last_seen: Instant,
    incarnation: u64,
    /// What its last heartbeat said of it.
    described: Member,
}

/// A live member as its last heartbeat described it (this node: as its next heartbeat
/// will).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Where it serves HTTP; empty when it did not say.
    pub http_addr: String,
    /// How many devices it runs.
    pub devices_running: u32,
}

impl Member {
    /// A member known by name only.
    pub fn named(name: String) -> Member {
        Member {
            name,
            ..Member::default()
        }
    }

    /// A member as `heartbeat` describes it.
    pub fn from_heartbeat(heartbeat: &Heartbeat) -> Member {
        Member {
            name: heartbeat.node.clone(),
            http_addr: heartbeat.http_addr.clone(),
            devices_running: heartbeat.devices_running,
        }
    }
}

/// The live-member view of one process.
#[derive(Debug)]
pub struct Membership {
    /// This process's node name; `None` for a gateway, which is not a member.
    me: Option<String>,
    failure_timeout: Duration,
    peers: HashMap<String, Peer>,
    /// Peers that said they are leaving, by the incarnation that left: a late heartbeat
    /// of that incarnation must not bring it back.
    left: HashMap<String, u64>,
}

impl Membership {
    pub fn new(me: Option<String>, failure_timeout: Duration) -> Membership {
        Membership {
            me,
            failure_timeout,
            peers: HashMap::new(),
            left: HashMap::new(),
        }
    }

    /// Records a heartbeat; returns whether the live set changed (a new or restarted
    /// peer, or one leaving).
    pub fn heard(&mut self, heartbeat: &Heartbeat, now: Instant) -> bool {
        if heartbeat.node.is_empty() || Some(&heartbeat.node) == self.me.as_ref() {
            return false;
        }
        if heartbeat.leaving {
            self.left
                .insert(heartbeat.node.clone(), heartbeat.incarnation);
            return self.peers.remove(&heartbeat.node).is_some();
        }
        if self.left.get(&heartbeat.node) == Some(&heartbeat.incarnation) {
            return false;
        }
        let previous = self.peers.insert(
            heartbeat.node.clone(),
            Peer {
                last_seen: now,
                incarnation: heartbeat.incarnation,
                described: Member::from_heartbeat(heartbeat),
            },
        );
        match previous {
            None => true,
            Some(peer) => peer.incarnation != heartbeat.incarnation,
        }
    }

    /// Forgets peers silent for longer than the failure timeout; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let timeout = self.failure_timeout;
        let dead: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, peer)| now.saturating_duration_since(peer.last_seen) > timeout)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &dead {
            self.peers.remove(name);
        }
        dead
    }

    /// The live members, sorted (this node included).
    pub fn live(&self) -> Vec<String> {
        let mut live: Vec<String> = self.peers.keys().cloned().chain(self.me.clone()).collect();
        live.sort();
        live
    }

    /// The live peers as their last heartbeats described them, with `own` (this node's
    /// own description; `None` for a gateway), sorted by name: [`Membership::live`]
    /// with details.
    pub fn members(&self, own: Option<Member>) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .peers
            .values()
            .map(|peer| peer.described.clone())
            .chain(own)
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, incarnation: u64) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            incarnation,
            http_addr: String::new(),
            leaving: false,
            peers: Vec::new(),
            devices_running: 0,
        }
    }

    #[test]
    fn a_leaving_peer_is_gone_at_once_until_it_restarts() {
        let now = Instant::now();
        let mut view = Membership::new(Some("a".into()), Duration::from_secs(10));
        assert!(view.heard(&beat("b", 1), now));
        let leaving = Heartbeat {
            leaving: true,
            ..beat("b", 1)
        };
        assert!(view.heard(&leaving, now), "leaving changes the view");
        assert_eq!(view.live(), ["a"]);
        assert!(!view.heard(&leaving, now), "said twice: no change");
        assert!(
            !view.heard(&beat("b", 1), now),
            "a late beat of the same run"
        );
        assert_eq!(view.live(), ["a"]);
        assert!(view.heard(&beat("b", 2), now), "restarted");
        assert_eq!(view.live(), ["a", "b"]);
    }

    #[test]
    fn silence_longer_than_the_timeout_is_death() {
        let start = Instant::now();
        let timeout = Duration::from_millis(1500);
        let mut view = Membership::new(Some("b".into()), timeout);
        assert_eq!(view.live(), ["b"]);
        assert!(view.heard(&beat("a", 1), start));
        assert!(view.heard(&beat("c", 1), start));
        assert!(!view.heard(&beat("a", 1), start + Duration::from_millis(250)));
        assert_eq!(view.live(), ["a", "b", "c"]);

        // c falls silent; a keeps beating.
        let later = start + Duration::from_millis(1600);
        view.heard(&beat("a", 1), later);
        assert_eq!(view.expire(later), ["c"]);
        assert_eq!(view.live(), ["a", "b"]);
        assert!(view.expire(later).is_empty());
    }

    #[test]
    fn a_restarted_peer_is_a_change_and_self_is_ignored() {
        let now = Instant::now();
        let mut view = Membership::new(Some("a".into()), Duration::from_secs(1));
        assert!(!view.heard(&beat("a", 9), now), "own heartbeat");
        assert!(!view.heard(&beat("", 1), now), "nameless");
        assert!(view.heard(&beat("b", 1), now));
        assert!(view.heard(&beat("b", 2), now), "new incarnation");
        let mut gateway = Membership::new(None, Duration::from_secs(1));
        gateway.heard(&beat("b", 1), now);
        assert_eq!(gateway.live(), ["b"], "a gateway is not a member");
    }

    #[test]
    fn members_are_described_by_their_last_heartbeat() {
        let now = Instant::now();
        let mut view = Membership::new(Some("b".into()), Duration::from_secs(10));
        view.heard(
            &Heartbeat {
                http_addr: "10.0.0.1:8080".into(),
                devices_running: 3,
                ..beat("a", 1)
            },
            now,
        );
        assert!(
            !view.heard(
                &Heartbeat {
                    http_addr: "10.0.0.1:8080".into(),
                    devices_running: 5,
                    ..beat("a", 1)
                },
                now
            ),
            "a new count is no change of the live set"
        );
        let own = Member {
            name: "b".into(),
            http_addr: String::new(),
            devices_running: 2,
        };
        let members = view.members(Some(own.clone()));
        assert_eq!(
            members,
            [
                Member {
                    name: "a".into(),
                    http_addr: "10.0.0.1:8080".into(),
                    devices_running: 5,
                },
                own
            ]
        );
        let names: Vec<String> = members.into_iter().map(|m| m.name).collect();
        assert_eq!(names, view.live());
    }
}
