//! Scheduled messages (`send_at`) and cancelling, end to end: `wafleet standalone --link
//! sim` through its HTTP API, the simulated phone's inbox as the judge of what arrived
//! and when.

mod common;

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use common::Standalone;

const DEVICE_PHONE: &str = "6281230000091";
const FRIEND: &str = "6289870000091";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn unix_ms(rfc3339: &str) -> i64 {
    let at = humantime::parse_rfc3339(rfc3339).expect("an RFC 3339 time");
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64))
        .to_string()
}

/// What `phone` has received: (text, arrival in Unix ms).
async fn inbox(app: &Standalone, phone: &str) -> Vec<(String, i64)> {
    let inbox: Vec<Value> = app
        .http
        .get(app.url(&format!("/sim/phones/{phone}/inbox")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    inbox
        .iter()
        .map(|m| {
            (
                m["text"].as_str().unwrap_or_default().to_owned(),
                unix_ms(m["at"].as_str().unwrap()),
            )
        })
        .collect()
}

/// Waits (bounded) until `phone` has received `count` messages.
async fn until_received(app: &Standalone, phone: &str, count: usize) -> Vec<(String, i64)> {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let got = inbox(app, phone).await;
        if got.len() >= count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{phone} has {} of {count}: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A send; (status code, body).
async fn send(app: &Standalone, body: Value) -> (u16, Value) {
    let response = app.post("/v1/devices/d1/messages", body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn cancel(app: &Standalone, id: &str) -> (u16, Value) {
    let response = app
        .post(&format!("/v1/devices/d1/messages/{id}/cancel"), json!({}))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn message(app: &Standalone, id: &str) -> Value {
    app.json(&format!("/v1/devices/d1/messages/{id}")).await
}

/// Waits (bounded) until the message's status is one of `statuses`.
async fn until_status(app: &Standalone, id: &str, statuses: &[&str]) -> Value {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let m = message(app, id).await;
        if statuses.iter().any(|s| m["status"] == *s) {
            return m;
        }
        assert!(Instant::now() < deadline, "{id} stays {}", m["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scheduled 2 s ahead: answered at once as `scheduled`, listed by `?status=scheduled`
/// with its `send_at`, not at the phone before, there after (within about a second),
/// then `sent`/`delivered`. Scheduled then cancelled: never arrives, `cancelled` in the
/// log and as a `message.status` event. A sent message cannot be cancelled (409), an
/// unknown one is 404, `send_at` more than a year ahead is 422, not a time is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_arrives_at_its_time_and_a_cancelled_one_never() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("d1", DEVICE_PHONE).await;
    let mut events = app.events("/v1/devices/d1/events", None).await;

    let send_at = now_ms() + 2_000;
    let (status, accepted) = send(
        &app,
        json!({"to": FRIEND, "text": "at its time", "send_at": rfc3339(send_at)}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "scheduled");
    assert_eq!(unix_ms(accepted["send_at"].as_str().unwrap()), send_at);
    let on_time = accepted["id"].as_str().unwrap().to_owned();
    let (_, doomed) = send(
        &app,
        json!({"to": FRIEND, "text": "never", "send_at": rfc3339(send_at)}),
    )
    .await;
    let doomed = doomed["id"].as_str().unwrap().to_owned();

    let listed = app.json("/v1/devices/d1/messages?status=scheduled").await;
    let ids: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&on_time.as_str()) && ids.contains(&doomed.as_str()),
        "{listed}"
    );
    assert_eq!(
        unix_ms(listed["messages"][0]["send_at"].as_str().unwrap()),
        send_at
    );

    let (status, cancelled) = cancel(&app, &doomed).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["text"], "never");
    let event = loop {
        let event = events.next_of_kind("message.status").await;
        if event.data["message_id"] == doomed.as_str() {
            break event;
        }
    };
    assert_eq!(event.data["status"], "cancelled");

    // Not before its time.
    tokio::time::sleep(Duration::from_millis(
        (send_at - now_ms() - 300).max(0) as u64
    ))
    .await;
    assert!(inbox(&app, FRIEND).await.is_empty(), "arrived early");
    let got = until_received(&app, FRIEND, 1).await;
    assert_eq!(got[0].0, "at its time");
    eprintln!(
        "the scheduled message reached the phone {} ms after its send_at",
        got[0].1 - send_at
    );
    assert!(
        got[0].1 >= send_at,
        "arrived {} ms early",
        send_at - got[0].1
    );
    assert!(
        got[0].1 < send_at + 1_500,
        "arrived {} ms late",
        got[0].1 - send_at
    );
    let sent = until_status(&app, &on_time, &["sent", "delivered", "read"]).await;
    assert_eq!(unix_ms(sent["send_at"].as_str().unwrap()), send_at);

    // The cancelled one never comes, and stays cancelled.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let got = inbox(&app, FRIEND).await;
    assert!(got.iter().all(|(text, _)| text != "never"), "{got:?}");
    assert_eq!(message(&app, &doomed).await["status"], "cancelled");
    let listed = app.json("/v1/devices/d1/messages?status=cancelled").await;
    assert_eq!(listed["messages"][0]["id"], doomed.as_str());

    // Once left, not cancellable; unknown ids are 404.
    let (status, refused) = cancel(&app, &on_time).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "message_not_cancellable");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sent")
            || refused["error"]["message"]
                .as_str()
                .unwrap()
                .contains("delivered"),
        "{refused}"
    );
    assert_eq!(cancel(&app, "msg_nope").await.0, 404);

    // send_at: more than a year ahead, or not a time.
    let (status, body) = send(
        &app,
        json!({"to": FRIEND, "text": "x", "send_at": rfc3339(now_ms() + 400 * 86_400_000)}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = send(
        &app,
        json!({"to": FRIEND, "text": "x", "send_at": "tomorrow"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // In the past: sent at once.
    let (status, body) = send(
        &app,
        json!({"to": FRIEND, "text": "past", "send_at": rfc3339(now_ms() - 60_000)}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    until_received(&app, FRIEND, 2).await;
}

/// A backlog under a throttled limit (one message every 700 ms): the one in the middle
/// is cancelled, the others arrive, in order; the cancelled one never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cancelled_in_a_throttled_backlog_never_arrives_and_the_rest_keep_order() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    let level = |gap: u64| {
        json!({"per_minute": 60, "per_hour": 600, "per_day": 1000, "min_gap_ms": gap,
               "jitter_ms": 0, "max_in_flight": 50})
    };
    let table = json!({"newcomer": level(700), "trusted": level(700), "verified": level(700)});
    let put = app.put("/v1/settings/trust-levels", table).await;
    assert_eq!(put.status(), 200);
    app.pair("d1", DEVICE_PHONE).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, body) =
            send(&app, json!({"to": FRIEND, "text": format!("backlog {n}")})).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let (status, cancelled) = cancel(&app, &ids[2]).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let got = until_received(&app, FRIEND, 4).await;
    let texts: Vec<&str> = got.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(texts, ["backlog 0", "backlog 1", "backlog 3", "backlog 4"]);
    until_status(&app, &ids[4], &["sent", "delivered", "read"]).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(inbox(&app, FRIEND).await.len(), 4, "the cancelled one came");
    assert_eq!(message(&app, &ids[2]).await["status"], "cancelled");
    // Its slot was given back: four sends spent.
    let limits = app.json("/v1/devices/d1/limits").await;
    assert_eq!(limits["day"]["spent"], 4, "{limits}");
}

/// A message scheduled 3 s ahead survives a `kill -9` of the standalone process: the
/// restarted process sends it at its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_survives_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("d1", DEVICE_PHONE).await;
    let send_at = now_ms() + 3_000;
    let (status, body) = send(
        &app,
        json!({"to": FRIEND, "text": "after the crash", "send_at": rfc3339(send_at)}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    app.kill9().await;

    let app = Standalone::start(data.path()).await;
    app.wait_status("d1", "READY").await;
    assert_eq!(message(&app, &id).await["status"], "scheduled");
    let got = until_received(&app, FRIEND, 1).await;
    assert_eq!(got[0].0, "after the crash");
    assert!(
        got[0].1 >= send_at,
        "arrived {} ms early",
        send_at - got[0].1
    );
    until_status(&app, &id, &["sent", "delivered", "read"]).await;
}
