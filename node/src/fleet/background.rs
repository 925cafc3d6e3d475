//! What a fleet runs in the background while it lives: the trust checks of running
//! devices and the settings refresh. Each is one task per node holding a weak
//! reference, so it ends with the fleet.

use std::time::Duration;

use ractor::ActorRef;
use tracing::{info, warn};

use crate::context::NodeContext;
use crate::device::DeviceMsg;
use crate::settings;
use crate::webhooks::settings::WebhookSettings;
use wafleet_cluster_config::QuotaTable;

/// Asks every running device, spread evenly over `trust_check_interval`, whether it has
/// earned promotion: one task per node, not a timer per device.
pub(super) fn spawn_trust_checks(ctx: std::sync::Weak<NodeContext>) {
    tokio::spawn(async move {
        loop {
            let Some((every, devices)) = ctx.upgrade().map(|ctx| {
                let devices: Vec<ActorRef<DeviceMsg>> = ctx.running.devices();
                (ctx.config.trust_check_interval, devices)
            }) else {
                return;
            };
            if every.is_zero() {
                return;
            }
            if devices.is_empty() {
                tokio::time::sleep(every).await;
                continue;
            }
            let step = every / u32::try_from(devices.len()).unwrap_or(u32::MAX);
            for device in devices {
                tokio::time::sleep(step).await;
                let _ = device.cast(DeviceMsg::CheckTrust);
            }
        }
    });
}

/// Reads the quota table from the store every `settings_refresh` while the fleet lives,
/// so a change made through any gateway reaches every running device.
pub(super) fn spawn_settings_refresh(ctx: std::sync::Weak<NodeContext>) {
    tokio::spawn(async move {
        let mut last_seen: Option<i64> = None;
        loop {
            let Some(every) = ctx.upgrade().map(|ctx| ctx.config.settings_refresh) else {
                return;
            };
            tokio::time::sleep(every.max(Duration::from_millis(50))).await;
            let Some(ctx) = ctx.upgrade() else {
                return;
            };
            match settings::load::<WebhookSettings>(ctx.store.as_ref()).await {
                Ok(webhooks) => {
                    if ctx.webhooks.set_settings(webhooks) {
                        info!(?webhooks, "webhook settings changed");
                    }
                }
                Err(error) => warn!(%error, "cannot read the webhook settings"),
            }
            match ctx.store.get_setting(settings::TRUST_LEVELS_SETTING).await {
                Ok(Some(setting)) if last_seen != Some(setting.updated_at_ms) => {
                    last_seen = Some(setting.updated_at_ms);
                    match settings::parse::<QuotaTable>(&setting.value) {
                        Some(table) => {
                            if ctx.quotas.set(table) {
                                info!("trust-level table changed; applied to every device");
                            }
                        }
                        None => warn!(
                            "the stored trust-level table is unusable; keeping the current one"
                        ),
                    }
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "cannot read the trust-level table"),
            }
        }
    });
}

/// How often delivered webhook events older than the retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per prune call (one short write each).
const PRUNE_BATCH: u32 = 5_000;

/// Deletes delivered webhook events older than `webhooks.retention_hours`, a batch at a
/// time, every minute while the fleet lives.
pub(super) fn spawn_delivery_pruning(ctx: std::sync::Weak<NodeContext>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PRUNE_EVERY).await;
            let Some(ctx) = ctx.upgrade() else {
                return;
            };
            let retention_ms = ctx.config.webhooks.retention_hours as i64 * 3_600_000;
            let before = crate::clock::now_ms() - retention_ms;
            for _ in 0..100 {
                match ctx.store.prune_deliveries(before, PRUNE_BATCH).await {
                    Ok(n) if n == u64::from(PRUNE_BATCH) => continue,
                    Ok(_) => break,
                    Err(error) => {
                        warn!(%error, "cannot prune delivered webhook events");
                        break;
                    }
                }
            }
        }
    });
}
