//! [`RemoteDevices`]: the device API of a cluster gateway.
//!
//! Each command goes to the host of the node that owns the device ([`HostResolver`],
//! filled by placement over the live members) as a `node_api.proto` command. Reads that
//! need no owner (lists, counts, one device, one message) come from the store through
//! the [`Catalog`], as in standalone.
//!
//! # Rules
//! - A node that answers "not owner, try X" gets the command redirected to X, once; a
//!   second "not owner" is [`FleetError::Unavailable`] (the device is moving).
//! - An owner that cannot be reached (no live node, no session to it, the session
//!   closes before the reply) is [`FleetError::Unavailable`]: 503, retryable. Nothing
//!   ran, or the node died while running it.
//! - A command that surely did not run (no session to the owner, or the shard between
//!   owners) and that needs no running device is done in the store instead, by the
//!   node's rule ([`Catalog::without_owner`]): a send is accepted into the outbox, a
//!   trust level stored.
//! - No reply within the timeout is [`FleetError::Timeout`]: 504. The command may have
//!   run (it is still running, or its reply was lost).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tracing::warn;
use wafleet_node::api::wire::reply_from_wire;
use wafleet_node::api::{CommandError, DeviceCommand, Empty, FleetError, Reply};
use wafleet_node::catalog::Catalog;
use wafleet_node::cluster::host::HostMsg;
use wafleet_node::cluster::membership::Member;
use wafleet_node::cluster::overview::ClusterOverview;
use wafleet_node::cluster::wire::Wire;
use wafleet_protocol::node_api::NodeCommand;

use crate::device_api::DeviceApi;
use crate::metrics;

/// How long a gateway waits for a node's reply by default: longer than a node's own
/// worst case (a restart waits for a stop and a start, 10 s each).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a device's commands go. Placement (which node owns a device) and the hosts a
/// gateway has sessions to are the cluster runtime's; this is how it tells
/// [`RemoteDevices`]. Called on every command: answer from memory.
pub trait HostResolver: Send + Sync + std::fmt::Debug + 'static {
    /// The node that owns the device by placement over the live members; `None` when
    /// no node is live.
    fn owner_of(&self, device_id: &str) -> Option<String>;

    /// The host of node `node`, if this process has a session to it.
    fn host_named(&self, node: &str) -> Option<ActorRef<HostMsg>>;

    /// Every live node, as far as this process knows.
    fn nodes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Every live node with what its heartbeats say (devices running, HTTP address);
    /// by default only the names of [`HostResolver::nodes`].
    fn members(&self) -> Vec<Member> {
        self.nodes().into_iter().map(Member::named).collect()
    }

    /// The cluster's shard count (0: unknown).
    fn shards(&self) -> u32 {
        0
    }

    /// The host to send the device's commands to.
    fn host_for(&self, device_id: &str) -> Option<ActorRef<HostMsg>> {
        self.owner_of(device_id)
            .and_then(|node| self.host_named(&node))
    }
}

/// The devices of a cluster, as a gateway reaches them.
#[derive(Debug, Clone)]
pub struct RemoteDevices {
    /// Which node's host gets a device's commands.
    resolver: Arc<dyn HostResolver>,
    /// What a command that reached no node becomes ([`Catalog::without_owner`]).
    catalog: Catalog,
    /// How long to wait for a node's reply before answering 504.
    timeout: Duration,
}

/// What sending one command to one host gave: a reply (a result or the node's error),
/// or a failure to get one.
type Answer = Result<Result<Reply, CommandError>, FleetError>;

/// Where a command went. (Lives for one call; not worth boxing the reply.)
#[allow(clippy::large_enum_variant)]
enum Routed {
    /// A node ran it (or may have: it went away or timed out before answering).
    Answered(Result<Reply, FleetError>),
    /// No node ran it.
    NotRun(FleetError),
}

impl RemoteDevices {
    pub fn new(resolver: Arc<dyn HostResolver>, catalog: Catalog) -> RemoteDevices {
        RemoteDevices {
            resolver,
            catalog,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Waits `timeout` for each node reply instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> RemoteDevices {
        self.timeout = timeout;
        self
    }

    /// Sends a command to the device's owner, following one "not owner" redirect.
    /// `NotRun` means no node ran it (no session to the owner, or the shard is between
    /// owners), so doing the work some other way cannot double it.
    async fn try_command(&self, device_id: &str, command: DeviceCommand) -> Routed {
        let Some(host) = self.resolver.host_for(device_id) else {
            metrics::node_command("unavailable");
            let owner = self.resolver.owner_of(device_id);
            warn!(%device_id, ?owner, "no session to the device's owner");
            return Routed::NotRun(FleetError::Unavailable(format!(
                "the node that owns device {device_id} cannot be reached; retry"
            )));
        };
        let wire = NodeCommand {
            device_id: device_id.to_owned(),
            op: Some(command),
        };
        let owner_hint = match self.send(device_id, &host, wire.clone()).await {
            Err(error) => return Routed::Answered(Err(error)),
            Ok(Ok(reply)) => return Routed::Answered(Ok(reply)),
            Ok(Err(CommandError::Fleet(error))) => return Routed::Answered(Err(error)),
            Ok(Err(CommandError::NotOwner { owner_hint })) => owner_hint,
        };
        let moving = || {
            metrics::node_command("unavailable");
            Routed::NotRun(FleetError::Unavailable(format!(
                "device {device_id} is moving between nodes; retry"
            )))
        };
        let Some(host) = owner_hint.and_then(|node| self.resolver.host_named(&node)) else {
            return moving();
        };
        metrics::node_command("redirected");
        match self.send(device_id, &host, wire).await {
            Err(error) => Routed::Answered(Err(error)),
            Ok(Ok(reply)) => Routed::Answered(Ok(reply)),
            Ok(Err(CommandError::Fleet(error))) => Routed::Answered(Err(error)),
            Ok(Err(CommandError::NotOwner { .. })) => moving(),
        }
    }

    /// One round trip to one host.
    async fn send(
        &self,
        device_id: &str,
        host: &ActorRef<HostMsg>,
        command: NodeCommand,
    ) -> Answer {
        let call = host
            .call(
                |reply| HostMsg::Command(Wire(Box::new(command)), reply),
                Some(self.timeout),
            )
            .await;
        match call {
            Ok(CallResult::Success(Wire(reply))) => {
                metrics::node_command("answered");
                Ok(reply_from_wire(reply))
            }
            Ok(CallResult::Timeout) => {
                metrics::node_command("timeout");
                warn!(%device_id, timeout = ?self.timeout, "the device's node did not answer in time");
                Err(FleetError::Timeout)
            }
            Ok(CallResult::SenderError) | Err(_) => {
                metrics::node_command("unavailable");
                warn!(%device_id, "the device's node went away before answering");
                Err(FleetError::Unavailable(format!(
                    "the node that owns device {device_id} cannot be reached; retry"
                )))
            }
        }
    }
}

#[async_trait]
impl DeviceApi for RemoteDevices {
    async fn execute(&self, device_id: &str, command: DeviceCommand) -> Result<Reply, FleetError> {
        let is_send = matches!(command, DeviceCommand::SendText(_));
        match self.try_command(device_id, command.clone()).await {
            Routed::Answered(result) => result,
            Routed::NotRun(error) => match self.catalog.without_owner(device_id, command).await {
                Some(result) => {
                    if is_send {
                        metrics::node_command("accepted_by_gateway");
                    }
                    result
                }
                None => Err(error),
            },
        }
    }

    /// Tells every live node to read the settings now; one that misses this
    /// (unreachable, or joining) reads them within its settings refresh anyway.
    async fn settings_changed(&self) {
        let nodes = self.resolver.nodes();
        let refreshes = nodes.iter().filter_map(|node| {
            let host = self.resolver.host_named(node)?;
            let command = NodeCommand {
                device_id: String::new(),
                op: Some(DeviceCommand::RefreshSettings(Empty {})),
            };
            Some(async move { (node, self.send("", &host, command).await) })
        });
        for (node, answer) in futures_util::future::join_all(refreshes).await {
            if !matches!(answer, Ok(Ok(Reply::Refreshed))) {
                warn!(%node, ?answer, "a node did not confirm the new settings; it reads them within a second");
            }
        }
    }

    fn node_of(&self, device_id: &str) -> String {
        self.resolver.owner_of(device_id).unwrap_or_default()
    }

    /// Nothing: the devices-by-status gauge is the nodes' to export, not every
    /// gateway replica's.
    async fn refresh_metrics(&self) -> Result<(), FleetError> {
        Ok(())
    }

    /// The live members this gateway hears and the store's leases, judged now.
    async fn cluster(&self) -> Result<ClusterOverview, FleetError> {
        let members = self.resolver.members();
        let leases = self.catalog.store().list_leases(None).await?;
        let now = wafleet_node::clock::now_ms();
        Ok(ClusterOverview::cluster(
            self.resolver.shards(),
            &members,
            &leases,
            now,
        ))
    }
}
