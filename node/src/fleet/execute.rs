//! [`Fleet::execute`]: every device command, handled once. A new operation is a variant
//! of [`DeviceCommand`] (in `node_api.proto`), an arm here with its handler below, and
//! its route in the gateway.
//!
//! A command runs unfenced in standalone (`fence: None`); a cluster node passes the
//! fence of the shard lease it holds for the device (see `cluster::command`), and the
//! device starts under it.

use tracing::info;

use super::{Fleet, call, vault_error};
use crate::api::wire::command_trust_level;
use crate::api::{
    DeviceCommand, FleetError, LimitsView, PairCode, QrCode, Reply, SendText, Sent, state_code,
};
use crate::cancellation;
use crate::clock::now_ms;
use crate::device::DeviceMsg;
use crate::limits::actor::LimiterMsg;
use crate::limits::policy::Decision;
use crate::limits::view::limits_from_store;
use crate::link::LinkError;
use crate::media::ReceivedFiles;
use crate::metrics;
use crate::outbox;
use crate::settings;
use crate::store::{
    DevicePatch, DeviceRecord, DeviceStatus, Fence, MessageRecord, QueueKey, TrustLevel,
};
use crate::webhooks::settings::WebhookSettings;
use wafleet_cluster_config::QuotaTable;

impl Fleet {
    /// Runs `command` on device `id`, under `fence` when a cluster node holds the
    /// device's shard lease (`None` in standalone).
    pub async fn execute(
        &self,
        id: &str,
        command: DeviceCommand,
        fence: Option<Fence>,
    ) -> Result<Reply, FleetError> {
        Ok(match command {
            DeviceCommand::Delete(_) => {
                self.delete_device(id, fence).await?;
                Reply::Deleted
            }
            DeviceCommand::Start(_) => Reply::Device(self.start_device(id, fence).await?),
            DeviceCommand::Stop(_) => Reply::Device(self.stop_device(id, fence).await?),
            DeviceCommand::Restart(_) => Reply::Device(self.restart_device(id, fence).await?),
            DeviceCommand::Logout(_) => Reply::Device(self.logout_device(id, fence).await?),
            DeviceCommand::Qr(_) => Reply::Qr(self.qr(id).await?),
            DeviceCommand::PairingCode(request) => {
                Reply::PairingCode(self.pairing_code(id, &request.phone).await?)
            }
            DeviceCommand::SendText(send) => Reply::Sent(self.send_text(id, send).await?),
            DeviceCommand::Limits(_) => Reply::Limits(self.limits(id).await?),
            DeviceCommand::SetTrustLevel(set) => Reply::Device(
                self.set_trust_level(id, command_trust_level(set.level)?)
                    .await?,
            ),
            DeviceCommand::RefreshSettings(_) => {
                self.refresh_settings().await?;
                Reply::Refreshed
            }
            DeviceCommand::SetWebhook(set) => {
                Reply::Webhook(self.set_webhook(id, set.into(), fence).await?)
            }
            DeviceCommand::DeleteWebhook(_) => {
                self.delete_webhook(id, fence).await?;
                Reply::Deleted
            }
            DeviceCommand::ReplayWebhook(replay) => {
                Reply::Replayed(self.replay_webhook(id, replay.event_id).await?)
            }
            DeviceCommand::CheckNumbers(check) => {
                Reply::NumberChecks(self.check_numbers(id, check.phones).await?)
            }
            DeviceCommand::MarkRead(read) => Reply::MarkedRead(self.mark_read(id, &read).await?),
            DeviceCommand::Group(command) => self.group(id, command).await?,
            DeviceCommand::CancelMessage(cancel) => {
                Reply::Message(self.cancel_message(id, &cancel.message_id).await?)
            }
            DeviceCommand::GroupSubjects(refs) => {
                Reply::Groups(self.group_subjects(id, refs.group_ids).await?)
            }
        })
    }

    /// Runs the device (pairing if it has no credentials) and marks it wanted running.
    /// A cluster node passes the `fence` of the device's shard lease: the wish and the
    /// run are written under it (see [`Fleet::run_owned`]); standalone passes `None`.
    pub async fn start_device(
        &self,
        id: &str,
        fence: Option<Fence>,
    ) -> Result<DeviceRecord, FleetError> {
        let device = self.catalog.device(id).await?;
        if !device.desired_running {
            let patch = DevicePatch {
                desired_running: Some(true),
                ..DevicePatch::default()
            };
            self.ctx
                .store
                .patch_device(id, &patch, now_ms(), fence.as_ref())
                .await?;
        }
        self.spawn(id, true, fence).await?;
        self.catalog.device(id).await
    }

    /// Stops the device; it stays stopped across restarts until started. A cluster node
    /// writes under the `fence` of the device's shard lease, so a node that has lost the
    /// shard since it checked is refused (`Fenced`), never writing over the new owner.
    pub async fn stop_device(
        &self,
        id: &str,
        fence: Option<Fence>,
    ) -> Result<DeviceRecord, FleetError> {
        let device = self.catalog.device(id).await?;
        let patch = DevicePatch {
            desired_running: Some(false),
            ..DevicePatch::default()
        };
        self.ctx
            .store
            .patch_device(id, &patch, now_ms(), fence.as_ref())
            .await?;
        self.stop_actor(id).await?;
        if matches!(
            device.status,
            DeviceStatus::LoggedOut | DeviceStatus::Failed
        ) {
            return self.catalog.device(id).await;
        }
        let current = self.catalog.device(id).await?;
        Ok(self
            .ctx
            .record_status(
                id,
                Some(current.status),
                DeviceStatus::Stopped,
                None,
                DevicePatch::default(),
                fence.as_ref(),
            )
            .await?)
    }

    /// Stops the device's run here, then starts it as [`Fleet::start_device`] does.
    pub async fn restart_device(
        &self,
        id: &str,
        fence: Option<Fence>,
    ) -> Result<DeviceRecord, FleetError> {
        self.catalog.device(id).await?;
        self.stop_actor(id).await?;
        self.start_device(id, fence).await
    }

    /// Unlinks the device from its WhatsApp account: credentials wiped, `LOGGED_OUT`. A
    /// device not running here is wiped under `fence`, as [`Fleet::stop_device`] writes.
    pub async fn logout_device(
        &self,
        id: &str,
        fence: Option<Fence>,
    ) -> Result<DeviceRecord, FleetError> {
        let device = self.catalog.device(id).await?;
        self.subjects.forget(id);
        if let Some(actor) = self.ctx.running.device(id) {
            call(&actor, DeviceMsg::Logout).await?;
            return self.catalog.device(id).await;
        }
        if device.status == DeviceStatus::LoggedOut {
            return Ok(device);
        }
        if device.phone.is_none() {
            return Err(FleetError::WrongState {
                code: state_code::DEVICE_NOT_LINKED,
                message: format!("device {id} is not linked to a WhatsApp account"),
            });
        }
        self.ctx
            .vault
            .device(id, fence)
            .clear()
            .await
            .map_err(vault_error)?;
        let patch = DevicePatch {
            phone: Some(None),
            desired_running: Some(false),
            ..DevicePatch::default()
        };
        Ok(self
            .ctx
            .record_status(
                id,
                Some(device.status),
                DeviceStatus::LoggedOut,
                Some("logged out by the operator".into()),
                patch,
                fence.as_ref(),
            )
            .await?)
    }

    /// Logs out, wipes and deletes the device with its messages, and the files its
    /// inbound messages brought (found before the messages go, deleted after the
    /// device is: see [`ReceivedFiles`]; a file that cannot be deleted is logged and
    /// counted, never a failure of the delete). A cluster node deletes
    /// under the `fence` of the device's shard: refused as `Fenced` if it has lost the
    /// shard, and it checks that before stopping the device too (an empty fenced patch),
    /// so a node that no longer owns the device neither stops nor deletes it.
    pub async fn delete_device(&self, id: &str, fence: Option<Fence>) -> Result<(), FleetError> {
        self.catalog.device(id).await?;
        if let Some(fence) = &fence {
            self.ctx
                .store
                .patch_device(id, &DevicePatch::default(), now_ms(), Some(fence))
                .await?;
        }
        self.stop_actor(id).await?;
        // Stopped: no message arrives any more, so every file is named now.
        let received = ReceivedFiles::of(self.ctx.store.as_ref(), &self.ctx.keys, id).await;
        if !self.ctx.store.delete_device(id, fence.as_ref()).await? {
            return Err(FleetError::DeviceNotFound(id.to_owned()));
        }
        self.ctx.bus.forget(id);
        self.ctx.tenants.forget(id);
        self.ctx.webhooks.forget(id);
        self.subjects.forget(id);
        if !received.is_empty() {
            let done = received.delete(&self.ctx.media).await;
            info!(
                device_id = id,
                deleted = done.deleted,
                kept = done.kept,
                failed = done.failed,
                "received files deleted with their device"
            );
        }
        Ok(())
    }

    /// The QR code on show; `WrongState` unless the device is in `SCAN_QR`.
    pub async fn qr(&self, id: &str) -> Result<QrCode, FleetError> {
        let device = self.catalog.device(id).await?;
        let qr = match self.ctx.running.device(id) {
            Some(actor) => call(&actor, DeviceMsg::GetQr).await?,
            None => None,
        };
        qr.ok_or_else(|| FleetError::WrongState {
            code: state_code::DEVICE_NOT_IN_SCAN_QR,
            message: format!(
                "device {id} is {}; a QR code exists only in SCAN_QR (start the device first)",
                device.status
            ),
        })
    }

    /// Asks for a pairing code for `phone`; the device must be in `SCAN_QR`.
    pub async fn pairing_code(&self, id: &str, phone: &str) -> Result<PairCode, FleetError> {
        let device = self.catalog.device(id).await?;
        let not_pairing = || FleetError::WrongState {
            code: state_code::DEVICE_NOT_IN_SCAN_QR,
            message: format!(
                "device {id} is {}; a pairing code needs SCAN_QR (start the device first)",
                device.status
            ),
        };
        let actor = self.ctx.running.device(id).ok_or_else(not_pairing)?;
        let phone = phone.to_owned();
        match call(&actor, move |reply| DeviceMsg::PairCode(phone, reply)).await? {
            Ok(code) => Ok(code),
            Err(LinkError::WrongState(_)) => Err(not_pairing()),
            Err(error) => Err(FleetError::WrongState {
                code: state_code::LINK_UNAVAILABLE,
                message: format!("the link could not give a pairing code: {error}"),
            }),
        }
    }

    /// Accepts a text message and nudges the device's actor, if it runs here, to send
    /// it. The device's rate limiter decides first: now, later (`not_before_ms`, the
    /// message's slot) or not at all ([`FleetError::RateLimited`]). A device that runs
    /// nowhere has no limiter here; its message is accepted without a slot (see
    /// [`accept_text`]) and gets one when its device drains it. A message scheduled for
    /// later ([`outbox::scheduled_for`]) does not ask the limiter: it is stored
    /// `scheduled`, and the device's actor is told to set its timer (it asks for a slot
    /// when the message falls due, see `device/schedule.rs`).
    pub async fn send_text(&self, device_id: &str, send: SendText) -> Result<Sent, FleetError> {
        let keys = self.ctx.keys.as_ref();
        let checked =
            match outbox::check_send(self.ctx.store.as_ref(), keys, device_id, &send).await? {
                outbox::Checked::Replay(sent) => return Ok(sent),
                outbox::Checked::New(id) => id,
            };
        let tenant = self
            .ctx
            .tenants
            .lookup(device_id, self.ctx.store.as_ref())
            .await?
            .ok_or_else(|| FleetError::DeviceNotFound(device_id.to_owned()))?;
        let sealing = outbox::Sealing {
            keys,
            tenant: &tenant,
        };
        if outbox::scheduled_for(&send, now_ms()).is_some() {
            let sent = outbox::insert_accepted(
                self.ctx.store.as_ref(),
                sealing,
                device_id,
                checked,
                send,
                now_ms(),
                None,
            )
            .await?;
            if !sent.replayed
                && let Some(actor) = self.ctx.running.device(device_id)
            {
                let _ = actor.cast(DeviceMsg::CheckSchedule);
            }
            return Ok(sent);
        }
        let limiter = match (
            self.ctx.running.limiter(device_id),
            self.ctx.running.device(device_id),
        ) {
            (Some(limiter), _) => limiter,
            (None, Some(actor)) => call(&actor, DeviceMsg::Limiter).await?,
            (None, None) => {
                return outbox::insert_accepted(
                    self.ctx.store.as_ref(),
                    sealing,
                    device_id,
                    checked,
                    send,
                    now_ms(),
                    None,
                )
                .await;
            }
        };
        let admission = call(&limiter, LimiterMsg::Admit).await??;
        if let Decision::Refused {
            retry_after_ms,
            reason,
        } = admission.decision
        {
            outbox::require_sendable(self.ctx.store.as_ref(), device_id).await?;
            metrics::message_outcome("rate_limited");
            return Err(FleetError::RateLimited {
                code: reason.code(),
                message: outbox::refusal_message(reason, admission.level, retry_after_ms),
                retry_after_ms,
            });
        }
        let slot = admission.slot();
        let result = outbox::insert_accepted(
            self.ctx.store.as_ref(),
            sealing,
            device_id,
            checked,
            send,
            admission.at_ms,
            slot,
        )
        .await;
        match &result {
            Ok(sent) if !sent.replayed => {
                if let Some(actor) = self.ctx.running.device(device_id) {
                    let _ = actor.cast(DeviceMsg::Queued(QueueKey::of(&sent.message)));
                }
            }
            _ => {
                if let Some(slot) = slot {
                    let _ = limiter.cast(LimiterMsg::Release(slot));
                }
            }
        }
        result
    }

    /// Cancels a message that has not left (see [`crate::cancellation`]): decided by the
    /// device's actor when it runs here (it knows what it has handed to its link), else
    /// by the store alone (nothing runs the device here, so nothing can hand it).
    pub async fn cancel_message(
        &self,
        device_id: &str,
        message_id: &str,
    ) -> Result<MessageRecord, FleetError> {
        self.catalog.device(device_id).await?;
        if let Some(actor) = self.ctx.running.device(device_id) {
            let message_id = message_id.to_owned();
            return call(&actor, move |reply| DeviceMsg::Cancel(message_id, reply)).await?;
        }
        match cancellation::cancel(&self.ctx, device_id, message_id, |_| None).await? {
            Ok(cancelled) => Ok(cancelled.after),
            Err(already) => Ok(already),
        }
    }

    /// The device's quota use: from its limiter when it runs here, else from the store.
    pub async fn limits(&self, device_id: &str) -> Result<LimitsView, FleetError> {
        let device = self.catalog.device(device_id).await?;
        if let Some(limiter) = self.ctx.running.limiter(device_id)
            && let Ok(view) = call(&limiter, LimiterMsg::Limits).await
        {
            return Ok(view?);
        }
        Ok(limits_from_store(&self.ctx, device_id, device.trust_level).await?)
    }

    /// Sets the device's trust level (an admin's decision); its limiter, if it runs
    /// here, uses the new level's quota from the next send.
    pub async fn set_trust_level(
        &self,
        device_id: &str,
        level: TrustLevel,
    ) -> Result<DeviceRecord, FleetError> {
        let (previous, record) = self.catalog.store_trust_level(device_id, level).await?;
        if let Some(actor) = self.ctx.running.device(device_id) {
            let _ = actor.cast(DeviceMsg::SetLevel(level));
        }
        if previous != level {
            let mut data = serde_json::Map::new();
            data.insert("status".into(), record.status.as_str().into());
            data.insert("reason".into(), "trust_level_changed".into());
            data.insert("trust_level".into(), level.as_str().into());
            data.insert("previous_trust_level".into(), previous.as_str().into());
            self.ctx
                .emit(device_id, crate::events::EventKind::Status, data)
                .await;
        }
        Ok(record)
    }

    /// Reads the quota table from the store now (what the periodic refresh does).
    pub async fn refresh_settings(&self) -> Result<(), FleetError> {
        let table: QuotaTable = settings::load(self.ctx.store.as_ref()).await?;
        self.ctx.quotas.set(table);
        let webhooks: WebhookSettings = settings::load(self.ctx.store.as_ref()).await?;
        self.ctx.webhooks.set_settings(webhooks);
        Ok(())
    }
}
