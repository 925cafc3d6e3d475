//! A lane: the delivery loop of one device on the node that owns it. It reads the
//! device's due deliveries in event order and attempts the first; the next goes only
//! once it is delivered or dead, so a receiver sees a device's events in order. It ends
//! when nothing is due (a new event starts it again) or the node no longer owns the
//! device (the new owner's lane goes on from the store).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, warn};

use super::sender::Request;
use super::{LANE_BATCH, LaneSignal, Webhooks};
use crate::clock::{now_ms, rfc3339};
use crate::metrics;
use crate::seal::text::Place;
use crate::store::{Attempt, AttemptOutcome, DeliveryRecord, StoreError};

/// The wait before reading the store again after it failed.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// What became of one attempt, for the loop.
enum Next {
    /// Delivered or dead: the next delivery may go.
    Settled,
    /// Failed and due again later, or not recorded: read the store again.
    Reread,
}

pub(super) async fn run(hooks: Arc<Webhooks>, device_id: String, signal: Arc<LaneSignal>) {
    'lane: loop {
        let seen = signal.wakes.load(Ordering::SeqCst);
        if !hooks.owns(&device_id) {
            debug!(device_id, "webhook lane ends: the device is not owned here");
            hooks.end_lane(&device_id, &signal, seen);
            if signal.wakes.load(Ordering::SeqCst) == seen {
                return;
            }
            continue;
        }
        let due = match hooks.store.due_deliveries(&device_id, LANE_BATCH).await {
            Ok(due) => due,
            Err(error) => {
                warn!(device_id, %error, "cannot read the webhook deliveries; retrying");
                tokio::time::sleep(STORE_RETRY).await;
                continue;
            }
        };
        if due.is_empty() {
            if hooks.end_lane(&device_id, &signal, seen) {
                return;
            }
            continue;
        }
        for delivery in due {
            if let Some(at) = delivery.next_attempt_ms {
                let wait = at - now_ms();
                if wait > 0 {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                        () = signal.notify.notified() => {}
                    }
                    // Read again: a replay or the webhook may have changed meanwhile.
                    continue 'lane;
                }
            }
            if !hooks.owns(&device_id) {
                continue 'lane;
            }
            match attempt(&hooks, &delivery).await {
                Next::Settled => {}
                Next::Reread => continue 'lane,
            }
        }
    }
}

/// The body of a delivery: `{"id", "event", "device_id", "tenant", "created_at", "data"}`,
/// `data` as recorded (opened).
fn body(delivery: &DeliveryRecord, data: &str) -> Vec<u8> {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let data = if data.trim().is_empty() { "{}" } else { data };
    format!(
        r#"{{"id":{},"event":{},"device_id":{},"tenant":{},"created_at":{},"data":{}}}"#,
        text(&delivery.event_id),
        text(&delivery.event),
        text(&delivery.device_id),
        text(&delivery.tenant),
        text(&rfc3339(delivery.created_at_ms)),
        data
    )
    .into_bytes()
}

async fn attempt(hooks: &Arc<Webhooks>, delivery: &DeliveryRecord) -> Next {
    let device_id = delivery.device_id.as_str();
    let settings = hooks.settings();
    let target = match hooks.target(device_id).await {
        Ok(target) => target,
        Err(error) => {
            warn!(device_id, %error, "cannot read the device's webhook; retrying");
            tokio::time::sleep(STORE_RETRY).await;
            return Next::Reread;
        }
    };
    // The recorded data, sealed with the tenant's data key. One that cannot be opened
    // never will be: it goes dead at once (a replay tries again, after a key is fixed).
    let place = Place::delivery(device_id, &delivery.event_id);
    let data = match hooks.keys.open(&place, &delivery.data).await {
        Ok(data) => Ok(data),
        Err(StoreError::Corrupt(reason)) => Err(reason),
        Err(error) => {
            warn!(device_id, %error, "cannot read the tenant's data key; retrying");
            tokio::time::sleep(STORE_RETRY).await;
            return Next::Reread;
        }
    };
    let attempts = delivery.attempts + 1;
    let (status_code, error) = match (&target, &data) {
        (_, Err(reason)) => (None, Some(reason.clone())),
        (None, _) => (None, Some("the device has no webhook now".to_owned())),
        (Some((target, _)), Ok(data)) => {
            let response = hooks
                .sender
                .send(Request {
                    url: &target.url,
                    event_id: &delivery.event_id,
                    event: &delivery.event,
                    body: body(delivery, data),
                    secret: target.secret.as_deref(),
                    timestamp: now_ms() / 1000,
                    timeout: settings.timeout(),
                })
                .await;
            (response.status_code, response.error)
        }
    };
    let at_ms = now_ms();
    let outcome = match (&error, &target) {
        (None, _) => AttemptOutcome::Delivered,
        (Some(_), _) if data.is_err() => AttemptOutcome::Dead,
        // Without a webhook, retrying cannot help; a replay after one is set again can.
        (Some(_), None) => AttemptOutcome::Dead,
        (Some(_), Some(_)) if attempts >= settings.max_attempts => AttemptOutcome::Dead,
        (Some(_), Some(_)) => AttemptOutcome::Retry {
            next_attempt_ms: at_ms + settings.retry_delay(attempts).as_millis() as i64,
        },
    };
    let record = Attempt {
        prior_attempts: delivery.attempts,
        prior_next_attempt_ms: delivery.next_attempt_ms,
        at_ms,
        outcome,
        status_code,
        error: error.clone(),
    };
    match hooks
        .store
        .record_attempt(device_id, &delivery.event_id, &record)
        .await
    {
        Ok(Some(_)) => {}
        // Replayed, delivered by another node, or deleted meanwhile.
        Ok(None) => return Next::Reread,
        Err(store_error) => {
            warn!(device_id, event_id = delivery.event_id, %store_error, "cannot record a webhook attempt; it will be made again");
            tokio::time::sleep(STORE_RETRY).await;
            return Next::Reread;
        }
    }
    match outcome {
        AttemptOutcome::Delivered => {
            metrics::webhook_attempt("delivered");
            metrics::webhook_delivered(Duration::from_millis(
                (at_ms - delivery.created_at_ms).max(0) as u64,
            ));
            Next::Settled
        }
        AttemptOutcome::Dead => {
            metrics::webhook_attempt("dead");
            warn!(
                device_id,
                event_id = delivery.event_id,
                attempts,
                error = error.as_deref().unwrap_or(""),
                "webhook delivery is dead"
            );
            Next::Settled
        }
        AttemptOutcome::Retry { .. } => {
            metrics::webhook_attempt("retry");
            debug!(
                device_id,
                event_id = delivery.event_id,
                attempts,
                error = error.as_deref().unwrap_or(""),
                "webhook attempt failed"
            );
            Next::Reread
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeliveryStatus;

    #[test]
    fn the_body_carries_the_recorded_data_as_is() {
        let delivery = DeliveryRecord {
            seq: 1,
            event_id: "evt_1".into(),
            device_id: "d\"1".into(),
            tenant: "default".into(),
            event: "message.inbound".into(),
            data: r#"{"device_id":"d\"1","text":"hé"}"#.into(),
            created_at_ms: 1_700_000_000_123,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: None,
            last_status_code: None,
            last_error: None,
            delivered_at_ms: None,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&body(&delivery, &delivery.data)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "evt_1",
                "event": "message.inbound",
                "device_id": "d\"1",
                "tenant": "default",
                "created_at": "2023-11-14T22:13:20.123Z",
                "data": {"device_id": "d\"1", "text": "hé"},
            })
        );
    }
}
