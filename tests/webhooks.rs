//! Durable webhooks (issue 13), through a standalone `wafleet` and through a
//! three-node cluster's gateway alike: signed deliveries of every event kind, Fibonacci
//! retries, dead letters that do not block, replay, the SSRF rule, and delivery across
//! a `kill -9` (of the standalone process; of the node owning the devices).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Standalone;
use futures_util::StreamExt;
use serde_json::{Value, json};
use wafleet_cluster_config::Placement;
use wafleet_load::scenario::cluster::{LocalCluster, NodeProcess};
use wafleet_load::scenario::pairing::{PairingSite, scan_patiently};
use wafleet_load::scenario::process::{ADMIN_KEY, sse_events};
use wafleet_load::scenario::receiver::{Hit, Receiver};
use wafleet_load::scenario::sims::Network;

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");
const ALLOW_PRIVATE: &[(&str, &str)] = &[("WAFLEET__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")];
const SECRET: &str = "whsec-test-123";
const WAIT: Duration = Duration::from_secs(60);

/// Where the API and the simulated phones are: a standalone process, or a cluster's
/// gateway and its simulators.
struct Site {
    api: String,
    network: Network,
    http: reqwest::Client,
}

impl Site {
    fn of_standalone(app: &Standalone) -> Site {
        Site {
            api: app.base.clone(),
            network: Network::One(app.base.clone()),
            http: app.http.clone(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn settings(&self, base_delay_ms: u64, max_attempts: u32) {
        let put = self
            .put(
                "/v1/settings/webhooks",
                json!({"base_delay_ms": base_delay_ms, "max_delay_ms": 60_000,
                       "max_attempts": max_attempts, "timeout_ms": 2_000}),
            )
            .await;
        assert_eq!(put.status(), 200, "{:?}", put.text().await);
    }

    /// Phone `from` writes `text` to `to`, the number of `device`.
    async fn inbound(&self, device: &str, from: &str, to: &str, text: &str) {
        let wrote = self
            .http
            .post(format!(
                "{}/sim/phones/{from}/send",
                self.network.base_for(device)
            ))
            .json(&json!({"to_phone": to, "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(wrote.status(), 202);
    }

    /// Starts a device created before, scans its first QR code with `phone`, and waits
    /// until it is READY.
    async fn start_and_pair(&self, id: &str, phone: &str) {
        let mut events = Box::pin(
            sse_events(
                &self.http,
                &format!("{}/v1/devices/{id}/events", self.api),
                None,
            )
            .await
            .unwrap(),
        );
        let started = self
            .post(&format!("/v1/devices/{id}/start"), json!({}))
            .await;
        assert_eq!(started.status(), 202);
        let site = PairingSite {
            api: &self.api,
            sim: self.network.base_for(id),
        };
        let mut scanned = false;
        loop {
            let (kind, data) = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("an event")
                .expect("the stream");
            if kind == "qr" && !scanned {
                let code = data["code"].as_str().unwrap();
                scan_patiently(&self.http, site, id, code, phone)
                    .await
                    .unwrap();
                scanned = true;
            } else if kind == "status" && data["status"] == "READY" {
                return;
            }
        }
    }

    /// Waits until the device is `status`.
    async fn wait_status(&self, id: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let device = self.json(&format!("/v1/devices/{id}")).await;
            if device["status"] == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never {status}: {device}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn inbound_texts(hits: &[Hit]) -> Vec<String> {
    hits.iter()
        .filter(|h| h.status == 200 && h.event == "message.inbound")
        .map(|h| {
            h.body["data"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn delivered_text(hits: &[Hit], text: &str) -> bool {
    inbound_texts(hits).iter().any(|t| t == text)
}

/// The first acceptance point, through `app` (a standalone or a cluster's gateway).
async fn signed_events_of_every_kind_retries_dead_letters_and_replay(app: &Site) {
    let receiver = Receiver::start(Some(SECRET.as_bytes())).await.unwrap();
    app.settings(300, 4).await;

    // The webhook is given at create time; GET never shows the secret.
    let created = app
        .post(
            "/v1/devices",
            json!({"id": "wh", "name": "wh", "webhook": {"url": receiver.url, "secret": SECRET}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["webhook"], receiver.url.as_str());
    let hook = app.json("/v1/devices/wh/webhook").await;
    assert_eq!(
        hook,
        json!({"url": receiver.url, "secret_set": true, "events": null})
    );
    assert!(!hook.to_string().contains(SECRET));

    app.start_and_pair("wh", "6281700000001").await;
    app.inbound("wh", "6289900000009", "6281700000001", "halo")
        .await;
    let sent = app
        .post(
            "/v1/devices/wh/messages",
            json!({"to": "6289900000009", "text": "balasan"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let sent: Value = sent.json().await.unwrap();
    let message_id = sent["id"].as_str().unwrap().to_owned();

    let hits = receiver
        .wait_until(WAIT, |hits| {
            delivered_text(hits, "halo")
                && hits.iter().any(|h| {
                    h.event == "message.status"
                        && h.body["data"]["message_id"] == message_id.as_str()
                        && h.body["data"]["status"] == "delivered"
                })
                && hits
                    .iter()
                    .any(|h| h.event == "status" && h.body["data"]["status"] == "READY")
        })
        .await
        .unwrap();
    for hit in &hits {
        assert_eq!(hit.signature_ok, Some(true), "{hit:?}");
        assert_eq!(hit.device_id, "wh");
        assert_eq!(hit.body["id"], hit.event_id.as_str());
        assert_eq!(hit.body["event"], hit.event.as_str());
        assert_eq!(hit.body["tenant"], "default");
        assert!(hit.body["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(hit.body["data"]["device_id"], "wh");
    }
    let kinds: std::collections::BTreeSet<&str> = hits.iter().map(|h| h.event.as_str()).collect();
    for kind in ["status", "qr", "message.inbound", "message.status"] {
        assert!(kinds.contains(kind), "no {kind} event: {kinds:?}");
    }
    let inbound_hit = hits.iter().find(|h| h.event == "message.inbound").unwrap();
    assert_eq!(inbound_hit.body["data"]["from"], "6289900000009");
    // Each event once (all answered 200 at the first attempt), in event order: the
    // status events go STARTING → SCAN_QR → READY.
    let mut ids: Vec<&str> = hits.iter().map(|h| h.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), hits.len(), "an event delivered twice");
    let statuses: Vec<&str> = hits
        .iter()
        .filter(|h| h.event == "status")
        .map(|h| h.body["data"]["status"].as_str().unwrap())
        .collect();
    let ready = statuses.iter().position(|s| *s == "READY").unwrap();
    let scan = statuses.iter().position(|s| *s == "SCAN_QR").unwrap();
    let starting = statuses.iter().position(|s| *s == "STARTING").unwrap();
    assert!(starting < scan && scan < ready, "{statuses:?}");

    // Retries: 500 for the first 3 attempts, delivered on the 4th; gaps of
    // base × 1, 1, 2 (300, 300, 600 ms) within 20 %.
    receiver.fail_first(3);
    app.inbound("wh", "6289900000009", "6281700000001", "retry me")
        .await;
    let hits = receiver
        .wait_until(WAIT, |hits| delivered_text(hits, "retry me"))
        .await
        .unwrap();
    let attempts: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.body["data"]["text"] == "retry me")
        .collect();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert_eq!(
        attempts.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert!(attempts.iter().all(|h| h.event_id == attempts[0].event_id));
    for (i, expected_ms) in [300.0, 300.0, 600.0].into_iter().enumerate() {
        let gap = attempts[i + 1]
            .at
            .duration_since(attempts[i].at)
            .as_secs_f64()
            * 1000.0;
        assert!(
            (gap - expected_ms).abs() <= expected_ms * 0.2,
            "gap {} was {gap:.0} ms, expected {expected_ms} ms ± 20 %",
            i + 1
        );
    }

    // Dead letters: every attempt of this one fails; it goes dead after max_attempts
    // and does not hold back the next event; replay delivers it.
    receiver.fail_first(0);
    receiver.set_failing(true);
    app.inbound("wh", "6289900000009", "6281700000001", "doomed")
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let dead = loop {
        let list = app
            .json("/v1/devices/wh/webhook/deliveries?status=dead")
            .await;
        if let Some(dead) = list["deliveries"].as_array().unwrap().first() {
            break dead.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead["event"], "message.inbound");
    assert_eq!(dead["attempts"], 4);
    assert_eq!(dead["last_status_code"], 500);
    assert_eq!(dead["last_error"], "HTTP 500");
    receiver.set_failing(false);
    app.inbound("wh", "6289900000009", "6281700000001", "after the dead one")
        .await;
    receiver
        .wait_until(WAIT, |hits| delivered_text(hits, "after the dead one"))
        .await
        .unwrap();
    assert!(!delivered_text(&receiver.hits(), "doomed"));
    let replay = app
        .post("/v1/devices/wh/webhook/replay", json!({"status": "dead"}))
        .await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.json::<Value>().await.unwrap()["replayed"], 1);
    let hits = receiver
        .wait_until(WAIT, |hits| delivered_text(hits, "doomed"))
        .await
        .unwrap();
    let doomed = hits
        .iter()
        .find(|h| h.status == 200 && h.body["data"]["text"] == "doomed")
        .unwrap();
    assert_eq!(doomed.event_id, dead["event_id"].as_str().unwrap());

    // Replay one delivered event by id: it arrives again, same id.
    let before = receiver.hits().len();
    let replay = app
        .post(
            &format!(
                "/v1/devices/wh/webhook/deliveries/{}/replay",
                doomed.event_id
            ),
            json!({}),
        )
        .await;
    assert_eq!(replay.status(), 202);
    receiver
        .wait_until(WAIT, |hits| {
            hits[before..]
                .iter()
                .any(|h| h.status == 200 && h.event_id == doomed.event_id)
        })
        .await
        .unwrap();
    let unknown = app
        .post(
            "/v1/devices/wh/webhook/deliveries/evt_nope/replay",
            json!({}),
        )
        .await;
    assert_eq!(unknown.status(), 404);

    // The delivery list: newest first, paged, filtered.
    let page = app.json("/v1/devices/wh/webhook/deliveries?limit=2").await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = app
        .json(&format!(
            "/v1/devices/wh/webhook/deliveries?limit=2&cursor={cursor}"
        ))
        .await;
    assert_ne!(
        next["deliveries"][0]["event_id"],
        page["deliveries"][0]["event_id"]
    );
    let bad = app
        .get("/v1/devices/wh/webhook/deliveries?status=lost")
        .await;
    assert_eq!(bad.status(), 400);

    // An event filter: only message.inbound from now on.
    let put = app
        .put(
            "/v1/devices/wh/webhook",
            json!({"url": receiver.url, "events": ["message.inbound"]}),
        )
        .await;
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["secret_set"], false);
    let before = receiver.hits().len();
    let restarted = app.post("/v1/devices/wh/restart", json!({})).await;
    assert_eq!(restarted.status(), 202);
    app.wait_status("wh", "READY").await;
    app.inbound("wh", "6289900000009", "6281700000001", "filtered")
        .await;
    let hits = receiver
        .wait_until(WAIT, |hits| delivered_text(hits, "filtered"))
        .await
        .unwrap();
    assert!(
        hits[before..].iter().all(|h| h.event == "message.inbound"),
        "only the events asked for"
    );
    assert_eq!(
        hits.last().unwrap().signature_ok,
        None,
        "no secret: no signature"
    );

    // Removed: GET is 404, nothing more is sent.
    let removed = app.delete("/v1/devices/wh/webhook").await;
    assert_eq!(removed.status(), 200);
    assert_eq!(app.get("/v1/devices/wh/webhook").await.status(), 404);
}

#[tokio::test]
async fn through_a_standalone_signed_events_retries_dead_letters_and_replay() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start_with_env(data.path(), ALLOW_PRIVATE).await;
    signed_events_of_every_kind_retries_dead_letters_and_replay(&Site::of_standalone(&app)).await;
}

/// A three-node cluster on 127.0.0.1 (its nodes allow private webhook targets), seen
/// through its gateway; the nodes, to kill one.
async fn cluster() -> (Site, Vec<NodeProcess>, Rest) {
    let LocalCluster {
        dir,
        redis,
        sims,
        plans: _,
        nodes,
        gateway,
    } = LocalCluster::start(Path::new(WAFLEET), 3).await.unwrap();
    let site = Site {
        api: gateway.base.clone(),
        network: Network::Processes(Arc::new(sims)),
        http: reqwest::Client::new(),
    };
    (
        site,
        nodes,
        Rest {
            _dir: dir,
            _redis: redis,
            _gateway: gateway,
        },
    )
}

/// What a cluster test keeps alive until it ends.
struct Rest {
    _dir: tempfile::TempDir,
    _redis: wafleet_load::scenario::process::RedisServer,
    _gateway: wafleet_load::scenario::cluster::GatewayProcess,
}

#[tokio::test]
async fn through_a_cluster_gateway_signed_events_retries_dead_letters_and_replay() {
    let (site, _nodes, _rest) = cluster().await;
    signed_events_of_every_kind_retries_dead_letters_and_replay(&site).await;
}

#[tokio::test]
async fn webhook_targets_on_private_addresses_are_refused_unless_allowed() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.post("/v1/devices", json!({"id": "d", "name": "d"}))
        .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost:9/hook",
    ] {
        let put = app.put("/v1/devices/d/webhook", json!({"url": url})).await;
        assert_eq!(put.status(), 422, "{url}");
        let body: Value = put.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "webhook_url_not_allowed",
            "{url}: {body}"
        );
    }
    let ftp = app
        .put(
            "/v1/devices/d/webhook",
            json!({"url": "ftp://example.com/x"}),
        )
        .await;
    assert_eq!(ftp.status(), 400);
    let event = app
        .put(
            "/v1/devices/d/webhook",
            json!({"url": "http://10.0.0.1/", "events": ["nope"]}),
        )
        .await;
    assert_eq!(event.status(), 422, "an unknown event is refused");
    let none = app
        .put(
            "/v1/devices/d/webhook",
            json!({"url": "http://10.0.0.1/", "events": []}),
        )
        .await;
    assert_eq!(none.status(), 422, "an empty event list is refused");
    // A create with a refused webhook creates nothing.
    let created = app
        .post(
            "/v1/devices",
            json!({"id": "e", "name": "e", "webhook": "http://127.0.0.1:9/"}),
        )
        .await;
    assert_eq!(created.status(), 422);
    assert_eq!(app.get("/v1/devices/e").await.status(), 404);
    assert_eq!(app.get("/v1/devices/d/webhook").await.status(), 404);
}

#[tokio::test]
async fn events_recorded_while_the_receiver_is_down_survive_a_kill9() {
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(None).await.unwrap();
    let app = Standalone::start_with_env(data.path(), ALLOW_PRIVATE).await;
    let site = Site::of_standalone(&app);
    site.settings(200, 50).await;
    let created = app
        .post(
            "/v1/devices",
            json!({"id": "k", "name": "k", "webhook": {"url": receiver.url, "events": ["message.inbound"]}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    app.start_and_pair("k", "6281700000002").await;
    receiver.set_failing(true);
    let texts: Vec<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for text in &texts {
        site.inbound("k", "6289900000010", "6281700000002", text)
            .await;
    }
    // Every one is recorded (pending or failed) before the kill.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = app.json("/v1/devices/k/webhook/deliveries?limit=100").await;
        if list["deliveries"].as_array().unwrap().len() == texts.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all recorded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.kill9().await;
    receiver.set_failing(false);
    let app = Standalone::start_with_env(data.path(), ALLOW_PRIVATE).await;
    let hits = receiver
        .wait_until(WAIT, |hits| inbound_texts(hits).len() >= texts.len())
        .await
        .unwrap();
    let delivered = inbound_texts(&hits);
    assert_eq!(delivered, texts, "every event, once, in order");
    // The last attempt is recorded just after the receiver answers it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = app.json("/v1/devices/k/webhook/deliveries?limit=100").await;
        let rows = list["deliveries"].as_array().unwrap();
        assert_eq!(rows.len(), texts.len(), "one delivery per event: {list}");
        if rows.iter().all(|d| d["status"] == "delivered") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all delivered: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const DEVICES: usize = 6;
const PHONE_PREFIX: &str = "6281355";

/// Phone `{i}` of the writers sends `text` to device `i`'s number.
async fn write(site: &Site, id: &str, i: usize, text: &str) {
    site.inbound(
        id,
        &format!("62899{i:08}"),
        &format!("{PHONE_PREFIX}{i:08}"),
        text,
    )
    .await;
}

/// The inbound texts delivered (2xx) to each device, in arrival order, with their ids.
fn delivered(hits: &[Hit]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut by_device: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for hit in hits {
        if hit.status == 200 && hit.event == "message.inbound" {
            by_device.entry(hit.device_id.clone()).or_default().push((
                hit.body["data"]["text"].as_str().unwrap().to_owned(),
                hit.event_id.clone(),
            ));
        }
    }
    by_device
}

#[tokio::test]
async fn events_recorded_while_the_receiver_is_down_survive_a_kill9_of_their_owner() {
    let (site, mut nodes, _rest) = cluster().await;
    let receiver = Receiver::start(None).await.unwrap();
    let put = site
        .put(
            "/v1/settings/webhooks",
            json!({"base_delay_ms": 200, "max_delay_ms": 1_000, "max_attempts": 100, "timeout_ms": 2_000}),
        )
        .await;
    assert_eq!(put.status(), 200);
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("hook-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let created = site
            .post(
                "/v1/devices",
                json!({"id": id, "name": id,
                       "webhook": {"url": receiver.url, "events": ["message.inbound", "status"]}}),
            )
            .await;
        assert_eq!(created.status(), 201);
        site.start_and_pair(id, &format!("{PHONE_PREFIX}{i:08}"))
            .await;
    }

    // Healthy: the first texts arrive.
    let text = |round: usize, i: usize| format!("r{round}-d{i}");
    for (i, id) in ids.iter().enumerate() {
        write(&site, id, i, &text(0, i)).await;
    }
    receiver
        .wait_until(WAIT, |hits| {
            delivered(hits).values().map(Vec::len).sum::<usize>() == DEVICES
        })
        .await
        .unwrap();

    // The receiver goes down; texts are recorded (and fail) on the owners.
    receiver.set_failing(true);
    for round in 1..=3 {
        for (i, id) in ids.iter().enumerate() {
            write(&site, id, i, &text(round, i)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    for id in &ids {
        loop {
            let list = site
                .json(&format!("/v1/devices/{id}/webhook/deliveries?limit=100"))
                .await;
            let recorded = list["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["event"] == "message.inbound")
                .count();
            if recorded == 4 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id}: {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // kill -9 of the node owning the most devices, while the receiver is still down;
    // more texts are written meanwhile (the new owners record them).
    let placement = Placement::new(1024, ["node-1", "node-2", "node-3"]).unwrap();
    let owned: HashMap<&str, usize> = ["node-1", "node-2", "node-3"]
        .into_iter()
        .map(|n| {
            (
                n,
                ids.iter().filter(|id| placement.owner_of(id) == n).count(),
            )
        })
        .collect();
    let victim = *owned.iter().max_by_key(|(_, n)| **n).unwrap().0;
    assert!(owned[victim] > 0);
    nodes
        .iter_mut()
        .find(|n| n.name == victim)
        .unwrap()
        .kill9()
        .await;
    for round in 4..=5 {
        for (i, id) in ids.iter().enumerate() {
            write(&site, id, i, &text(round, i)).await;
        }
    }
    // Back up: everything arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    receiver.set_failing(false);
    let hits = receiver
        .wait_until(WAIT, |hits| {
            let got = delivered(hits);
            ids.iter().all(|id| {
                let texts: HashSet<&str> = got
                    .get(id)
                    .map(|v| v.iter().map(|(t, _)| t.as_str()).collect())
                    .unwrap_or_default();
                texts.len() == 6
            })
        })
        .await
        .unwrap();
    let got = delivered(&hits);
    let mut repeats = 0;
    for (i, id) in ids.iter().enumerate() {
        let arrivals = &got[id];
        // In order: the first arrival of each text, in arrival order, is the order written.
        let mut firsts: Vec<&str> = Vec::new();
        let mut id_of: HashMap<&str, &str> = HashMap::new();
        for (text, event_id) in arrivals {
            match id_of.get(text.as_str()) {
                None => {
                    id_of.insert(text, event_id);
                    firsts.push(text);
                }
                Some(first) => {
                    repeats += 1;
                    assert_eq!(first, event_id, "{id}: a repeat of {text} with another id");
                }
            }
        }
        let expected: Vec<String> = (0..=5).map(|round| text(round, i)).collect();
        assert_eq!(firsts, expected, "{id}: every text, in order");
        let mut ids: Vec<&&str> = id_of.values().collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6, "{id}: one event id per text");
    }
    println!("all delivered after the kill of {victim}; {repeats} repeats (same ids)");
    // The status events of the takeover reached the receiver too.
    let taken_over: Vec<&String> = ids
        .iter()
        .filter(|id| placement.owner_of(id) == victim)
        .collect();
    for id in taken_over {
        assert!(
            hits.iter().any(|h| h.status == 200
                && h.device_id == *id
                && h.event == "status"
                && h.body["data"]["status"] == "READY"
                && h.body["data"]["node"] != victim),
            "{id}: READY on its new node was delivered"
        );
    }
}
