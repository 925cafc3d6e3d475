//! Joining a cluster: ractor_cluster sessions authenticated by the magic cookie (inside
//! mutual TLS when `[cluster.tls]` is configured), one [`host::NodeHost`] per process,
//! and membership by heartbeats.
//!
//! Nodes with different cookies never authenticate, so they never exchange process
//! groups or heartbeats: to each other they do not exist. Under TLS, a peer whose
//! certificate does not chain to the cluster CA does not even get to the cookie.
//!
//! # Layout
//! - [`host`]: the `NodeHost` actor (heartbeats out, liveness in, device commands).
//! - [`membership`]: the live-member view and its timeout rule.
//! - [`overview`]: what a process can tell of the whole cluster (nodes, shards held,
//!   shards recovering), for `GET /v1/cluster`.
//! - [`shards`]: the shard keeper (placement → leases → running devices).
//! - [`command`]: running a device command against this node's fleet.
//! - [`peers`]: dialing the seeds and the members other members report.
//! - [`tls`]: the certificates of cluster connections.
//! - [`ownership`]: the hook that says whether this node serves a device now.
//! - [`wire`]: prost messages as ractor_cluster payloads.
//! - `messages`: the `ractor::Message` impls that cluster mode asks of local messages.

pub mod command;
pub mod host;
mod lease_watch;
pub mod membership;
mod messages;
pub mod overview;
pub mod ownership;
mod peers;
pub mod shards;
mod starts;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::NodeServer;
use ractor_cluster::node::{NodeConnectionMode, NodeServerMessage};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use wafleet_protocol::cluster::Heartbeat;

use self::host::{HostArgs, HostMsg, NodeHost, host_actor_name};
use self::membership::Member;
use self::ownership::OwnershipCheck;
use self::peers::Dialer;
use self::tls::ClusterTls;
use crate::fleet::Fleet;

/// How a process joins the cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// Unique name of this process in the cluster.
    pub name: String,
    /// The magic cookie; only processes with the same one talk to each other.
    pub cookie: String,
    /// Where this process accepts cluster connections.
    pub listen: SocketAddr,
    /// The host name peers use to reach `listen`.
    pub advertise_host: String,
    /// `host:port` of other processes to connect to (kept trying while unreachable).
    pub seeds: Vec<String>,
    pub heartbeat_interval: Duration,
    pub failure_timeout: Duration,
    /// A node sends heartbeats and counts as a member; a gateway only listens.
    pub member: bool,
    /// This process's HTTP address, told to peers in heartbeats.
    pub http_addr: String,
    /// The devices a node runs the gateways' commands against; `None` in a gateway,
    /// whose host answers them `unavailable`.
    pub fleet: Option<Fleet>,
    /// Whether this node serves a device now; the cluster runtime fills it from
    /// placement and shard leases ([`ownership::AlwaysOwned`] until then).
    pub ownership: Arc<dyn OwnershipCheck>,
    /// Mutual TLS for every cluster connection, in and out; `None`: in clear.
    pub tls: Option<ClusterTls>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("seeds", &self.seeds)
            .field("member", &self.member)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Failures to join.
#[derive(Debug, thiserror::Error)]
#[error("cannot join the cluster: {0}")]
pub struct ClusterError(String);

/// This process's place in the cluster. Dropping it leaves.
#[derive(Debug)]
pub struct ClusterHandle {
    server: ActorRef<NodeServerMessage>,
    host: ActorRef<HostMsg>,
    members: watch::Receiver<Vec<String>>,
    details: watch::Receiver<Vec<Member>>,
    reconnect: JoinHandle<()>,
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        self.reconnect.abort();
        self.host.stop(None);
        self.server.stop(None);
    }
}

impl ClusterHandle {
    /// The live members (node names, sorted), updated as heartbeats come and go.
    pub fn members(&self) -> watch::Receiver<Vec<String>> {
        self.members.clone()
    }

    /// The live members with what their heartbeats say (HTTP address, devices
    /// running), sorted by name: the same members as [`ClusterHandle::members`].
    pub fn member_details(&self) -> watch::Receiver<Vec<Member>> {
        self.details.clone()
    }

    /// This process's host.
    pub fn host(&self) -> ActorRef<HostMsg> {
        self.host.clone()
    }

    /// Tells every peer that this node is leaving (and keeps saying so with each
    /// heartbeat until the process ends): they drop it from their live view at once.
    pub fn leave(&self) {
        let _ = self.host.cast(HostMsg::Leave);
    }
}

/// Starts the cluster listener and the host, and keeps connecting to the seeds and to
/// the members they report.
///
/// The node server runs `Isolated`: its `Transitive` mode would dial peers of peers
/// without TLS ([`peers`] does that discovery instead).
pub async fn join(options: ClusterOptions) -> Result<ClusterHandle, ClusterError> {
    match &options.tls {
        Some(_) => info!("cluster connections use mutual TLS"),
        None => warn!(
            "cluster traffic is NOT encrypted: [cluster.tls] is not configured, so message \
             texts, phone numbers and pairing codes cross the network in clear between \
             nodes and gateways (set cluster.tls.cert, key and ca; cluster.tls.required \
             = true refuses to start without them)"
        ),
    }
    let server = NodeServer::new(
        options.listen.port(),
        options.cookie.clone(),
        options.name.clone(),
        options.advertise_host.clone(),
        options.tls.as_ref().map(ClusterTls::incoming),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(options.listen.ip());
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| ClusterError(e.to_string()))?;
    let (view, members) = watch::channel(Vec::new());
    let (details_tx, details) = watch::channel(Vec::new());
    let (direct_tx, direct) = watch::channel(Vec::new());
    let (learned, learned_rx) = watch::channel(Vec::new());
    let heartbeat = options.member.then(|| Heartbeat {
        node: options.name.clone(),
        incarnation: incarnation(),
        http_addr: options.http_addr.clone(),
        leaving: false,
        peers: Vec::new(),
        devices_running: 0,
    });
    let args = HostArgs {
        name: options.name.clone(),
        heartbeat,
        interval: options.heartbeat_interval,
        failure_timeout: options.failure_timeout,
        view,
        details: details_tx,
        fleet: options.fleet.clone(),
        ownership: options.ownership.clone(),
        direct,
        learned,
    };
    // Named, so that peers find it by node name (a second process-local host of the
    // same name is refused here).
    let (host, _) = match Actor::spawn(Some(host_actor_name(&options.name)), NodeHost, args).await {
        Ok(spawned) => spawned,
        Err(error) => {
            server.stop(None);
            return Err(ClusterError(error.to_string()));
        }
    };
    let reconnect = tokio::spawn(peers::keep_connected(Dialer {
        server: server.clone(),
        seeds: options.seeds.clone(),
        own_address: format!("{}:{}", options.advertise_host, options.listen.port()),
        tls: options.tls.clone(),
        members: members.clone(),
        learned: learned_rx,
        direct: direct_tx,
        every: options.heartbeat_interval.max(Duration::from_millis(200)),
    }));
    Ok(ClusterHandle {
        server,
        host,
        members,
        details,
        reconnect,
    })
}

/// A number that differs between two starts of the same node.
fn incarnation() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return crate::clock::now_ms() as u64;
    }
    u64::from_le_bytes(bytes)
}
