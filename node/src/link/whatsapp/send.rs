//! Sending a text on the real link, so that WhatsApp delivers it once however often it is
//! handed over.
//!
//! A message can reach the link more than once: after a reconnect the device hands its
//! queued messages again, among them any whose send went out but was not confirmed
//! before the connection dropped (or on another node, after a failover). WhatsApp
//! drops a message whose id it has already seen from the sender, so each wafleet message
//! has **one** WhatsApp id, derived from the device and the wafleet message id
//! ([`wa_message_id`]): the same on every attempt, every session and every node, with
//! nothing to store or look up first.
//!
//! A send that times out (or loses its connection on the way) may have gone out, so it is
//! not reported failed: the link reports it [`Unsent`](LinkEvent::Unsent), the message
//! stays queued, and it is sent again under the same id.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tracing::warn;
use whatsapp_rust::send::SendOptions;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, Jid};

use super::store::VaultBackend;
use crate::clock::now_ms;
use crate::link::{LinkEvent, ReceiptStatus};

/// A send that has not been written to WhatsApp by then is given up (and handed again).
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a send needs of the WhatsApp client. A seam, so that a test can stand in for a
/// connection that takes the message and drops before confirming it.
#[async_trait]
pub(super) trait Outgoing: Send + Sync {
    /// Sends `message` to `to` under the WhatsApp message id `wa_id`.
    async fn send_message(
        &self,
        to: Jid,
        message: wa::Message,
        wa_id: String,
    ) -> Result<(), String>;

    /// Whether the connection to WhatsApp is up now.
    fn connected(&self) -> bool;
}

#[async_trait]
impl Outgoing for Client {
    async fn send_message(
        &self,
        to: Jid,
        message: wa::Message,
        wa_id: String,
    ) -> Result<(), String> {
        let options = SendOptions::default().with_message_id(wa_id);
        self.send_message_with_options(to, message, options)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn connected(&self) -> bool {
        self.is_connected()
    }
}

/// The WhatsApp id of a wafleet message of a device: WhatsApp Web's shape (`3EB0` and 18
/// upper-case hex digits), from a hash of both ids.
pub(super) fn wa_message_id(device_id: &str, message_id: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"wafleet/whatsapp-message-id\0");
    hash.update(device_id.as_bytes());
    hash.update(b"\0");
    hash.update(message_id.as_bytes());
    let digest = hash.finalize();
    let mut id = String::with_capacity(22);
    id.push_str("3EB0");
    for byte in &digest[..9] {
        id.push_str(&format!("{byte:02X}"));
    }
    id
}

/// Sends a message (a text: `wa::Message::text`; media: `media::message`) and says how
/// it went (`None`: the session lost ownership, nothing was sent). The WhatsApp id is
/// mapped to wafleet's before the send, so that no receipt can arrive for an id the
/// link does not know yet.
pub(super) async fn send(
    client: &dyn Outgoing,
    backend: &VaultBackend,
    message_id: String,
    to_phone: String,
    message: wa::Message,
) -> Option<LinkEvent> {
    let receipt = |status, error: Option<String>| LinkEvent::Receipt {
        message_id: message_id.clone(),
        status,
        error,
        at_ms: now_ms(),
    };
    let to = match super::mentions::jid_of_peer(&to_phone) {
        Ok(jid) => jid,
        Err(error) => return Some(receipt(ReceiptStatus::Failed, Some(error))),
    };
    let wa_id = wa_message_id(backend.device_id(), &message_id);
    if let Err(error) = backend.put_outbound(&wa_id, &message_id).await {
        if backend.fenced().borrow().is_some() {
            return None;
        }
        warn!(device_id = backend.device_id(), %error, "cannot store the message id mapping, receipts will be lost");
    }
    let unsent = |reason: String| LinkEvent::Unsent {
        message_id: message_id.clone(),
        reason,
    };
    Some(
        match tokio::time::timeout(SEND_TIMEOUT, client.send_message(to, message, wa_id)).await {
            Ok(Ok(())) => receipt(ReceiptStatus::Sent, None),
            // Whatever the error says, with the connection gone the message may have
            // left before it went; after a reconnect it is sent again, under its id.
            Ok(Err(error)) if !client.connected() => {
                unsent(format!("connection lost while sending: {error}"))
            }
            Ok(Err(error)) => receipt(ReceiptStatus::Failed, Some(error)),
            Err(_) => unsent("timed out sending to WhatsApp".into()),
        },
    )
}

#[cfg(test)]
mod tests;
