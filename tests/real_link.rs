//! The real WhatsApp link (whatsapp-rust) end to end through wafleet's public API,
//! against the WhatsApp Web protocol test server (`load-tests/waserver`) instead of
//! WhatsApp: a test-chain build of `wafleet standalone --link whatsapp=ws://…`.

mod common;

use std::time::Duration;

use common::{Sse, Standalone};
use serde_json::{Value, json};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_device_pairs_by_qr_code_and_reaches_ready() {
    let Setup {
        server, wafleet, ..
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
    let stats = server.network.stats();
    assert_eq!(stats.pairings, 1, "{stats:?}");
    assert!(stats.logins >= 1, "{stats:?}");
    assert!(
        stats.unknown.is_empty(),
        "stanzas the server did not answer: {stats:?}"
    );
}
