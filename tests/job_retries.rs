//! A campaign's failed sends are tried again on the Fibonacci schedule (`base × 1, 1, 2,
//! 3 …` after each failure), through the devices' limiters, as the phones see it: a
//! recipient whose sends fail for a while gets its message at the attempt that works; one
//! that keeps failing is `failed` after `max_attempts`; a number not on WhatsApp is tried
//! once. The network refuses on cue (`POST /sim/phones/{phone}/fail`) and says when it
//! refused (`GET` of the same path).

mod common;

use std::time::{Duration, Instant};

use common::client::Client;
use common::{KEY, Standalone, WAIT, inbox_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The first retry's wait. Each retry is due this long (× fib) after the failure is
/// stored and is taken at the job runner's next half-second tick, then sent: an attempt
/// comes up to a tick and two trips through the node after its time, and the base is
/// large enough for 20 % (1 s) to cover that on a loaded machine.
const BASE_MS: i64 = 5_000;
const MAX_ATTEMPTS: u32 = 4;

/// Fails three times, then gets the message at the fourth (the last) attempt.
const FLAKY: &str = "6285700000001";
/// Fails every time: `failed` after the fourth attempt.
const DOWN: &str = "6285700000002";
/// Not on WhatsApp: failed at once, never tried again.
const ABSENT: &str = "6285700000003";

fn ms(at: &Value) -> i64 {
    let at = at.as_str().expect("a time");
    let at = humantime::parse_rfc3339(at).expect("an RFC 3339 time");
    at.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// When the network refused sends to `phone`, oldest first, and how many refusals are
/// left.
async fn refusals(app: &Standalone, phone: &str) -> (Vec<i64>, u64) {
    let response = app
        .http
        .get(app.url(&format!("/sim/phones/{phone}/fail")))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    let times = body["failed_at"]
        .as_array()
        .expect("failed_at")
        .iter()
        .map(ms)
        .collect();
    (times, body["left"].as_u64().expect("left"))
}

/// Asserts each gap between attempts is the schedule's wait, never less and at most
/// 20 % more.
fn assert_on_schedule(phone: &str, attempts: &[i64]) {
    let fib = [1, 1, 2, 3, 5, 8];
    let gaps: Vec<i64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("{phone}: attempts {gaps:?} ms apart");
    for (n, pair) in attempts.windows(2).enumerate() {
        let (gap, wait) = (pair[1] - pair[0], BASE_MS * fib[n]);
        assert!(
            gap >= wait && gap <= wait * 12 / 10,
            "{phone}: attempt {} came {gap} ms after attempt {}, the schedule says {wait} ms \
             (attempts at {attempts:?})",
            n + 2,
            n + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sends_are_retried_on_the_fibonacci_schedule_until_the_attempts_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    let admin = Client {
        app: &app,
        key: KEY.to_owned(),
    };
    // Two devices (each takes one recipient per tick), each held to 5 sends a second.
    app.pair("retry-1", "6281100000101").await;
    app.pair("retry-2", "6281100000102").await;
    let level = json!({"per_minute": 300, "per_hour": 6_000, "per_day": 10_000,
                       "min_gap_ms": 200, "jitter_ms": 0, "max_in_flight": 50});
    let (status, body) = admin
        .send(
            Method::PUT,
            "/v1/settings/trust-levels",
            Some(json!({"newcomer": level, "trusted": level, "verified": level})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = admin
        .send(
            Method::PUT,
            "/v1/settings/retries",
            Some(json!({"base_delay_ms": BASE_MS, "max_attempts": MAX_ATTEMPTS})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for (phone, times) in [(FLAKY, 3), (DOWN, 100)] {
        let response = app
            .http
            .post(app.url(&format!("/sim/phones/{phone}/fail")))
            .json(&json!({"times": times}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    let absent = app
        .http
        .post(app.url(&format!("/sim/phones/{ABSENT}/absent")))
        .send()
        .await
        .unwrap();
    assert!(absent.status().is_success(), "{}", absent.status());

    let recipients: Vec<Value> = [FLAKY, DOWN, ABSENT]
        .iter()
        .map(|to| json!({"to": to}))
        .collect();
    let (status, job) = admin
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"name": "retries", "devices": ["retry-1", "retry-2"],
                        "recipients": recipients, "text": "coba lagi"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();

    // Three waits (1, 1, 2 × base) and the sends: about four bases and a half.
    let deadline = Instant::now() + Duration::from_millis(5 * BASE_MS as u64) + WAIT;
    let done = loop {
        let job = admin.get(&format!("/v1/jobs/{id}")).await;
        if job["status"] == "completed" {
            break job;
        }
        assert!(Instant::now() < deadline, "the job never completed: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (done["sent"].as_u64(), done["failed"].as_u64()),
        (Some(1), Some(2)),
        "{done}"
    );

    let listed = admin
        .get(&format!("/v1/jobs/{id}/recipients?limit=10"))
        .await;
    let by_phone = |phone: &str| -> Value {
        listed["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["to"] == phone)
            .cloned()
            .unwrap_or_else(|| panic!("{phone} not listed: {listed}"))
    };
    let flaky = by_phone(FLAKY);
    assert!(
        matches!(
            flaky["status"].as_str(),
            Some("sent" | "delivered" | "read")
        ),
        "{flaky}"
    );
    assert_eq!(flaky["attempts"], MAX_ATTEMPTS, "{flaky}");
    let down = by_phone(DOWN);
    assert_eq!(
        (down["status"].as_str(), down["attempts"].as_u64()),
        (Some("failed"), Some(u64::from(MAX_ATTEMPTS))),
        "the attempts ran out: {down}"
    );
    assert_eq!(down["error"], "unavailable", "{down}");
    let absent = by_phone(ABSENT);
    assert_eq!(
        (
            absent["status"].as_str(),
            absent["attempts"].as_u64(),
            absent["error"].as_str()
        ),
        (Some("failed"), Some(1), Some("not_on_whatsapp")),
        "never retried: {absent}"
    );

    // As the network saw it: the flaky number refused three times, then got exactly one
    // message; the one that is down refused every attempt and no more.
    let (mut flaky_attempts, left) = refusals(&app, FLAKY).await;
    assert_eq!((flaky_attempts.len(), left), (3, 0), "{flaky_attempts:?}");
    let inbox = inbox_of(&app.http, &app.base, FLAKY).await;
    let inbox = inbox.as_array().unwrap();
    assert_eq!(inbox.len(), 1, "one message reached it: {inbox:?}");
    flaky_attempts.push(ms(&inbox[0]["at"]));
    assert_on_schedule(FLAKY, &flaky_attempts);

    let (down_attempts, left) = refusals(&app, DOWN).await;
    assert_eq!(
        (down_attempts.len(), left),
        (MAX_ATTEMPTS as usize, 100 - u64::from(MAX_ATTEMPTS)),
        "{down_attempts:?}"
    );
    assert_on_schedule(DOWN, &down_attempts);
    assert!(
        inbox_of(&app.http, &app.base, DOWN)
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}
