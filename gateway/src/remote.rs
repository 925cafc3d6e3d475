//! [`RemoteDevices`]: the device API of a cluster gateway.
//!
//! Each command goes to the host of the node that owns the device ([`HostResolver`],
//! filled by placement over the live members) as a `node_api.proto` command. Reads that
//! need no owner (lists, counts, one device, one message) come from the store.
//!
//! # Rules
//! - A node that answers "not owner, try X" gets the command redirected to X, once; a
//!   second "not owner" is [`FleetError::Unavailable`] (the device is moving).
//! - An owner that cannot be reached (no live node, no session to it, the session
//!   closes before the reply) is [`FleetError::Unavailable`]: 503, retryable. Nothing
//!   ran, or the node died while running it.
//! - No reply within the timeout is [`FleetError::Timeout`]: 504. The command may have
//!   run (it is still running, or its reply was lost).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tracing::warn;
use wafleet_cluster_config::QuotaTable;
use wafleet_node::cluster::api::{Command, CommandError, Operation, Reply, reply_from_wire};
use wafleet_node::cluster::host::HostMsg;
use wafleet_node::cluster::wire::Wire;
use wafleet_node::device::QrCode;
use wafleet_node::fleet::{load_quota_table, store_quota_table};
use wafleet_node::limits::view::LimitsView;
use wafleet_node::link::PairCode;
use wafleet_node::store::{
    DevicePage, DevicePatch, DeviceQuery, DeviceRecord, DeviceStatus, MessageRecord, Store,
    TrustLevel,
};
use wafleet_node::{FleetError, NewDevice, SendText, Sent, accept_text, create_device};
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
    /// Reads that need no owner: lists, counts, one device, one message.
    store: Arc<dyn Store>,
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
    pub fn new(resolver: Arc<dyn HostResolver>, store: Arc<dyn Store>) -> RemoteDevices {
        RemoteDevices {
            resolver,
            store,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Waits `timeout` for each node reply instead of [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> RemoteDevices {
        self.timeout = timeout;
        self
    }

    /// Sends `command` to the device's owner, following one "not owner" redirect.
    async fn command(&self, command: Command) -> Result<Reply, FleetError> {
        match self.try_command(command).await {
            Routed::Answered(result) => result,
            Routed::NotRun(error) => Err(error),
        }
    }

    /// Sends a command to the device's owner, following one "not owner" redirect.
    /// `NotRun` means no node ran it (no session to the owner, or the shard is between
    /// owners), so doing the work some other way cannot double it.
    async fn try_command(&self, command: Command) -> Routed {
        let device_id = command.device_id.clone();
        let Some(host) = self.resolver.host_for(&device_id) else {
            metrics::node_command("unavailable");
            let owner = self.resolver.owner_of(&device_id);
            warn!(%device_id, ?owner, "no session to the device's owner");
            return Routed::NotRun(FleetError::Unavailable(format!(
                "the node that owns device {device_id} cannot be reached; retry"
            )));
        };
        let wire = NodeCommand::from(command);
        let owner_hint = match self.send(&device_id, &host, wire.clone()).await {
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
        match self.send(&device_id, &host, wire).await {
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
                |reply| HostMsg::Command(Wire(command), reply),
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

    /// A command whose reply is the device.
    async fn device_command(
        &self,
        id: &str,
        operation: Operation,
    ) -> Result<DeviceRecord, FleetError> {
        let command = Command::new(id, operation);
        let name = command.name();
        match self.command(command).await? {
            Reply::Device(device) => Ok(device),
            other => Err(unexpected(name, &other)),
        }
    }
}

/// A node answered with the wrong kind of result: a bug, or mismatched versions.
fn unexpected(command: &str, reply: &Reply) -> FleetError {
    FleetError::Internal(format!("the node answered {command} with {reply:?}"))
}

#[async_trait]
impl DeviceApi for RemoteDevices {
    /// In the store: creating needs no node.
    async fn create_device(&self, new: NewDevice) -> Result<DeviceRecord, FleetError> {
        create_device(self.store.as_ref(), new).await
    }

    async fn device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.store
            .get_device(id)
            .await?
            .ok_or_else(|| FleetError::DeviceNotFound(id.to_owned()))
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, FleetError> {
        Ok(self.store.list_devices(query).await?)
    }

    async fn count_devices(&self) -> Result<Vec<(DeviceStatus, u64)>, FleetError> {
        Ok(self.store.count_devices_by_status().await?)
    }

    async fn delete_device(&self, id: &str) -> Result<(), FleetError> {
        match self.command(Command::new(id, Operation::Delete)).await? {
            Reply::Deleted => Ok(()),
            other => Err(unexpected("delete", &other)),
        }
    }

    async fn start_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.device_command(id, Operation::Start).await
    }

    async fn stop_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.device_command(id, Operation::Stop).await
    }

    async fn restart_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.device_command(id, Operation::Restart).await
    }

    async fn logout_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        self.device_command(id, Operation::Logout).await
    }

    async fn qr(&self, id: &str) -> Result<QrCode, FleetError> {
        match self.command(Command::new(id, Operation::Qr)).await? {
            Reply::Qr(qr) => Ok(qr),
            other => Err(unexpected("qr", &other)),
        }
    }

    async fn pairing_code(&self, id: &str, phone: &str) -> Result<PairCode, FleetError> {
        let operation = Operation::PairingCode {
            phone: phone.to_owned(),
        };
        match self.command(Command::new(id, operation)).await? {
            Reply::PairingCode(code) => Ok(code),
            other => Err(unexpected("pairing_code", &other)),
        }
    }

    /// Through the owner when it answers; while no node can take the command (the owner
    /// is being replaced), accepted straight into the store's outbox, which the next
    /// owner drains when the device is READY. A message is never refused for a move.
    async fn limits(&self, id: &str) -> Result<LimitsView, FleetError> {
        match self.command(Command::new(id, Operation::Limits)).await? {
            Reply::Limits(view) => Ok(view),
            other => Err(unexpected("limits", &other)),
        }
    }

    async fn set_trust_level(
        &self,
        id: &str,
        level: TrustLevel,
    ) -> Result<DeviceRecord, FleetError> {
        match self
            .try_command(Command::new(id, Operation::SetTrustLevel(level)))
            .await
        {
            Routed::Answered(Ok(Reply::Device(device))) => Ok(device),
            Routed::Answered(Ok(other)) => Err(unexpected("set_trust_level", &other)),
            Routed::Answered(Err(error)) => Err(error),
            // No node runs it: the level is stored; its next run starts with it.
            Routed::NotRun(_) => {
                self.device(id).await?;
                let patch = DevicePatch {
                    trust_level: Some(level),
                    ..DevicePatch::default()
                };
                Ok(self
                    .store
                    .patch_device(id, &patch, wafleet_node::clock::now_ms(), None)
                    .await?)
            }
        }
    }

    async fn quota_table(&self) -> Result<QuotaTable, FleetError> {
        load_quota_table(self.store.as_ref()).await
    }

    async fn set_quota_table(&self, table: QuotaTable) -> Result<QuotaTable, FleetError> {
        store_quota_table(self.store.as_ref(), &table).await?;
        // Tell every live node to read it now; one that misses this (unreachable, or
        // joining) reads it within its settings refresh anyway.
        let nodes = self.resolver.nodes();
        let refreshes = nodes.iter().filter_map(|node| {
            let host = self.resolver.host_named(node)?;
            let command = NodeCommand::from(Command::new("", Operation::RefreshSettings));
            Some(async move { (node, self.send("", &host, command).await) })
        });
        for (node, answer) in futures_util::future::join_all(refreshes).await {
            if !matches!(answer, Ok(Ok(Reply::Refreshed))) {
                warn!(%node, ?answer, "a node did not confirm the new trust-level table; it reads it within a second");
            }
        }
        Ok(table)
    }

    async fn send_text(&self, id: &str, send: SendText) -> Result<Sent, FleetError> {
        match self
            .try_command(Command::new(id, Operation::SendText(send.clone())))
            .await
        {
            Routed::Answered(Ok(Reply::Sent(sent))) => Ok(sent),
            Routed::Answered(Ok(other)) => Err(unexpected("send_text", &other)),
            Routed::Answered(Err(error)) => Err(error),
            Routed::NotRun(_) => {
                metrics::node_command("accepted_by_gateway");
                accept_text(self.store.as_ref(), id, send).await
            }
        }
    }

    async fn message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<MessageRecord, FleetError> {
        self.store
            .get_message(device_id, message_id)
            .await?
            .ok_or_else(|| FleetError::MessageNotFound(message_id.to_owned()))
    }

    fn node_of(&self, device_id: &str) -> String {
        self.resolver.owner_of(device_id).unwrap_or_default()
    }

    /// Nothing: the devices-by-status gauge is the nodes' to export, not every
    /// gateway replica's.
    async fn refresh_metrics(&self) -> Result<(), FleetError> {
        Ok(())
    }
}
