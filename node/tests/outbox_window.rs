//! The in-flight window of a device with a backlog refills by quarters: a drain reads
//! the messages in flight again before the new ones, so refilling one place per `sent`
//! receipt would read the whole window from the store per message (what capped a
//! standalone at about 2,000 accepted messages a second). Nothing waits for ever: the
//! window refills once a quarter of it is free, and every message is handed once.
//!
//! A drain reads after the last message it handed; a message accepted concurrently with
//! a later one, and stored after that one was handed, is still handed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wafleet_cluster_config::QuotaTable;
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkEvents, LinkFactory, LinkSession,
    ReceiptStatus,
};
use wafleet_node::store::metered::CallHook;
use wafleet_node::store::{MeteredStore, StoreError};
use wafleet_node::{NodeConfig, SendText};

mod common;

const WINDOW: usize = 8;

/// A paired link that records what it is handed and confirms a send only when the
/// test says so.
#[derive(Debug, Default, Clone)]
struct HeldReceipts {
    handed: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Option<LinkEvents>>>,
}

impl HeldReceipts {
    fn handed(&self) -> Vec<String> {
        self.handed.lock().unwrap().clone()
    }

    fn confirm(&self, message_id: &str) {
        let events = self.events.lock().unwrap().clone().expect("a session");
        events.emit(LinkEvent::Receipt {
            message_id: message_id.to_owned(),
            status: ReceiptStatus::Sent,
            error: None,
            at_ms: 0,
        });
    }
}

struct Session(Arc<Mutex<Vec<String>>>);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl LinkSession for Session {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError> {
        if let LinkCommand::SendText { message_id, .. } = command {
            self.0.lock().unwrap().push(message_id);
        }
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for HeldReceipts {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        *self.events.lock().unwrap() = Some(ctx.events.clone());
        ctx.events.emit(LinkEvent::Paired {
            phone: "6281000000001".into(),
        });
        Ok(Box::new(Session(self.handed.clone())))
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_backlogged_window_refills_by_quarters_and_hands_every_message_once() {
    let link = HeldReceipts::default();
    let (_dir, fleet) = common::fleet_with_ready_device(
        NodeConfig {
            max_in_flight: WINDOW,
            ..NodeConfig::default()
        },
        Arc::new(link.clone()),
        Some(QuotaTable::UNTHROTTLED),
        "w",
    )
    .await;
    let mut accepted = Vec::new();
    for n in 0..20 {
        let sent = fleet
            .send_text(
                "w",
                SendText {
                    to_phone: "6281234567890".into(),
                    text: format!("message {n}"),
                    idempotency_key: None,
                    media: None,
                    mentions: Vec::new(),
                    send_at_ms: None,
                    reply_to: None,
                },
            )
            .await
            .unwrap();
        accepted.push(sent.message.id);
    }
    until("a full window", || link.handed().len() == WINDOW).await;
    assert_eq!(link.handed(), accepted[..WINDOW]);

    // One place free of eight: less than a quarter, so nothing more is read or handed.
    link.confirm(&accepted[0]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(link.handed().len(), WINDOW, "refilled one place at a time");

    // Two free: a quarter; the window fills again, in order.
    link.confirm(&accepted[1]);
    until("the window refilled", || link.handed().len() == WINDOW + 2).await;
    assert_eq!(link.handed(), accepted[..WINDOW + 2]);

    // Every message goes, each once, as receipts come.
    let mut confirmed = 2;
    while confirmed < accepted.len() {
        let handed = link.handed();
        if confirmed < handed.len() {
            link.confirm(&handed[confirmed]);
            confirmed += 1;
        } else {
            until("more handed", || link.handed().len() > confirmed).await;
        }
    }
    assert_eq!(
        link.handed(),
        accepted,
        "each message handed once, in order"
    );
    fleet.shutdown().await;
}

/// Delays the next guarded insert (a message's store write) once armed.
#[derive(Debug, Default)]
struct SlowNextInsert {
    armed: AtomicBool,
}

#[async_trait]
impl CallHook for SlowNextInsert {
    async fn before(&self, operation: &'static str) -> Result<(), StoreError> {
        if operation == "insert_message_if" && self.armed.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Ok(())
    }
}

fn text(n: u32) -> SendText {
    SendText {
        to_phone: "6281234567890".into(),
        text: format!("message {n}"),
        idempotency_key: None,
        media: None,
        mentions: Vec::new(),
        send_at_ms: None,
        reply_to: None,
    }
}

#[tokio::test]
async fn a_message_stored_after_a_later_one_was_handed_is_not_passed_over() {
    let link = HeldReceipts::default();
    let hook = Arc::new(SlowNextInsert::default());
    let (_dir, fleet) = common::fleet_with_ready_device_on(
        {
            let hook = hook.clone();
            move |store| Arc::new(MeteredStore::with_hook(store, hook))
        },
        NodeConfig {
            max_in_flight: WINDOW,
            ..NodeConfig::default()
        },
        Arc::new(link.clone()),
        Some(QuotaTable::UNTHROTTLED),
        "w",
    )
    .await;
    let first = fleet.send_text("w", text(0)).await.unwrap().message;
    until("the first handed", || link.handed().len() == 1).await;

    // The second is admitted before the third but stored after the third was handed.
    hook.armed.store(true, Ordering::SeqCst);
    let slow = tokio::spawn({
        let fleet = fleet.clone();
        async move { fleet.send_text("w", text(1)).await.unwrap().message }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = fleet.send_text("w", text(2)).await.unwrap().message;
    until("the third handed", || link.handed().len() == 2).await;
    let second = slow.await.unwrap();
    assert!(
        (second.created_at_ms, &second.id) < (third.created_at_ms, &third.id),
        "the second comes before the third in the queue"
    );

    until("the second handed too", || link.handed().len() == 3).await;
    assert_eq!(link.handed(), [first.id, third.id, second.id]);
    fleet.shutdown().await;
}
