//! Text messages between linked devices and simulated phones, end to end encrypted.
//!
//! A device's `<message>` carries one `<enc>` per recipient device; the server
//! acknowledges it, each simulated phone decrypts its copy with its own Signal state
//! (the inbox keeps the text) and sends a delivery receipt. A phone's message to an
//! account is encrypted to each of its linked devices and delivered, or kept until the
//! device logs in.

use std::sync::Arc;

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use wacore_libsignal::protocol::{DeviceId, ProtocolAddress};
use waproto::buffa;
use waproto::whatsapp as wa;

use crate::iq::Session;
use crate::network::{Command, Network};
use crate::nodes;
use crate::signal::PublicBundle;

/// A message a phone received from a linked device.
#[derive(Debug, Clone, Serialize)]
pub struct InboxMessage {
    /// The number of the account whose device sent it.
    pub from_phone: String,
    pub text: String,
    /// When it reached the phone, seconds since the epoch.
    pub at: u64,
    pub message_id: String,
    /// `delivered`, then `read`.
    pub status: &'static str,
}

/// A message a phone sent, and how far it got.
#[derive(Debug, Clone, Serialize)]
pub struct SentMessage {
    pub from_phone: String,
    pub to_phone: String,
    pub text: String,
    pub message_id: String,
    /// `sent`, `delivered` (a device acknowledged it with a receipt) or `read`.
    pub status: &'static str,
}

/// Why a phone could not send.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0} has no linked device to deliver to")]
    NoDevice(String),
    #[error("encryption failed: {0}")]
    Crypto(String),
}

/// A device sent `node` (`<message>`): acknowledge it, decrypt each simulated phone's
/// copy, and answer with their receipts. What to send back to the device.
pub(crate) async fn from_device(network: &Network, session: &Session, node: &Node) -> Vec<Node> {
    let id = nodes::attr(node, "id").unwrap_or_default();
    let to = nodes::attr(node, "to").unwrap_or_default();
    let mut replies = vec![
        NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.clone())
            .attr("from", to.clone())
            .attr("t", nodes::now().to_string())
            .build(),
    ];
    let sender = address(&session.phone, session.device);
    let participants = nodes::child(node, "participants")
        .and_then(Node::children)
        .unwrap_or_default();
    for participant in participants.iter().filter(|p| p.tag == "to") {
        let Some(jid) = nodes::attr(participant, "jid") else {
            continue;
        };
        let Some(enc) = nodes::child(participant, "enc") else {
            continue;
        };
        let Some(phone) = phone_of(network, &jid) else {
            // Another linked device (the recipient's, or one of the sender's own):
            // relayed as it is, for it to decrypt.
            if !relay_to_companion(network, session, node, &jid, enc) {
                network.unknown(format!("message to an unknown device {jid}"));
            }
            continue;
        };
        let kind = nodes::attr(enc, "type").unwrap_or_default();
        let ciphertext = nodes::bytes(enc).unwrap_or_default().to_vec();
        let party = network.signal_of(&phone);
        let plaintext = party
            .lock()
            .await
            .decrypt(&sender, &kind, &ciphertext)
            .await;
        let message = plaintext
            .map_err(|e| e.to_string())
            .and_then(|p| wacore::messages::decode_plaintext(&p, 2).map_err(|e| e.to_string()));
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                network.lock().stats.undecryptable += 1;
                tracing::warn!(%error, phone, "a phone cannot decrypt its copy");
                continue;
            }
        };
        if phone == session.phone {
            // The sender's own phone gets a copy (DeviceSentMessage): nothing to deliver.
            network.lock().stats.own_copies += 1;
            continue;
        }
        let Some(text) = text_of(&message) else {
            network.unknown("a message without text".into());
            continue;
        };
        network.lock().inbox_of(&phone).push(InboxMessage {
            from_phone: session.phone.clone(),
            text,
            at: nodes::now(),
            message_id: id.clone(),
            status: "delivered",
        });
        replies.push(
            NodeBuilder::new("receipt")
                .attr("from", jid_from(&jid))
                .attr("id", id.clone())
                .attr("t", nodes::now().to_string())
                .build(),
        );
    }
    replies
}

/// Relays one device's `<enc>` to another linked device `jid`, from the sending
/// device's own JID (the Signal address the recipient decrypts with). Whether `jid` is a
/// linked device.
fn relay_to_companion(
    network: &Network,
    session: &Session,
    node: &Node,
    jid: &str,
    enc: &Node,
) -> bool {
    let Ok(parsed) = jid.parse::<Jid>() else {
        return false;
    };
    let device = u32::from(parsed.device);
    let number = network.lock().number_of(&parsed);
    let Some(number) =
        number.filter(|n| network.lock().companions.contains_key(&(n.clone(), device)))
    else {
        return false;
    };
    let mut stanza = NodeBuilder::new("message")
        .attr(
            "from",
            format!("{}:{}@s.whatsapp.net", session.phone, session.device),
        )
        .attr("id", nodes::attr(node, "id").unwrap_or_default())
        .attr("t", nodes::now().to_string())
        .attr(
            "type",
            nodes::attr(node, "type").unwrap_or_else(|| "text".into()),
        )
        .attr("notify", format!("Phone {}", session.phone));
    if number == session.phone {
        // A copy for the sender's own other device: whom the message was for.
        if let Some(to) = nodes::attr(node, "to") {
            stanza = stanza.attr("recipient", to);
        }
    }
    let mut children = vec![enc.clone()];
    if let Some(identity) = nodes::child(node, "device-identity") {
        children.push(identity.clone());
    }
    network.deliver(&number, device, stanza.children(children).build());
    network.lock().stats.relayed += 1;
    true
}

/// A device's receipt for a message a phone or another device sent it.
pub(crate) fn receipt_from_device(network: &Network, session: &Session, node: &Node) {
    let Some(id) = nodes::attr(node, "id") else {
        return;
    };
    let read = nodes::attr(node, "type").as_deref() == Some("read");
    let to = nodes::attr(node, "to").and_then(|to| to.parse::<Jid>().ok());
    {
        let mut state = network.lock();
        for sent in state.sent.iter_mut().filter(|s| s.message_id == id) {
            sent.status = if read { "read" } else { "delivered" };
        }
    }
    // A receipt for another device's message goes to that device.
    let Some(to) = to.filter(|to| to.device != 0) else {
        return;
    };
    let Some(number) = network.lock().number_of(&to) else {
        return;
    };
    let mut receipt = NodeBuilder::new("receipt")
        .attr("from", format!("{}@s.whatsapp.net", session.phone))
        .attr("id", id)
        .attr("t", nodes::now().to_string());
    if read {
        receipt = receipt.attr("type", "read");
    }
    network.deliver(&number, u32::from(to.device), receipt.build());
}

impl Network {
    /// `phone` writes `text` to `to`: encrypted to each device linked to that account.
    /// The message id.
    pub async fn send_from_phone(
        &self,
        phone: &str,
        to: &str,
        text: &str,
    ) -> Result<String, SendError> {
        let devices: Vec<u32> = {
            let state = self.lock();
            state
                .companions
                .keys()
                .filter(|(user, _)| user == to)
                .map(|(_, device)| *device)
                .collect()
        };
        if devices.is_empty() {
            return Err(SendError::NoDevice(to.to_owned()));
        }
        let message_id = format!("3EB0{:016X}", rand::random::<u64>());
        let message = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        for device in devices {
            let stanza = self
                .encrypt_to_device(phone, to, device, &message, &message_id, "text")
                .await?;
            self.deliver(to, device, stanza);
        }
        self.lock().sent.push(SentMessage {
            from_phone: phone.to_owned(),
            to_phone: to.to_owned(),
            text: text.to_owned(),
            message_id: message_id.clone(),
            status: "sent",
        });
        Ok(message_id)
    }

    /// `message` from `phone` to the linked device `to:device`, encrypted to it (a
    /// session started from the bundle it uploaded when there is none): the stanza.
    pub(crate) async fn encrypt_to_device(
        &self,
        phone: &str,
        to: &str,
        device: u32,
        message: &wa::Message,
        message_id: &str,
        kind: &str,
    ) -> Result<Node, SendError> {
        let plaintext = wacore::messages::MessageUtils::encode_and_pad(message);
        let party = self.signal_of(phone);
        let bundle = || self.take_bundle(to, device);
        let (enc, ciphertext) = party
            .lock()
            .await
            .encrypt(&address(to, device), bundle, &plaintext)
            .await
            .map_err(|e| SendError::Crypto(e.to_string()))?;
        Ok(NodeBuilder::new("message")
            .attr("from", format!("{phone}@s.whatsapp.net"))
            .attr("id", message_id.to_owned())
            .attr("t", nodes::now().to_string())
            .attr("type", kind.to_owned())
            .attr("notify", format!("Phone {phone}"))
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", enc)
                .bytes(ciphertext)
                .build()])
            .build())
    }

    /// The account's phone gives its newly linked device the key of its app state, as a
    /// phone does right after pairing (the device otherwise waits 10 s for it before it
    /// is ready).
    pub(crate) async fn share_app_state_key(
        &self,
        phone: &str,
        device: u32,
    ) -> Result<(), SendError> {
        let share = wa::message::AppStateSyncKeyShare {
            keys: vec![wa::message::AppStateSyncKey {
                key_id: buffa::MessageField::some(wa::message::AppStateSyncKeyId {
                    key_id: Some(rand::random::<[u8; 6]>().to_vec()),
                }),
                key_data: buffa::MessageField::some(wa::message::AppStateSyncKeyData {
                    key_data: Some(rand::random::<[u8; 32]>().to_vec()),
                    fingerprint: buffa::MessageField::some(
                        wa::message::AppStateSyncKeyFingerprint {
                            raw_id: Some(rand::random()),
                            current_index: Some(0),
                            device_indexes: vec![0, device],
                        },
                    ),
                    timestamp: Some(nodes::now() as i64 * 1000),
                }),
            }],
        };
        let message = wa::Message {
            protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
                r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
                app_state_sync_key_share: buffa::MessageField::some(share),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = format!("3EB0{:016X}", rand::random::<u64>());
        let stanza = self
            .encrypt_to_device(phone, phone, device, &message, &id, "protocol")
            .await?;
        self.deliver(phone, device, stanza);
        Ok(())
    }

    /// `phone` reads what it received: the senders get read receipts. How many.
    pub fn read(&self, phone: &str) -> usize {
        let mut state = self.lock();
        let unread: Vec<(String, String)> = state
            .inbox_of(phone)
            .iter_mut()
            .filter(|m| m.status != "read")
            .map(|m| {
                m.status = "read";
                (m.from_phone.clone(), m.message_id.clone())
            })
            .collect();
        drop(state);
        for (from, id) in &unread {
            let receipt = NodeBuilder::new("receipt")
                .attr("from", format!("{phone}@s.whatsapp.net"))
                .attr("id", id.clone())
                .attr("type", "read")
                .attr("t", nodes::now().to_string())
                .build();
            let devices: Vec<u32> = self
                .lock()
                .companions
                .keys()
                .filter(|(user, _)| user == from)
                .map(|(_, d)| *d)
                .collect();
            for device in devices {
                self.deliver(from, device, receipt.clone());
            }
        }
        unread.len()
    }

    /// Sends `stanza` to the device now if it is connected, else when it logs in.
    pub(crate) fn deliver(&self, phone: &str, device: u32, stanza: Node) {
        let mut state = self.lock();
        let key = (phone.to_owned(), device);
        if let Some(online) = state.online.get(&key)
            && online
                .commands
                .send(Command::Deliver(stanza.clone()))
                .is_ok()
        {
            return;
        }
        state.offline.entry(key).or_default().push(stanza);
    }

    /// The Signal state of `phone`.
    pub(crate) fn signal_of(
        &self,
        phone: &str,
    ) -> Arc<tokio::sync::Mutex<crate::signal::SignalParty>> {
        self.lock().phone(phone).signal.clone()
    }

    /// A linked device's uploaded bundle, using up one of its one-time pre-keys.
    pub(crate) fn take_bundle(&self, phone: &str, device: u32) -> Option<PublicBundle> {
        let mut state = self.lock();
        let bundle = state.bundles.get_mut(&(phone.to_owned(), device))?;
        let pre_key = bundle.prekeys.pop_first();
        Some(PublicBundle {
            registration_id: u32::from_be_bytes(bundle.registration.clone().try_into().ok()?),
            identity: bundle.identity.clone().try_into().ok()?,
            signed_id: uint(&bundle.signed_id),
            signed_public: bundle.signed_value.clone().try_into().ok()?,
            signed_signature: bundle.signed_signature.clone(),
            pre_key: pre_key.and_then(|(id, key)| Some((uint(&id), key.try_into().ok()?))),
        })
    }
}

/// A big-endian unsigned number of up to 4 bytes.
fn uint(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |n, b| (n << 8) | u32::from(*b))
}

/// The Signal address of a device as the phones know it.
fn address(phone: &str, device: u32) -> ProtocolAddress {
    ProtocolAddress::new(phone, DeviceId::from(device))
}

/// The phone a `user[:0]@s.whatsapp.net` or `lid[:0]@lid` JID names, if it is a phone
/// (device 0) this server knows or can make.
fn phone_of(network: &Network, jid: &str) -> Option<String> {
    let jid: Jid = jid.parse().ok()?;
    if jid.device != 0 {
        return None;
    }
    network.lock().number_of(&jid)
}

/// The JID a receipt comes from: the recipient, as the device addressed it.
fn jid_from(jid: &str) -> String {
    jid.to_owned()
}

/// The text of a text message (plain or extended).
fn text_of(message: &wa::Message) -> Option<String> {
    message.conversation.clone().or_else(|| {
        message
            .extended_text_message
            .as_option()
            .and_then(|m| m.text.clone())
    })
}
