//! The production `wafleet` refuses the WhatsApp Web protocol test server: its
//! certificate chain is not signed by WhatsApp, and only a `test-chain` build (see
//! tests/real_link.rs) skips that check. A fresh device, because a device whose keys a
//! test build saved would log in by IK, where no chain is checked again.
#![cfg(not(feature = "test-chain"))]

mod common;

use std::time::Duration;

use common::Standalone;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_production_binary_refuses_the_test_servers_certificate_chain() {
    let server = wafleet_waserver::serve("127.0.0.1:0", wafleet_waserver::Network::new())
        .await
        .expect("start the test server");
    let data = tempfile::tempdir().unwrap();
    let wafleet = Standalone::launch_with_link(
        data.path(),
        &format!("whatsapp={}", server.ws_url()),
        &[("WAFLEET_WHATSAPP_VERSION", "2.3000.1")],
    )
    .await;
    let created = wafleet
        .post("/v1/devices", json!({"id": "prod", "name": "prod"}))
        .await;
    assert_eq!(created.status(), 201);
    let mut events = wafleet.events("/v1/devices/prod/events", None).await;
    let started = wafleet.post("/v1/devices/prod/start", json!({})).await;
    assert_eq!(started.status(), 202);
    let expected = format!(
        "WhatsApp's handshake with {} was refused: the server's certificate chain is not signed by WhatsApp",
        server.ws_url()
    );
    let mut seen = Vec::new();
    let refused = loop {
        let Some(event) = events.try_next(Duration::from_secs(30)).await else {
            panic!("no refusal within 30 s; events: {seen:#?}");
        };
        if event.data.to_string().contains(&expected) {
            break event;
        }
        assert_ne!(
            event.kind, "qr",
            "a production build showed a QR code: {seen:#?}"
        );
        seen.push(event);
    };
    assert_eq!(refused.kind, "status", "{refused:?}");
    let stats = server.network.stats();
    assert!(stats.connections >= 1, "it dialled: {stats:?}");
    assert!(
        stats.handshakes.is_empty(),
        "no handshake completed: {stats:?}"
    );
    assert_eq!(stats.pairings, 0, "{stats:?}");
}
