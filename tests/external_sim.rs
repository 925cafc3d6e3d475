//! `wafleet sim` as its own process, and a standalone whose links reach it over
//! WebSocket (`--link sim=ws://…/ws`): the same flow as in process, across processes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Sse;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use wafleet_load::scenario::process::ADMIN_KEY;

/// Starts `wafleet` with `args`; returns the child and the address it announced.
async fn spawn(args: &[&str]) -> (tokio::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wafleet"))
        .args(args)
        .env("WAFLEET_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("exited before listening");
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return addr.to_owned();
            }
        }
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn standalone_links_to_an_external_simulator_over_websocket() {
    let (_sim, sim_addr) = spawn(&["sim", "--listen", ":0"]).await;
    let data = tempfile::tempdir().unwrap();
    let link = format!("sim=ws://{sim_addr}/ws");
    let (_app, app_addr) = spawn(&[
        "standalone",
        "--listen",
        "127.0.0.1:0",
        "--link",
        &link,
        "--data",
        data.path().to_str().unwrap(),
    ])
    .await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("http://{app_addr}{path}");
    let sim = |path: &str| format!("http://{sim_addr}{path}");

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
