//! The webhook operations of a device's owner: set (checked, secret sealed, stored with
//! the device), delete, replay; and finding the deliveries due on the devices this node
//! owns.

use super::Fleet;
use crate::api::{FleetError, WebhookSpec, WebhookView};
use crate::clock::now_ms;
use crate::egress::{self, TargetError};
use crate::store::{DevicePatch, Fence, ReplayWhich};
use crate::webhooks::Ownership;

impl Fleet {
    /// Sets the device's webhook. The URL's target must be allowed (see
    /// [`crate::egress`]): `WebhookUrlNotAllowed` otherwise, `Invalid` for a URL that
    /// is not http(s) or whose name does not resolve.
    pub async fn set_webhook(
        &self,
        id: &str,
        spec: WebhookSpec,
        fence: Option<Fence>,
    ) -> Result<WebhookView, FleetError> {
        let device = self.catalog.device(id).await?;
        let hooks = &self.ctx.webhooks;
        let stored = spec.seal(id, hooks.sealer())?;
        egress::check_target(&spec.url, hooks.allow_private())
            .await
            .map_err(|error| match error {
                TargetError::NotAllowed { .. } => FleetError::WebhookUrlNotAllowed(format!(
                    "the webhook URL is not allowed: {error} (set webhooks.allow_private_targets \
                     to allow private targets)"
                )),
                other => FleetError::Invalid(format!("the webhook URL is not usable: {other}")),
            })?;
        let patch = DevicePatch {
            webhook: Some(Some(stored.to_field())),
            ..DevicePatch::default()
        };
        self.ctx
            .store
            .patch_device(id, &patch, now_ms(), fence.as_ref())
            .await?;
        hooks.remember(id, &device.tenant, Some(&stored))?;
        Ok(stored.view())
    }

    /// Removes the device's webhook (its recorded deliveries stay). Removing none is
    /// not an error.
    pub async fn delete_webhook(&self, id: &str, fence: Option<Fence>) -> Result<(), FleetError> {
        let device = self.catalog.device(id).await?;
        if device.webhook.is_some() {
            let patch = DevicePatch {
                webhook: Some(None),
                ..DevicePatch::default()
            };
            self.ctx
                .store
                .patch_device(id, &patch, now_ms(), fence.as_ref())
                .await?;
        }
        self.ctx.webhooks.remember(id, &device.tenant, None)?;
        Ok(())
    }

    /// Queues deliveries again: one event (any status), or every dead one; wakes the
    /// device's lane. `DeliveryNotFound` for an unknown event id.
    pub async fn replay_webhook(
        &self,
        id: &str,
        event_id: Option<String>,
    ) -> Result<u64, FleetError> {
        self.catalog.device(id).await?;
        let which = match event_id {
            Some(event_id) => ReplayWhich::Event(event_id),
            None => ReplayWhich::Dead,
        };
        let count = self
            .ctx
            .store
            .replay_deliveries(id, &which, now_ms())
            .await?;
        if let (ReplayWhich::Event(event_id), 0) = (&which, count) {
            return Err(FleetError::DeliveryNotFound(event_id.clone()));
        }
        if count > 0 {
            self.ctx.webhooks.wake(id);
        }
        Ok(count)
    }

    /// Starts delivering, on this node, the due deliveries of the devices of these
    /// shards (after a start or a takeover; the reconcile pass calls it too).
    pub async fn resume_webhooks(&self, shards: &[u32]) -> Result<usize, FleetError> {
        Ok(self.ctx.webhooks.resume(shards).await?)
    }

    /// Tells the webhooks which devices this node owns: a lane delivers only while it
    /// does (a cluster node: the shards it holds; standalone: every device).
    pub fn set_webhook_ownership(&self, owns: Ownership) {
        self.ctx.webhooks.set_ownership(owns);
    }
}
