//! The real WhatsApp link (whatsapp-rust) end to end through wafleet's public API,
//! against the WhatsApp Web protocol test server (`load-tests/waserver`) instead of
//! WhatsApp: a test-chain build of `wafleet standalone --link whatsapp=ws://…`.

mod common;

use std::time::Duration;

use common::{Sse, Standalone};
use futures_util::StreamExt;
use serde_json::{Value, json};
use wafleet_load::scenario::cluster::{LocalCluster, WhatsAppPlan};
use wafleet_load::scenario::process::{ADMIN_KEY, sse_events};

/// The WhatsApp Web version the test builds pin (no fetch from web.whatsapp.com).
const VERSION: &str = "2.3000.1";
/// Pairing to READY includes the client's wait for an app-state key (10 s).
const READY_WITHIN: Duration = Duration::from_secs(40);

struct Setup {
    server: wafleet_waserver::Running,
    wafleet: Standalone,
    _data: tempfile::TempDir,
}

async fn setup() -> Setup {
    let server = wafleet_waserver::serve("127.0.0.1:0", wafleet_waserver::Network::new())
        .await
        .expect("start the test server");
    let data = tempfile::tempdir().unwrap();
    let link = format!("whatsapp={}", server.ws_url());
    let wafleet =
        Standalone::launch_with_link(data.path(), &link, &[("WAFLEET_WHATSAPP_VERSION", VERSION)])
            .await;
    Setup {
        server,
        wafleet,
        _data: data,
    }
}

async fn until_status(events: &mut Sse, status: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = events
            .try_next(left)
            .await
            .unwrap_or_else(|| panic!("not {status} within {within:?}"));
        if event.kind == "status" && event.data["status"] == status {
            return event.data;
        }
    }
}

/// Creates and starts `id`, has `phone` scan its QR code on the test server, and waits
/// until it is READY.
async fn pair(server: &wafleet_waserver::Running, wafleet: &Standalone, id: &str, phone: &str) {
    let code = wafleet.create_and_start(id).await;
    assert_eq!(code.split(',').count(), 5, "a WhatsApp QR code: {code}");
    let mut events = wafleet
        .events(&format!("/v1/devices/{id}/events"), None)
        .await;
    let scanned = wafleet
        .http
        .post(format!("{}/sim/scan", server.base_url()))
        .json(&json!({"qr": code, "phone": phone}))
        .send()
        .await
        .unwrap();
    let status = scanned.status();
    let body: Value = scanned.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    wait_ready(server, &mut events).await;
}

async fn wait_ready(server: &wafleet_waserver::Running, events: &mut Sse) {
    if tokio::time::timeout(
        READY_WITHIN,
        until_status(events, "READY", Duration::from_secs(3600)),
    )
    .await
    .is_err()
    {
        panic!(
            "not READY within {READY_WITHIN:?}; the server saw {:?}",
            server.network.stats()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_pairs_by_qr_code_and_reaches_ready() {
    let Setup {
        server,
        wafleet,
        _data,
    } = setup().await;
    let code = wafleet.create_and_start("alice").await;
    assert_eq!(code.split(',').count(), 5, "a WhatsApp QR code: {code}");
    let mut events = wafleet.events("/v1/devices/alice/events", None).await;
    let scanned = wafleet
        .http
        .post(format!("{}/sim/scan", server.base_url()))
        .json(&json!({"qr": code, "phone": "6281234567890"}))
        .send()
        .await
        .unwrap();
    let status = scanned.status();
    let body: Value = scanned.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jid"], "6281234567890:1@s.whatsapp.net");
    if tokio::time::timeout(
        READY_WITHIN,
        until_status(&mut events, "READY", Duration::from_secs(3600)),
    )
    .await
    .is_err()
    {
        panic!(
            "not READY within {READY_WITHIN:?}; the server saw {:?}",
            server.network.stats()
        );
    }
    let device = wafleet.json("/v1/devices/alice").await;
    assert_eq!(device["status"], "READY", "{device}");
    assert_eq!(
        device["phone"], "6281234567890",
        "digits, as on the simulated link"
    );
    let stats = server.network.stats();
    assert_eq!(stats.pairings, 1, "{stats:?}");
    assert!(stats.logins >= 1, "{stats:?}");
    assert!(
        stats.unknown.is_empty(),
        "stanzas the server did not answer: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_standalone_logs_its_device_in_again_without_a_new_pairing() {
    let Setup {
        server,
        wafleet,
        _data: data,
    } = setup().await;
    pair(&server, &wafleet, "bob", "6281234567891").await;
    wafleet.kill9().await;
    let link = format!("whatsapp={}", server.ws_url());
    let wafleet =
        Standalone::launch_with_link(data.path(), &link, &[("WAFLEET_WHATSAPP_VERSION", VERSION)])
            .await;
    let mut events = wafleet.events("/v1/devices/bob/events", Some(0)).await;
    if wafleet.json("/v1/devices/bob").await["status"] != "READY" {
        wait_ready(&server, &mut events).await;
    }
    let stats = server.network.stats();
    assert_eq!(stats.pairings, 1, "no second pairing: {stats:?}");
    assert!(stats.logins >= 2, "{stats:?}");
    // The restarted device knew the server's key: IK, no certificate round.
    assert!(
        stats.handshakes.get("Ik").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.refused_logins, 0, "{stats:?}");
    assert!(stats.unknown.is_empty(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_the_phone_unlinks_is_logged_out_and_its_credentials_wiped() {
    let Setup {
        server,
        wafleet,
        _data,
    } = setup().await;
    pair(&server, &wafleet, "carol", "6281234567892").await;
    let mut events = wafleet.events("/v1/devices/carol/events", None).await;
    let unlinked: Value = wafleet
        .http
        .post(format!(
            "{}/sim/phones/6281234567892/unlink",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unlinked["unlinked"], 1);
    until_status(&mut events, "LOGGED_OUT", Duration::from_secs(20)).await;
    let device = wafleet.json("/v1/devices/carol").await;
    assert_eq!(device["status"], "LOGGED_OUT", "{device}");
    // Wiped: starting it again shows a new QR code (a fresh identity), not a login.
    let logins = server.network.stats().logins;
    let started = wafleet.post("/v1/devices/carol/start", json!({})).await;
    assert_eq!(started.status(), 202);
    let qr = events.next_of_kind("qr").await;
    assert_eq!(qr.data["code"].as_str().unwrap().split(',').count(), 5);
    let stats = server.network.stats();
    assert_eq!(
        stats.logins, logins,
        "the wiped device did not log in: {stats:?}"
    );
    assert_eq!(stats.refused_logins, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_device_is_paused_and_does_not_reconnect_until_the_ban_ends() {
    let Setup {
        server,
        wafleet,
        _data,
    } = setup().await;
    pair(&server, &wafleet, "dave", "6281234567893").await;
    let mut events = wafleet.events("/v1/devices/dave/events", None).await;
    let banned = wafleet
        .http
        .post(format!(
            "{}/sim/phones/6281234567893/ban",
            server.base_url()
        ))
        .json(&json!({"seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(banned.status(), 200);
    let event = loop {
        let event = events.next_of_kind("status").await;
        if event.data["reason"] == "banned" {
            break event;
        }
    };
    let paused_until = event.data["paused_until_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        paused_until > now + 580_000 && paused_until <= now + 601_000,
        "paused until {paused_until}, now {now}"
    );
    // The ban holds: no reconnect storm against it.
    let refused = server.network.stats().refused_logins;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = server.network.stats();
    assert!(
        stats.refused_logins <= refused + 1,
        "reconnected during the ban: {stats:?}"
    );
    assert_eq!(stats.connected, 0, "{stats:?}");
}

async fn wait_message_status(events: &mut Sse, id: &Value, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = events
            .try_next(left)
            .await
            .unwrap_or_else(|| panic!("message {id} not {status} within 30 s"));
        if event.kind == "message.status"
            && &event.data["message_id"] == id
            && event.data["status"] == status
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn texts_go_both_ways_end_to_end_encrypted_with_receipts() {
    let Setup {
        server,
        wafleet,
        _data,
    } = setup().await;
    pair(&server, &wafleet, "erin", "6281234567894").await;
    let mut events = wafleet.events("/v1/devices/erin/events", None).await;

    // Out: the phone decrypts the text; its receipts move the message to delivered, then read.
    let sent = wafleet
        .post(
            "/v1/devices/erin/messages",
            json!({"to": "6289876543210", "text": "halo dari wafleet"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let accepted: Value = sent.json().await.unwrap();
    let id = accepted["id"].clone();
    wait_message_status(&mut events, &id, "delivered").await;
    let inbox: Value = wafleet
        .http
        .get(format!(
            "{}/sim/phones/6289876543210/inbox",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox[0]["text"], "halo dari wafleet", "{inbox}");
    assert_eq!(inbox[0]["from_phone"], "6281234567894");
    let read: Value = wafleet
        .http
        .post(format!(
            "{}/sim/phones/6289876543210/read",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["read"], 1);
    wait_message_status(&mut events, &id, "read").await;

    // In: the phone writes back; wafleet stores the text, then the device acknowledges it.
    let wrote = wafleet
        .http
        .post(format!(
            "{}/sim/phones/6289876543210/send",
            server.base_url()
        ))
        .json(&json!({"to_phone": "6281234567894", "text": "apa kabar?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrote.status(), 202);
    let wrote: Value = wrote.json().await.unwrap();
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(
        inbound.data["from"], "6289876543210",
        "digits, as on the simulated link"
    );
    assert_eq!(inbound.data["text"], "apa kabar?");
    let sent: Value = wafleet
        .http
        .get(format!(
            "{}/sim/phones/6289876543210/sent",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent[0]["message_id"], wrote["message_id"]);
    let stats = server.network.stats();
    assert_eq!(stats.undecryptable, 0, "{stats:?}");
    assert!(stats.unknown.is_empty(), "{stats:?}");
}

/// The next `(kind, data)` of a gateway's event stream that `pick` keeps, within 40 s.
async fn next_event<S>(
    events: &mut S,
    what: &str,
    mut pick: impl FnMut(&str, &Value) -> bool,
) -> Value
where
    S: futures_util::Stream<Item = (String, Value)> + Unpin,
{
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (kind, data) = tokio::time::timeout(left, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {READY_WITHIN:?}"))
            .expect("the event stream is open");
        if pick(&kind, &data) {
            return data;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_a_cluster_a_device_moved_to_another_node_logs_in_from_the_store() {
    let server = wafleet_waserver::serve("127.0.0.1:0", wafleet_waserver::Network::new())
        .await
        .expect("start the test server");
    let plan = WhatsAppPlan {
        url: server.ws_url(),
        version: VERSION.into(),
    };
    let mut cluster = LocalCluster::start_with_whatsapp(
        std::path::Path::new(env!("CARGO_BIN_EXE_wafleet")),
        2,
        plan,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let gw = cluster.gateway.base.clone();
    let mut events = Box::pin(
        sse_events(&http, &format!("{gw}/v1/events"), None)
            .await
            .unwrap(),
    );
    let post = |path: &str, body: Value| {
        http.post(format!("{gw}{path}"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
    };
    let created = post("/v1/devices", json!({"id": "moving", "name": "moving"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let started = post("/v1/devices/moving/start", json!({})).await.unwrap();
    assert_eq!(started.status(), 202);
    let qr = next_event(&mut events, "a QR code", |kind, _| kind == "qr").await;
    let scanned = http
        .post(format!("{}/sim/scan", server.base_url()))
        .json(&json!({"qr": qr["code"], "phone": "6281234567895"}))
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.status(), 200);
    let ready = next_event(&mut events, "READY", |kind, data| {
        kind == "status" && data["status"] == "READY"
    })
    .await;
    let owner = ready["node"].as_str().unwrap().to_owned();

    // A text through the gateway, delivered to the phone by the owner's link.
    let send = |text: &'static str| {
        post(
            "/v1/devices/moving/messages",
            json!({"to": "6289876543211", "text": text}),
        )
    };
    let first: Value = send("before the move").await.unwrap().json().await.unwrap();
    next_event(&mut events, "delivered", |kind, data| {
        kind == "message.status"
            && data["message_id"] == first["id"]
            && data["status"] == "delivered"
    })
    .await;

    // kill -9 of the owner: the other node takes the device over from the shared store.
    cluster
        .nodes
        .iter_mut()
        .find(|node| node.name == owner)
        .expect("the owner is a node")
        .kill9()
        .await;
    let moved = next_event(&mut events, "READY on the other node", |kind, data| {
        kind == "status" && data["status"] == "READY" && data["node"] != owner.as_str()
    })
    .await;
    assert_ne!(moved["node"], owner.as_str());
    let second: Value = send("after the move").await.unwrap().json().await.unwrap();
    next_event(&mut events, "delivered after the move", |kind, data| {
        kind == "message.status"
            && data["message_id"] == second["id"]
            && data["status"] == "delivered"
    })
    .await;

    let inbox: Value = http
        .get(format!(
            "{}/sim/phones/6289876543211/inbox",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let texts: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["before the move", "after the move"]);
    let stats = server.network.stats();
    assert_eq!(stats.pairings, 1, "no new pairing: {stats:?}");
    assert!(stats.logins >= 2, "{stats:?}");
    assert_eq!(stats.refused_logins, 0, "{stats:?}");
    assert_eq!(stats.undecryptable, 0, "{stats:?}");
    assert!(stats.unknown.is_empty(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_stream_reconnects_and_what_came_meanwhile_is_not_lost() {
    let Setup {
        server,
        wafleet,
        _data: data,
    } = setup().await;
    pair(&server, &wafleet, "frank", "6281234567896").await;
    let mut events = wafleet.events("/v1/devices/frank/events", None).await;

    // The server drops the connection (503): the device reconnects by itself.
    let logins = server.network.stats().logins;
    let dropped: Value = wafleet
        .http
        .post(format!(
            "{}/sim/phones/6281234567896/disconnect",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dropped["disconnected"], 1);
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    while server.network.stats().logins == logins {
        assert!(tokio::time::Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if wafleet.json("/v1/devices/frank").await["status"] != "READY" {
        until_status(&mut events, "READY", READY_WITHIN).await;
    }

    // While wafleet is down, a phone writes: the server keeps it, and the device gets it
    // when it logs in again.
    wafleet.kill9().await;
    let wrote = wafleet_waserver_send(
        &server,
        "6289876543212",
        "6281234567896",
        "while you were out",
    )
    .await;
    assert_eq!(wrote.status(), 202);
    let link = format!("whatsapp={}", server.ws_url());
    let wafleet =
        Standalone::launch_with_link(data.path(), &link, &[("WAFLEET_WHATSAPP_VERSION", VERSION)])
            .await;
    let mut events = wafleet.events("/v1/devices/frank/events", Some(0)).await;
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["text"], "while you were out");
    assert_eq!(inbound.data["from"], "6289876543212");
    let stats = server.network.stats();
    assert_eq!(stats.pairings, 1, "{stats:?}");
    assert!(stats.unknown.is_empty(), "{stats:?}");
}

async fn wafleet_waserver_send(
    server: &wafleet_waserver::Running,
    from: &str,
    to: &str,
    text: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/sim/phones/{from}/send", server.base_url()))
        .json(&json!({"to_phone": to, "text": text}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_pairs_by_code_typed_on_the_phone() {
    let Setup {
        server,
        wafleet,
        _data,
    } = setup().await;
    let created = wafleet
        .post("/v1/devices", json!({"id": "gina", "name": "gina"}))
        .await;
    assert_eq!(created.status(), 201);
    let mut events = wafleet.events("/v1/devices/gina/events", None).await;
    let started = wafleet.post("/v1/devices/gina/start", json!({})).await;
    assert_eq!(started.status(), 202);
    events.next_of_kind("qr").await;
    let asked = std::time::Instant::now();
    let code = wafleet
        .post(
            "/v1/devices/gina/pairing-code",
            json!({"phone": "6281234567897"}),
        )
        .await;
    let status = code.status();
    let code: Value = code.json().await.unwrap();
    assert_eq!(status, 200, "{code}");
    let code_text = code["code"].as_str().unwrap();
    assert_eq!(code_text.len(), 9, "ABCD-EFGH: {code_text}");
    let entered = wafleet
        .http
        .post(format!("{}/sim/pair-code", server.base_url()))
        .json(&json!({"phone": "6281234567897", "code": code_text}))
        .send()
        .await
        .unwrap();
    let status = entered.status();
    let body: Value = entered.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    wait_ready(&server, &mut events).await;
    println!("pairing by code: READY {:?} after asking", asked.elapsed());
    let device = wafleet.json("/v1/devices/gina").await;
    assert_eq!(device["phone"], "6281234567897");
    let stats = server.network.stats();
    assert_eq!(stats.pairings, 1, "{stats:?}");
    assert!(stats.unknown.is_empty(), "{stats:?}");
}
