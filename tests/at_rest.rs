//! Nothing readable at rest: message texts (both directions) never appear in clear in a
//! standalone's data folder (its SQLite file and WAL, the simulated network's state,
//! the key files) nor in a cluster's SQLite file and Redis streams, while the API and
//! SSE still show them; and the master key and a tenant's data key rotate while the
//! process runs, with everything sealed before still readable. Real processes on
//! 127.0.0.1; the searches read every byte, and a control search (a device id, which is
//! stored in clear) shows that they see the data.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{KEY, Standalone, files_containing};
use serde_json::{Value, json};
use wafleet_load::scenario::cluster::{COOKIE, GatewayProcess, NodePlan, NodeProcess, SimProcess};
use wafleet_load::scenario::process::{RedisServer, unthrottle};

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");
const WAIT: Duration = Duration::from_secs(20);
const DEVICE_PHONE: &str = "6281230000077";
const PEER: &str = "6289870000077";

/// A distinctive text, unique per call.
fn probe(what: &str) -> String {
    format!(
        "rahasia-{what}-{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or_default()
    )
}

/// Waits until `check` gives `Some`.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `text` to [`PEER`] and waits until the phone has it; returns the message id.
async fn send_and_see_delivered(app: &Standalone, device: &str, text: &str) -> String {
    let sent = app
        .post(
            &format!("/v1/devices/{device}/messages"),
            json!({"to": PEER, "text": text}),
        )
        .await;
    assert_eq!(sent.status(), 202, "send");
    let sent: Value = sent.json().await.unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();
    until("the phone to have the message", || async {
        let inbox: Value = app
            .http
            .get(app.url(&format!("/sim/phones/{PEER}/inbox")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        inbox
            .as_array()?
            .iter()
            .any(|m| m["text"] == text)
            .then_some(())
    })
    .await;
    id
}

/// The phone [`PEER`] writes `text` to the device; returns the event's message id.
async fn receive(app: &Standalone, device: &str, text: &str) -> String {
    let mut events = app
        .events(&format!("/v1/devices/{device}/events"), None)
        .await;
    let sent = app
        .http
        .post(app.url(&format!("/sim/phones/{PEER}/send")))
        .json(&json!({"to_phone": DEVICE_PHONE, "text": text}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "phone send: {}", sent.status());
    loop {
        let event = events.next_of_kind("message.inbound").await;
        // The event carries the text in clear: SSE opens what the store keeps sealed.
        if event.data["text"] == text {
            return event.data["message_id"].as_str().unwrap().to_owned();
        }
    }
}

async fn text_of(app: &Standalone, device: &str, message_id: &str) -> String {
    app.json(&format!("/v1/devices/{device}/messages/{message_id}"))
        .await["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Every string a Redis reply holds, appended to `out`.
fn bytes_of(value: &redis::Value, out: &mut Vec<u8>) {
    match value {
        redis::Value::BulkString(bytes) => out.extend(bytes),
        redis::Value::SimpleString(text) => out.extend(text.as_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for item in items {
                out.push(b' ');
                bytes_of(item, out);
            }
        }
        redis::Value::Map(pairs) => {
            for (key, value) in pairs {
                bytes_of(key, out);
                out.push(b' ');
                bytes_of(value, out);
            }
        }
        _ => {}
    }
}

fn wafleet(args: &[&str]) -> String {
    let output = std::process::Command::new(WAFLEET)
        .args(args)
        .env_remove("WAFLEET_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wafleet {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_standalone_keeps_no_text_readable_in_its_data_folder_and_rotates_its_keys() {
    let data = tempfile::tempdir().unwrap();
    let env = [("WAFLEET__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")];
    let app = Standalone::start_with_env(data.path(), &env).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    // A webhook nobody answers: its deliveries stay in the store with their data.
    let hook = app
        .put(
            "/v1/devices/shop-1/webhook",
            json!({"url": "http://127.0.0.1:9/hook", "secret": "s3cret-value"}),
        )
        .await;
    assert_eq!(hook.status(), 200, "webhook");

    let outbound = probe("out");
    let inbound = probe("in");
    let out_id = send_and_see_delivered(&app, "shop-1", &outbound).await;
    let in_id = receive(&app, "shop-1", &inbound).await;
    assert_eq!(text_of(&app, "shop-1", &out_id).await, outbound);
    assert_eq!(text_of(&app, "shop-1", &in_id).await, inbound);
    until(
        "the inbound event to be recorded for the webhook",
        || async {
            let list = app
                .json("/v1/devices/shop-1/webhook/deliveries?status=pending")
                .await;
            list["deliveries"]
                .as_array()?
                .iter()
                .any(|d| d["event"] == "message.inbound")
                .then_some(())
        },
    )
    .await;

    // Every byte of the data folder, the SQLite WAL included, while the process runs.
    assert!(
        !files_containing(data.path(), "shop-1").is_empty(),
        "control: the device id is stored in clear"
    );
    for needle in [&outbound, &inbound, "s3cret-value"] {
        assert_eq!(
            files_containing(data.path(), needle),
            Vec::<String>::new(),
            "{needle} is readable at rest"
        );
    }

    // A new master key while the process runs: the key file names it first, every
    // data key is wrapped again under it, and the process goes on.
    let said = wafleet(&[
        "master-key",
        "rotate",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(said.contains("version 2 is current"), "{said}");
    assert!(
        said.contains("wrapped again under master key version 2: 1"),
        "{said}"
    );
    let key_file = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    assert!(
        key_file.starts_with("2:") && key_file.contains("\n1:"),
        "{key_file}"
    );
    let later = probe("later");
    let later_id = send_and_see_delivered(&app, "shop-1", &later).await;
    assert_eq!(text_of(&app, "shop-1", &out_id).await, outbound);

    // A new data key for the tenant: new texts are sealed with version 2.
    let said = wafleet(&[
        "data-key",
        "rotate",
        "--tenant",
        "default",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(said.contains("data key version 2 is current"), "{said}");

    // A restart (kill -9) reads everything with the rotated keys.
    app.kill9().await;
    let app = Standalone::start_with_env(data.path(), &env).await;
    app.wait_status("shop-1", "READY").await;
    let newest = probe("newest");
    let newest_id = send_and_see_delivered(&app, "shop-1", &newest).await;
    for (id, text) in [
        (&out_id, &outbound),
        (&in_id, &inbound),
        (&later_id, &later),
        (&newest_id, &newest),
    ] {
        assert_eq!(&text_of(&app, "shop-1", id).await, text);
    }
    let db = rusqlite::Connection::open(data.path().join("wafleet.db")).unwrap();
    let stored = |id: &str| -> String {
        db.query_row("SELECT text FROM messages WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap()
    };
    assert!(
        stored(&out_id).starts_with("\u{1}wfs1:1:default:"),
        "{:?}",
        stored(&out_id)
    );
    assert!(
        stored(&newest_id).starts_with("\u{1}wfs1:2:default:"),
        "{:?}",
        stored(&newest_id)
    );
    for needle in [&outbound, &inbound, &later, &newest] {
        assert_eq!(files_containing(data.path(), needle), Vec::<String>::new());
    }
}

#[tokio::test]
async fn a_cluster_keeps_no_text_readable_in_its_store_or_redis() {
    let redis = RedisServer::start().await.unwrap();
    let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wafleet.db");
    let plans = NodePlan::cluster(1, &db, &redis.url, std::slice::from_ref(&sim.ws)).unwrap();
    let mut node = NodeProcess::start(Path::new(WAFLEET), dir.path(), &plans[0], COOKIE)
        .await
        .unwrap();
    node.wait_members(&["node-1"], WAIT).await.unwrap();
    let gateway = GatewayProcess::start(
        Path::new(WAFLEET),
        dir.path(),
        "gw-1",
        &[plans[0].address()],
        &plans[0],
        COOKIE,
        1,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    unthrottle(&http, &gateway.base).await.unwrap();
    let base = gateway.base.clone();

    let id = "rest-dev-1";
    let mut events = common::Sse::connect(&http, &format!("{base}/v1/events"), None).await;
    common::post_routed(
        &http,
        &format!("{base}/v1/devices"),
        json!({"id": id, "name": id}),
    )
    .await;
    common::post_routed(&http, &format!("{base}/v1/devices/{id}/start"), json!({})).await;
    common::scan_until_ready(&http, &sim.base, DEVICE_PHONE, &mut events).await;

    let outbound = probe("out");
    let sent = common::post_routed(
        &http,
        &format!("{base}/v1/devices/{id}/messages"),
        json!({"to": PEER, "text": outbound}),
    )
    .await;
    let out_id = sent["id"].as_str().unwrap().to_owned();
    let inbound = probe("in");
    let phone_sent = http
        .post(format!("{}/sim/phones/{PEER}/send", sim.base))
        .json(&json!({"to_phone": DEVICE_PHONE, "text": inbound}))
        .send()
        .await
        .unwrap();
    assert!(phone_sent.status().is_success());
    // The gateway opens what Redis keeps sealed: SSE shows the text.
    let mut inbound_id = None;
    let mut delivered = false;
    while inbound_id.is_none() || !delivered {
        let event = events.next().await;
        match event.kind.as_str() {
            "message.inbound" if event.data["text"] == inbound.as_str() => {
                inbound_id = event.data["message_id"].as_str().map(str::to_owned);
            }
            "message.status"
                if event.data["message_id"] == out_id.as_str()
                    && event.data["status"] == "delivered" =>
            {
                delivered = true;
            }
            _ => {}
        }
    }
    let inbound_id = inbound_id.unwrap();
    for (message, text) in [(&out_id, &outbound), (&inbound_id, &inbound)] {
        let got: Value = http
            .get(format!("{base}/v1/devices/{id}/messages/{message}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["text"], text.as_str(), "read through the gateway");
    }

    // Every entry of every Redis key, and every file of the store's folder.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut everything: Vec<u8> = Vec::new();
    for key in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        everything.extend(key.as_bytes());
        if kind == "stream" {
            let entries: redis::Value = redis::cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            bytes_of(&entries, &mut everything);
        }
    }
    let holds = |needle: &str| {
        everything
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(holds(id), "control: redis holds the device id in clear");
    assert!(
        holds("message.inbound"),
        "control: redis holds the inbound event"
    );
    for needle in [&outbound, &inbound] {
        assert!(!holds(needle), "{needle} is readable in redis");
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} is readable in the store"
        );
    }
    assert!(
        !files_containing(dir.path(), id).is_empty(),
        "control: the store holds the device id"
    );
}

/// A standalone given another master key than its data folder's refuses to start,
/// saying so, instead of taking every device's credentials for corrupt and wiping
/// them; with its own key it starts, and the device is READY without a new QR.
#[tokio::test]
async fn a_wrong_master_key_is_refused_before_any_credential_is_touched() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("keyed", DEVICE_PHONE).await;
    let text = probe("out");
    let id = send_and_see_delivered(&app, "keyed", &text).await;
    app.kill9().await;
    // Another key in the environment overrides the data folder's.
    let other = "7:".to_owned() + &"A".repeat(43) + "=";
    let refused = wafleet_load::scenario::process::Standalone::start_with_env(
        Path::new(WAFLEET),
        data.path(),
        &[("WAFLEET_MASTER_KEY", &other)],
    )
    .await;
    let error = format!("{:#}", refused.expect_err("a wrong key must not start"));
    assert!(error.contains("exited"), "{error}");
    let app = Standalone::start(data.path()).await;
    app.wait_status("keyed", "READY").await;
    let message = app.json(&format!("/v1/devices/keyed/messages/{id}")).await;
    assert_eq!(message["text"], text.as_str());
}
