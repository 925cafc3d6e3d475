//! The simulated WhatsApp network, driven the way its users drive it: devices over
//! in-process connections and real WebSockets, phones through the HTTP control API.

#[path = "sim/device.rs"]
mod device;

use std::{net::SocketAddr, time::Duration};

use device::{Device, Transport};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wafleet_protocol::sim::{
    CheckNumbers, Inbound, MarkRead, MediaInfo, Receipt, client_frame::Kind as Out,
    receipt::Status, refused::Reason, server_frame::Kind as In,
};
use wafleet_sim::{Network, SentStatus, SimConfig, SimError, serve};

const PHONE_A: &str = "6281200000001";
const PHONE_B: &str = "6281200000002";
const PHONE_C: &str = "6281200000003";

/// A network served on a free port, and an HTTP client for its control API.
struct Sim {
    addr: SocketAddr,
    network: Network,
    http: reqwest::Client,
}

impl Sim {
    async fn start() -> Sim {
        Sim::start_with(SimConfig::default()).await
    }

    async fn start_with(config: SimConfig) -> Sim {
        let network = Network::open(config).expect("the network opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            network.clone(),
            edge(),
            std::future::pending(),
        ));
        Sim {
            addr,
            network,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn dial(&self, id: &str) -> Device {
        Device::new(id, Transport::dial(self.addr).await)
    }
}

/// The simulator's listener with the default `[http]` rules.
fn edge() -> wafleet_http_edge::Edge {
    wafleet_http_edge::Edge::new("sim", wafleet_http_edge::HttpSection::default())
}

fn memory_network() -> Network {
    Network::open(SimConfig::default()).expect("the network opens")
}

fn receipt(frame: In) -> Receipt {
    match frame {
        In::Receipt(receipt) => receipt,
        other => panic!("expected a receipt, got {other:?}"),
    }
}

fn inbound(frame: In) -> Inbound {
    match frame {
        In::Inbound(inbound) => inbound,
        other => panic!("expected an inbound message, got {other:?}"),
    }
}

fn refusal(frame: In) -> Reason {
    match frame {
        In::Refused(refused) => refused.reason(),
        other => panic!("expected Refused, got {other:?}"),
    }
}

/// The statuses of the next `n` receipts, all for `message_id`.
async fn statuses(device: &mut Device, message_id: &str, n: usize) -> Vec<Status> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let receipt = receipt(device.next().await);
        assert_eq!(receipt.message_id, message_id);
        assert!(receipt.at_ms > 0);
        seen.push(receipt.status());
    }
    seen
}

fn error_code(body: &Value) -> &str {
    assert_eq!(body["error"]["retryable"], json!(false), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"]["code"].as_str().unwrap_or_default()
}

// ---- pairing ---------------------------------------------------------------------

#[tokio::test]
async fn qr_scan_pairs_a_device_over_the_websocket() {
    let sim = Sim::start().await;
    let mut device = sim.dial("dev-qr").await;
    let qr = device.start_pairing().await;
    assert!(qr.code.starts_with("2@"));
    assert!(qr.expires_at_ms > 0);

    let (status, body) = sim
        .post("/sim/scan", json!({ "qr": qr.code, "phone": PHONE_A }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], "dev-qr");
    assert_eq!(body["phone"], PHONE_A);
    device.expect_paired().await;
    assert_eq!(body["link_id"].as_str(), device.link_id.as_deref());
    assert_eq!(device.phone.as_deref(), Some(PHONE_A));

    // The code is used up.
    let (status, body) = sim
        .post("/sim/scan", json!({ "qr": qr.code, "phone": PHONE_A }))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::GONE, "qr_expired")
    );

    let (_, stats) = sim.get("/sim/stats").await;
    assert_eq!(stats["pairings"], 1);
    assert_eq!(stats["links_connected"], 1);
    assert_eq!(stats["links_total"], 1);
    assert_eq!(stats["qr_codes_issued"], 1);
}

#[tokio::test]
async fn pairing_code_pairs_a_device() {
    let sim = Sim::start().await;
    let mut device = Device::new("dev-code", Transport::attach(&sim.network));
    device.start_pairing().await;
    device.request_pair_code(PHONE_A).await;
    let code = match device.next().await {
        In::PairCode(code) => code,
        other => panic!("expected a pairing code, got {other:?}"),
    };
    assert_eq!(code.code.len(), 9);
    assert_eq!(code.code.as_bytes()[4], b'-');
    assert!(!code.code.contains(['0', 'O', '1', 'I']));

    // Another phone cannot use it.
    let (status, body) = sim
        .post(
            "/sim/pair-code",
            json!({ "phone": PHONE_B, "code": code.code }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "pair_code_not_found")
    );

    // Without the dash, lower case.
    let typed = code.code.replace('-', "").to_lowercase();
    let (status, body) = sim
        .post("/sim/pair-code", json!({ "phone": PHONE_A, "code": typed }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], "dev-code");
    device.expect_paired().await;
    assert_eq!(body["link_id"].as_str(), device.link_id.as_deref());
    assert_eq!(sim.network.stats().pair_codes_issued, 1);

    let (status, body) = sim
        .post(
            "/sim/pair-code",
            json!({ "phone": PHONE_A, "code": code.code }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::GONE, "pair_code_expired")
    );
}

#[tokio::test]
async fn a_phone_may_link_several_devices() {
    let network = memory_network();
    let first = Device::paired(&network, "dev-1", PHONE_A).await;
    let second = Device::paired(&network, "dev-2", PHONE_A).await;
    assert_ne!(first.link_id, second.link_id);
    assert_eq!(network.stats().links_total, 2);
    assert_eq!(network.unlink(PHONE_A).unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn qr_codes_rotate_then_time_out() {
    let config = SimConfig {
        qr_codes: 3,
        ..SimConfig::default()
    };
    let network = Network::open(config).unwrap();
    let mut device = Device::new("dev-slow", Transport::attach(&network));
    let started = tokio::time::Instant::now();
    let mut codes = vec![device.start_pairing().await.code];
    for _ in 1..3 {
        match device.next().await {
            In::Qr(qr) => codes.push(qr.code),
            other => panic!("expected the next QR code, got {other:?}"),
        }
        // A replaced code can no longer be scanned.
        let stale = &codes[codes.len() - 2];
        assert!(matches!(
            network.scan(stale, PHONE_A),
            Err(SimError::QrExpired)
        ));
    }
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 3, "every QR code is new");

    assert_eq!(refusal(device.next().await), Reason::QrTimeout);
    device.expect_closed().await;
    assert_eq!(started.elapsed(), Duration::from_secs(90));
    let stats = network.stats();
    assert_eq!(
        (
            stats.qr_codes_issued,
            stats.handshakes_refused,
            stats.pairings
        ),
        (3, 1, 0)
    );
    assert!(matches!(
        network.scan(&codes[0], PHONE_A),
        Err(SimError::QrExpired)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_pairing_code_outlives_the_last_qr_code() {
    let config = SimConfig {
        qr_codes: 1,
        ..SimConfig::default()
    };
    let network = Network::open(config).unwrap();
    let mut device = Device::new("dev-typing", Transport::attach(&network));
    device.start_pairing().await;
    device.request_pair_code(PHONE_A).await;
    let In::PairCode(code) = device.next().await else {
        panic!("expected a pairing code");
    };
    // The only QR code expired long ago; the pairing code (180 s) still works.
    tokio::time::advance(Duration::from_secs(100)).await;
    network.enter_pair_code(PHONE_A, &code.code).unwrap();
    device.expect_paired().await;
}

// ---- resume ----------------------------------------------------------------------

#[tokio::test]
async fn a_paired_device_resumes_over_the_websocket_without_a_new_pairing() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-resume", PHONE_A).await;
    device.reconnect(Transport::dial(sim.addr).await).await;
    assert_eq!(device.resume_ok().await, PHONE_A);
    let (_, stats) = sim.get("/sim/stats").await;
    assert_eq!(stats["pairings"], 1);
    assert_eq!(stats["links_connected"], 1);
    assert_eq!(stats["handshakes_refused"], 0);
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_bad_proof() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-forgetful", PHONE_A).await;
    device.reconnect(Transport::dial(sim.addr).await).await;
    device.identity = x25519_dalek::StaticSecret::random(); // credentials lost
    assert_eq!(refusal(device.resume().await), Reason::BadProof);
    device.expect_closed().await;
    assert_eq!(sim.network.stats().handshakes_refused, 1);
}

#[tokio::test]
async fn an_unknown_link_is_refused() {
    let sim = Sim::start().await;
    let mut device = sim.dial("dev-stranger").await;
    device.link_id = Some("0123456789abcdef0123456789abcdef".into());
    assert_eq!(refusal(device.resume().await), Reason::UnknownLink);
    device.expect_closed().await;
}

#[tokio::test]
async fn unlink_logs_out_the_connected_device_and_later_resumes() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-unlinked", PHONE_A).await;

    let (status, body) = sim
        .post(&format!("/sim/phones/{PHONE_A}/unlink"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "unlinked": 1 }));
    assert!(matches!(device.next().await, In::LoggedOut(_)));
    device.expect_closed().await;

    device.reconnect(Transport::dial(sim.addr).await).await;
    assert_eq!(refusal(device.resume().await), Reason::LoggedOut);
    device.expect_closed().await;

    let (status, body) = sim
        .post(&format!("/sim/phones/{PHONE_A}/unlink"), json!({}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_linked_device")
    );
    let stats = sim.network.stats();
    assert_eq!(
        (stats.links_total, stats.links_connected, stats.pairings),
        (0, 0, 1)
    );
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    let network = memory_network();
    let mut first = Device::paired(&network, "dev-twin", PHONE_A).await;
    let mut second = Device::new("dev-twin", Transport::attach(&network));
    second.identity = first.identity.clone();
    second.link_id = first.link_id.clone();
    assert_eq!(second.resume_ok().await, PHONE_A);

    assert!(matches!(first.next().await, In::Replaced(_)));
    first.expect_closed().await;
    let stats = network.stats();
    assert_eq!((stats.connections_replaced, stats.links_connected), (1, 1));

    // The new connection works.
    second.send_text("m-after", PHONE_B, "still here").await;
    assert_eq!(
        statuses(&mut second, "m-after", 2).await,
        [Status::Sent, Status::Delivered]
    );
}

#[tokio::test]
async fn frames_out_of_order_are_refused() {
    let network = memory_network();
    let mut early = Device::new("dev-early", Transport::attach(&network));
    early.send_text("m1", PHONE_B, "too soon").await;
    assert_eq!(refusal(early.next().await), Reason::Protocol);
    early.expect_closed().await;

    let mut twice = Device::new("dev-twice", Transport::attach(&network));
    twice.start_pairing().await;
    twice.send(Out::Proof(Default::default())).await;
    assert_eq!(refusal(twice.next().await), Reason::Protocol);
    twice.expect_closed().await;

    let mut empty = Device::new("dev-empty", Transport::attach(&network));
    empty.send(Out::Hello(Default::default())).await; // no identity key
    assert_eq!(refusal(empty.next().await), Reason::Protocol);
    assert_eq!(network.stats().handshakes_refused, 3);
}

#[tokio::test]
async fn malformed_bytes_on_the_websocket_close_the_connection() {
    let sim = Sim::start().await;
    let mut device = sim.dial("dev-garbage").await;
    device.transport.send_raw(&[0xff, 0xff, 0xff, 0xff]).await;
    device.expect_closed().await;
    // The sim still serves others.
    let mut other = sim.dial("dev-fine").await;
    other.start_pairing().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_refused_after_the_handshake_limit() {
    let network = memory_network();
    let mut device = Device::new("dev-mute", Transport::attach(&network));
    let started = tokio::time::Instant::now();
    assert_eq!(refusal(device.next().await), Reason::Protocol);
    device.expect_closed().await;
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(network.stats().connections_open, 0);
}

#[tokio::test]
async fn shutting_the_server_down_closes_its_sockets() {
    let network = memory_network();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, network.clone(), edge(), async move {
        let _ = stopped.await;
    }));
    let mut device = Device::new("dev-evicted", Transport::dial(addr).await);
    device.start_pairing().await;

    stop.send(()).unwrap();
    device.expect_closed().await;
    server.await.unwrap().expect("serve ends cleanly");
}

// ---- messages --------------------------------------------------------------------

#[tokio::test]
async fn a_send_reaches_the_inbox_with_sent_then_delivered() {
    let sim = Sim::start().await;
    let mut device = sim.dial("dev-sender").await;
    let qr = device.start_pairing().await;
    sim.network.scan(&qr.code, PHONE_A).unwrap();
    device.expect_paired().await;

    device.send_text("m-1", PHONE_B, "hello phone").await;
    assert_eq!(
        statuses(&mut device, "m-1", 2).await,
        [Status::Sent, Status::Delivered]
    );
    device.send_text("m-2", PHONE_B, "second").await;
    assert_eq!(
        statuses(&mut device, "m-2", 2).await,
        [Status::Sent, Status::Delivered]
    );

    let (status, inbox) = sim.get(&format!("/sim/phones/{PHONE_B}/inbox")).await;
    assert_eq!(status, StatusCode::OK);
    let inbox = inbox.as_array().expect("an array").clone();
    assert_eq!(inbox.len(), 2);
    assert_eq!(inbox[0]["from_phone"], PHONE_A);
    assert_eq!(inbox[0]["text"], "hello phone");
    assert_eq!(inbox[0]["message_id"], "m-1");
    assert_eq!(inbox[0]["status"], "delivered");
    assert_eq!(inbox[1]["message_id"], "m-2");
    let at = inbox[0]["at"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(at).is_ok() && at.len() == 24,
        "{at}"
    );

    let (_, empty) = sim.get(&format!("/sim/phones/{PHONE_C}/inbox")).await;
    assert_eq!(empty, json!([]));
    assert_eq!(sim.network.stats().messages_delivered, 2);
}

#[tokio::test]
async fn media_goes_through_the_media_servers_both_ways() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-media", PHONE_A).await;

    // The device uploads, then sends the handle: the inbox shows the file's SHA-256.
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let uploaded = sim
        .http
        .post(sim.url("/sim/media"))
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let blob: Value = uploaded.json().await.unwrap();
    assert_eq!(blob["size"], 300_000);
    let media = MediaInfo {
        r#type: "image".into(),
        mime: "image/jpeg".into(),
        handle: blob["handle"].as_str().unwrap().to_owned(),
        size: 300_000,
        sha256: blob["sha256"].as_str().unwrap().to_owned(),
        filename: None,
    };
    device
        .send_media("m-photo", PHONE_B, "look", Some(media.clone()))
        .await;
    assert_eq!(
        statuses(&mut device, "m-photo", 2).await,
        [Status::Sent, Status::Delivered]
    );
    let (_, inbox) = sim.get(&format!("/sim/phones/{PHONE_B}/inbox")).await;
    assert_eq!(inbox[0]["text"], "look");
    assert_eq!(inbox[0]["media"]["sha256"], blob["sha256"]);
    assert_eq!(inbox[0]["media"]["type"], "image");
    assert_eq!(inbox[0]["media"]["caption"], "look");

    // A handle that does not hold what the frame says fails the send.
    let wrong = MediaInfo {
        size: 1,
        ..media.clone()
    };
    device.send_media("m-wrong", PHONE_B, "", Some(wrong)).await;
    let failed = receipt(device.next().await);
    assert_eq!(
        (failed.status(), failed.error.as_str()),
        (Status::Failed, "media_mismatch")
    );
    let missing = MediaInfo {
        handle: "0".repeat(32),
        ..media
    };
    device
        .send_media("m-none", PHONE_B, "", Some(missing))
        .await;
    assert_eq!(receipt(device.next().await).error, "media_not_found");

    // A phone sends a file: the device gets its handle and downloads the same bytes.
    let pdf = b"%PDF-1.4 faktur".to_vec();
    let (status, _) = sim
        .post(
            &format!("/sim/phones/{PHONE_B}/send"),
            json!({"to_phone": PHONE_A, "media": {"type": "document", "mime": "application/pdf",
                "data_base64": "JVBERi0xLjQgZmFrdHVy", "filename": "faktur.pdf", "caption": "tagihan"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = inbound(device.next().await);
    assert_eq!(got.text, "tagihan");
    let media = got.media.expect("the inbound carries media");
    assert_eq!(
        (media.r#type.as_str(), media.mime.as_str(), media.size),
        ("document", "application/pdf", pdf.len() as u64)
    );
    assert_eq!(media.filename.as_deref(), Some("faktur.pdf"));
    let bytes = sim
        .http
        .get(sim.url(&format!("/sim/media/{}", media.handle)))
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.headers()["content-type"], "application/pdf");
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), pdf.as_slice());
    let (status, body) = sim.get(&format!("/sim/media/{}", "f".repeat(32))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "media_not_found")
    );
}

#[tokio::test]
async fn a_resent_message_id_is_delivered_once_and_receipted_again() {
    let network = memory_network();
    let mut device = Device::paired(&network, "dev-crashy", PHONE_A).await;
    device.send_text("m-dup", PHONE_B, "once").await;
    assert_eq!(
        statuses(&mut device, "m-dup", 2).await,
        [Status::Sent, Status::Delivered]
    );
    device.send_text("m-dup", PHONE_B, "once").await;
    assert_eq!(
        statuses(&mut device, "m-dup", 2).await,
        [Status::Sent, Status::Delivered]
    );
    device.ack_receipt("m-dup", Status::Delivered).await;

    // Also after a crash and a resume (the stored receipt is not replayed).
    device.reconnect(Transport::attach(&network)).await;
    device.resume_ok().await;
    device.send_text("m-dup", PHONE_B, "once").await;
    assert_eq!(
        statuses(&mut device, "m-dup", 2).await,
        [Status::Sent, Status::Delivered]
    );

    assert_eq!(network.inbox(PHONE_B).unwrap().len(), 1);
    assert_eq!(network.stats().messages_delivered, 1);
}

#[tokio::test]
async fn receipts_a_device_did_not_store_are_replayed_when_it_resumes() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-mover", PHONE_A).await;
    // Sent and hung up before the device stored its receipts (a handoff, a crash).
    device.send_text("m-lost", PHONE_B, "across a move").await;
    device.send_text("m-kept", PHONE_B, "stored").await;
    statuses(&mut device, "m-lost", 2).await;
    statuses(&mut device, "m-kept", 2).await;
    device.ack_receipt("m-kept", Status::Delivered).await;
    // The phone reads while the device is away.
    device.hang_up().await;
    let (_, body) = sim
        .post(&format!("/sim/phones/{PHONE_B}/read"), json!({}))
        .await;
    assert_eq!(body, json!({ "read": 2 }));

    device.reconnect(Transport::attach(&sim.network)).await;
    device.resume_ok().await;
    // The latest receipt of each message, once: the unstored one and the new READs.
    let mut replayed: Vec<(String, Status)> = Vec::new();
    for _ in 0..2 {
        let receipt = receipt(device.next().await);
        replayed.push((receipt.message_id.clone(), receipt.status()));
    }
    replayed.sort();
    assert_eq!(
        replayed,
        [
            ("m-kept".to_owned(), Status::Read),
            ("m-lost".to_owned(), Status::Read)
        ]
    );
    device.ack_receipt("m-kept", Status::Read).await;
    device.ack_receipt("m-lost", Status::Read).await;

    // Stored now: the next resume replays nothing, and new traffic flows as usual.
    device.reconnect(Transport::attach(&sim.network)).await;
    device.resume_ok().await;
    device.send_text("m-new", PHONE_B, "after").await;
    assert_eq!(
        statuses(&mut device, "m-new", 2).await,
        [Status::Sent, Status::Delivered]
    );
}

#[tokio::test]
async fn reading_the_inbox_sends_read_receipts() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-reader", PHONE_A).await;
    device.send_text("m-read", PHONE_B, "read me").await;
    statuses(&mut device, "m-read", 2).await;

    let (status, body) = sim
        .post(&format!("/sim/phones/{PHONE_B}/read"), json!({}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "read": 1 })));
    assert_eq!(statuses(&mut device, "m-read", 1).await, [Status::Read]);
    let (_, inbox) = sim.get(&format!("/sim/phones/{PHONE_B}/inbox")).await;
    assert_eq!(inbox[0]["status"], "read");

    // Nothing new to read; a resend learns the whole story.
    let (_, body) = sim
        .post(&format!("/sim/phones/{PHONE_B}/read"), json!({}))
        .await;
    assert_eq!(body, json!({ "read": 0 }));
    device.send_text("m-read", PHONE_B, "read me").await;
    let replay = statuses(&mut device, "m-read", 3).await;
    assert_eq!(replay, [Status::Sent, Status::Delivered, Status::Read]);
    assert_eq!(sim.network.stats().messages_read, 1);
}

#[tokio::test]
async fn a_banned_number_cannot_send() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-spammer", PHONE_A).await;

    let response = sim
        .http
        .post(sim.url(&format!("/sim/phones/{PHONE_A}/ban")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["phone"], PHONE_A);
    let until = humantime::parse_rfc3339(body["until"].as_str().unwrap()).unwrap();
    let hour = until.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        hour > Duration::from_secs(3500) && hour <= Duration::from_secs(3600),
        "{hour:?}"
    );

    match device.next().await {
        In::Banned(banned) => assert!(banned.until_ms > 0),
        other => panic!("expected Banned, got {other:?}"),
    }
    device.send_text("m-banned", PHONE_B, "buy now").await;
    let failed = receipt(device.next().await);
    assert_eq!(
        (failed.status(), failed.error.as_str()),
        (Status::Failed, "banned")
    );
    device.ack_receipt("m-banned", Status::Failed).await;
    assert!(sim.network.inbox(PHONE_B).unwrap().is_empty());

    // A resume during the ban is told again, and so is a new device of the number.
    device.reconnect(Transport::attach(&sim.network)).await;
    device.resume_ok().await;
    assert!(matches!(device.next().await, In::Banned(_)));
    let mut newcomer = Device::paired(&sim.network, "dev-newcomer", PHONE_A).await;
    assert!(matches!(newcomer.next().await, In::Banned(_)));

    // Zero seconds lifts the ban; the failed message may be retried.
    let (status, _) = sim
        .post(
            &format!("/sim/phones/{PHONE_A}/ban"),
            json!({ "seconds": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    device.send_text("m-banned", PHONE_B, "buy now").await;
    assert_eq!(
        statuses(&mut device, "m-banned", 2).await,
        [Status::Sent, Status::Delivered]
    );
    assert_eq!(sim.network.stats().messages_failed, 1);
}

#[tokio::test]
async fn an_invalid_recipient_fails_the_send() {
    let network = memory_network();
    let mut device = Device::paired(&network, "dev-typo", PHONE_A).await;
    device.send_text("m-typo", "+62 812", "hi").await;
    let failed = receipt(device.next().await);
    assert_eq!(
        (failed.status(), failed.error.as_str()),
        (Status::Failed, "invalid_phone")
    );
}

#[tokio::test]
async fn inbound_messages_are_redelivered_until_acked() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-inbound", PHONE_A).await;

    let path = format!("/sim/phones/{PHONE_B}/send");
    let (status, body) = sim
        .post(&path, json!({ "to_phone": PHONE_A, "text": "hi device" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message_id = body["message_id"].as_str().unwrap().to_owned();
    let first = inbound(device.next().await);
    assert_eq!(first.message_id, message_id);
    assert_eq!(
        (first.from_phone.as_str(), first.text.as_str()),
        (PHONE_B, "hi device")
    );
    assert!(first.at_ms > 0);

    // Not acked: it comes again right after the next Welcome.
    device.reconnect(Transport::dial(sim.addr).await).await;
    device.resume_ok().await;
    assert_eq!(inbound(device.next().await), first);
    device.ack(&message_id).await;

    // Acked: the next resume brings nothing before the receipts of a new send.
    device.reconnect(Transport::attach(&sim.network)).await;
    device.resume_ok().await;
    device.send_text("m-probe", PHONE_B, "probe").await;
    assert_eq!(receipt(device.next().await).status(), Status::Sent);

    let (status, body) = sim
        .post(&path, json!({ "to_phone": PHONE_C, "text": "anyone?" }))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_linked_device")
    );
    let stats = sim.network.stats();
    assert_eq!((stats.inbound_sent, stats.inbound_acked), (1, 1));
}

#[tokio::test]
async fn an_inbound_message_reaches_every_linked_device_of_the_number() {
    let network = memory_network();
    let mut first = Device::paired(&network, "dev-phone-1", PHONE_A).await;
    let mut second = Device::paired(&network, "dev-phone-2", PHONE_A).await;
    let message_id = network.send_from_phone(PHONE_B, PHONE_A, "to all").unwrap();
    assert_eq!(inbound(first.next().await).message_id, message_id);
    assert_eq!(inbound(second.next().await).message_id, message_id);
    assert_eq!(network.stats().inbound_sent, 2);
}

// ---- number checks, and what a phone sent ------------------------------------------

/// Asks which of `phones` are on WhatsApp and waits for the answer: `(phone,
/// on_whatsapp, jid)` each. The connection handles frames in order, so the answer also
/// means every frame sent before it was handled.
async fn check_numbers(device: &mut Device, phones: &[&str]) -> Vec<(String, bool, String)> {
    let request_id = next_request_id();
    let check = CheckNumbers {
        request_id,
        phones: phones.iter().map(|p| p.to_string()).collect(),
    };
    device.send(Out::CheckNumbers(check)).await;
    match device.next().await {
        In::NumberChecks(answer) => {
            assert_eq!(answer.request_id, request_id);
            answer
                .results
                .into_iter()
                .map(|r| (r.phone, r.on_whatsapp, r.jid))
                .collect()
        }
        other => panic!("expected NumberChecks, got {other:?}"),
    }
}

fn next_request_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn mark_read(device: &mut Device, peer_phone: &str, ids: &[&str]) {
    let read = MarkRead {
        peer_phone: peer_phone.to_owned(),
        message_ids: ids.iter().map(|id| id.to_string()).collect(),
        group_id: None,
    };
    device.send(Out::MarkRead(read)).await;
}

/// The statuses of a phone's sent list, oldest first.
async fn sent_statuses(sim: &Sim, phone: &str) -> Vec<String> {
    let (status, sent) = sim.get(&format!("/sim/phones/{phone}/sent")).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    sent.as_array()
        .expect("a list")
        .iter()
        .map(|m| m["status"].as_str().expect("a status").to_owned())
        .collect()
}

#[tokio::test]
async fn number_checks_answer_in_order_and_absent_numbers_are_not_on_whatsapp() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-checker", PHONE_A).await;
    let jid = |phone: &str| format!("{phone}@s.whatsapp.net");
    let all_present = check_numbers(&mut device, &[PHONE_C, PHONE_B]).await;
    assert_eq!(
        all_present,
        [
            (PHONE_C.to_owned(), true, jid(PHONE_C)),
            (PHONE_B.to_owned(), true, jid(PHONE_B))
        ]
    );

    let path = format!("/sim/phones/{PHONE_C}/absent");
    let (status, body) = sim.post_raw(&path, "").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "phone": PHONE_C, "absent": true }))
    );
    let checks = check_numbers(&mut device, &[PHONE_B, PHONE_C, "123"]).await;
    assert_eq!(
        checks,
        [
            (PHONE_B.to_owned(), true, jid(PHONE_B)),
            (PHONE_C.to_owned(), false, String::new()),
            ("123".to_owned(), false, String::new())
        ]
    );
    device.send_text("m-nobody", PHONE_C, "hello?").await;
    let failed = receipt(device.next().await);
    assert_eq!(
        (failed.status(), failed.error.as_str()),
        (Status::Failed, "not_on_whatsapp")
    );

    // Undone with `{"absent": false}`, or with DELETE.
    let (status, _) = sim.post(&path, json!({ "absent": false })).await;
    assert_eq!(status, StatusCode::OK);
    assert!(check_numbers(&mut device, &[PHONE_C]).await[0].1);
    sim.post(&path, json!({ "absent": true })).await;
    assert!(!check_numbers(&mut device, &[PHONE_C]).await[0].1);
    let response = sim.http.delete(sim.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(check_numbers(&mut device, &[PHONE_C]).await[0].1);

    let (status, body) = sim.post_raw("/sim/phones/12/absent", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );
    let (status, body) = sim.post(&path, json!({ "absent": "yes" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
}

#[tokio::test]
async fn a_phones_sent_messages_become_delivered_then_read() {
    let sim = Sim::start().await;
    let mut device = Device::paired(&sim.network, "dev-receiver", PHONE_A).await;
    let mut other = Device::paired(&sim.network, "dev-other", PHONE_C).await;
    let send = format!("/sim/phones/{PHONE_B}/send");
    let mut ids = Vec::new();
    for (to, text) in [(PHONE_A, "one"), (PHONE_A, "two"), (PHONE_C, "three")] {
        let (status, body) = sim
            .post(&send, json!({ "to_phone": to, "text": text }))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(body["message_id"].as_str().unwrap().to_owned());
    }
    let (_, sent) = sim.get(&format!("/sim/phones/{PHONE_B}/sent")).await;
    assert_eq!(sent[0]["to_phone"], PHONE_A);
    assert_eq!(sent[0]["text"], "one");
    assert_eq!(sent[0]["message_id"], ids[0].as_str());
    assert!(sent[0]["at"].as_str().is_some_and(|at| at.ends_with('Z')));
    assert_eq!(sent_statuses(&sim, PHONE_B).await, ["sent", "sent", "sent"]);

    for id in &ids[..2] {
        assert_eq!(&inbound(device.next().await).message_id, id);
    }
    device.ack(&ids[0]).await;
    check_numbers(&mut device, &[]).await;
    assert_eq!(
        sent_statuses(&sim, PHONE_B).await,
        ["delivered", "sent", "sent"]
    );

    // A device reads only what was sent to its own number: the id of a message to
    // another number is ignored.
    mark_read(&mut device, PHONE_B, &[&ids[0], &ids[1], &ids[2]]).await;
    check_numbers(&mut device, &[]).await;
    assert_eq!(sent_statuses(&sim, PHONE_B).await, ["read", "read", "sent"]);
    assert!(matches!(
        other.next().await,
        In::Inbound(inbound) if inbound.message_id == ids[2]
    ));
    let (_, unknown) = sim.get(&format!("/sim/phones/{PHONE_C}/sent")).await;
    assert_eq!(unknown, json!([]));
    let (status, body) = sim.get("/sim/phones/12/sent").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );
}

#[tokio::test]
async fn sent_lists_and_absent_numbers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };
    let network = Network::open(config.clone()).unwrap();
    let mut device = Device::paired(&network, "dev-durable-read", PHONE_A).await;
    let first = network.send_from_phone(PHONE_B, PHONE_A, "first").unwrap();
    let second = network.send_from_phone(PHONE_B, PHONE_A, "second").unwrap();
    network.set_absent(PHONE_C, true).unwrap();
    device.next().await;
    device.next().await;
    device.ack(&first).await;
    device.ack(&second).await;
    mark_read(&mut device, PHONE_B, &[&second]).await;
    check_numbers(&mut device, &[]).await;
    device.hang_up().await;
    drop(network);

    let network = Network::open(config).unwrap();
    let sent: Vec<(String, SentStatus)> = network
        .sent(PHONE_B)
        .unwrap()
        .into_iter()
        .map(|m| (m.text, m.status))
        .collect();
    assert_eq!(
        sent,
        [
            ("first".to_owned(), SentStatus::Delivered),
            ("second".to_owned(), SentStatus::Read)
        ]
    );
    device.reconnect(Transport::attach(&network)).await;
    device.resume_ok().await;
    assert_eq!(
        check_numbers(&mut device, &[PHONE_C]).await[0],
        (PHONE_C.to_owned(), false, String::new())
    );
}

// ---- persistence -----------------------------------------------------------------

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };

    let network = Network::open(config.clone()).unwrap();
    let mut device = Device::paired(&network, "dev-durable", PHONE_A).await;
    device.send_text("m-kept", PHONE_B, "still there?").await;
    statuses(&mut device, "m-kept", 2).await;
    let pending = network
        .send_from_phone(PHONE_C, PHONE_A, "unacked")
        .unwrap();
    assert_eq!(inbound(device.next().await).message_id, pending);
    let mut unlinked = Device::paired(&network, "dev-gone", PHONE_C).await;
    network.unlink(PHONE_C).unwrap();
    let before = network.stats();
    unlinked.hang_up().await;
    device.hang_up().await;
    // Every connection is closed: this is the last handle, and dropping it waits for
    // the writer to finish.
    drop(network);

    let network = Network::open(config).unwrap();
    let after = network.stats();
    assert_eq!(after.pairings, 2);
    assert_eq!(after.messages_delivered, 1);
    assert_eq!(after.inbound_sent, before.inbound_sent);
    assert_eq!(after.qr_codes_issued, before.qr_codes_issued);
    assert_eq!((after.links_total, after.links_connected), (1, 0));

    device.reconnect(Transport::attach(&network)).await;
    assert_eq!(device.resume_ok().await, PHONE_A);
    assert_eq!(inbound(device.next().await).message_id, pending);
    let inbox = network.inbox(PHONE_B).unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].text, "still there?");
    // Deduplication survives too.
    device.send_text("m-kept", PHONE_B, "still there?").await;
    statuses(&mut device, "m-kept", 2).await;
    assert_eq!(network.inbox(PHONE_B).unwrap().len(), 1);
    assert_eq!(network.stats().pairings, 2);
}

#[tokio::test]
async fn an_unlinked_device_stays_logged_out_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };
    let network = Network::open(config.clone()).unwrap();
    let mut device = Device::paired(&network, "dev-tombstone", PHONE_A).await;
    network.unlink(PHONE_A).unwrap();
    assert!(matches!(device.next().await, In::LoggedOut(_)));
    device.expect_closed().await;
    network.flush().await;
    drop(network);

    let network = Network::open(config).unwrap();
    device.reconnect(Transport::attach(&network)).await;
    assert_eq!(refusal(device.resume().await), Reason::LoggedOut);
}

// ---- control API -----------------------------------------------------------------

#[tokio::test]
async fn control_api_rejects_bad_input_with_json_errors() {
    let sim = Sim::start().await;

    let (status, body) = sim.get("/sim/phones/123/inbox").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );
    let (status, body) = sim.get("/sim/phones/%FF%FE/inbox").await; // not UTF-8
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );
    let (status, body) = sim.get("/sim/phones/+6281200000001/inbox").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );
    let (status, body) = sim
        .post("/sim/scan", json!({ "qr": "2@x", "phone": "abc" }))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );
    let (status, body) = sim.post("/sim/phones/12/unlink", json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_phone")
    );

    let (status, body) = sim.post_raw("/sim/scan", "{not json").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let (status, body) = sim.post_raw("/sim/pair-code", "").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let (status, body) = sim.post("/sim/scan", json!({ "phone": PHONE_A })).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let path = format!("/sim/phones/{PHONE_A}/ban");
    let (status, body) = sim.post(&path, json!({ "seconds": "soon" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );

    let (status, body) = sim
        .post("/sim/scan", json!({ "qr": "2@unknown", "phone": PHONE_A }))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "qr_not_found")
    );
    let (status, body) = sim
        .post(
            "/sim/pair-code",
            json!({ "phone": PHONE_A, "code": "ABCD-EFGH" }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "pair_code_not_found")
    );

    let (status, stats) = sim.get("/sim/stats").await;
    assert_eq!(status, StatusCode::OK);
    for key in [
        "links_connected",
        "links_total",
        "pairings",
        "messages_delivered",
        "handshakes_refused",
        "inbound_sent",
        "connections_replaced",
        "qr_codes_issued",
    ] {
        assert!(stats[key].is_u64(), "stats lack {key}: {stats}");
    }
}

// ---- scale -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_pair_and_resume_at_once() {
    const DEVICES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };
    let network = Network::open(config).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..DEVICES {
        let network = network.clone();
        tasks.spawn(async move {
            let phone = format!("62899{i:08}");
            let mut device = Device::paired(&network, &format!("dev-{i}"), &phone).await;
            device.reconnect(Transport::attach(&network)).await;
            device.resume_ok().await;
            device
        });
    }
    let mut devices = Vec::with_capacity(DEVICES);
    while let Some(device) = tasks.join_next().await {
        devices.push(device.expect("the device task finishes"));
    }
    let stats = network.stats();
    assert_eq!(stats.pairings, DEVICES as u64);
    assert_eq!(stats.links_connected, DEVICES as u64);
    assert_eq!(stats.connections_open, DEVICES as u64);
    network.flush().await;
}

/// Resident memory of this process in KiB (Linux), to size connections.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// 10,000 devices paired and left idle in process, with the state file on: prints the
/// time it took and the memory per device (both ends of the channels included). Slow in
/// debug builds, hence ignored by default:
/// `cargo test --release -p wafleet-sim --test sim -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a sizing run, not a check; run it with --release"]
async fn ten_thousand_idle_devices_stay_cheap() {
    const DEVICES: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };
    let network = Network::open(config).unwrap();
    let before = rss_kib();
    let started = std::time::Instant::now();
    let mut devices = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let phone = format!("62877{i:08}");
        devices.push(Device::paired(&network, &format!("dev-{i}"), &phone).await);
    }
    network.flush().await;
    let took = started.elapsed();
    assert_eq!(network.stats().links_connected, DEVICES as u64);
    if let (Some(before), Some(after)) = (before, rss_kib()) {
        let per_device = after.saturating_sub(before) as f64 / DEVICES as f64;
        println!("{DEVICES} devices paired and persisted in {took:?}, {per_device:.1} KiB each");
    }
}
