//! End-to-end checks of `wafleet standalone --link sim` through its HTTP API, exactly as
//! `api.md` writes it: real binary, real HTTP and SSE, a fresh data folder per test.

mod common;

use std::time::Instant;

use common::{KEY, Standalone};
use serde_json::{Value, json};

#[tokio::test]
async fn full_flow_create_pair_send_delivered() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;

    let created = app
        .post("/v1/devices", json!({"id": "shop-1", "name": "Shop one"}))
        .await;
    assert_eq!(created.status(), 201);
    let device: Value = created.json().await.unwrap();
    assert_eq!(device["status"], "STOPPED");
    assert_eq!(device["trust_level"], "newcomer");

    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let started = app.post("/v1/devices/shop-1/start", json!({})).await;
    assert_eq!(started.status(), 202);
    let mut seen = vec![events.until_status("SCAN_QR").await];
    let qr_event = events.next_of_kind("qr").await;
    seen.push(qr_event.clone());

    // The QR as PNG (a real, decodable image), SVG, and raw.
    let png = app.get("/v1/devices/shop-1/qr").await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    let reader = decoder.read_info().expect("a valid PNG");
    assert!(reader.info().width >= 100 && reader.info().width == reader.info().height);
    let svg = app.get("/v1/devices/shop-1/qr?format=svg").await;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    let raw = app.json("/v1/devices/shop-1/qr?format=raw").await;
    assert_eq!(raw["code"], qr_event.data["code"]);
    assert!(raw["expires_at"].as_str().unwrap().ends_with('Z'));

    let scanned = app
        .http
        .post(app.url("/sim/scan"))
        .json(&json!({"qr": raw["code"], "phone": "6281111111111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.status(), 200);
    let ready = events.until_status("READY").await;
    assert_eq!(ready.data["phone"], "6281111111111");
    seen.push(ready);
    let device = app.json("/v1/devices/shop-1").await;
    assert_eq!(device["status"], "READY");
    assert_eq!(device["phone"], "6281111111111");
    assert!(device["last_connected_at"].is_string());

    let sent = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": "6282222222222", "text": "halo dari wafleet"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let accepted: Value = sent.json().await.unwrap();
    assert_eq!(accepted["status"], "queued");
    let message_id = accepted["id"].as_str().unwrap().to_owned();

    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("delivered") {
        let event = events.next_of_kind("message.status").await;
        assert_eq!(event.data["message_id"], message_id.as_str());
        statuses.push(event.data["status"].as_str().unwrap().to_owned());
        seen.push(event);
    }
    assert_eq!(statuses, ["sent", "delivered"]);

    let inbox: Value = app
        .http
        .get(app.url("/sim/phones/6282222222222/inbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inbox = inbox.as_array().unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["text"], "halo dari wafleet");
    assert_eq!(inbox[0]["from_phone"], "6281111111111");
    assert_eq!(inbox[0]["message_id"], message_id.as_str());

    let message = app
        .json(&format!("/v1/devices/shop-1/messages/{message_id}"))
        .await;
    assert_eq!(message["status"], "delivered");
    assert_eq!(message["to"], "6282222222222");
    assert!(message["delivered_at"].is_string());

    let ids: Vec<u64> = seen.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    assert!(seen.iter().all(|e| e.data["device_id"] == "shop-1"));
}

#[tokio::test]
async fn sse_resume_with_last_event_id_gets_exactly_the_missed_events() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.post("/v1/devices", json!({"id": "d1", "name": "one"}))
        .await;

    // `reference` stays connected throughout; `client` drops out after the QR.
    let mut reference = app.events("/v1/events", None).await;
    let mut client = app.events("/v1/events", None).await;
    app.post("/v1/devices/d1/start", json!({})).await;
    let qr = client.next_of_kind("qr").await;
    drop(client);

    // While the client is away: pairing, READY, a message sent and delivered.
    app.scan("d1", qr.data["code"].as_str().unwrap(), "6281000000001")
        .await;
    let sent: Value = app
        .post(
            "/v1/devices/d1/messages",
            json!({"to": "6281000000002", "text": "x"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut all = Vec::new();
    loop {
        let event = reference.next().await;
        let done = event.kind == "message.status"
            && event.data["status"] == "delivered"
            && event.data["message_id"] == sent["id"];
        all.push(event);
        if done {
            break;
        }
    }
    let missed: Vec<_> = all.into_iter().filter(|e| e.id > qr.id).collect();
    assert!(
        missed.len() >= 3,
        "READY, sent, delivered at least: {missed:?}"
    );

    let mut resumed = app.events("/v1/events", Some(qr.id)).await;
    let mut again = Vec::new();
    for _ in 0..missed.len() {
        again.push(resumed.next().await);
    }
    assert_eq!(again, missed, "exactly the missed events, in order");

    // Nothing more arrives until something new happens; the next event is new.
    app.post("/v1/devices/d1/stop", json!({})).await;
    let next = resumed.next().await;
    assert!(next.id > missed.last().unwrap().id);
    assert_eq!(next.data["status"], "STOPPED");
}

#[tokio::test]
async fn kill9_then_restart_resumes_ready_devices_without_a_new_scan() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    let ids: Vec<String> = (0..20).map(|i| format!("dev-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        app.pair(id, &format!("62812000{i:05}")).await;
    }
    let stats = sim_stats(&app).await;
    assert_eq!(stats["pairings"], 20);
    app.kill9().await;

    let restarted_at = Instant::now();
    let app = Standalone::start(data.path()).await;
    for id in &ids {
        app.wait_status(id, "READY").await;
    }
    let took = restarted_at.elapsed();
    assert!(took.as_secs_f64() < 5.0, "all READY again in {took:?}");
    assert_eq!(sim_stats(&app).await["pairings"], 20, "no new pairing");
    println!("20 devices READY again {took:?} after restart");
}

#[tokio::test]
async fn lost_or_corrupt_credentials_send_only_that_device_to_scan_qr() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    for (id, phone) in [
        ("keep", "6281300000001"),
        ("corrupt", "6281300000002"),
        ("lost", "6281300000003"),
    ] {
        app.pair(id, phone).await;
    }
    app.kill9().await;

    let db = rusqlite::Connection::open(data.path().join("wafleet.db")).unwrap();
    let flipped = db
        .execute(
            "UPDATE link_state SET value = CAST(zeroblob(length(value)) AS BLOB) WHERE device_id = 'corrupt'",
            [],
        )
        .unwrap();
    assert!(flipped >= 1);
    let deleted = db
        .execute("DELETE FROM link_state WHERE device_id = 'lost'", [])
        .unwrap();
    assert!(deleted >= 1);
    drop(db);

    let app = Standalone::start(data.path()).await;
    app.wait_status("keep", "READY").await;
    app.wait_status("corrupt", "SCAN_QR").await;
    app.wait_status("lost", "SCAN_QR").await;
    let list = app.json("/v1/devices").await;
    assert_eq!(list["counts"]["READY"], 1);
    assert_eq!(list["counts"]["SCAN_QR"], 2);
    assert_eq!(list["counts"]["FAILED"], 0);
    // They pair again like new devices.
    let qr = app.json("/v1/devices/corrupt/qr?format=raw").await;
    app.scan("corrupt", qr["code"].as_str().unwrap(), "6281300000002")
        .await;
}

#[tokio::test]
async fn no_credential_byte_is_stored_in_clear() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("secret-holder", "6281400000001").await;
    app.kill9().await;

    // Recover the device's private key the way only wafleet can: with the master key.
    let master = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    let master = wafleet_node::seal::MasterKey::from_base64(1, master.trim()).unwrap();
    let sealer = wafleet_node::seal::Sealer::new(master);
    let db = rusqlite::Connection::open(data.path().join("wafleet.db")).unwrap();
    let (namespace, key, version, value): (String, String, u32, Vec<u8>) = db
        .query_row(
            "SELECT namespace, key, key_version, value FROM link_state WHERE device_id = 'secret-holder'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    drop(db);
    let blob = wafleet_node::store::SealedBlob {
        key_version: version,
        bytes: value,
    };
    let plain = sealer
        .open("secret-holder", &namespace, &key, &blob)
        .unwrap();
    let credentials: Value = serde_json::from_slice(&plain).unwrap();
    let secret: Vec<u8> = credentials["secret"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(secret.len(), 32);

    use base64::Engine as _;
    let forms: Vec<Vec<u8>> = vec![
        secret.clone(),
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(&secret)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(&secret)
            .into_bytes(),
        credentials["secret"].to_string().into_bytes(),
        plain.clone(),
    ];
    let mut files = 0;
    for entry in walk(data.path()) {
        let contents = std::fs::read(&entry).unwrap();
        files += 1;
        for form in &forms {
            assert!(
                !contents.windows(form.len()).any(|w| w == form.as_slice()),
                "{} holds the device key in clear",
                entry.display()
            );
        }
    }
    assert!(
        files >= 3,
        "searched the store, the simulator state and the keys"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn sim_stats(app: &Standalone) -> Value {
    app.http
        .get(app.url("/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn pairing_code_inbound_unlink_and_logout() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.create_and_start("pc").await;
    let code = app
        .post(
            "/v1/devices/pc/pairing-code",
            json!({"phone": "6281500000001"}),
        )
        .await;
    assert_eq!(code.status(), 200);
    let code: Value = code.json().await.unwrap();
    let code_text = code["code"].as_str().unwrap();
    assert_eq!(code_text.len(), 9, "ABCD-EFGH: {code_text}");
    let mut events = app.events("/v1/devices/pc/events", None).await;
    let entered = app
        .http
        .post(app.url("/sim/pair-code"))
        .json(&json!({"phone": "6281500000001", "code": code_text}))
        .send()
        .await
        .unwrap();
    assert_eq!(entered.status(), 200);
    events.until_status("READY").await;

    // A phone writes to the device's number.
    let wrote = app
        .http
        .post(app.url("/sim/phones/6289900000001/send"))
        .json(&json!({"to_phone": "6281500000001", "text": "apa kabar?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrote.status(), 202);
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["from"], "6289900000001");
    assert_eq!(inbound.data["text"], "apa kabar?");

    // The phone unlinks the device.
    let unlinked = app
        .http
        .post(app.url("/sim/phones/6281500000001/unlink"))
        .send()
        .await
        .unwrap();
    assert_eq!(unlinked.status(), 200);
    events.until_status("LOGGED_OUT").await;
    let device = app.json("/v1/devices/pc").await;
    assert_eq!(device["status"], "LOGGED_OUT");
    assert!(device["phone"].is_null());

    // Starting again means pairing again.
    app.post("/v1/devices/pc/start", json!({})).await;
    events.until_status("SCAN_QR").await;
    let qr = app.json("/v1/devices/pc/qr?format=raw").await;
    app.scan("pc", qr["code"].as_str().unwrap(), "6281500000001")
        .await;

    events.until_status("READY").await;
    let stats = app.json("/sim/stats").await;
    assert_eq!(
        (
            stats["links_total"].as_u64(),
            stats["links_connected"].as_u64()
        ),
        (Some(1), Some(1)),
        "{stats}"
    );

    // The operator logs it out: the phone's account no longer lists it.
    let out = app.post("/v1/devices/pc/logout", json!({})).await;
    assert_eq!(out.status(), 202);
    let out: Value = out.json().await.unwrap();
    assert_eq!(out["status"], "LOGGED_OUT");
    assert_eq!(out["status_reason"], "logged out by the operator", "{out}");
    let stats = app.json("/sim/stats").await;
    assert_eq!(
        (
            stats["links_total"].as_u64(),
            stats["links_connected"].as_u64()
        ),
        (Some(0), Some(0)),
        "the network unlinked the device: {stats}"
    );
}

#[tokio::test]
async fn idempotent_sends() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("idem", "6281600000001").await;
    let send = |text: &'static str| {
        app.http
            .post(app.url("/v1/devices/idem/messages"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "order-42")
            .json(&json!({"to": "6281600000002", "text": text}))
            .send()
    };
    let first = send("your order shipped").await.unwrap();
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = send("your order shipped").await.unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let other = send("something else").await.unwrap();
    assert_eq!(other.status(), 409);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
}

/// Every bad input gets its documented status and a JSON error body.
#[tokio::test]
async fn bad_input_gets_documented_errors() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("ready-one", "6281700000001").await;
    app.post("/v1/devices", json!({"id": "stopped-one", "name": "s"}))
        .await;

    let raw = |method: reqwest::Method, path: &str, body: Option<Vec<u8>>| {
        let mut request = app.http.request(method, app.url(path)).bearer_auth(KEY);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        request.send()
    };
    use reqwest::Method;
    let long_id = "a".repeat(65);
    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "malformed json",
            raw(Method::POST, "/v1/devices", Some(b"{\"name\": ".to_vec()))
                .await
                .unwrap(),
            400,
            "invalid_json",
        ),
        (
            "unknown field",
            app.post("/v1/devices", json!({"name": "x", "colour": "red"}))
                .await,
            422,
            "invalid_body",
        ),
        (
            "missing name",
            app.post("/v1/devices", json!({"id": "x"})).await,
            422,
            "invalid_body",
        ),
        (
            "wrong type",
            app.post("/v1/devices", json!({"name": 5})).await,
            422,
            "invalid_body",
        ),
        (
            "id over 64",
            app.post("/v1/devices", json!({"id": long_id, "name": "x"}))
                .await,
            400,
            "invalid_device_id",
        ),
        (
            "id over 64 in path",
            app.get(&format!("/v1/devices/{long_id}")).await,
            400,
            "invalid_device_id",
        ),
        (
            "bad id chars",
            app.post("/v1/devices", json!({"id": "a b", "name": "x"}))
                .await,
            400,
            "invalid_device_id",
        ),
        (
            "duplicate id",
            app.post("/v1/devices", json!({"id": "ready-one", "name": "x"}))
                .await,
            409,
            "device_exists",
        ),
        (
            "bad webhook",
            app.post("/v1/devices", json!({"name": "x", "webhook": "ftp://x"}))
                .await,
            400,
            "invalid_webhook",
        ),
        (
            "bad phone",
            app.post(
                "/v1/devices/ready-one/messages",
                json!({"to": "12-34", "text": "x"}),
            )
            .await,
            400,
            "invalid_phone",
        ),
        (
            "empty text",
            app.post(
                "/v1/devices/ready-one/messages",
                json!({"to": "6281700000002", "text": " "}),
            )
            .await,
            400,
            "invalid_text",
        ),
        (
            "unknown message field",
            app.post(
                "/v1/devices/ready-one/messages",
                json!({"to": "6281700000002", "text": "x", "media": 1}),
            )
            .await,
            422,
            "invalid_body",
        ),
        (
            "qr of a READY device",
            app.get("/v1/devices/ready-one/qr").await,
            409,
            "device_not_in_scan_qr",
        ),
        (
            "send from a stopped device",
            app.post(
                "/v1/devices/stopped-one/messages",
                json!({"to": "6281700000002", "text": "x"}),
            )
            .await,
            409,
            "device_not_ready",
        ),
        (
            "pairing code when stopped",
            app.post(
                "/v1/devices/stopped-one/pairing-code",
                json!({"phone": "6281700000002"}),
            )
            .await,
            409,
            "device_not_in_scan_qr",
        ),
        (
            "logout of a never-linked device",
            app.post("/v1/devices/stopped-one/logout", json!({})).await,
            409,
            "device_not_linked",
        ),
        (
            "unknown device",
            app.get("/v1/devices/nope").await,
            404,
            "device_not_found",
        ),
        (
            "send from unknown device",
            app.post(
                "/v1/devices/nope/messages",
                json!({"to": "6281700000002", "text": "x"}),
            )
            .await,
            404,
            "device_not_found",
        ),
        (
            "unknown message",
            app.get("/v1/devices/ready-one/messages/nope").await,
            404,
            "message_not_found",
        ),
        (
            "events of unknown device",
            app.get("/v1/devices/nope/events").await,
            404,
            "device_not_found",
        ),
        (
            "bad status filter",
            app.get("/v1/devices?status=HAPPY").await,
            400,
            "invalid_status",
        ),
        (
            "bad limit",
            app.get("/v1/devices?limit=0").await,
            400,
            "invalid_limit",
        ),
        (
            "bad qr format",
            app.get("/v1/devices/ready-one/qr?format=gif").await,
            400,
            "invalid_format",
        ),
        (
            "bad last-event-id",
            app.http
                .get(app.url("/v1/events"))
                .bearer_auth(KEY)
                .header("Last-Event-ID", "abc")
                .send()
                .await
                .unwrap(),
            400,
            "invalid_last_event_id",
        ),
        (
            "no key",
            app.http.get(app.url("/v1/devices")).send().await.unwrap(),
            401,
            "unauthorized",
        ),
        (
            "wrong key",
            app.http
                .get(app.url("/v1/devices"))
                .bearer_auth("nope")
                .send()
                .await
                .unwrap(),
            401,
            "unauthorized",
        ),
        (
            "unknown route",
            app.get("/v2/nothing").await,
            404,
            "route_not_found",
        ),
        (
            "wrong method",
            raw(Method::PATCH, "/v1/devices", None).await.unwrap(),
            405,
            "method_not_allowed",
        ),
    ];
    for (what, response, status, code) in cases {
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}");
        assert!(body["error"]["retryable"].is_boolean(), "{what}");
    }
    // A 10 MB body: answered 413 with the JSON error while the client is still sending.
    let (status, body) = post_oversized(&app, "/v1/devices", 10 * 1024 * 1024).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");

    // The process is still healthy after all of it.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn operational_routes_and_compatibility_routes() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} needs no key");
    }
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/devices",
        "/v1/devices/{id}/messages",
        "/v1/events",
        "/whatsapp/sessions",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lists {path}");
    }

    let created = app
        .post("/whatsapp/sessions", json!({"sessionId": "legacy"}))
        .await;
    assert_eq!(created.status(), 201);
    app.wait_status("legacy", "SCAN_QR").await;
    let qr = app.get("/whatsapp/sessions/legacy/qr").await;
    assert_eq!(qr.status(), 200);
    assert_eq!(qr.headers()["content-type"], "image/png");
    let sessions = app.json("/whatsapp/sessions").await;
    assert_eq!(sessions["sessions"][0]["id"], "legacy");
    let restarted = app
        .post("/whatsapp/sessions/legacy/restart", json!({}))
        .await;
    assert_eq!(restarted.status(), 202);
    let deleted = app
        .http
        .delete(app.url("/whatsapp/sessions/legacy"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(app.get("/v1/devices/legacy").await.status(), 404);

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "wafleet_node_devices",
        "wafleet_gateway_request_duration_seconds",
        "wafleet_messages_total",
    ] {
        assert!(metrics.contains(name), "metrics expose {name}");
    }
}

/// POSTs a body of `len` bytes over a raw connection, reading the answer while writing
/// (the server may answer and close before the body is through, as it should).
async fn post_oversized(app: &Standalone, path: &str, len: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..len / chunk.len() {
            write.write_all(&chunk).await?;
        }
        std::io::Result::Ok(())
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(common::WAIT, read.read_to_end(&mut response)).await;
    writer.abort();
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json_start = body.find('{').unwrap_or(0);
    let json_end = body.rfind('}').map_or(body.len(), |i| i + 1);
    (
        status,
        serde_json::from_str(&body[json_start..json_end]).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn read_receipts_and_a_ban_reach_the_api() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("rb", "6281900000001").await;
    let mut events = app.events("/v1/devices/rb/events", None).await;

    let first: Value = app
        .post(
            "/v1/devices/rb/messages",
            json!({"to": "6281900000002", "text": "read me"}),
        )
        .await
        .json()
        .await
        .unwrap();
    wait_message_status(&mut events, &first["id"], "delivered").await;
    let read = app
        .http
        .post(app.url("/sim/phones/6281900000002/read"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    wait_message_status(&mut events, &first["id"], "read").await;
    let message = app
        .json(&format!(
            "/v1/devices/rb/messages/{}",
            first["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(message["status"], "read");
    assert!(message["read_at"].is_string());

    // The device was made VERIFIED by an admin; then the number is banned: it is demoted
    // to NEWCOMER, its sending pauses, and the API, SSE and metrics say so.
    let verified = app
        .http
        .put(app.url("/v1/devices/rb/trust-level"))
        .bearer_auth(common::KEY)
        .json(&json!({"level": "verified"}))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(app.json("/v1/devices/rb").await["trust_level"], "verified");
    let banned = app
        .http
        .post(app.url("/sim/phones/6281900000001/ban"))
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
    assert_eq!(event.data["trust_level"], "newcomer");
    assert_eq!(event.data["previous_trust_level"], "verified");
    let paused_until = event.data["paused_until_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        paused_until > now + 590_000 && paused_until <= now + 600_000,
        "paused until {paused_until}, now {now}"
    );
    assert_eq!(app.json("/v1/devices/rb").await["trust_level"], "newcomer");
    let limits = app.json("/v1/devices/rb/limits").await;
    assert_eq!(limits["trust_level"], "newcomer");
    assert!(limits["paused_until"].is_string(), "{limits}");

    let refused = app
        .post(
            "/v1/devices/rb/messages",
            json!({"to": "6281900000002", "text": "blocked"}),
        )
        .await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (590..=600).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "sending_paused");

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bans = metrics
        .lines()
        .find(|line| line.starts_with("wafleet_rate_limit_bans_total"))
        .unwrap_or_default();
    assert!(bans.ends_with(" 1"), "bans metric: {bans:?}");
    let refused_line = metrics
        .lines()
        .find(|line| {
            line.starts_with("wafleet_rate_limit_decisions_total")
                && line.contains("decision=\"refused\"")
                && line.contains("level=\"newcomer\"")
        })
        .unwrap_or_default();
    assert!(
        refused_line.ends_with(" 1"),
        "refused metric: {refused_line:?}"
    );
}

async fn wait_message_status(events: &mut common::Sse, id: &Value, status: &str) -> common::Event {
    loop {
        let event = events.next_of_kind("message.status").await;
        if &event.data["message_id"] == id && event.data["status"] == status {
            return event;
        }
    }
}

/// What `/metrics` counts equals what the store holds after a run: messages accepted
/// (each once, idempotent repeats counted apart), sent and delivered, and devices by
/// status. Sends go concurrently from many tasks, as in a load run.
#[tokio::test]
async fn counters_equal_what_the_store_holds_after_a_run() {
    const DEVICES: usize = 4;
    const SENDS: usize = 240;
    const REPEATS: usize = 20;
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    let ids: Vec<String> = (0..DEVICES).map(|n| format!("count-{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        app.pair(id, &format!("62817000000{n:02}")).await;
    }
    let mut events = app.events("/v1/events", Some(0)).await;

    let app = std::sync::Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    let mut accepted = std::collections::HashSet::new();
    for n in 0..SENDS + REPEATS {
        let app = app.clone();
        let device = ids[n % DEVICES].clone();
        tasks.spawn(async move {
            // The last REPEATS sends repeat earlier ones' keys: replays, not new messages.
            let key = format!("key-{}", n % SENDS);
            let sent = app
                .http
                .post(app.url(&format!("/v1/devices/{device}/messages")))
                .bearer_auth(KEY)
                .header("Idempotency-Key", key)
                .json(&json!({"to": "6281799999999", "text": format!("m{}", n % SENDS)}))
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), 202);
            let replayed = sent.headers().contains_key("idempotent-replayed");
            let body: Value = sent.json().await.unwrap();
            (device, body["id"].as_str().unwrap().to_owned(), replayed)
        });
        if tasks.len() >= 16 {
            accepted.insert(tasks.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(done) = tasks.join_next().await {
        accepted.insert(done.unwrap());
    }
    // Every message delivered (the stream says so once per message).
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < SENDS {
        let event = events.next_of_kind("message.status").await;
        if event.data["status"] == "delivered" {
            delivered.insert(event.data["message_id"].as_str().unwrap().to_owned());
        }
    }

    // The store: each message, as the API reads it.
    let mut stored_delivered = 0;
    let distinct: std::collections::HashSet<(String, String)> = accepted
        .iter()
        .map(|(device, id, _)| (device.clone(), id.clone()))
        .collect();
    for (device, id) in &distinct {
        let message = app
            .json(&format!("/v1/devices/{device}/messages/{id}"))
            .await;
        if message["status"] == "delivered" {
            stored_delivered += 1;
        }
    }
    assert_eq!(distinct.len(), SENDS);
    assert_eq!(stored_delivered, SENDS);

    // The census behind the device gauges may be a second old.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let counter = |outcome: &str| {
        metric(
            &metrics,
            &format!("wafleet_messages_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(counter("accepted"), SENDS as f64, "accepted");
    assert_eq!(counter("duplicate"), REPEATS as f64, "duplicate");
    assert_eq!(counter("sent"), SENDS as f64, "sent");
    assert_eq!(counter("delivered"), SENDS as f64, "delivered");
    assert_eq!(
        metric(&metrics, "wafleet_node_devices{status=\"READY\"}"),
        DEVICES as f64,
        "devices READY"
    );
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// `--whatsapp-version` (or `WAFLEET_WHATSAPP_VERSION`) pins the real link's WhatsApp Web
/// version: a good one starts the process, a bad one stops it at once with the form
/// expected, before anything is opened.
#[tokio::test]
async fn the_whatsapp_version_is_pinned_by_flag_or_environment_and_checked_at_start() {
    use wafleet_load::scenario::process;
    let wafleet = std::path::Path::new(env!("CARGO_BIN_EXE_wafleet"));
    // Nothing listens there: the devices (none here) would never get through.
    let link = "whatsapp=ws://127.0.0.1:9/ws/chat";

    let data = tempfile::tempdir().unwrap();
    let app = process::Standalone::launch_with_env(
        wafleet,
        data.path(),
        link,
        &[("WAFLEET_WHATSAPP_VERSION", "2.3000.1023456789")],
    )
    .await
    .expect("a pinned version starts");
    drop(app);

    for (args, env) in [
        (&["--whatsapp-version", "2.3000"][..], None),
        (&[][..], Some("latest")),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(wafleet);
        command
            .args(["standalone", "--listen", "127.0.0.1:0", "--link", link])
            .arg("--data")
            .arg(data.path())
            .args(args)
            .env_remove("WAFLEET_WHATSAPP_VERSION");
        if let Some(value) = env {
            command.env("WAFLEET_WHATSAPP_VERSION", value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} {env:?} started");
        assert!(
            stderr.contains("--whatsapp-version") && stderr.contains("like 2.3000.1023456789"),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(
            std::fs::read_dir(data.path()).unwrap().next().is_none(),
            "nothing is created before the flags are checked"
        );
    }
}
