//! The `RateLimiter` actor of one device: every send of the device passes through it.
//!
//! It applies the pure [`SendPolicy`] (windows per minute, hour and day, a minimum gap
//! with random jitter, a cap on sends in flight) with the quota of the device's trust
//! level, read from the node's [`Quotas`](crate::context::Quotas) at every decision, so a
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
//!   new link starts over. The rules of trust levels are in [`super::trust`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{Map, Value};
use tracing::warn;

use super::policy::{Decision, Refusal, SendPolicy, quota_for};
use super::trust::{TrustRecord, level_from_u8, level_to_u8, record_link, vault_store_error};
use super::view::{LimitsView, load_policy};
use crate::context::NodeContext;
use crate::events::EventKind;
use crate::metrics;
use crate::store::{DevicePatch, Fence, StoreError, TrustLevel};
use crate::vault::DeviceVault;

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
    policy: Option<SendPolicy>,
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
            policy: None,
            trust: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LimiterMsg>,
        state: &mut LimiterState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(policy) = &state.policy {
            metrics::rate_limit_queue_depth(-f64::from(policy.in_flight()));
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
                if let Some(policy) = &mut state.policy
                    && policy.in_flight() > 0
                {
                    policy.settled();
                    metrics::rate_limit_queue_depth(-1.0);
                }
                Ok(())
            }
            LimiterMsg::Release(slot) => {
                if let Some(policy) = &mut state.policy
                    && policy.release(slot)
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

    async fn policy(&mut self) -> Result<&mut SendPolicy, StoreError> {
        if self.policy.is_none() {
            let now = self.ctx.clock.now_ms();
            let policy = load_policy(self.ctx.store.as_ref(), &self.device_id, now).await?;
            metrics::rate_limit_queue_depth(f64::from(policy.in_flight()));
            self.policy = Some(policy);
        }
        Ok(self.policy.as_mut().expect("loaded above"))
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
        let policy = self.policy().await?;
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
            policy.decide(&quota, now, jitter)
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
        let usage = self.policy().await?.snapshot(&quota, now);
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
            .emit(&self.device_id, EventKind::Status, data)
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
