//! The device's side of rate limiting: its limiter child (spawned on first need, linked,
//! registered for the fleet), the trust level it shares with it, bans and promotion.

use std::sync::atomic::Ordering;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::warn;

use super::{DeviceMsg, DeviceState};
use crate::limits::actor::{LimiterArgs, LimiterMsg, RateLimiter};
use crate::limits::trust::{level_from_u8, level_to_u8, promote_if_earned, record_link};
use crate::store::{StoreError, TrustLevel};

impl DeviceState {
    /// The device's rate limiter: spawned (linked to this actor, registered for the
    /// fleet) the first time it is needed.
    pub(super) async fn limiter(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
    ) -> Result<ActorRef<LimiterMsg>, ActorProcessingErr> {
        if let Some(limiter) = &self.limiter {
            return Ok(limiter.clone());
        }
        let (limiter, _) = Actor::spawn_linked(
            None,
            RateLimiter,
            LimiterArgs {
                device_id: self.id.clone(),
                fence: self.fence,
                ctx: self.ctx.clone(),
                level: self.level.clone(),
            },
            myself.get_cell(),
        )
        .await?;
        self.ctx
            .running
            .insert_limiter(self.id.clone(), limiter.clone());
        self.limiter = Some(limiter.clone());
        Ok(limiter)
    }

    /// The device stops: its limiter stops with it, and leaves the registry unless a
    /// newer run of the device has registered its own.
    pub(super) fn stop_limiter(&mut self) {
        let Some(limiter) = self.limiter.take() else {
            return;
        };
        self.ctx
            .running
            .remove_limiter_if(&self.id, limiter.get_id());
        limiter.stop(None);
    }

    /// A supervision event of the limiter, the device's only linked child.
    pub(super) fn on_limiter_event(
        &mut self,
        event: SupervisionEvent,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            // The limiter failed: fail the device too, so its supervisor restarts both.
            SupervisionEvent::ActorFailed(_, error) => {
                Err(format!("the rate limiter of {} failed: {error}", self.id).into())
            }
            // The limiter stopped (fenced off, or the device is stopping): forget it; the
            // device meets the fence on its own writes.
            SupervisionEvent::ActorTerminated(cell, ..) => {
                if self
                    .limiter
                    .as_ref()
                    .is_some_and(|limiter| limiter.get_id() == cell.get_id())
                {
                    self.limiter = None;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// An admin set the trust level (already stored), or the device earned one: the
    /// hand-off guard and the limiter use it from now on.
    pub(super) fn set_level(&mut self, level: TrustLevel) {
        self.level.store(level_to_u8(level), Ordering::SeqCst);
        if let Some(limiter) = &self.limiter {
            let _ = limiter.cast(LimiterMsg::SetLevel(level));
        }
    }

    /// The link paired with a phone: a new link starts its week towards TRUSTED.
    pub(super) async fn linked(&mut self) -> Result<(), StoreError> {
        match &self.limiter {
            Some(limiter) => {
                let _ = limiter.cast(LimiterMsg::Linked);
            }
            // No limiter yet (an idle device needs none): record the link here.
            None => {
                let vault = self.ctx.vault.device(&self.id, self.fence);
                record_link(&vault, self.ctx.clock.now_ms()).await?;
            }
        }
        Ok(())
    }

    /// A ban from the link: the queued messages not yet handed over give their slots
    /// back (they are planned again, at the NEWCOMER pace, once the pause ends), and the
    /// limiter demotes the device and pauses it.
    pub(super) async fn on_banned(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        until_ms: i64,
    ) -> Result<(), ActorProcessingErr> {
        warn!(device_id = %self.id, until_ms, "account temporarily banned");
        self.banned_until_ms = Some(until_ms);
        let limiter = self.limiter(myself).await?;
        let queued = self.ctx.store.queued_messages(&self.id, u32::MAX).await?;
        for message in queued {
            if self.in_flight.contains(&message.id) {
                continue;
            }
            let slot = message.not_before_ms.unwrap_or(message.created_at_ms);
            if self
                .ctx
                .store
                .reschedule_message(&self.id, &message.id, None)
                .await?
            {
                let _ = limiter.cast(LimiterMsg::Release(slot));
            }
        }
        let _ = limiter.cast(LimiterMsg::Banned { until_ms });
        Ok(())
    }

    /// Promotes a NEWCOMER to TRUSTED once it has earned it (see
    /// [`crate::limits::trust`]): read from the store and vault, so an idle device needs
    /// no limiter for it.
    pub(super) async fn check_trust(&mut self) -> Result<(), ActorProcessingErr> {
        if level_from_u8(self.level.load(Ordering::SeqCst)) != TrustLevel::Newcomer {
            return Ok(());
        }
        let vault = self.ctx.vault.device(&self.id, self.fence);
        if let Some(level) = promote_if_earned(&self.ctx, &self.id, &vault).await? {
            self.set_level(level);
        }
        Ok(())
    }
}
