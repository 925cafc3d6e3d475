//! The status machine of a device: every status the actor writes, and what comes with
//! it (the QR on show, the reconnect timer, the stop).

use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::connect::backoff;
use super::supervisor::SupervisorMsg;
use super::{DeviceMsg, DeviceState, QrCode};
use crate::clock::now_ms;
use crate::events::EventKind;
use crate::link::LinkCommand;
use crate::metrics;
use crate::store::{DevicePatch, DeviceRecord, DeviceStatus, StoreError};

/// How long an operator's logout waits for the link to unlink the device from the
/// phone's account (the WhatsApp link gives up after 10 s itself).
const LOGOUT_WAIT: Duration = Duration::from_secs(12);

impl DeviceState {
    pub(super) async fn set_status(
        &mut self,
        status: DeviceStatus,
        reason: Option<String>,
        patch: DevicePatch,
    ) -> Result<DeviceRecord, StoreError> {
        let previous = self.status;
        let record = self
            .ctx
            .record_status(
                &self.id,
                Some(previous),
                status,
                reason,
                patch,
                self.fence.as_ref(),
            )
            .await?;
        self.status = status;
        Ok(record)
    }

    pub(super) async fn on_qr(
        &mut self,
        code: String,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.permit = None;
        self.qr = Some(QrCode {
            code: code.clone(),
            expires_at_ms,
        });
        if self.status != DeviceStatus::ScanQr {
            let patch = DevicePatch {
                phone: Some(None),
                ..DevicePatch::default()
            };
            self.set_status(DeviceStatus::ScanQr, None, patch).await?;
        }
        let mut data = Map::new();
        data.insert("code".into(), Value::from(code));
        data.insert("expires_at_ms".into(), Value::from(expires_at_ms));
        self.ctx.emit(&self.id, EventKind::Qr, data).await;
        Ok(())
    }

    pub(super) async fn on_ready(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        phone: String,
    ) -> Result<(), ActorProcessingErr> {
        self.permit = None;
        self.qr = None;
        self.reconnect_attempt = 0;
        self.banned_until_ms = None;
        let patch = DevicePatch {
            phone: Some(Some(phone)),
            last_connected_at_ms: Some(Some(now_ms())),
            ..DevicePatch::default()
        };
        self.set_status(DeviceStatus::Ready, None, patch).await?;
        let _ = self
            .supervisor
            .cast(SupervisorMsg::Healthy(self.id.clone()));
        // A device started with nothing queued (and sent nothing since) skips the read:
        // most devices of a restart or a takeover are idle.
        if !self.queue_empty {
            self.drain(myself).await?;
        }
        Ok(())
    }

    /// The connection is gone (or never came): `DISCONNECTED`, and retry with backoff.
    pub(super) async fn disconnected(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        reason: String,
    ) -> Result<(), StoreError> {
        let mut delay = backoff(
            self.ctx.config.reconnect_min,
            self.ctx.config.reconnect_max,
            self.reconnect_attempt,
        );
        self.reconnect_attempt = self.reconnect_attempt.saturating_add(1);
        let now = self.ctx.clock.now_ms();
        if let Some(until_ms) = self.banned_until_ms.filter(|&until| until > now) {
            // Banned: wait for the ban to end (plus the usual delay, so devices banned
            // together do not all come back at once).
            delay += Duration::from_millis(u64::try_from(until_ms - now).unwrap_or(0));
            info!(device_id = %self.id, until_ms, "banned: not reconnecting before the ban ends");
        }
        debug!(device_id = %self.id, %reason, delay_ms = delay.as_millis() as u64, "link down, reconnecting later");
        self.set_status(
            DeviceStatus::Disconnected,
            Some(reason),
            DevicePatch::default(),
        )
        .await?;
        myself.send_after(delay, || DeviceMsg::Connect);
        Ok(())
    }

    /// A status the actor stops in. `wipe`: the credentials are gone, so is the phone.
    pub(super) async fn become_final(
        &mut self,
        status: DeviceStatus,
        reason: &str,
        wipe: bool,
    ) -> Result<(), StoreError> {
        let patch = DevicePatch {
            desired_running: Some(false),
            phone: wipe.then_some(None),
            ..DevicePatch::default()
        };
        self.set_status(status, Some(reason.to_owned()), patch)
            .await
            .map(drop)
    }

    /// Another connection of this device replaced ours. Standalone: someone runs the
    /// same credentials elsewhere, so the device stops for good (`STOPPED`, no longer
    /// wanted running). Under a fence the replacing connection may be a stale run of a
    /// previous owner, so the wish to run is kept: the status is written under the
    /// fence (refused if this run is the stale one) and the reconcile pass starts the
    /// device again, which in turn replaces the stale connection, whose writes are
    /// refused.
    pub(super) async fn replaced(&mut self) -> Result<(), StoreError> {
        if self.fence.is_none() {
            return self
                .become_final(DeviceStatus::Stopped, "replaced", false)
                .await;
        }
        self.set_status(
            DeviceStatus::Disconnected,
            Some("replaced by another connection; starting again".into()),
            DevicePatch::default(),
        )
        .await
        .map(drop)
    }

    /// Another node owns the device now: close the link and stop, writing nothing (the
    /// new owner's status stands). The supervisor sees a normal stop, not a crash.
    pub(super) fn lost_ownership(&mut self, myself: &ActorRef<DeviceMsg>, reason: &str) {
        warn!(device_id = %self.id, fence = ?self.fence, %reason, "lost ownership of the device, stopping");
        metrics::device_fenced();
        self.end_session();
        myself.stop(Some("fenced".into()));
    }

    pub(super) async fn logout(&mut self) -> Result<(), ActorProcessingErr> {
        let told = self.tell_network_logout().await;
        self.end_session();
        self.ctx.vault.device(&self.id, self.fence).clear().await?;
        let reason = if told {
            "logged out by the operator"
        } else {
            "logged out by the operator; not connected, so WhatsApp still lists the device \
             until the phone removes it"
        };
        self.become_final(DeviceStatus::LoggedOut, reason, true)
            .await?;
        Ok(())
    }

    /// Asks the connected link to unlink the device from the phone's account; whether
    /// it could (a device that is not READY cannot tell the network anything).
    async fn tell_network_logout(&mut self) -> bool {
        let Some(session) = self
            .session
            .as_mut()
            .filter(|_| self.status == DeviceStatus::Ready)
        else {
            return false;
        };
        let (reply, done) = oneshot::channel();
        if let Err(error) = session.command(LinkCommand::Logout { reply }) {
            warn!(device_id = %self.id, %error, "cannot pass the logout to the link");
            return false;
        }
        match tokio::time::timeout(LOGOUT_WAIT, done).await {
            Ok(_) => true,
            Err(_) => {
                warn!(device_id = %self.id, "the link did not finish the logout in time");
                false
            }
        }
    }
}
