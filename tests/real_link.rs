//! The real WhatsApp link (whatsapp-rust) end to end through wafleet's public API,
//! against the WhatsApp Web protocol test server (`load-tests/waserver`) instead of
//! WhatsApp. Every scenario runs twice: on a `wafleet standalone --link
//! whatsapp=ws://…`, and through the gateway of a 2-node cluster whose nodes' `[link]`
//! dials the test server. Needs a test build: `cargo test --features test-chain --test
//! real_link` (see README, "The test build").

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Sse, Standalone};
use serde_json::{Value, json};
use wafleet_load::scenario::cluster::{LocalCluster, WhatsAppPlan};
use wafleet_load::scenario::process::{ADMIN_KEY, unthrottle};

/// The WhatsApp Web version the test builds pin (no fetch from web.whatsapp.com).
const VERSION: &str = "2.3000.1";
/// From a scan to READY: the handshakes, the pre-key upload and the app-state sync.
const READY_WITHIN: Duration = Duration::from_secs(40);

/// One of the two ways wafleet runs.
enum Deployment {
    Standalone {
        /// `None` only while it is being restarted.
        app: Option<Box<Standalone>>,
        data: tempfile::TempDir,
    },
    Cluster(Box<LocalCluster>),
}

/// A test server and a wafleet whose real link dials it.
struct Target {
    server: wafleet_waserver::Running,
    wafleet: Deployment,
    http: reqwest::Client,
    /// The API: the standalone, or the cluster's gateway.
    base: String,
}

impl Target {
    async fn standalone() -> Target {
        let server = test_server().await;
        let data = tempfile::tempdir().unwrap();
        let app = launch(&server, data.path()).await;
        // As the cluster's gateway does: the tests measure the link, not the pace that
        // keeps real numbers safe.
        unthrottle(&app.http, &app.base).await.unwrap();
        Target {
            http: app.http.clone(),
            base: app.base.clone(),
            wafleet: Deployment::Standalone {
                app: Some(Box::new(app)),
                data,
            },
            server,
        }
    }

    async fn cluster() -> Target {
        let server = test_server().await;
        let plan = WhatsAppPlan {
            url: server.ws_url(),
            version: VERSION.into(),
        };
        let cluster =
            LocalCluster::start_with_whatsapp(Path::new(env!("CARGO_BIN_EXE_wafleet")), 2, plan)
                .await
                .unwrap();
        Target {
            http: reqwest::Client::new(),
            base: cluster.gateway.base.clone(),
            wafleet: Deployment::Cluster(Box::new(cluster)),
            server,
        }
    }

    /// `kill -9` of the process that runs `device`: a standalone is started again on
    /// its data folder; in a cluster the other node takes the device over.
    async fn crash_owner(&mut self, device: &str) {
        let owner = self.json(&format!("/v1/devices/{device}")).await["node"].clone();
        match &mut self.wafleet {
            Deployment::Standalone { app, data } => {
                let dead = *app.take().expect("running");
                dead.kill9().await;
                let restarted = launch(&self.server, data.path()).await;
                self.http = restarted.http.clone();
                self.base = restarted.base.clone();
                *app = Some(Box::new(restarted));
            }
            Deployment::Cluster(cluster) => {
                cluster
                    .nodes
                    .iter_mut()
                    .find(|node| owner == node.name.as_str())
                    .unwrap_or_else(|| panic!("{device} runs on a node, not {owner}"))
                    .kill9()
                    .await;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn events(&self, device: &str, last_event_id: Option<u64>) -> Sse {
        let url = self.url(&format!("/v1/devices/{device}/events"));
        Sse::connect(&self.http, &url, last_event_id).await
    }

    /// A call to the test server's control API: its status and JSON body.
    async fn phone(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/sim{path}", self.server.base_url());
        let request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn stats(&self) -> wafleet_waserver::Stats {
        self.server.network.stats()
    }

    /// Creates and starts `id`: its first QR code.
    async fn create_and_start(&self, id: &str) -> (Sse, String) {
        let created = self
            .post("/v1/devices", json!({"id": id, "name": id}))
            .await;
        assert_eq!(created.status(), 201, "create {id}");
        let mut events = self.events(id, None).await;
        let started = self
            .post(&format!("/v1/devices/{id}/start"), json!({}))
            .await;
        assert_eq!(started.status(), 202, "start {id}");
        let qr = next_of_kind(&mut events, "qr").await;
        (events, qr["code"].as_str().unwrap().to_owned())
    }

    /// Creates and starts `id`, has `phone` scan its QR code, and waits until READY.
    async fn pair(&self, id: &str, phone: &str) -> Sse {
        let (mut events, code) = self.create_and_start(id).await;
        assert_eq!(code.split(',').count(), 5, "a WhatsApp QR code: {code}");
        let (status, body) = self
            .phone("/scan", Some(json!({"qr": code, "phone": phone})))
            .await;
        assert_eq!(status, 200, "{body}");
        let scanned = std::time::Instant::now();
        self.until_ready(&mut events).await;
        println!("{id}: READY {:?} after the scan", scanned.elapsed());
        events
    }

    async fn until_ready(&self, events: &mut Sse) -> Value {
        match tokio::time::timeout(READY_WITHIN, until_status(events, "READY")).await {
            Ok(event) => event,
            Err(_) => panic!(
                "not READY within {READY_WITHIN:?}; the server saw {:?}",
                self.stats()
            ),
        }
    }

    /// The device's status now, or the next time it changes to `status`.
    async fn wait_status(&self, device: &str, events: &mut Sse, status: &str) {
        if self.json(&format!("/v1/devices/{device}")).await["status"] != status {
            tokio::time::timeout(READY_WITHIN, until_status(events, status))
                .await
                .unwrap_or_else(|_| panic!("{device} not {status}; server: {:?}", self.stats()));
        }
    }

    /// Asserts the server answered everything it was asked.
    fn assert_all_answered(&self) {
        let stats = self.stats();
        assert!(
            stats.unknown.is_empty(),
            "stanzas with no answer: {stats:?}"
        );
        assert_eq!(stats.undecryptable, 0, "{stats:?}");
    }
}

async fn test_server() -> wafleet_waserver::Running {
    wafleet_waserver::serve("127.0.0.1:0", wafleet_waserver::Network::new())
        .await
        .expect("start the test server")
}

async fn launch(server: &wafleet_waserver::Running, data: &Path) -> Standalone {
    let link = format!("whatsapp={}", server.ws_url());
    Standalone::launch_with_link(data, &link, &[("WAFLEET_WHATSAPP_VERSION", VERSION)]).await
}

async fn next_of_kind(events: &mut Sse, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = events
            .try_next(left)
            .await
            .unwrap_or_else(|| panic!("no {kind} event within {READY_WITHIN:?}"));
        if event.kind == kind {
            return event.data;
        }
    }
}

async fn until_status(events: &mut Sse, status: &str) -> Value {
    loop {
        let data = next_of_kind(events, "status").await;
        if data["status"] == status {
            return data;
        }
    }
}

async fn until_message_status(events: &mut Sse, id: &Value, status: &str) {
    loop {
        let data = next_of_kind(events, "message.status").await;
        if &data["message_id"] == id && data["status"] == status {
            return;
        }
    }
}

/// Runs a scenario on a standalone and on a cluster, as two tests.
macro_rules! on_both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn standalone() {
                super::$scenario(super::Target::standalone().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cluster() {
                super::$scenario(super::Target::cluster().await).await;
            }
        }
    };
}

on_both!(pairing_by_qr_code);
on_both!(pairing_by_code);
on_both!(texts_both_ways);
on_both!(a_crash_logs_the_device_in_again_without_pairing);
on_both!(a_dropped_stream_reconnects);
on_both!(unlinked_by_the_phone);
on_both!(banned);
on_both!(between_two_linked_devices);

/// create → start → QR → scan → READY, with the phone's number as digits.
async fn pairing_by_qr_code(target: Target) {
    target.pair("alice", "6281234567890").await;
    let device = target.json("/v1/devices/alice").await;
    assert_eq!(device["status"], "READY", "{device}");
    assert_eq!(
        device["phone"], "6281234567890",
        "digits, as on the simulated link"
    );
    let stats = target.stats();
    assert_eq!(stats.pairings, 1, "{stats:?}");
    // READY comes after the new device uploaded its pre-keys and connected afresh: the
    // restart WhatsApp asks for after pairing, then the login that drops the buffers
    // the upload grew.
    assert_eq!(stats.prekey_uploads, 1, "{stats:?}");
    assert_eq!(stats.logins, 2, "{stats:?}");
    // The server may see the first connection's close a moment after the second login.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while target.stats().connected != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "one connection left: {:?}", target.stats());
    target.assert_all_answered();
}

/// The code the API gives, typed on the phone, links the device.
async fn pairing_by_code(target: Target) {
    let (mut events, _) = target.create_and_start("gina").await;
    let asked = std::time::Instant::now();
    let answer = target
        .post(
            "/v1/devices/gina/pairing-code",
            json!({"phone": "6281234567897"}),
        )
        .await;
    let status = answer.status();
    let code: Value = answer.json().await.unwrap();
    assert_eq!(status, 200, "{code}");
    let code = code["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 9, "ABCD-EFGH, as the API promises: {code}");
    let (status, body) = target
        .phone(
            "/pair-code",
            Some(json!({"phone": "6281234567897", "code": code})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    target.until_ready(&mut events).await;
    println!("pairing by code: READY {:?} after asking", asked.elapsed());
    assert_eq!(
        target.json("/v1/devices/gina").await["phone"],
        "6281234567897"
    );
    assert_eq!(target.stats().pairings, 1);
    target.assert_all_answered();
}

/// Out: the phone decrypts the text; its receipts move the message to delivered, then
/// read. In: the phone's text is stored (an event), then acknowledged (a receipt).
async fn texts_both_ways(target: Target) {
    let mut events = target.pair("erin", "6281234567894").await;
    let sent = target
        .post(
            "/v1/devices/erin/messages",
            json!({"to": "6289876543210", "text": "halo dari wafleet"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let id = sent.json::<Value>().await.unwrap()["id"].clone();
    until_message_status(&mut events, &id, "delivered").await;
    let (_, inbox) = target.phone("/phones/6289876543210/inbox", None).await;
    assert_eq!(inbox[0]["text"], "halo dari wafleet", "{inbox}");
    assert_eq!(inbox[0]["from_phone"], "6281234567894");
    let (_, read) = target
        .phone("/phones/6289876543210/read", Some(json!({})))
        .await;
    assert_eq!(read["read"], 1);
    until_message_status(&mut events, &id, "read").await;

    let (status, wrote) = target
        .phone(
            "/phones/6289876543210/send",
            Some(json!({"to_phone": "6281234567894", "text": "apa kabar?"})),
        )
        .await;
    assert_eq!(status, 202, "{wrote}");
    let inbound = next_of_kind(&mut events, "message.inbound").await;
    assert_eq!(
        inbound["from"], "6289876543210",
        "digits, as on the simulated link"
    );
    assert_eq!(inbound["text"], "apa kabar?");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, sent) = target.phone("/phones/6289876543210/sent", None).await;
        assert_eq!(sent[0]["message_id"], wrote["message_id"]);
        if sent[0]["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no receipt: {sent}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    target.assert_all_answered();
}

/// `kill -9` of the process that runs the device: READY again with no new pairing,
/// from what the store kept, and it still sends.
async fn a_crash_logs_the_device_in_again_without_pairing(mut target: Target) {
    let events = target.pair("bob", "6281234567891").await;
    drop(events);
    let sent = target
        .post(
            "/v1/devices/bob/messages",
            json!({"to": "6289876543211", "text": "before the crash"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let first = sent.json::<Value>().await.unwrap()["id"].clone();
    let mut events = target.events("bob", Some(0)).await;
    until_message_status(&mut events, &first, "delivered").await;
    drop(events);

    let crashed = std::time::Instant::now();
    target.crash_owner("bob").await;
    let mut events = target.events("bob", Some(0)).await;
    target.wait_status("bob", &mut events, "READY").await;
    println!("READY again {:?} after the kill", crashed.elapsed());
    let sent = target
        .post(
            "/v1/devices/bob/messages",
            json!({"to": "6289876543211", "text": "after the crash"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let second = sent.json::<Value>().await.unwrap()["id"].clone();
    until_message_status(&mut events, &second, "delivered").await;
    let (_, inbox) = target.phone("/phones/6289876543211/inbox", None).await;
    let texts: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["before the crash", "after the crash"]);
    let stats = target.stats();
    assert_eq!(stats.pairings, 1, "no second pairing: {stats:?}");
    assert!(stats.logins >= 2, "{stats:?}");
    // It kept the push name the phone gave at pairing, and says it is online with it.
    assert!(stats.presences >= 1, "{stats:?}");
    assert_eq!(stats.refused_logins, 0, "{stats:?}");
    target.assert_all_answered();
}

/// The server drops the stream (503): the device reconnects by itself. Then wafleet
/// crashes, a phone writes meanwhile, and the text arrives once the device is back.
async fn a_dropped_stream_reconnects(mut target: Target) {
    drop(target.pair("frank", "6281234567896").await);
    let logins = target.stats().logins;
    let (_, dropped) = target
        .phone("/phones/6281234567896/disconnect", Some(json!({})))
        .await;
    assert_eq!(dropped["disconnected"], 1);
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    while target.stats().logins == logins {
        assert!(tokio::time::Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    target.crash_owner("frank").await;
    let (status, wrote) = target
        .phone(
            "/phones/6289876543212/send",
            Some(json!({"to_phone": "6281234567896", "text": "while you were out"})),
        )
        .await;
    assert_eq!(status, 202, "{wrote}");
    let mut events = target.events("frank", Some(0)).await;
    let inbound = loop {
        let inbound = next_of_kind(&mut events, "message.inbound").await;
        if inbound["text"] == "while you were out" {
            break inbound;
        }
    };
    assert_eq!(inbound["from"], "6289876543212");
    assert_eq!(target.stats().pairings, 1);
    target.assert_all_answered();
}

/// The phone unlinks the device: LOGGED_OUT, and its credentials wiped (starting it
/// again shows a QR code for a fresh identity, not a login).
async fn unlinked_by_the_phone(target: Target) {
    let mut events = target.pair("carol", "6281234567892").await;
    let (_, unlinked) = target
        .phone("/phones/6281234567892/unlink", Some(json!({})))
        .await;
    assert_eq!(unlinked["unlinked"], 1);
    tokio::time::timeout(READY_WITHIN, until_status(&mut events, "LOGGED_OUT"))
        .await
        .expect("LOGGED_OUT");
    assert_eq!(
        target.json("/v1/devices/carol").await["status"],
        "LOGGED_OUT"
    );
    let logins = target.stats().logins;
    let started = target.post("/v1/devices/carol/start", json!({})).await;
    assert_eq!(started.status(), 202);
    let qr = next_of_kind(&mut events, "qr").await;
    assert_eq!(qr["code"].as_str().unwrap().split(',').count(), 5);
    let stats = target.stats();
    assert_eq!(
        stats.logins, logins,
        "the wiped device did not log in: {stats:?}"
    );
    assert_eq!(stats.refused_logins, 0, "{stats:?}");
    target.assert_all_answered();
}

/// A temporary ban: the device is paused until it ends and does not reconnect
/// meanwhile.
async fn banned(target: Target) {
    let mut events = target.pair("dave", "6281234567893").await;
    let (status, _) = target
        .phone("/phones/6281234567893/ban", Some(json!({"seconds": 600})))
        .await;
    assert_eq!(status, 200);
    let event = loop {
        let data = next_of_kind(&mut events, "status").await;
        if data["reason"] == "banned" {
            break data;
        }
    };
    let paused_until = event["paused_until_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        paused_until > now + 580_000 && paused_until <= now + 601_000,
        "paused until {paused_until}, now {now}"
    );
    // No reconnect storm against the ban: at most the attempt that learnt of it. (Only
    // time can show that nothing happens.)
    let refused = target.stats().refused_logins;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = target.stats();
    assert!(
        stats.refused_logins <= refused + 1,
        "reconnected during the ban: {stats:?}"
    );
    assert_eq!(stats.connected, 0, "{stats:?}");
    target.assert_all_answered();
}

/// Two wafleet devices on two accounts: a text from one reaches the other's phone and
/// the other device itself (relayed to it by the server, decrypted by it).
async fn between_two_linked_devices(target: Target) {
    let mut alice = target.pair("hana", "6281234567898").await;
    let mut bob = target.pair("ivan", "6281234567899").await;
    let sent = target
        .post(
            "/v1/devices/hana/messages",
            json!({"to": "6281234567899", "text": "dari perangkat ke perangkat"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let id = sent.json::<Value>().await.unwrap()["id"].clone();
    let inbound = next_of_kind(&mut bob, "message.inbound").await;
    assert_eq!(inbound["text"], "dari perangkat ke perangkat");
    assert_eq!(inbound["from"], "6281234567898");
    until_message_status(&mut alice, &id, "delivered").await;
    let (_, inbox) = target.phone("/phones/6281234567899/inbox", None).await;
    assert_eq!(inbox[0]["text"], "dari perangkat ke perangkat", "{inbox}");
    let stats = target.stats();
    assert!(stats.relayed >= 1, "{stats:?}");
    target.assert_all_answered();
}
