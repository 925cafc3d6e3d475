//! Staying connected to every peer: the configured seeds, and the members that other
//! members say they are connected to.
//!
//! ractor_cluster's `Transitive` mode would find peers of peers by itself, but it dials
//! them with its plain `client_connect`: under TLS those connections fail at the
//! listener's handshake (after the plain dial has already sent this process's name in
//! clear). So the node server runs `Isolated`, and this loop does the discovery: each
//! node's heartbeat lists the cluster addresses of the members it has a session with
//! (`Heartbeat.peers`, filled from [`direct_members`]), the host gathers those lists
//! into `learned`, and this loop dials, with TLS when configured, every seed or learned
//! address that no session leads to yet. Gateways are not members, so nobody learns
//! their address: they dial the nodes, never the other way round.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use ractor::ActorRef;
use ractor_cluster::node::{NodeServerMessage, NodeServerSessionInformation};
use ractor_cluster::{ClientConnectErr, client_connect};
use tokio::sync::watch;
use tracing::{debug, warn};
use wafleet_protocol::cluster::PeerAddress;

use super::tls::ClusterTls;

/// How long one dial (TCP connect and, with TLS, the handshake) may take: a peer that
/// accepts and then says nothing must not hold up the dials to the others.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the dialing loop works from.
#[derive(Debug)]
pub(super) struct Dialer {
    pub(super) server: ActorRef<NodeServerMessage>,
    /// `host:port` of the configured seeds.
    pub(super) seeds: Vec<String>,
    /// This process's own `host:port` as it advertises it (never dialed).
    pub(super) own_address: String,
    pub(super) tls: Option<ClusterTls>,
    /// Live members (node names), to tell members' sessions from gateways'.
    pub(super) members: watch::Receiver<Vec<String>>,
    /// Addresses learned from members' heartbeats (kept by the host).
    pub(super) learned: watch::Receiver<Vec<String>>,
    /// Where this loop publishes the members it has a session with, for the host's
    /// heartbeats.
    pub(super) direct: watch::Sender<Vec<PeerAddress>>,
    pub(super) every: Duration,
}

/// Dials every seed or learned address that no session leads to, again and again, so
/// that a restarted or late peer is found.
pub(super) async fn keep_connected(dialer: Dialer) {
    let mut tick = tokio::time::interval(dialer.every);
    // Addresses whose TLS handshake failed, warned about once until they succeed.
    let mut refused: HashSet<String> = HashSet::new();
    loop {
        tick.tick().await;
        let sessions = match ractor::call!(dialer.server, NodeServerMessage::GetSessions) {
            Ok(sessions) => sessions,
            Err(_) => return,
        };
        let direct = direct_members(&sessions, &dialer.members.borrow());
        dialer.direct.send_if_modified(|current| {
            let changed = *current != direct;
            if changed {
                *current = direct;
            }
            changed
        });
        let targets: BTreeSet<String> = dialer
            .seeds
            .iter()
            .chain(dialer.learned.borrow().iter())
            .filter(|address| **address != dialer.own_address)
            .cloned()
            .collect();
        for target in targets {
            if connected(&sessions, &target) {
                refused.remove(&target);
                continue;
            }
            let dial = async {
                match &dialer.tls {
                    Some(tls) => tls.connect(&dialer.server, &target).await,
                    None => client_connect(&dialer.server, target.as_str()).await,
                }
            };
            match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                Ok(Ok(())) => {
                    refused.remove(&target);
                }
                Ok(Err(ClientConnectErr::Encryption(error))) => {
                    if refused.insert(target.clone()) {
                        warn!(peer = %target, %error, "TLS handshake with a peer failed (will retry)");
                    } else {
                        debug!(peer = %target, %error, "TLS handshake failed again");
                    }
                }
                Ok(Err(error)) => debug!(peer = %target, %error, "peer not reachable yet"),
                Err(_) => debug!(peer = %target, "peer did not answer within {DIAL_TIMEOUT:?}"),
            }
        }
    }
}

/// Whether a session leads to `address`: dialed at it, or the peer advertises it.
fn connected(sessions: &HashMap<u64, NodeServerSessionInformation>, address: &str) -> bool {
    sessions.values().any(|session| {
        session.peer_addr == address
            || session
                .peer_name
                .as_ref()
                .is_some_and(|name| name.connection_string == address)
    })
}

/// The live members this process has a session with and their advertised addresses,
/// sorted. ractor_cluster names a peer `node@host`; members are known by `node`.
fn direct_members(
    sessions: &HashMap<u64, NodeServerSessionInformation>,
    members: &[String],
) -> Vec<PeerAddress> {
    let peers: BTreeSet<(String, String)> = sessions
        .values()
        .filter_map(|session| session.peer_name.as_ref())
        .filter_map(|peer| {
            let node = peer
                .name
                .rsplit_once('@')
                .map_or(peer.name.as_str(), |(n, _)| n);
            members
                .iter()
                .any(|m| m == node)
                .then(|| (node.to_owned(), peer.connection_string.clone()))
        })
        .collect();
    peers
        .into_iter()
        .map(|(node, address)| PeerAddress { node, address })
        .collect()
}
