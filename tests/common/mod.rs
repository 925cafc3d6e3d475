//! Test harness: runs the real `wafleet` binary on 127.0.0.1:0 with a fresh data
//! folder, and reads its SSE streams. Waits are bounded and event-driven, never sleeps.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use wafleet_load::scenario::process;

pub mod client;
pub mod tools;

pub const KEY: &str = process::ADMIN_KEY;

/// Every wait in the tests gives up after this.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `wafleet standalone --link sim`.
pub struct Standalone {
    process: process::Standalone,
    pub base: String,
    pub data: PathBuf,
    pub http: reqwest::Client,
}

impl Standalone {
    /// The harness around a started process.
    fn running(process: process::Standalone, data: &Path) -> Standalone {
        Standalone {
            base: process.base.clone(),
            http: process.http.clone(),
            data: data.to_owned(),
            process,
        }
    }

    pub async fn start(data: &Path) -> Standalone {
        let process = process::Standalone::start(Path::new(env!("CARGO_BIN_EXE_wafleet")), data)
            .await
            .expect("start wafleet");
        Standalone::running(process, data)
    }

    /// Like [`Standalone::start`], with these environment variables set as well.
    pub async fn start_with_env(data: &Path, env: &[(&str, &str)]) -> Standalone {
        let process = process::Standalone::start_with_env(
            Path::new(env!("CARGO_BIN_EXE_wafleet")),
            data,
            env,
        )
        .await
        .expect("start wafleet");
        Standalone::running(process, data)
    }

    /// With `--link LINK` (a real link to a test server, say), these environment
    /// variables, and the quota table of a fresh data folder.
    pub async fn launch_with_link(data: &Path, link: &str, env: &[(&str, &str)]) -> Standalone {
        let process = process::Standalone::launch_with_env(
            Path::new(env!("CARGO_BIN_EXE_wafleet")),
            data,
            link,
            env,
        )
        .await
        .expect("start wafleet");
        Standalone::running(process, data)
    }

    /// Like [`Standalone::start`], but with the quota table the data folder has (the
    /// defaults in a fresh one) instead of an unthrottled one.
    pub async fn start_throttled(data: &Path) -> Standalone {
        let process =
            process::Standalone::launch(Path::new(env!("CARGO_BIN_EXE_wafleet")), data, "sim")
                .await
                .expect("start wafleet");
        Standalone::running(process, data)
    }

    pub async fn put(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill9(self) {
        self.process.kill().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Creates a device and starts it; returns when it shows a QR code (the raw code).
    pub async fn create_and_start(&self, id: &str) -> String {
        let created = self
            .post("/v1/devices", json!({"id": id, "name": id}))
            .await;
        assert_eq!(created.status(), 201, "create {id}");
        let mut events = self.events(&format!("/v1/devices/{id}/events"), None).await;
        let started = self
            .post(&format!("/v1/devices/{id}/start"), json!({}))
            .await;
        assert_eq!(started.status(), 202, "start {id}");
        let qr = events.next_of_kind("qr").await;
        qr.data["code"].as_str().unwrap().to_owned()
    }

    /// Starts a device created before, scans its QR with `phone` and waits until it is
    /// READY.
    pub async fn start_and_pair(&self, id: &str, phone: &str) {
        let mut events = self.events(&format!("/v1/devices/{id}/events"), None).await;
        let started = self
            .post(&format!("/v1/devices/{id}/start"), json!({}))
            .await;
        assert_eq!(started.status(), 202, "start {id}");
        let qr = events.next_of_kind("qr").await;
        self.scan(id, qr.data["code"].as_str().unwrap(), phone)
            .await;
    }

    /// Scans the device's QR with `phone` and waits until it is READY.
    pub async fn pair(&self, id: &str, phone: &str) {
        let code = self.create_and_start(id).await;
        self.scan(id, &code, phone).await;
    }

    pub async fn scan(&self, id: &str, code: &str, phone: &str) {
        let mut events = self.events(&format!("/v1/devices/{id}/events"), None).await;
        let scanned = self
            .http
            .post(self.url("/sim/scan"))
            .json(&json!({"qr": code, "phone": phone}))
            .send()
            .await
            .unwrap();
        assert_eq!(scanned.status(), 200, "scan {id}");
        events.until_status("READY").await;
    }

    /// The device's status, waiting (event-driven) until it is `status`.
    pub async fn wait_status(&self, id: &str, status: &str) {
        // Replay this process's buffered events from the start: a status reached before
        // we subscribed is among them.
        let mut events = self
            .events(&format!("/v1/devices/{id}/events"), Some(0))
            .await;
        let current = self.json(&format!("/v1/devices/{id}")).await;
        if current["status"] == status {
            return;
        }
        events.until_status(status).await;
    }

    pub async fn events(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        Sse::connect(&self.http, &self.url(path), last_event_id).await
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: u64,
    pub kind: String,
    pub data: Value,
}

/// A client reading an SSE stream.
pub struct Sse {
    last_id: u64,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Sse {
    /// Opens the SSE stream at `url` with the admin key.
    pub async fn connect(http: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> Sse {
        let mut request = http.get(url).bearer_auth(KEY);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "SSE {url}");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            last_id: last_event_id.unwrap_or(0),
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (heartbeat comments skipped), within [`WAIT`].
    pub async fn next(&mut self) -> Event {
        let event = tokio::time::timeout(WAIT, self.next_inner())
            .await
            .expect("no SSE event in time");
        self.last_id = event.id;
        event
    }

    /// The next event, or `None` if none comes within `within`.
    pub async fn try_next(&mut self, within: Duration) -> Option<Event> {
        let event = tokio::time::timeout(within, self.next_inner()).await.ok()?;
        self.last_id = event.id;
        Some(event)
    }

    /// The id of the last event read.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    async fn next_inner(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), Some(kind)) = (id, kind) {
                    return Event {
                        id,
                        kind,
                        data: serde_json::from_str(&data).unwrap(),
                    };
                }
                continue;
            }
            let chunk = self.body.next().await.expect("SSE stream ended").unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    pub async fn next_of_kind(&mut self, kind: &str) -> Event {
        loop {
            let event = self.next().await;
            if event.kind == kind {
                return event;
            }
        }
    }

    pub async fn until_status(&mut self, status: &str) -> Event {
        loop {
            let event = self.next_of_kind("status").await;
            if event.data["status"] == status {
                return event;
            }
        }
    }
}

/// POSTs `body` to `url` with the admin key, retrying a 503/504 (a cluster gateway not
/// yet routing to the device's node) for up to [`WAIT`]; the 2xx answer.
pub async fn post_routed(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let response = http
            .post(url)
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return answer;
        }
        assert!(matches!(status, 503 | 504), "POST {url}: {status} {answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "POST {url} still {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Scans, as `phone` through the simulator at `sim_base`, each QR code `events` (a
/// stream carrying the device's events) shows, until it shows the device READY; panics
/// after 50 events without READY.
pub async fn scan_until_ready(
    http: &reqwest::Client,
    sim_base: &str,
    phone: &str,
    events: &mut Sse,
) {
    for _ in 0..50 {
        let event = events.next().await;
        if event.kind == "qr" {
            let scanned = http
                .post(format!("{sim_base}/sim/scan"))
                .json(&json!({"qr": event.data["code"], "phone": phone}))
                .send()
                .await
                .unwrap();
            assert_eq!(scanned.status(), 200);
        } else if event.kind == "status" && event.data["status"] == "READY" {
            return;
        }
    }
    panic!("no READY within 50 events");
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// What reached `phone` in the simulator at `sim_base`.
pub async fn inbox_of(http: &reqwest::Client, sim_base: &str, phone: &str) -> Value {
    http.get(format!("{sim_base}/sim/phones/{phone}/inbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
