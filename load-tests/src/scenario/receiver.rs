//! A webhook receiver on 127.0.0.1 for tests and scenarios: it records every attempt
//! (answered or refused) and every accepted delivery, checks signatures, and can be
//! told to fail (every request, or the first N attempts of each event) to exercise
//! retries and dead letters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    /// When it arrived, Unix milliseconds (to compare with the body's `created_at`).
    pub received_ms: i64,
    pub event_id: String,
    /// The `X-Wafleet-Event` header.
    pub event: String,
    /// `device_id` of the body.
    pub device_id: String,
    pub body: Value,
    /// Whether `X-Wafleet-Signature` matched (`None`: no signature header).
    pub signature_ok: Option<bool>,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug, Default)]
struct Shared {
    secret: Option<Vec<u8>>,
    failing: bool,
    fail_first: u32,
    attempts_by_event: HashMap<String, u32>,
    hits: Vec<Hit>,
    /// Answer this long after the request arrives.
    delay: Duration,
}

/// A running receiver; its server ends when the receiver is dropped.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<Notify>,
    _server: Arc<tokio::task::AbortHandle>,
}

fn signature_matches(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Option<bool> {
    let signature = headers.get("x-wafleet-signature")?.to_str().ok()?;
    let timestamp = headers.get("x-wafleet-timestamp")?.to_str().ok()?;
    let hex = signature.strip_prefix("v1=")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(expected == hex)
}

async fn hook(
    State((shared, arrived)): State<(Arc<Mutex<Shared>>, Arc<Notify>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let received_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let delay = {
        let mut s = shared.lock().unwrap();
        let event_id = header("x-wafleet-event-id");
        let attempt = {
            let n = s.attempts_by_event.entry(event_id.clone()).or_default();
            *n += 1;
            *n
        };
        let status = if s.failing || attempt <= s.fail_first {
            500
        } else {
            200
        };
        let signature_ok = match &s.secret {
            Some(secret) => signature_matches(secret, &headers, &body),
            None => headers.get("x-wafleet-signature").map(|_| false),
        };
        s.hits.push(Hit {
            at,
            received_ms,
            event_id,
            event: header("x-wafleet-event"),
            device_id: parsed["device_id"].as_str().unwrap_or_default().to_owned(),
            body: parsed,
            signature_ok,
            status,
        });
        (s.delay, status)
    };
    arrived.notify_waiters();
    if !delay.0.is_zero() {
        tokio::time::sleep(delay.0).await;
    }
    StatusCode::from_u16(delay.1).unwrap_or(StatusCode::OK)
}

impl Receiver {
    /// Starts a receiver checking signatures with `secret`.
    pub async fn start(secret: Option<&[u8]>) -> anyhow::Result<Receiver> {
        let shared = Arc::new(Mutex::new(Shared {
            secret: secret.map(<[u8]>::to_vec),
            ..Shared::default()
        }));
        let arrived = Arc::new(Notify::new());
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state((shared.clone(), arrived.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the receiver")?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            url: format!("http://{addr}/hook"),
            shared,
            arrived,
            _server: Arc::new(server.abort_handle()),
        })
    }

    /// Answers 500 to every request while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.shared.lock().unwrap().failing = failing;
    }

    /// Answers 500 to the first `n` attempts of each event (counted from now on for
    /// events not seen yet).
    pub fn fail_first(&self, n: u32) {
        self.shared.lock().unwrap().fail_first = n;
    }

    /// Answers each request only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().unwrap().delay = delay;
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.shared.lock().unwrap().hits.len()
    }

    /// Every request so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.lock().unwrap().hits.clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| (200..300).contains(&h.status))
            .collect()
    }

    /// Waits until `done` holds of the hits, up to `within`; the hits then (or an error
    /// saying what was seen).
    pub async fn wait_until(
        &self,
        within: Duration,
        done: impl Fn(&[Hit]) -> bool,
    ) -> anyhow::Result<Vec<Hit>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            let hits = self.hits();
            if done(&hits) {
                return Ok(hits);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let hits = self.hits();
                if done(&hits) {
                    return Ok(hits);
                }
                let seen: Vec<String> = hits
                    .iter()
                    .map(|h| format!("{} {} {}", h.event, h.status, h.body["data"]))
                    .collect();
                anyhow::bail!(
                    "the receiver did not see what was awaited within {within:?}; it saw {} requests: {seen:#?}",
                    hits.len()
                );
            }
        }
    }
}
