//! [`DeviceApi`]: every device operation the routes need, whoever runs the device.
//!
//! Standalone implements it with the local [`Fleet`] (below); a cluster gateway with
//! [`crate::remote::RemoteDevices`], which sends each command to the device's node.

use async_trait::async_trait;
use wafleet_cluster_config::QuotaTable;
use wafleet_node::device::QrCode;
use wafleet_node::limits::view::LimitsView;
use wafleet_node::link::PairCode;
use wafleet_node::store::{
    DevicePage, DeviceQuery, DeviceRecord, DeviceStatus, MessageRecord, TrustLevel,
};
use wafleet_node::{Fleet, FleetError, NewDevice, SendText, Sent};

/// The device operations behind the HTTP API. Errors are [`FleetError`]s wherever the
/// device runs; [`crate::error`] maps them to statuses.
#[async_trait]
pub trait DeviceApi: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a device (stopped). `DeviceExists` if the id is taken.
    async fn create_device(&self, new: NewDevice) -> Result<DeviceRecord, FleetError>;
    /// One device; `DeviceNotFound` if there is none.
    async fn device(&self, id: &str) -> Result<DeviceRecord, FleetError>;
    /// One page of devices.
    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, FleetError>;
    /// Devices per status (statuses without devices may be absent).
    async fn count_devices(&self) -> Result<Vec<(DeviceStatus, u64)>, FleetError>;
    /// Logs out, wipes and deletes the device with its messages.
    async fn delete_device(&self, id: &str) -> Result<(), FleetError>;
    async fn start_device(&self, id: &str) -> Result<DeviceRecord, FleetError>;
    async fn stop_device(&self, id: &str) -> Result<DeviceRecord, FleetError>;
    async fn restart_device(&self, id: &str) -> Result<DeviceRecord, FleetError>;
    async fn logout_device(&self, id: &str) -> Result<DeviceRecord, FleetError>;
    /// The QR code on show; `WrongState` unless the device is in `SCAN_QR`.
    async fn qr(&self, id: &str) -> Result<QrCode, FleetError>;
    /// A pairing code for `phone`; the device must be in `SCAN_QR`.
    async fn pairing_code(&self, id: &str, phone: &str) -> Result<PairCode, FleetError>;
    /// Accepts a text message (stored `queued` before this returns).
    async fn send_text(&self, id: &str, send: SendText) -> Result<Sent, FleetError>;
    /// One message of the device; `MessageNotFound` if there is none.
    async fn message(&self, device_id: &str, message_id: &str)
    -> Result<MessageRecord, FleetError>;
    /// The device's quota use (from its rate limiter).
    async fn limits(&self, id: &str) -> Result<LimitsView, FleetError>;
    /// Sets the device's trust level; applies from its next send.
    async fn set_trust_level(
        &self,
        id: &str,
        level: TrustLevel,
    ) -> Result<DeviceRecord, FleetError>;
    /// The quota table per trust level in force.
    async fn quota_table(&self) -> Result<QuotaTable, FleetError>;
    /// Stores a (checked) quota table and applies it to every running device.
    async fn set_quota_table(&self, table: QuotaTable) -> Result<QuotaTable, FleetError>;
    /// The node that runs the device (the `node` field of a device), as far as this
    /// process knows; empty when no node is live.
    fn node_of(&self, device_id: &str) -> String;
    /// Refreshes gauges that are computed when metrics are scraped.
    async fn refresh_metrics(&self) -> Result<(), FleetError>;
}

/// Standalone: the devices run in this process.
#[async_trait]
impl DeviceApi for Fleet {
    async fn create_device(&self, new: NewDevice) -> Result<DeviceRecord, FleetError> {
        Fleet::create_device(self, new).await
    }

    async fn device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        Fleet::device(self, id).await
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, FleetError> {
        Fleet::list_devices(self, query).await
    }

    async fn count_devices(&self) -> Result<Vec<(DeviceStatus, u64)>, FleetError> {
        Fleet::count_devices(self).await
    }

    async fn delete_device(&self, id: &str) -> Result<(), FleetError> {
        Fleet::delete_device(self, id).await
    }

    async fn start_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        Fleet::start_device(self, id).await
    }

    async fn stop_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        Fleet::stop_device(self, id).await
    }

    async fn restart_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        Fleet::restart_device(self, id).await
    }

    async fn logout_device(&self, id: &str) -> Result<DeviceRecord, FleetError> {
        Fleet::logout_device(self, id).await
    }

    async fn qr(&self, id: &str) -> Result<QrCode, FleetError> {
        Fleet::qr(self, id).await
    }

    async fn pairing_code(&self, id: &str, phone: &str) -> Result<PairCode, FleetError> {
        Fleet::pairing_code(self, id, phone).await
    }

    async fn send_text(&self, id: &str, send: SendText) -> Result<Sent, FleetError> {
        Fleet::send_text(self, id, send).await
    }

    async fn message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<MessageRecord, FleetError> {
        Fleet::message(self, device_id, message_id).await
    }

    async fn limits(&self, id: &str) -> Result<LimitsView, FleetError> {
        Fleet::limits(self, id).await
    }

    async fn set_trust_level(
        &self,
        id: &str,
        level: TrustLevel,
    ) -> Result<DeviceRecord, FleetError> {
        Fleet::set_trust_level(self, id, level).await
    }

    async fn quota_table(&self) -> Result<QuotaTable, FleetError> {
        Ok(Fleet::quota_table(self))
    }

    async fn set_quota_table(&self, table: QuotaTable) -> Result<QuotaTable, FleetError> {
        Fleet::set_quota_table(self, table).await
    }

    fn node_of(&self, _device_id: &str) -> String {
        self.node_name().to_owned()
    }

    async fn refresh_metrics(&self) -> Result<(), FleetError> {
        Fleet::refresh_metrics(self).await
    }
}
