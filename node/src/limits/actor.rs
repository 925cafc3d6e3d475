//! The `RateLimiter` actor of one device: every send of the device passes through it.
//!
//! It applies the pure [`Limiter`] (windows per minute, hour and day, a minimum gap with
//! random jitter, a cap on sends in flight) with the quota of the device's trust level,
//! read from the node's [`Quotas`](crate::context::Quotas) at every decision, so a
//! changed table applies to the very next send of every running device.
//!
//! # What it remembers, and where
//!
//! - **Spent quota** is not written by the limiter at all: every send it admits becomes
//!   a stored message whose `not_before_ms` is the slot it was given (see
//!   [`Store::outbound_slots`](crate::store::Store::outbound_slots)). The limiter loads
//!   those slots the first time it is asked, so a device that crashed, was killed or
//!   moved to another node finds exactly the quota it had spent.
//! - **Trust** (when the device was linked, when it was last banned, until when sending
//!   is paused) is one sealed record in the device's vault, `wafleet/trust`, written
//!   under the device's fence. A logout wipes it with the rest of the link's state: a
//!   new link starts over.
//!
//! # Trust levels
//!
//! A NEWCOMER that has been linked for [`NodeConfig::promote_after`] (7 days), is
//! READY, and was not banned in that time, becomes TRUSTED: checked every
//! [`NodeConfig::trust_check_interval`], with no restart. VERIFIED is only ever set by
//! an admin. A ban from the link demotes the device to NEWCOMER, pauses its sending
//! until the ban ends, and emits a `status` event with `reason: "banned"`.
//!
//! [`NodeConfig::promote_after`]: crate::context::NodeConfig::promote_after
//! [`NodeConfig::trust_check_interval`]: crate::context::NodeConfig::trust_check_interval

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};
use wafleet_cluster_config::Quota;
use wafleet_cluster_config::quota::DAY_MS;

use crate::context::NodeContext;
use crate::events::EventKind;
use crate::limits::policy::{Decision, Limiter, Refusal, Usage, quota_for};
use crate::metrics;
use crate::store::{DevicePatch, DeviceStatus, Fence, Store, StoreError, TrustLevel};
use crate::vault::{DeviceVault, VaultError};

/// The vault namespace and key of a device's [`TrustRecord`].
pub const TRUST_NAMESPACE: &str = "wafleet";
pub const TRUST_KEY: &str = "trust";

/// The most stored slots read back on load: more than a day of the highest quota.
const MAX_LOADED_SLOTS: u32 = 2 * wafleet_cluster_config::quota::MAX_PER_DAY;

/// Messages the rate limiter handles.
#[derive(Debug)]
pub enum LimiterMsg {
    /// A new send asks for a slot: the answer makes a 202 (now or `not_before`) or a 429.
    Admit(RpcReplyPort<Result<Admission, StoreError>>),
    /// A message that is already accepted but has no slot (accepted by a gateway while
    /// its device moved, or given back by a pause) asks for one. Never refused for the
    /// in-flight cap: it is already in.
    Schedule(RpcReplyPort<Result<Admission, StoreError>>),
    /// A send admitted earlier went out, or failed for good.
    Settled,
    /// Gives back the slot (Unix ms) of a send that never went out.
    Release(i64),
    /// The device's quota use, for `GET /v1/devices/{id}/limits`.
    Limits(RpcReplyPort<Result<LimitsView, StoreError>>),
    /// An admin set the device's trust level (already stored).
    SetLevel(TrustLevel),
    /// The link paired with a phone: a new link starts its week towards TRUSTED.
    Linked,
    /// The link reported a ban until this time (Unix ms).
    Banned { until_ms: i64 },
}

/// The limiter's answer to a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub decision: Decision,
    /// The time the decision was made at (Unix ms): the slot of a [`Decision::SendNow`].
    pub at_ms: i64,
    /// The level whose quota decided.
    pub level: TrustLevel,
}

impl Admission {
    /// The slot reserved, if any.
    pub fn slot(&self) -> Option<i64> {
        match self.decision {
            Decision::SendNow => Some(self.at_ms),
            Decision::Later { not_before_ms } => Some(not_before_ms),
            Decision::Refused { .. } => None,
        }
    }
}

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
    fn new(
        device_id: &str,
        level: TrustLevel,
        quota: Quota,
        usage: Usage,
        trust: &TrustRecord,
        now_ms: i64,
    ) -> LimitsView {
        let window = |w: crate::limits::policy::WindowUsage| Window {
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

/// A device's standing, kept sealed in its vault ([`TRUST_NAMESPACE`]/[`TRUST_KEY`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// When the current link was made (first seen connected, for older links).
    #[serde(default)]
    pub linked_at_ms: Option<i64>,
    /// When the last ban signal came.
    #[serde(default)]
    pub last_ban_ms: Option<i64>,
    /// Sending is paused until then.
    #[serde(default)]
    pub banned_until_ms: Option<i64>,
}

impl TrustRecord {
    /// The end of the pause, if sending is paused at `now_ms`.
    pub fn paused_until(&self, now_ms: i64) -> Option<i64> {
        self.banned_until_ms.filter(|&until| until > now_ms)
    }

    /// Whether a device at `level`, READY or not, has earned TRUSTED at `now_ms`.
    pub fn earns_promotion(
        &self,
        level: TrustLevel,
        ready: bool,
        promote_after_ms: i64,
        now_ms: i64,
    ) -> bool {
        let since = now_ms.saturating_sub(promote_after_ms);
        level == TrustLevel::Newcomer
            && ready
            && self.linked_at_ms.is_some_and(|linked| linked <= since)
            && self.last_ban_ms.is_none_or(|ban| ban <= since)
    }

    /// Reads a device's record from its vault (absent or unreadable: empty).
    pub async fn load(vault: &DeviceVault) -> Result<TrustRecord, VaultError> {
        match vault.get(TRUST_NAMESPACE, TRUST_KEY).await {
            Ok(Some(bytes)) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                warn!(device_id = vault.device_id(), %error, "unreadable trust record, starting over");
                TrustRecord::default()
            })),
            Ok(None) => Ok(TrustRecord::default()),
            Err(VaultError::Corrupt { .. }) => Ok(TrustRecord::default()),
            Err(error) => Err(error),
        }
    }

    async fn save(&self, vault: &DeviceVault) -> Result<(), VaultError> {
        let bytes = serde_json::to_vec(self).expect("a trust record always serializes");
        vault.put(TRUST_NAMESPACE, TRUST_KEY, &bytes).await
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
    let limiter = load_limiter(ctx.store.as_ref(), device_id, now).await?;
    let trust = TrustRecord::load(&ctx.vault.device(device_id, None))
        .await
        .map_err(vault_store_error)?;
    let table = ctx.quotas.current();
    let quota = *quota_for(&table, level);
    let usage = limiter.snapshot(&quota, now);
    Ok(LimitsView::new(device_id, level, quota, usage, &trust, now))
}

/// Rebuilds a device's limiter from its stored sends: the slots of the last two days
/// (a slot a day in the future is possible for a send accepted a day ago), and the
/// sends still queued as in flight.
async fn load_limiter(
    store: &dyn Store,
    device_id: &str,
    now_ms: i64,
) -> Result<Limiter, StoreError> {
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
    let mut limiter = Limiter::from_slots(slots);
    limiter.set_in_flight(queued);
    Ok(limiter)
}

fn vault_store_error(error: VaultError) -> StoreError {
    match error {
        VaultError::Store(error) => error,
        VaultError::Corrupt { namespace, key } => {
            StoreError::Corrupt(format!("{namespace}/{key} does not decrypt"))
        }
    }
}

/// A trust level as a byte, for the cell a device shares with its limiter.
pub(crate) fn level_to_u8(level: TrustLevel) -> u8 {
    match level {
        TrustLevel::Newcomer => 0,
        TrustLevel::Trusted => 1,
        TrustLevel::Verified => 2,
    }
}

pub(crate) fn level_from_u8(byte: u8) -> TrustLevel {
    match byte {
        1 => TrustLevel::Trusted,
        2 => TrustLevel::Verified,
        _ => TrustLevel::Newcomer,
    }
}

/// The actor; its data lives in [`LimiterState`].
#[derive(Debug)]
pub struct RateLimiter;

/// What a limiter is started with.
#[derive(Debug)]
pub struct LimiterArgs {
    pub(crate) device_id: String,
    pub(crate) fence: Option<Fence>,
    pub(crate) ctx: Arc<NodeContext>,
    /// The device's level, shared with its actor (which reads it for the hand-off guard).
    pub(crate) level: Arc<AtomicU8>,
}

/// The mutable data of a limiter.
#[derive(Debug)]
pub struct LimiterState {
    device_id: String,
    ctx: Arc<NodeContext>,
    vault: DeviceVault,
    level: Arc<AtomicU8>,
    /// Rebuilt from the stored sends on first use.
    limiter: Option<Limiter>,
    /// Read from the vault on first use.
    trust: Option<TrustRecord>,
}

impl Actor for RateLimiter {
    type Msg = LimiterMsg;
    type State = LimiterState;
    type Arguments = LimiterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<LimiterMsg>,
        args: LimiterArgs,
    ) -> Result<LimiterState, ActorProcessingErr> {
        Ok(LimiterState {
            vault: args.ctx.vault.device(&args.device_id, args.fence),
            device_id: args.device_id,
            ctx: args.ctx,
            level: args.level,
            limiter: None,
            trust: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LimiterMsg>,
        state: &mut LimiterState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(limiter) = &state.limiter {
            metrics::rate_limit_queue_depth(-f64::from(limiter.in_flight()));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<LimiterMsg>,
        msg: LimiterMsg,
        state: &mut LimiterState,
    ) -> Result<(), ActorProcessingErr> {
        let outcome = match msg {
            LimiterMsg::Admit(reply) => {
                let _ = reply.send(state.decide(false).await);
                Ok(())
            }
            LimiterMsg::Schedule(reply) => {
                let _ = reply.send(state.decide(true).await);
                Ok(())
            }
            LimiterMsg::Settled => {
                if let Some(limiter) = &mut state.limiter
                    && limiter.in_flight() > 0
                {
                    limiter.settled();
                    metrics::rate_limit_queue_depth(-1.0);
                }
                Ok(())
            }
            LimiterMsg::Release(slot) => {
                if let Some(limiter) = &mut state.limiter
                    && limiter.release(slot)
                {
                    metrics::rate_limit_queue_depth(-1.0);
                }
                Ok(())
            }
            LimiterMsg::Limits(reply) => {
                let _ = reply.send(state.limits().await);
                Ok(())
            }
            LimiterMsg::SetLevel(level) => {
                state.level.store(level_to_u8(level), Ordering::SeqCst);
                Ok(())
            }
            LimiterMsg::Linked => state.linked().await,
            LimiterMsg::Banned { until_ms } => state.banned(until_ms).await,
        };
        match outcome {
            Err(StoreError::Fenced { .. }) => {
                // The device's actor meets the same fence and stops the run.
                myself.stop(Some("fenced".into()));
                Ok(())
            }
            Err(error) => {
                warn!(device_id = %state.device_id, %error, "rate limiter could not update the store");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

impl LimiterState {
    fn level(&self) -> TrustLevel {
        level_from_u8(self.level.load(Ordering::SeqCst))
    }

    async fn limiter(&mut self) -> Result<&mut Limiter, StoreError> {
        if self.limiter.is_none() {
            let now = self.ctx.clock.now_ms();
            let limiter = load_limiter(self.ctx.store.as_ref(), &self.device_id, now).await?;
            metrics::rate_limit_queue_depth(f64::from(limiter.in_flight()));
            self.limiter = Some(limiter);
        }
        Ok(self.limiter.as_mut().expect("loaded above"))
    }

    async fn trust(&mut self) -> Result<&mut TrustRecord, StoreError> {
        if self.trust.is_none() {
            let trust = TrustRecord::load(&self.vault)
                .await
                .map_err(vault_store_error)?;
            self.trust = Some(trust);
        }
        Ok(self.trust.as_mut().expect("loaded above"))
    }

    async fn decide(&mut self, scheduled: bool) -> Result<Admission, StoreError> {
        let level = self.level();
        let table = self.ctx.quotas.current();
        let mut quota = *quota_for(&table, level);
        let now = self.ctx.clock.now_ms();
        let paused_until = self.trust().await?.paused_until(now);
        let limiter = self.limiter().await?;
        let decision = if let Some(until) = paused_until {
            Decision::Refused {
                retry_after_ms: until - now,
                reason: Refusal::Paused,
            }
        } else {
            if scheduled {
                // Already accepted: the in-flight cap does not apply again.
                quota.max_in_flight = u32::MAX;
            }
            let jitter = if quota.jitter_ms == 0 {
                0
            } else {
                fastrand::u64(0..=quota.jitter_ms)
            };
            limiter.decide(&quota, now, jitter)
        };
        match decision {
            Decision::SendNow => metrics::rate_limit_decision(level, "allowed"),
            Decision::Later { .. } => metrics::rate_limit_decision(level, "delayed"),
            Decision::Refused { .. } => metrics::rate_limit_decision(level, "refused"),
        }
        if !matches!(decision, Decision::Refused { .. }) {
            metrics::rate_limit_queue_depth(1.0);
        }
        Ok(Admission {
            decision,
            at_ms: now,
            level,
        })
    }

    async fn limits(&mut self) -> Result<LimitsView, StoreError> {
        let level = self.level();
        let table = self.ctx.quotas.current();
        let quota = *quota_for(&table, level);
        let now = self.ctx.clock.now_ms();
        let trust = self.trust().await?.clone();
        let usage = self.limiter().await?.snapshot(&quota, now);
        Ok(LimitsView::new(
            &self.device_id,
            level,
            quota,
            usage,
            &trust,
            now,
        ))
    }

    async fn linked(&mut self) -> Result<(), StoreError> {
        let now = self.ctx.clock.now_ms();
        self.trust = Some(record_link(&self.vault, now).await?);
        Ok(())
    }

    async fn banned(&mut self, until_ms: i64) -> Result<(), StoreError> {
        let now = self.ctx.clock.now_ms();
        let vault = self.vault.clone();
        let trust = self.trust().await?;
        trust.last_ban_ms = Some(now);
        trust.banned_until_ms = Some(until_ms.max(now));
        trust.save(&vault).await.map_err(vault_store_error)?;
        let previous = self.level();
        self.level
            .store(level_to_u8(TrustLevel::Newcomer), Ordering::SeqCst);
        let patch = DevicePatch {
            trust_level: Some(TrustLevel::Newcomer),
            ..DevicePatch::default()
        };
        let record = self
            .ctx
            .store
            .patch_device(&self.device_id, &patch, now, vault.fence().as_ref())
            .await?;
        metrics::rate_limit_ban();
        warn!(device_id = %self.device_id, until_ms, previous = previous.as_str(), "banned: demoted to newcomer, sending paused");
        let mut data = Map::new();
        data.insert("status".into(), Value::from(record.status.as_str()));
        data.insert("reason".into(), Value::from("banned"));
        data.insert("trust_level".into(), Value::from("newcomer"));
        data.insert(
            "previous_trust_level".into(),
            Value::from(previous.as_str()),
        );
        data.insert("paused_until_ms".into(), Value::from(until_ms.max(now)));
        data.insert(
            "node".into(),
            Value::from(self.ctx.config.node_name.as_str()),
        );
        self.ctx
            .bus
            .publish(&self.device_id, EventKind::Status, data);
        Ok(())
    }
}

/// A new link: its week towards TRUSTED starts at `now_ms` (a new link starts over: no
/// ban on record). Returns the record written.
pub(crate) async fn record_link(
    vault: &DeviceVault,
    now_ms: i64,
) -> Result<TrustRecord, StoreError> {
    let trust = TrustRecord {
        linked_at_ms: Some(now_ms),
        ..TrustRecord::default()
    };
    trust.save(vault).await.map_err(vault_store_error)?;
    Ok(trust)
}

/// Promotes the device to TRUSTED if it has earned it (a NEWCOMER linked for
/// [`NodeConfig::promote_after`](crate::context::NodeConfig::promote_after), READY, not
/// banned meanwhile): stores the level under the vault's fence and emits a `status` event
/// with `reason: "promoted"`. Returns the new level when it changed. A device linked
/// before link times were kept starts its week now.
pub(crate) async fn promote_if_earned(
    ctx: &NodeContext,
    device_id: &str,
    vault: &DeviceVault,
) -> Result<Option<TrustLevel>, StoreError> {
    let now = ctx.clock.now_ms();
    let promote_after = i64::try_from(ctx.config.promote_after.as_millis()).unwrap_or(i64::MAX);
    let Some(record) = ctx.store.get_device(device_id).await? else {
        return Ok(None);
    };
    if record.trust_level != TrustLevel::Newcomer || record.phone.is_none() {
        return Ok(None);
    }
    let mut trust = TrustRecord::load(vault).await.map_err(vault_store_error)?;
    if trust.linked_at_ms.is_none() {
        trust.linked_at_ms = Some(now);
        trust.save(vault).await.map_err(vault_store_error)?;
    }
    let ready = record.status == DeviceStatus::Ready;
    if !trust.earns_promotion(record.trust_level, ready, promote_after, now) {
        return Ok(None);
    }
    let patch = DevicePatch {
        trust_level: Some(TrustLevel::Trusted),
        ..DevicePatch::default()
    };
    let record = ctx
        .store
        .patch_device(device_id, &patch, now, vault.fence().as_ref())
        .await?;
    metrics::rate_limit_promotion();
    info!(device_id, "promoted to trusted");
    let mut data = Map::new();
    data.insert("status".into(), Value::from(record.status.as_str()));
    data.insert("reason".into(), Value::from("promoted"));
    data.insert("trust_level".into(), Value::from("trusted"));
    data.insert("previous_trust_level".into(), Value::from("newcomer"));
    data.insert("node".into(), Value::from(ctx.config.node_name.as_str()));
    ctx.bus.publish(device_id, EventKind::Status, data);
    Ok(Some(TrustLevel::Trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_MS;
    const WEEK: i64 = 7 * DAY_MS;

    #[test]
    fn promotion_needs_a_week_linked_ready_and_no_recent_ban() {
        let now = 100 * DAY;
        let linked_long_ago = TrustRecord {
            linked_at_ms: Some(now - WEEK),
            ..TrustRecord::default()
        };
        assert!(linked_long_ago.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
        assert!(
            !linked_long_ago.earns_promotion(TrustLevel::Newcomer, false, WEEK, now),
            "not READY"
        );
        assert!(
            !linked_long_ago.earns_promotion(TrustLevel::Verified, true, WEEK, now),
            "only newcomers"
        );
        let too_young = TrustRecord {
            linked_at_ms: Some(now - WEEK + 1),
            ..TrustRecord::default()
        };
        assert!(!too_young.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
        let unknown = TrustRecord::default();
        assert!(
            !unknown.earns_promotion(TrustLevel::Newcomer, true, WEEK, now),
            "link time unknown"
        );
        let banned_lately = TrustRecord {
            last_ban_ms: Some(now - DAY),
            ..linked_long_ago.clone()
        };
        assert!(!banned_lately.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
        let banned_long_ago = TrustRecord {
            last_ban_ms: Some(now - WEEK),
            ..linked_long_ago
        };
        assert!(banned_long_ago.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
    }

    #[test]
    fn a_pause_lasts_until_the_ban_ends() {
        let trust = TrustRecord {
            banned_until_ms: Some(5_000),
            ..TrustRecord::default()
        };
        assert_eq!(trust.paused_until(4_999), Some(5_000));
        assert_eq!(trust.paused_until(5_000), None);
        assert_eq!(TrustRecord::default().paused_until(0), None);
    }

    mod actor {
        use std::time::Duration;

        use async_trait::async_trait;
        use ractor::rpc::CallResult;

        use super::super::*;
        use crate::clock::Clock;
        use crate::context::{NodeConfig, Quotas};
        use crate::events::{BusConfig, EventBus};
        use crate::limits::policy::Refusal;
        use crate::link::{LinkContext, LinkError, LinkFactory, LinkSession};
        use crate::seal::{MasterKey, Sealer};
        use crate::store::{DeviceRecord, Direction, MessageRecord, MessageStatus, SqliteStore};
        use crate::vault::Vault;
        use wafleet_cluster_config::QuotaTable;

        const T0: i64 = 1_800_000_000_000;
        const WEEK: i64 = 7 * DAY_MS;

        #[derive(Debug)]
        struct NoLinks;

        #[async_trait]
        impl LinkFactory for NoLinks {
            async fn open(&self, _: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
                Err(LinkError::Connect("no links in this test".into()))
            }
        }

        /// The acceptance quota for NEWCOMER: 5 a minute, at least 2 s apart, and
        /// a day of 20 so that 50 asks reach it.
        fn table() -> QuotaTable {
            QuotaTable {
                newcomer: Quota {
                    per_minute: 5,
                    per_hour: 20,
                    per_day: 20,
                    min_gap_ms: 2_000,
                    jitter_ms: 300,
                    max_in_flight: 50,
                },
                ..QuotaTable::default()
            }
        }

        async fn context(dir: &std::path::Path, clock: Clock) -> Arc<NodeContext> {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("w.db")).unwrap());
            let sealer = Arc::new(Sealer::new(MasterKey::new(1, [9u8; 32])));
            Arc::new(NodeContext {
                config: NodeConfig::default(),
                vault: Vault::new(store.clone(), sealer),
                store,
                bus: EventBus::in_memory(BusConfig::default()),
                links: Arc::new(NoLinks),
                connect_gate: Arc::new(tokio::sync::Semaphore::new(1)),
                registry: Arc::default(),
                limiters: Arc::default(),
                quotas: Quotas::new(table()),
                clock,
                census: Default::default(),
            })
        }

        async fn create_device(ctx: &NodeContext, id: &str) {
            ctx.store
                .create_device(&DeviceRecord {
                    id: id.into(),
                    name: id.into(),
                    tenant: "default".into(),
                    status: DeviceStatus::Ready,
                    status_reason: None,
                    trust_level: TrustLevel::Newcomer,
                    phone: Some("6281".into()),
                    webhook: None,
                    desired_running: true,
                    created_at_ms: T0,
                    updated_at_ms: T0,
                    last_connected_at_ms: None,
                })
                .await
                .unwrap();
        }

        async fn spawn(ctx: &Arc<NodeContext>, id: &str) -> ActorRef<LimiterMsg> {
            let (actor, _) = Actor::spawn(
                None,
                RateLimiter,
                LimiterArgs {
                    device_id: id.into(),
                    fence: None,
                    ctx: ctx.clone(),
                    level: Arc::new(AtomicU8::new(level_to_u8(TrustLevel::Newcomer))),
                },
            )
            .await
            .unwrap();
            actor
        }

        async fn ask<T: Send + 'static>(
            actor: &ActorRef<LimiterMsg>,
            msg: impl FnOnce(RpcReplyPort<T>) -> LimiterMsg,
        ) -> T {
            match actor
                .call(msg, Some(Duration::from_secs(10)))
                .await
                .unwrap()
            {
                CallResult::Success(value) => value,
                CallResult::Timeout => panic!("limiter did not answer in time"),
                CallResult::SenderError => panic!("limiter dropped the call"),
            }
        }

        /// Stores an admitted send as the fleet does: created at the decision, its slot
        /// as `not_before_ms`.
        async fn store_send(ctx: &NodeContext, id: &str, n: usize, admission: &Admission) {
            ctx.store
                .insert_message(&MessageRecord {
                    id: format!("m{n}"),
                    device_id: id.into(),
                    direction: Direction::Outbound,
                    peer_phone: "6282".into(),
                    text: "hi".into(),
                    status: MessageStatus::Queued,
                    error: None,
                    idempotency_key: None,
                    created_at_ms: admission.at_ms,
                    not_before_ms: admission.slot(),
                    sent_at_ms: None,
                    delivered_at_ms: None,
                    read_at_ms: None,
                    failed_at_ms: None,
                })
                .await
                .unwrap();
        }

        #[tokio::test]
        async fn fifty_sends_at_once_are_paced_refused_past_the_day_and_remembered() {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual(T0);
            let ctx = context(dir.path(), clock.clone()).await;
            create_device(&ctx, "d").await;
            let limiter = spawn(&ctx, "d").await;

            let mut slots = Vec::new();
            let mut refused = Vec::new();
            for n in 0..50 {
                let admission = ask(&limiter, LimiterMsg::Admit).await.unwrap();
                match admission.decision {
                    Decision::Refused {
                        retry_after_ms,
                        reason,
                    } => refused.push((retry_after_ms, reason)),
                    _ => {
                        store_send(&ctx, "d", n, &admission).await;
                        slots.push(admission.slot().unwrap());
                    }
                }
            }
            assert_eq!(slots.len(), 20, "the day's quota");
            assert_eq!(slots[0], T0, "the first goes at once");
            assert_eq!(refused.len(), 30);
            for (retry_after_ms, reason) in &refused {
                assert_eq!(*reason, Refusal::DailyQuota);
                assert_eq!(
                    *retry_after_ms, DAY_MS,
                    "free again a day after the first send"
                );
            }
            for pair in slots.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    (2_000..=2_300).contains(&gap) || gap > 2_300 && pair[1] >= slots[0] + 60_000,
                    "gap {gap} between {} and {}",
                    pair[0] - T0,
                    pair[1] - T0
                );
            }
            let first_minute = slots.iter().filter(|&&s| s < T0 + 60_000).count();
            assert_eq!(
                first_minute,
                5,
                "5 in the first minute: {:?}",
                slots.iter().map(|s| s - T0).collect::<Vec<_>>()
            );
            for window_start in &slots {
                let in_window = slots
                    .iter()
                    .filter(|&&s| s >= *window_start && s < window_start + 60_000)
                    .count();
                assert!(in_window <= 5, "no minute holds more than 5");
            }

            // The spent quota is in the store: a new limiter (a restart, or another node)
            // sees the same, and refuses the same.
            let before = ask(&limiter, LimiterMsg::Limits).await.unwrap();
            // One went at once, 19 wait for their slots; the day has none left.
            assert_eq!((before.day.spent, before.queued), (1, 19));
            assert_eq!(before.day.remaining, 0);
            limiter.stop_and_wait(None, None).await.unwrap();
            let again = spawn(&ctx, "d").await;
            let after = ask(&again, LimiterMsg::Limits).await.unwrap();
            assert_eq!(
                (after.minute, after.hour, after.day),
                (before.minute, before.hour, before.day)
            );
            let admission = ask(&again, LimiterMsg::Admit).await.unwrap();
            assert!(matches!(
                admission.decision,
                Decision::Refused {
                    reason: Refusal::DailyQuota,
                    ..
                }
            ));

            // A day after the first send, its slot frees and one send is possible again.
            clock.advance(DAY_MS);
            let admission = ask(&again, LimiterMsg::Admit).await.unwrap();
            assert!(
                matches!(
                    admission.decision,
                    Decision::SendNow | Decision::Later { .. }
                ),
                "{admission:?}"
            );
        }

        #[tokio::test]
        async fn a_changed_table_applies_to_the_next_send() {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual(T0);
            let ctx = context(dir.path(), clock.clone()).await;
            create_device(&ctx, "d").await;
            let limiter = spawn(&ctx, "d").await;
            let first = ask(&limiter, LimiterMsg::Admit).await.unwrap();
            store_send(&ctx, "d", 0, &first).await;
            let mut lower = table();
            lower.newcomer.per_day = 1;
            lower.newcomer.per_hour = 1;
            lower.newcomer.per_minute = 1;
            assert!(ctx.quotas.set(lower));
            let second = ask(&limiter, LimiterMsg::Admit).await.unwrap();
            assert!(
                matches!(
                    second.decision,
                    Decision::Refused {
                        reason: Refusal::DailyQuota,
                        ..
                    }
                ),
                "{second:?}"
            );
            let view = ask(&limiter, LimiterMsg::Limits).await.unwrap();
            assert_eq!(view.quota.per_day, 1);
        }

        #[tokio::test]
        async fn a_ban_demotes_pauses_and_ends() {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual(T0);
            let ctx = context(dir.path(), clock.clone()).await;
            create_device(&ctx, "d").await;
            let (actor, _) = Actor::spawn(
                None,
                RateLimiter,
                LimiterArgs {
                    device_id: "d".into(),
                    fence: None,
                    ctx: ctx.clone(),
                    level: Arc::new(AtomicU8::new(level_to_u8(TrustLevel::Verified))),
                },
            )
            .await
            .unwrap();
            let mut events = ctx
                .bus
                .subscribe(crate::events::EventFilter::All, None)
                .await
                .unwrap();
            actor
                .cast(LimiterMsg::Banned {
                    until_ms: T0 + 60_000,
                })
                .unwrap();
            // (Messages are handled in order: the ban before this ask.)
            let admission = ask(&actor, LimiterMsg::Admit).await.unwrap();
            assert_eq!(admission.level, TrustLevel::Newcomer, "demoted");
            assert_eq!(
                admission.decision,
                Decision::Refused {
                    retry_after_ms: 60_000,
                    reason: Refusal::Paused
                }
            );
            let record = ctx.store.get_device("d").await.unwrap().unwrap();
            assert_eq!(record.trust_level, TrustLevel::Newcomer, "stored");
            let event = events.next().await.unwrap();
            assert_eq!(event.data["reason"], "banned");
            assert_eq!(event.data["paused_until_ms"], T0 + 60_000);

            // The pause is in the vault: a new limiter keeps it.
            actor.stop_and_wait(None, None).await.unwrap();
            let again = spawn(&ctx, "d").await;
            let view = ask(&again, LimiterMsg::Limits).await.unwrap();
            assert_eq!(view.paused_until_ms, Some(T0 + 60_000));
            clock.advance(60_000);
            let admission = ask(&again, LimiterMsg::Admit).await.unwrap();
            assert_eq!(admission.decision, Decision::SendNow, "the pause is over");
        }

        #[tokio::test]
        async fn a_week_linked_and_ready_makes_a_newcomer_trusted() {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual(T0);
            let ctx = context(dir.path(), clock.clone()).await;
            create_device(&ctx, "d").await;
            let limiter = spawn(&ctx, "d").await;
            limiter.cast(LimiterMsg::Linked).unwrap();
            let view = ask(&limiter, LimiterMsg::Limits).await.unwrap();
            assert_eq!(view.linked_at_ms, Some(T0));
            let vault = ctx.vault.device("d", None);
            clock.advance(WEEK - 1);
            let promoted = promote_if_earned(&ctx, "d", &vault).await.unwrap();
            assert_eq!(promoted, None, "a millisecond early");
            clock.advance(1);
            let promoted = promote_if_earned(&ctx, "d", &vault).await.unwrap();
            assert_eq!(promoted, Some(TrustLevel::Trusted));
            let again = promote_if_earned(&ctx, "d", &vault).await.unwrap();
            assert_eq!(again, None, "once");
            let record = ctx.store.get_device("d").await.unwrap().unwrap();
            assert_eq!(record.trust_level, TrustLevel::Trusted, "stored");
        }
    }

    #[test]
    fn levels_survive_the_byte_cell() {
        for level in [
            TrustLevel::Newcomer,
            TrustLevel::Trusted,
            TrustLevel::Verified,
        ] {
            assert_eq!(level_from_u8(level_to_u8(level)), level);
        }
    }
}
