//! Inbound messages are acknowledged to WhatsApp only once the device has stored them.
//!
//! By default whatsapp-rust acknowledges a message as soon as it is decrypted, so a
//! crash (or a failed store write) before the device stores it loses it: WhatsApp has
//! dropped it from its queue. [`StoreFirst`] is whatsapp-rust's inbound durability
//! hook: for each message it relays it emits `Inbound` to the device and waits until
//! the device has stored it (the device answers every stored inbound message with
//! `AckInbound`, as it does for the simulated network). Only then does whatsapp-rust
//! send the acknowledgement; if the device does not answer in time (it is stopping,
//! or its store is down), the hook fails and WhatsApp redelivers on the next connection.
//! The device's insert is idempotent, so a redelivered message is stored once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use tokio::sync::oneshot;
use tracing::debug;
use whatsapp_rust::Client;
use whatsapp_rust::anyhow;
use whatsapp_rust::types::durability_hook::{InboundDurabilityHook, InboundMessage};

use super::incoming::{Downloads, Receiver, media_of};
use super::quotes::{known_reply_to, quoted_id};
use super::session::{relayed, relayed_sender};
use super::store::VaultBackend;
use crate::link::LinkContext;
use crate::link::{LinkEvent, LinkEvents};
use crate::media::MediaLibrary;

/// How long the hook waits for the device to store a batch.
const STORE_WAIT: Duration = Duration::from_secs(15);

/// Inbound messages handed to the device and not yet stored, by WhatsApp message id.
#[derive(Default)]
pub(crate) struct Unstored {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl Unstored {
    fn wait(&self, message_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(message_id.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    /// The device stored `message_id`: whoever waits for it may acknowledge it.
    pub(crate) fn stored(&self, message_id: &str) {
        let waiters = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(message_id);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(());
        }
    }

    /// Stops waiting for `message_id` (the hook gave up on it).
    fn forget(&self, message_id: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(message_id);
    }
}

/// whatsapp-rust's durability hook for one session (see the module docs).
pub(crate) struct StoreFirst {
    pub(crate) device_id: String,
    pub(crate) events: LinkEvents,
    pub(crate) unstored: Arc<Unstored>,
    pub(crate) wait: Duration,
    /// Where the media of inbound messages is stored, and for which tenant.
    pub(crate) library: Arc<MediaLibrary>,
    pub(crate) tenant: String,
    /// The session's backend, whose outbound map turns a quoted message's WhatsApp id
    /// back into the wafleet id of a message the device sent.
    pub(crate) backend: Arc<VaultBackend>,
}

impl StoreFirst {
    pub(crate) fn new(
        ctx: &LinkContext,
        unstored: Arc<Unstored>,
        backend: Arc<VaultBackend>,
    ) -> Self {
        StoreFirst {
            device_id: ctx.device_id.clone(),
            events: ctx.events.clone(),
            unstored,
            wait: STORE_WAIT,
            library: ctx.media.clone(),
            tenant: ctx.tenant.clone(),
            backend,
        }
    }

    /// A media message relayed with its file stored first: `None` if it is not one
    /// the device relays; `Some(Err)` if its file cannot be stored now.
    async fn relay_media(
        &self,
        downloads: &dyn Downloads,
        message: &InboundMessage,
    ) -> Option<Result<LinkEvent, String>> {
        let (from_phone, group) = relayed_sender(message)?;
        let incoming = media_of(&message.message)?;
        let message_id = message.info.id.to_string();
        let receiver = Receiver {
            library: &self.library,
            tenant: &self.tenant,
            device_id: &self.device_id,
        };
        Some(
            receiver
                .receive(downloads, &message_id, &incoming)
                .await
                .map(|media| LinkEvent::Inbound {
                    message_id,
                    from_phone,
                    text: incoming.caption.clone(),
                    at_ms: message.info.timestamp.timestamp_millis(),
                    media,
                    group,
                    reply_to: quoted_id(&message.message),
                }),
        )
    }
}

#[async_trait]
impl InboundDurabilityHook for StoreFirst {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        let mut stored = Vec::new();
        let mut unrelayed = 0;
        for message in batch {
            let mut event = match relayed(&self.device_id, message) {
                Some(event) => event,
                None => match self.relay_media(client.as_ref(), message).await {
                    Some(Ok(event)) => event,
                    Some(Err(reason)) => {
                        debug!(device_id = %self.device_id, %reason, "an inbound file cannot be stored now; left for redelivery");
                        unrelayed += 1;
                        continue;
                    }
                    None => continue,
                },
            };
            known_reply_to(&self.backend, &mut event).await;
            if let LinkEvent::Inbound { message_id, .. } = &event {
                stored.push(self.unstored.wait(message_id));
                ids.push(message_id.clone());
            }
            self.events.emit(event);
        }
        let all_stored = ids.is_empty()
            || matches!(
                tokio::time::timeout(self.wait, join_all(stored)).await,
                Ok(results) if results.iter().all(Result::is_ok)
            );
        if all_stored && unrelayed == 0 {
            return Ok(());
        }
        if all_stored {
            // The others are stored; WhatsApp redelivers the batch, and only the files
            // that failed are new.
            anyhow::bail!("{unrelayed} inbound file(s) could not be stored yet");
        }
        for id in &ids {
            self.unstored.forget(id);
        }
        debug!(device_id = %self.device_id, messages = ids.len(), "inbound not stored in time, left for redelivery");
        anyhow::bail!(
            "the device did not store {} inbound message(s) within {:?}",
            ids.len(),
            self.wait
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use whatsapp_rust::types::message::{MessageInfo, MessageSource};
    use whatsapp_rust::waproto::whatsapp as wa;

    use super::*;
    use crate::link::whatsapp::conformance::unconnected_client;
    use crate::store::{SqliteStore, Store};

    fn message(id: &str, chat: &str, text: Option<&str>) -> InboundMessage {
        let group = chat.ends_with("@g.us");
        let chat: whatsapp_rust::Jid = chat.parse().unwrap();
        InboundMessage::builder()
            .message(Arc::new(wa::Message {
                conversation: text.map(str::to_owned),
                ..Default::default()
            }))
            .info(Arc::new(MessageInfo {
                id: id.into(),
                source: MessageSource {
                    is_group: group,
                    sender: if group {
                        "628111@s.whatsapp.net".parse().unwrap()
                    } else {
                        chat.clone()
                    },
                    chat,
                    ..Default::default()
                },
                ..Default::default()
            }))
            .build()
    }

    /// A hook whose device is played by the test: the events it emits, in order.
    async fn hook(
        wait: Duration,
        dir: &std::path::Path,
    ) -> (StoreFirst, Arc<Unstored>, Arc<Mutex<Vec<LinkEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let unstored = Arc::new(Unstored::default());
        let events = LinkEvents::new(
            1,
            Arc::new(move |_, event| sink.lock().unwrap().push(event)),
        );
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("vault.db")).unwrap());
        crate::link::whatsapp::conformance::create_starting_device(store.as_ref(), "d").await;
        let sealer = Arc::new(crate::seal::Sealer::new(crate::seal::MasterKey::new(
            1, [5; 32],
        )));
        let vault = crate::vault::Vault::new(store, sealer).device("d", None);
        let hook = StoreFirst {
            device_id: "d".into(),
            events,
            unstored: unstored.clone(),
            wait,
            library: Arc::new(MediaLibrary::new(
                Arc::new(crate::media::NoMediaStore),
                Arc::new(crate::seal::data_keys::DataKeys::new(
                    Arc::new(SqliteStore::open(&dir.join("keys.db")).unwrap()),
                    Arc::new(crate::seal::Sealer::new(crate::seal::MasterKey::new(
                        1, [2; 32],
                    ))),
                )),
                Default::default(),
            )),
            tenant: "default".into(),
            backend: Arc::new(VaultBackend::open(vault).await.unwrap()),
        };
        (hook, unstored, seen)
    }

    async fn client() -> (tempfile::TempDir, Arc<Client>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("w.db")).unwrap());
        (dir, unconnected_client(store).await)
    }

    #[tokio::test]
    async fn a_message_is_acknowledged_only_once_the_device_stored_it() {
        let (dir, client) = client().await;
        let (hook, unstored, seen) = hook(Duration::from_secs(5), dir.path()).await;
        let batch = [
            message("A1", "628222@s.whatsapp.net", Some("halo")),
            message("A2", "628333@s.whatsapp.net", Some("apa kabar")),
        ];
        let device = tokio::spawn({
            let unstored = unstored.clone();
            let seen = seen.clone();
            async move {
                // The device stores what it was handed, a little later.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let ids: Vec<String> = seen
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(|e| match e {
                        LinkEvent::Inbound { message_id, .. } => Some(message_id.clone()),
                        _ => None,
                    })
                    .collect();
                for id in ids {
                    unstored.stored(&id);
                }
            }
        });
        let started = Instant::now();
        hook.on_messages(client.clone(), &batch)
            .await
            .expect("stored, so acknowledged");
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "it waited for the device"
        );
        device.await.unwrap();
        let seen = seen.lock().unwrap();
        assert!(
            matches!(
                &seen[..],
                [
                    LinkEvent::Inbound { message_id: a, from_phone: pa, text: ta, .. },
                    LinkEvent::Inbound { message_id: b, .. },
                ] if a == "A1" && pa == "628222" && ta == "halo" && b == "A2"
            ),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_message_the_device_did_not_store_is_left_for_redelivery() {
        let (dir, client) = client().await;
        let (hook, unstored, _seen) = hook(Duration::from_millis(100), dir.path()).await;
        let batch = [
            message("B1", "628222@s.whatsapp.net", Some("one")),
            message("B2", "628222@s.whatsapp.net", Some("two")),
        ];
        let storing_one = {
            let unstored = unstored.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                unstored.stored("B1");
            })
        };
        let error = hook
            .on_messages(client.clone(), &batch)
            .await
            .expect_err("B2 was never stored: the batch is not acknowledged");
        assert!(error.to_string().contains("did not store 2"), "{error}");
        storing_one.await.unwrap();
        assert!(
            unstored.waiting.lock().unwrap().is_empty(),
            "nothing left waiting"
        );
    }

    #[test]
    fn a_group_message_is_relayed_from_its_writer_in_its_group() {
        let group = message("G1", "120363000000000001@g.us", Some("group chat"));
        match relayed("d", &group) {
            Some(LinkEvent::Inbound {
                from_phone, group, ..
            }) => {
                assert_eq!(from_phone, "628111");
                assert_eq!(group.as_deref(), Some("120363000000000001@g.us"));
            }
            other => panic!("expected an inbound message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn what_is_not_relayed_is_acknowledged_at_once() {
        let (dir, client) = client().await;
        let (hook, _unstored, seen) = hook(Duration::from_secs(5), dir.path()).await;
        let batch = [
            message("S1", "status@broadcast", Some("a status update")),
            message("M1", "628222@s.whatsapp.net", None),
        ];
        let started = Instant::now();
        hook.on_messages(client, &batch)
            .await
            .expect("nothing to wait for");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(seen.lock().unwrap().is_empty());
    }
}
