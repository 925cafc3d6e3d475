//! A message's life besides being sent at once: cancelled while its device drains a
//! backlog (the device's actor decides, so a cancel never races a hand-off), and
//! scheduled (outside the queue and the quota until it falls due, then in the queue
//! behind what was accepted before, holding up nothing).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wafleet_cluster_config::QuotaTable;
use wafleet_node::api::{FleetError, state_code};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkEvents, LinkFactory, LinkSession,
    ReceiptStatus,
};
use wafleet_node::store::MessageStatus;
use wafleet_node::{Fleet, NodeConfig, SendText};

mod common;

/// A paired link that records each message it is handed and confirms it sent at once
/// (unless `silent`).
#[derive(Debug, Default, Clone)]
struct Recording {
    handed: Arc<Mutex<Vec<String>>>,
    silent: bool,
    events: Arc<Mutex<Option<LinkEvents>>>,
}

impl Recording {
    fn handed(&self) -> Vec<String> {
        self.handed.lock().unwrap().clone()
    }

    /// The connection drops.
    fn drop_connection(&self) {
        let events = self.events.lock().unwrap().clone().expect("a session");
        events.emit(LinkEvent::Disconnected {
            reason: "the test cut it".into(),
        });
    }
}

struct Session {
    handed: Arc<Mutex<Vec<String>>>,
    silent: bool,
    events: LinkEvents,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl LinkSession for Session {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError> {
        if let LinkCommand::SendText { message_id, .. } = command {
            self.handed.lock().unwrap().push(message_id.clone());
            if self.silent {
                return Ok(());
            }
            self.events.emit(LinkEvent::Receipt {
                message_id,
                status: ReceiptStatus::Sent,
                error: None,
                at_ms: 0,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for Recording {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        *self.events.lock().unwrap() = Some(ctx.events.clone());
        ctx.events.emit(LinkEvent::Paired {
            phone: "6281000000001".into(),
        });
        Ok(Box::new(Session {
            handed: self.handed.clone(),
            silent: self.silent,
            events: ctx.events.clone(),
        }))
    }
}

/// No limit but a gap of `gap_ms` between two sends (the test device is VERIFIED).
fn paced(gap_ms: u64) -> QuotaTable {
    let mut table = QuotaTable::UNTHROTTLED;
    let per_minute = (60_000 / gap_ms) as u32;
    table.verified.min_gap_ms = gap_ms;
    table.verified.per_minute = per_minute;
    table.verified.per_hour = (per_minute * 60).min(table.verified.per_day);
    table
}

fn text(n: usize, send_at_ms: Option<i64>) -> SendText {
    SendText {
        to_phone: "6281234567890".into(),
        text: format!("message {n}"),
        idempotency_key: None,
        media: None,
        mentions: Vec::new(),
        send_at_ms,
        reply_to: None,
    }
}

async fn status(fleet: &Fleet, id: &str) -> MessageStatus {
    fleet.catalog().message("w", id).await.unwrap().status
}

async fn until_settled(fleet: &Fleet, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut waiting = 0;
        for id in ids {
            if matches!(
                status(fleet, id).await,
                MessageStatus::Queued | MessageStatus::Scheduled
            ) {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} messages never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 40 messages drain 30 ms apart while each is cancelled about when its turn comes:
/// every cancel is either accepted (and the link never gets the message) or refused
/// with `message_not_cancellable` (and the link got it, once); nothing is both or
/// neither. Cancelled messages spend no quota: the day's count is the messages sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_drain_either_wins_before_the_hand_off_or_is_refused_after_it() {
    let link = Recording::default();
    let (_dir, fleet) = common::fleet_with_ready_device(
        NodeConfig {
            handoff_guard: Duration::ZERO,
            ..NodeConfig::default()
        },
        Arc::new(link.clone()),
        Some(paced(30)),
        "w",
    )
    .await;
    let fleet = Arc::new(fleet);
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            fleet
                .send_text("w", text(n, None))
                .await
                .unwrap()
                .message
                .id,
        );
    }
    let started = Instant::now();
    let mut cancels = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let (fleet, id) = (fleet.clone(), id.clone());
        // The first is handed at once (refused surely); the last five at once too
        // (accepted surely); the others about their turn, where the race is.
        let at = match n {
            0 => Duration::from_millis(200),
            35.. => Duration::ZERO,
            _ => Duration::from_millis(30 * n as u64 - 30),
        };
        cancels.push(tokio::spawn(async move {
            tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
            (id.clone(), fleet.cancel_message("w", &id).await)
        }));
    }
    let mut cancelled = HashSet::new();
    let mut refused = HashSet::new();
    for cancel in cancels {
        match cancel.await.unwrap() {
            (id, Ok(message)) => {
                assert_eq!(message.status, MessageStatus::Cancelled);
                cancelled.insert(id);
            }
            (id, Err(FleetError::WrongState { code, .. }))
                if code == state_code::MESSAGE_NOT_CANCELLABLE =>
            {
                refused.insert(id);
            }
            (id, Err(other)) => panic!("cancel of {id}: {other:?}"),
        }
    }
    until_settled(&fleet, &ids).await;
    let handed = link.handed();
    let handed_set: HashSet<&String> = handed.iter().collect();
    assert_eq!(handed_set.len(), handed.len(), "each message handed once");
    for id in &ids {
        let sent = handed_set.contains(id);
        if cancelled.contains(id) {
            assert!(!sent, "{id} was cancelled and still handed to the link");
            assert_eq!(status(&fleet, id).await, MessageStatus::Cancelled);
        } else {
            assert!(refused.contains(id), "{id}: neither cancelled nor refused");
            assert!(sent, "{id}: refused but never handed");
            assert_eq!(status(&fleet, id).await, MessageStatus::Sent);
        }
    }
    assert!(refused.contains(&ids[0]) && cancelled.contains(&ids[39]));
    // The ones sent went in order, whatever was cancelled between them.
    let order: Vec<&String> = ids.iter().filter(|id| handed_set.contains(id)).collect();
    assert_eq!(handed.iter().collect::<Vec<_>>(), order);
    let limits = fleet.limits("w").await.unwrap();
    assert_eq!(limits.in_flight, 0, "no place in flight held");
    assert_eq!(
        (limits.day.spent + limits.queued) as usize,
        handed.len(),
        "only what was sent counts against the quota"
    );
    // Repeat: the same answer, nothing moves.
    let again = fleet.cancel_message("w", &ids[39]).await.unwrap();
    assert_eq!(again.status, MessageStatus::Cancelled);
    assert!(matches!(
        fleet.cancel_message("w", &ids[0]).await,
        Err(FleetError::WrongState { code, .. }) if code == state_code::MESSAGE_NOT_CANCELLABLE
    ));
    assert!(matches!(
        fleet.cancel_message("w", "msg_unknown").await,
        Err(FleetError::MessageNotFound(_))
    ));
    fleet.shutdown().await;
}

/// A message scheduled 600 ms ahead while a backlog drains 100 ms apart: it spends no
/// quota and is not in the queue before it is due; when due it takes its place behind
/// the backlog accepted before (which it does not hold up) and ahead of what comes
/// after; every message is handed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_joins_the_queue_when_due_without_holding_it_up() {
    let link = Recording::default();
    let (_dir, fleet) = common::fleet_with_ready_device(
        NodeConfig {
            handoff_guard: Duration::ZERO,
            ..NodeConfig::default()
        },
        Arc::new(link.clone()),
        Some(paced(100)),
        "w",
    )
    .await;
    let now = wafleet_node::clock::now_ms();
    let scheduled = fleet
        .send_text("w", text(100, Some(now + 600)))
        .await
        .unwrap()
        .message;
    assert_eq!(scheduled.status, MessageStatus::Scheduled);
    assert_eq!(scheduled.send_at_ms, Some(now + 600));
    assert_eq!(scheduled.not_before_ms, None);
    let limits = fleet.limits("w").await.unwrap();
    assert_eq!(
        (limits.day.spent, limits.queued, limits.in_flight),
        (0, 0, 0),
        "no quota spent before it is due"
    );
    let mut before = Vec::new();
    for n in 0..8 {
        before.push(
            fleet
                .send_text("w", text(n, None))
                .await
                .unwrap()
                .message
                .id,
        );
    }
    // Not held up: the first of the backlog goes at once, the scheduled one waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(link.handed().len() >= 2, "the backlog drains");
    assert_eq!(
        status(&fleet, &scheduled.id).await,
        MessageStatus::Scheduled
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut after = Vec::new();
    for n in 8..10 {
        after.push(
            fleet
                .send_text("w", text(n, None))
                .await
                .unwrap()
                .message
                .id,
        );
    }
    let mut all = before.clone();
    all.push(scheduled.id.clone());
    all.extend(after.clone());
    until_settled(&fleet, &all).await;
    assert_eq!(
        link.handed(),
        all,
        "the backlog, the scheduled message, then what came after it: each once"
    );
    let sent = fleet.catalog().message("w", &scheduled.id).await.unwrap();
    assert!(sent.queued_at_ms.unwrap() >= now + 600, "queued when due");
    assert!(sent.sent_at_ms.is_some());
    fleet.shutdown().await;
}

/// A message handed to the link and not confirmed is not cancellable, while in flight
/// and after the connection drops (it may have reached WhatsApp, and is handed again on
/// the next connection): `message_not_cancellable` both times, and it stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_handed_and_unconfirmed_is_not_cancellable_even_after_a_disconnect() {
    let link = Recording {
        silent: true,
        ..Recording::default()
    };
    let (_dir, fleet) = common::fleet_with_ready_device(
        NodeConfig {
            reconnect_min: Duration::from_secs(30),
            reconnect_max: Duration::from_secs(30),
            ..NodeConfig::default()
        },
        Arc::new(link.clone()),
        Some(QuotaTable::UNTHROTTLED),
        "w",
    )
    .await;
    let id = fleet
        .send_text("w", text(0, None))
        .await
        .unwrap()
        .message
        .id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while link.handed().is_empty() {
        assert!(Instant::now() < deadline, "never handed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let not_cancellable = |result: Result<_, FleetError>| matches!(result, Err(FleetError::WrongState { code, .. }) if code == state_code::MESSAGE_NOT_CANCELLABLE);
    assert!(
        not_cancellable(fleet.cancel_message("w", &id).await),
        "in flight"
    );
    link.drop_connection();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.catalog().device("w").await.unwrap().status
        != wafleet_node::store::DeviceStatus::Disconnected
    {
        assert!(Instant::now() < deadline, "never DISCONNECTED");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        not_cancellable(fleet.cancel_message("w", &id).await),
        "handed before the connection dropped"
    );
    assert_eq!(status(&fleet, &id).await, MessageStatus::Queued);
    fleet.shutdown().await;
}
