//! What `GET /v1/devices/{id}/limits` shows ([`LimitsView`]), and the spent quota of a
//! device rebuilt from its stored sends: by its limiter when it starts, or here for a
//! device that runs nowhere in this process.

use serde::{Deserialize, Serialize};
use wafleet_cluster_config::Quota;
use wafleet_cluster_config::quota::DAY_MS;

use super::policy::{SendPolicy, Usage, WindowUsage, quota_for};
use super::trust::{TrustRecord, vault_store_error};
use crate::context::NodeContext;
use crate::store::{Store, StoreError, TrustLevel};

/// The most stored slots read back on load: more than a day of the highest quota.
const MAX_LOADED_SLOTS: u32 = 2 * wafleet_cluster_config::quota::MAX_PER_DAY;

/// What `GET /v1/devices/{id}/limits` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub device_id: String,
    pub trust_level: TrustLevel,
    pub quota: Quota,
    pub minute: Window,
    pub hour: Window,
    pub day: Window,
    /// Sends reserved for a time after now.
    pub queued: u32,
    /// Sends accepted and not yet sent.
    pub in_flight: u32,
    /// When a send asked now would go (Unix ms), without jitter.
    pub next_send_ms: i64,
    /// Sending is paused until then (a ban), if it is.
    pub paused_until_ms: Option<i64>,
    /// When the current link was made, if known.
    pub linked_at_ms: Option<i64>,
    /// When the view was taken (Unix ms).
    pub now_ms: i64,
}

/// Spent and remaining in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub limit: u32,
    pub spent: u32,
    pub remaining: u32,
}

impl LimitsView {
    pub(super) fn new(
        device_id: &str,
        level: TrustLevel,
        quota: Quota,
        usage: Usage,
        trust: &TrustRecord,
        now_ms: i64,
    ) -> LimitsView {
        let window = |w: WindowUsage| Window {
            limit: w.limit,
            spent: w.spent,
            remaining: w.remaining,
        };
        let paused_until_ms = trust.paused_until(now_ms);
        LimitsView {
            device_id: device_id.to_owned(),
            trust_level: level,
            quota,
            minute: window(usage.minute),
            hour: window(usage.hour),
            day: window(usage.day),
            queued: usage.queued,
            in_flight: usage.in_flight,
            next_send_ms: usage.next_send_ms.max(paused_until_ms.unwrap_or(i64::MIN)),
            paused_until_ms,
            linked_at_ms: trust.linked_at_ms,
            now_ms,
        }
    }
}

/// The limits of a device that runs nowhere in this process, computed from the store
/// (what its limiter would load).
pub async fn limits_from_store(
    ctx: &NodeContext,
    device_id: &str,
    level: TrustLevel,
) -> Result<LimitsView, StoreError> {
    let now = ctx.clock.now_ms();
    let policy = load_policy(ctx.store.as_ref(), device_id, now).await?;
    let trust = TrustRecord::load(&ctx.vault.device(device_id, None))
        .await
        .map_err(vault_store_error)?;
    let table = ctx.quotas.current();
    let quota = *quota_for(&table, level);
    let usage = policy.snapshot(&quota, now);
    Ok(LimitsView::new(device_id, level, quota, usage, &trust, now))
}

/// Rebuilds a device's policy from its stored sends: the slots of the last two days
/// (a slot a day in the future is possible for a send accepted a day ago), and the
/// sends still queued as in flight.
pub(super) async fn load_policy(
    store: &dyn Store,
    device_id: &str,
    now_ms: i64,
) -> Result<SendPolicy, StoreError> {
    let slots = store
        .outbound_slots(
            device_id,
            now_ms.saturating_sub(2 * DAY_MS),
            MAX_LOADED_SLOTS,
        )
        .await?;
    let queued = store
        .count_queued(device_id, wafleet_cluster_config::quota::MAX_MAX_IN_FLIGHT)
        .await?;
    let mut policy = SendPolicy::from_slots(slots);
    policy.set_in_flight(queued);
    Ok(policy)
}
