//! What the link brings in: receipts of sent messages (stored, published, acknowledged)
//! and inbound messages (stored once, published, acknowledged).
//!
//! A message the network delivers again (it was stored, but not acknowledged before a
//! crash or a lost connection) comes with its file downloaded again, under a new id.
//! The stored message keeps the first; the new copy, which no message names, is
//! deleted at once (nothing would ever find it again, not even the device's deletion:
//! see `media::ReceivedFiles`), and the event recorded again names the first.

use ractor::{ActorProcessingErr, ActorRef};
use serde_json::{Map, Value};
use tracing::warn;

use super::{DeviceMsg, DeviceState};
use crate::clock::now_ms;
use crate::content::{Content, MediaPart};
use crate::events::EventKind;
use crate::limits::actor::LimiterMsg;
use crate::link::{LinkCommand, ReceiptStatus};
use crate::metrics;
use crate::seal::text::Place;
use crate::store::{Direction, InsertOutcome, MessageRecord, MessageStatus, StoreError};

impl DeviceState {
    pub(super) async fn on_receipt(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        message_id: String,
        status: ReceiptStatus,
        error: Option<String>,
        at_ms: i64,
    ) -> Result<(), ActorProcessingErr> {
        let link_status = status;
        let status = match status {
            ReceiptStatus::Sent => MessageStatus::Sent,
            ReceiptStatus::Delivered => MessageStatus::Delivered,
            ReceiptStatus::Read => MessageStatus::Read,
            ReceiptStatus::Failed => MessageStatus::Failed,
        };
        let was_in_flight = self.in_flight.remove(&message_id);
        self.unconfirmed.remove(&message_id);
        let before = self.ctx.store.get_message(&self.id, &message_id).await?;
        let Some(before) = before else {
            self.ack_receipt(message_id, link_status);
            return Ok(());
        };
        if before.status == MessageStatus::Queued && status != MessageStatus::Queued {
            // Out of the queue: the limiter's place in flight frees (its slot stays spent).
            if let Some(limiter) = &self.limiter {
                let _ = limiter.cast(LimiterMsg::Settled);
            }
        }
        if before.status == status {
            // Told again: the event may not have reached the webhook log before a
            // crash. Recording it again under its stable id changes nothing if it did.
            self.ctx
                .emit_recovered(
                    &self.id,
                    EventKind::MessageStatus,
                    &receipt_data(&before, error.as_deref()),
                    &receipt_key(&message_id, status),
                )
                .await;
        } else if before.status.may_advance_to(status) {
            let at_ms = if at_ms > 0 { at_ms } else { now_ms() };
            if let Some(after) = self
                .ctx
                .store
                .advance_message(&self.id, &message_id, status, at_ms, error.as_deref())
                .await?
                && after.status == status
            {
                metrics::message_outcome(status.as_str());
                if let Err(error) =
                    crate::jobs::follow::follow(self.ctx.store.as_ref(), &after).await
                {
                    // The runner's check of its device's queued recipients mends it.
                    tracing::warn!(device_id = %self.id, %message_id, %error, "a job recipient did not follow its message");
                }
                self.ctx
                    .emit_once(
                        &self.id,
                        EventKind::MessageStatus,
                        receipt_data(&after, error.as_deref()),
                        &receipt_key(&message_id, status),
                    )
                    .await;
            }
        }
        // Stored (or already further along): the network need not tell it again.
        self.ack_receipt(message_id, link_status);
        if was_in_flight && self.backlog {
            self.drain(myself).await?;
        }
        Ok(())
    }

    fn ack_receipt(&mut self, message_id: String, status: ReceiptStatus) {
        if let Some(session) = self.session.as_mut() {
            let _ = session.command(LinkCommand::AckReceipt { message_id, status });
        }
    }

    /// Stores an inbound message once (`content` as the link received it; in a group,
    /// its writer becomes its author), publishes `message.inbound` and acknowledges it.
    pub(super) async fn on_inbound(
        &mut self,
        message_id: String,
        from_phone: String,
        at_ms: i64,
        group: Option<String>,
        mut content: Content,
    ) -> Result<(), StoreError> {
        content.author = group.is_some().then(|| from_phone.clone());
        let tenant = self
            .ctx
            .tenants
            .lookup(&self.id, self.ctx.store.as_ref())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("device {}", self.id),
            })?;
        let sealed = self
            .ctx
            .keys
            .seal(
                &tenant,
                &Place::message(&self.id, &message_id),
                &content.to_stored(),
            )
            .await?;
        let record = MessageRecord {
            id: message_id.clone(),
            device_id: self.id.clone(),
            direction: Direction::Inbound,
            // A group's messages make one chat: the group's.
            peer_phone: group.clone().unwrap_or_else(|| from_phone.clone()),
            text: sealed.into_string(),
            status: MessageStatus::Delivered,
            error: None,
            idempotency_key: None,
            created_at_ms: at_ms,
            not_before_ms: None,
            sent_at_ms: None,
            delivered_at_ms: Some(now_ms()),
            read_at_ms: None,
            failed_at_ms: None,
            send_at_ms: None,
            queued_at_ms: None,
        };
        let fresh = match self.ctx.store.insert_message(&record).await {
            Ok(InsertOutcome::Inserted) => true,
            Ok(InsertOutcome::Existing(_)) | Err(StoreError::Conflict { .. }) => false,
            Err(error) => return Err(error),
        };
        let mut content = content;
        if !fresh {
            content.media = self.first_media(&message_id, content.media).await;
        }
        let mut data = Map::new();
        data.insert("message_id".into(), Value::from(message_id.as_str()));
        data.insert("from".into(), Value::from(from_phone));
        if let Some(group) = group {
            data.insert("group".into(), Value::from(group));
        }
        if let Some(media) = content.media {
            data.insert("media".into(), media_data(media, &content.text));
        }
        if let Some(quote) = content.quote {
            data.insert("reply_to".into(), Value::from(quote.id));
        }
        data.insert("text".into(), Value::from(content.text));
        data.insert("at_ms".into(), Value::from(at_ms));
        let key = format!("inbound\0{message_id}");
        if fresh {
            metrics::message_outcome("inbound");
            self.ctx
                .emit_once(&self.id, EventKind::MessageInbound, data, &key)
                .await;
        } else {
            // Delivered again by the network: stored before, but perhaps not recorded
            // for the webhook before a crash. Its stable id makes this a no-op if it was.
            self.ctx
                .emit_recovered(&self.id, EventKind::MessageInbound, &data, &key)
                .await;
        }
        if let Some(session) = self.session.as_mut() {
            let _ = session.command(LinkCommand::AckInbound { message_id });
        }
        Ok(())
    }
}

impl DeviceState {
    /// The file of a message delivered again: the one its stored content names (see the
    /// module docs), the copy `media` of this delivery deleted. A stored message that
    /// cannot be read keeps `media` as it is (nothing is deleted on a guess). `&mut`:
    /// the state's link session is `Send` but not `Sync`.
    async fn first_media(
        &mut self,
        message_id: &str,
        media: Option<MediaPart>,
    ) -> Option<MediaPart> {
        let again = media?;
        let stored = match self.ctx.store.get_message(&self.id, message_id).await {
            Ok(Some(stored)) => stored,
            _ => return Some(again),
        };
        let place = Place::message(&self.id, message_id);
        let Ok(text) = self.ctx.keys.open(&place, &stored.text).await else {
            return Some(again);
        };
        let (kept, unreferenced) = redelivered(Content::from_stored(&text).media, again);
        if let Some(id) = unreferenced
            && let Err(error) = self.ctx.media.delete(&id).await
        {
            warn!(device_id = %self.id, message_id, media_id = %id, %error, "cannot delete the second copy of a file delivered again; it stays");
            metrics::media_deletes("failed", 1);
        }
        kept
    }
}

/// For a message delivered again: the file it keeps (the one `stored` with it first),
/// and the id of the copy `again` downloaded if no message names that copy.
fn redelivered(stored: Option<MediaPart>, again: MediaPart) -> (Option<MediaPart>, Option<String>) {
    match stored {
        Some(first) if first.id == again.id => (Some(first), None),
        first => (first, Some(again.id)),
    }
}

/// The `media` of a `message.inbound` event: what to fetch from `/v1/media/{id}`.
fn media_data(media: MediaPart, caption: &str) -> Value {
    let mut data = Map::new();
    data.insert("id".into(), Value::from(media.id));
    data.insert("type".into(), Value::from(media.media_type.as_str()));
    data.insert("mime".into(), Value::from(media.mime));
    data.insert("size".into(), Value::from(media.size));
    data.insert("sha256".into(), Value::from(media.sha256));
    if !caption.is_empty() {
        data.insert("caption".into(), Value::from(caption));
    }
    if let Some(filename) = media.filename {
        data.insert("filename".into(), Value::from(filename));
    }
    Value::Object(data)
}

/// The data of a `message.status` event for `message` as stored after the receipt.
pub(super) fn receipt_data(message: &MessageRecord, error: Option<&str>) -> Map<String, Value> {
    let status = message.status;
    let at_ms = match status {
        MessageStatus::Sent => message.sent_at_ms,
        MessageStatus::Delivered => message.delivered_at_ms,
        MessageStatus::Read => message.read_at_ms,
        MessageStatus::Failed => message.failed_at_ms,
        MessageStatus::Queued | MessageStatus::Scheduled | MessageStatus::Cancelled => None,
    }
    .unwrap_or(message.created_at_ms);
    let mut data = Map::new();
    data.insert("message_id".into(), Value::from(message.id.as_str()));
    data.insert("status".into(), Value::from(status.as_str()));
    if let Some(error) = error.or(message.error.as_deref()) {
        data.insert("error".into(), Value::from(error));
    }
    data.insert("at_ms".into(), Value::from(at_ms));
    data
}

/// What makes a receipt's event one event: the message and the status it reached.
pub(super) fn receipt_key(message_id: &str, status: MessageStatus) -> String {
    format!("receipt\0{message_id}\0{}", status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaType;

    fn file(id: &str) -> MediaPart {
        MediaPart {
            id: id.into(),
            media_type: MediaType::Document,
            mime: "application/pdf".into(),
            size: 3,
            sha256: "ab".repeat(32),
            filename: None,
        }
    }

    #[test]
    fn a_message_delivered_again_keeps_its_first_file_and_drops_the_copy() {
        assert_eq!(
            redelivered(Some(file("med_1")), file("med_2")),
            (Some(file("med_1")), Some("med_2".to_owned()))
        );
        // Stored first without its file (past its limit then): the copy names nothing.
        assert_eq!(
            redelivered(None, file("med_2")),
            (None, Some("med_2".to_owned()))
        );
        // The same file (a link that names files by the network's id): nothing to drop.
        assert_eq!(
            redelivered(Some(file("med_1")), file("med_1")),
            (Some(file("med_1")), None)
        );
    }
}
