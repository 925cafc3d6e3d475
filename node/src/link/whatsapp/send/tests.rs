//! The real link's send path with the client swapped for connections that misbehave:
//! one that takes the message and drops before confirming it, one that fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::link::whatsapp::conformance::create_starting_device;
use crate::seal::{MasterKey, Sealer};
use crate::store::{SqliteStore, Store};
use crate::vault::Vault;
use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt;

/// How a stand-in connection behaves once it has the message.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// Writes it out, then the connection drops: no confirmation ever comes.
    DropsAfterSend,
    /// Confirms it.
    Confirms,
    /// The connection is gone: the send fails.
    FailsDisconnected,
    /// WhatsApp refuses it on a live connection.
    Refuses,
}

/// A connection that records the WhatsApp ids it was given.
struct Connection {
    then: Then,
    connected: AtomicBool,
    sent: Mutex<Vec<String>>,
}

impl Connection {
    fn new(then: Then) -> Connection {
        Connection {
            then,
            connected: AtomicBool::new(true),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl Outgoing for Connection {
    async fn send_message(
        &self,
        _to: Jid,
        _message: wa::Message,
        wa_id: String,
    ) -> Result<(), String> {
        self.sent.lock().unwrap().push(wa_id);
        match self.then {
            Then::Confirms => Ok(()),
            Then::DropsAfterSend => {
                self.connected.store(false, Ordering::SeqCst);
                std::future::pending().await
            }
            Then::FailsDisconnected => {
                self.connected.store(false, Ordering::SeqCst);
                Err("websocket closed".into())
            }
            Then::Refuses => Err("recipient not on WhatsApp".into()),
        }
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

/// A device's vault backend on a fresh SQLite store; another call for the same device
/// is what another session (or node) opens.
struct Device {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    id: String,
}

impl Device {
    async fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).unwrap());
        create_starting_device(store.as_ref(), "dev-1").await;
        Device {
            _dir: dir,
            store,
            id: "dev-1".into(),
        }
    }

    async fn backend(&self) -> VaultBackend {
        let sealer = Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32])));
        let vault = Vault::new(self.store.clone(), sealer).device(&self.id, None);
        VaultBackend::open(vault).await.unwrap()
    }
}

async fn send(connection: &Connection, backend: &VaultBackend, message_id: &str) -> LinkEvent {
    super::send(
        connection,
        backend,
        message_id.into(),
        "+15551234567".into(),
        wa::Message::text("hello".to_owned()),
    )
    .await
    .expect("not fenced")
}

#[tokio::test]
async fn the_real_link_resends_with_the_same_message_id_after_a_link_that_drops_after_send() {
    let device = Device::new().await;

    // Session 1: the message goes out, the connection drops before it is confirmed.
    let first_session = device.backend().await;
    let dropping = Connection::new(Then::DropsAfterSend);
    tokio::time::pause();
    let outcome = send(&dropping, &first_session, "msg-1").await;
    assert!(
        matches!(&outcome, LinkEvent::Unsent { message_id, .. } if message_id == "msg-1"),
        "a send that may have gone out is not failed: {outcome:?}"
    );

    // Session 2 (after the reconnect, or on another node): the device hands it again.
    let second_session = device.backend().await;
    let confirming = Connection::new(Then::Confirms);
    let outcome = send(&confirming, &second_session, "msg-1").await;
    assert!(matches!(
        outcome,
        LinkEvent::Receipt {
            status: ReceiptStatus::Sent,
            ..
        }
    ));

    let (first, again) = (dropping.sent(), confirming.sent());
    assert_eq!(first.len(), 1);
    assert_eq!(again, first, "the same WhatsApp id on both attempts");
    // Receipts for that id map back to the message, in any session.
    assert_eq!(
        second_session.outbound(&first[0]).await.unwrap().as_deref(),
        Some("msg-1")
    );
    // Another message of the device gets another id.
    send(&confirming, &second_session, "msg-2").await;
    assert_ne!(confirming.sent()[1], first[0]);
}

#[tokio::test]
async fn a_send_that_lost_its_connection_is_unsent_and_a_refused_one_failed() {
    let device = Device::new().await;
    let backend = device.backend().await;
    let outcome = send(&Connection::new(Then::FailsDisconnected), &backend, "m").await;
    assert!(matches!(outcome, LinkEvent::Unsent { .. }), "{outcome:?}");
    let outcome = send(&Connection::new(Then::Refuses), &backend, "m").await;
    assert!(
        matches!(
            &outcome,
            LinkEvent::Receipt { status: ReceiptStatus::Failed, error: Some(e), .. }
                if e.contains("not on WhatsApp")
        ),
        "{outcome:?}"
    );
}

#[test]
fn message_ids_have_whatsapp_webs_shape_and_depend_on_both_ids() {
    let id = wa_message_id("dev-1", "msg-1");
    assert_eq!(id.len(), 22);
    assert!(id.starts_with("3EB0"));
    assert!(
        id[4..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
    );
    assert_eq!(id, wa_message_id("dev-1", "msg-1"));
    assert_ne!(id, wa_message_id("dev-2", "msg-1"));
    assert_ne!(id, wa_message_id("dev-1", "msg-2"));
}
