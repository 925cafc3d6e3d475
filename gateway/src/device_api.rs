//! [`DeviceApi`]: where the routes send a device command, whoever runs the device.
//!
//! Standalone implements it with the local [`Fleet`] (below); a cluster gateway with
//! [`crate::remote::RemoteDevices`], which sends each command to the device's node.
//! Either way the command is the one [`DeviceCommand`] and the node handles it in
//! [`Fleet::execute`]: a new operation adds nothing here. Reads that need no owner go
//! through the [`wafleet_node::catalog::Catalog`] in [`crate::AppState`].

use async_trait::async_trait;
use wafleet_node::Fleet;
use wafleet_node::api::{DeviceCommand, Empty, FleetError, Reply};
use wafleet_node::cluster::overview::ClusterOverview;

/// The device commands behind the HTTP API. Errors are [`FleetError`]s wherever the
/// device runs; [`crate::error`] maps them to statuses.
#[async_trait]
pub trait DeviceApi: Send + Sync + std::fmt::Debug + 'static {
    /// Runs `command` on device `device_id` where the device runs.
    async fn execute(&self, device_id: &str, command: DeviceCommand) -> Result<Reply, FleetError>;
    /// The shared settings in the store changed: every node reads them now (one that
    /// misses this reads them within its settings refresh).
    async fn settings_changed(&self);
    /// The node that runs the device (the `node` field of a device), as far as this
    /// process knows; empty when no node is live.
    fn node_of(&self, device_id: &str) -> String;
    /// Refreshes gauges that are computed when metrics are scraped.
    async fn refresh_metrics(&self) -> Result<(), FleetError>;
    /// The cluster as this process knows it (`GET /v1/cluster`).
    async fn cluster(&self) -> Result<ClusterOverview, FleetError>;
}

/// Standalone: the devices run in this process, unfenced.
#[async_trait]
impl DeviceApi for Fleet {
    async fn execute(&self, device_id: &str, command: DeviceCommand) -> Result<Reply, FleetError> {
        Fleet::execute(self, device_id, command, None).await
    }

    async fn settings_changed(&self) {
        let refresh = DeviceCommand::RefreshSettings(Empty {});
        if let Err(error) = Fleet::execute(self, "", refresh, None).await {
            tracing::warn!(%error, "cannot read the settings again; the refresh will");
        }
    }

    fn node_of(&self, _device_id: &str) -> String {
        self.node_name().to_owned()
    }

    async fn refresh_metrics(&self) -> Result<(), FleetError> {
        Fleet::refresh_metrics(self).await
    }

    async fn cluster(&self) -> Result<ClusterOverview, FleetError> {
        Ok(ClusterOverview::standalone(
            self.node_name(),
            self.running_count(),
        ))
    }
}
