//! `wafleet sim` as its own process, and a standalone whose links reach it over
//! WebSocket (`--link sim=ws://…/ws`): the same flow as in process, across processes.

mod common;

use std::path::Path;

use common::Sse;
use serde_json::{Value, json};
use wafleet_load::scenario::cluster::SimProcess;
use wafleet_load::scenario::process::{ADMIN_KEY, Standalone};

#[tokio::test]
async fn standalone_links_to_an_external_simulator_over_websocket() {
    let wafleet = Path::new(env!("CARGO_BIN_EXE_wafleet"));
    let simulator = SimProcess::start(wafleet).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let link = format!("sim={}", simulator.ws);
    let app = Standalone::start_with_link(wafleet, data.path(), &link)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let api = |path: &str| app.url(path);
    let sim = |path: &str| format!("{}{path}", simulator.base);

    let created = http
        .post(api("/v1/devices"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"id": "remote", "name": "remote"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut events = Sse::connect(&http, &api("/v1/devices/remote/events"), None).await;
    http.post(api("/v1/devices/remote/start"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let qr = events.next_of_kind("qr").await;
    let scanned = http
        .post(sim("/sim/scan"))
        .json(&json!({"qr": qr.data["code"], "phone": "6281800000001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(scanned.status(), 200);
    events.until_status("READY").await;

    let accepted: Value = http
        .post(api("/v1/devices/remote/messages"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"to": "6281800000002", "text": "over the wire"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    loop {
        let status = events.next_of_kind("message.status").await;
        assert_eq!(status.data["message_id"], accepted["id"]);
        if status.data["status"] == "delivered" {
            break;
        }
    }
    let inbox: Value = http
        .get(sim("/sim/phones/6281800000002/inbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox[0]["text"], "over the wire");
    let stats: Value = http
        .get(sim("/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["links_connected"], 1);
    // The standalone serves no simulator of its own in this mode.
    let own_sim = http.get(api("/sim/stats")).send().await.unwrap();
    assert_eq!(own_sim.status(), 404);
}
