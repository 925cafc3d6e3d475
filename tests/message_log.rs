//! The message log and chats of `wafleet standalone --link sim` through its HTTP API:
//! both directions stored and listed newest first with every filter, pages that add
//! up, one chat per phone with its last message and unread count, a conversation.

mod common;

use common::Standalone;
use serde_json::{Value, json};

const DEVICE_PHONE: &str = "6281230000088";
const ALICE: &str = "6289870000001";
const BOB: &str = "6289870000002";

async fn send(app: &Standalone, to: &str, text: &str) -> String {
    let sent = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": to, "text": text}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    sent.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A phone writes to the device; returns when the device has stored it.
async fn receive(app: &Standalone, from: &str, text: &str) -> String {
    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let sent = app
        .http
        .post(app.url(&format!("/sim/phones/{from}/send")))
        .json(&json!({"to_phone": DEVICE_PHONE, "text": text}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success());
    loop {
        let event = events.next_of_kind("message.inbound").await;
        if event.data["text"] == text {
            return event.data["message_id"].as_str().unwrap().to_owned();
        }
    }
}

fn texts(page: &Value) -> Vec<&str> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_log_and_the_chats_show_both_directions_newest_first() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;

    // Each step waits for the one before to be stored, so times increase.
    send(&app, ALICE, "1 to alice").await;
    receive(&app, BOB, "2 from bob").await;
    receive(&app, ALICE, "3 from alice").await;
    send(&app, BOB, "4 to bob").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    receive(&app, ALICE, "5 from alice").await;

    let log = app.json("/v1/devices/shop-1/messages").await;
    assert_eq!(
        texts(&log),
        [
            "5 from alice",
            "4 to bob",
            "3 from alice",
            "2 from bob",
            "1 to alice"
        ]
    );
    assert_eq!(log["next_cursor"], Value::Null);
    let first = &log["messages"][0];
    assert_eq!(first["direction"], "inbound");
    assert_eq!(first["from"], ALICE);
    assert_eq!(first["device_id"], "shop-1");

    for (query, expected) in [
        (
            "direction=in",
            vec!["5 from alice", "3 from alice", "2 from bob"],
        ),
        ("direction=out", vec!["4 to bob", "1 to alice"]),
        (
            &*format!("peer={ALICE}"),
            vec!["5 from alice", "3 from alice", "1 to alice"],
        ),
        (&*format!("peer=%2B{BOB}"), vec!["4 to bob", "2 from bob"]),
        (
            "direction=in&status=delivered",
            vec!["5 from alice", "3 from alice", "2 from bob"],
        ),
        ("until=2000-01-01T00:00:00Z", vec![]),
        (
            "since=2000-01-01T00:00:00Z&limit=500",
            vec![
                "5 from alice",
                "4 to bob",
                "3 from alice",
                "2 from bob",
                "1 to alice",
            ],
        ),
    ] {
        let page = app
            .json(&format!("/v1/devices/shop-1/messages?{query}"))
            .await;
        assert_eq!(texts(&page), expected, "{query}");
    }

    // Pages of two add up to the whole log, each message once.
    let mut seen = Vec::new();
    let mut path = "/v1/devices/shop-1/messages?limit=2".to_owned();
    loop {
        let page = app.json(&path).await;
        seen.extend(texts(&page).into_iter().map(str::to_owned));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/devices/shop-1/messages?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "5 from alice",
            "4 to bob",
            "3 from alice",
            "2 from bob",
            "1 to alice"
        ]
    );

    // Alice is in the tenant's contact book: her chat shows her name.
    let saved = app
        .post(
            "/v1/contacts",
            json!({"phone": ALICE, "name": "Alice Wijaya"}),
        )
        .await;
    assert_eq!(saved.status(), 201);
    let chats = app.json("/v1/devices/shop-1/chats").await;
    assert_eq!(chats["chats"][0]["name"], "Alice Wijaya");
    assert_eq!(chats["chats"][1]["name"], Value::Null);
    let summary: Vec<(&str, &str, u64, bool)> = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["last_message"]["text"].as_str().unwrap(),
                c["unread"].as_u64().unwrap(),
                c["is_group"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (ALICE, "5 from alice", 2, false),
            (BOB, "4 to bob", 1, false)
        ]
    );
    assert_eq!(
        chats["chats"][0]["last_message_at"],
        chats["chats"][0]["last_message"]["created_at"]
    );
    let page = app.json("/v1/devices/shop-1/chats?limit=1").await;
    assert_eq!(page["chats"][0]["id"], ALICE);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = app
        .json(&format!("/v1/devices/shop-1/chats?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(next["chats"][0]["id"], BOB);

    let conversation = app
        .json(&format!("/v1/devices/shop-1/chats/{BOB}/messages"))
        .await;
    assert_eq!(texts(&conversation), ["4 to bob", "2 from bob"]);
}

#[tokio::test]
async fn bad_filters_and_unknown_devices_are_clear_errors() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    let created = app
        .post("/v1/devices", json!({"id": "shop-1", "name": "shop"}))
        .await;
    assert_eq!(created.status(), 201);
    let empty = app.json("/v1/devices/shop-1/messages").await;
    assert_eq!(empty, json!({"messages": [], "next_cursor": null}));
    assert_eq!(
        app.json("/v1/devices/shop-1/chats").await,
        json!({"chats": [], "next_cursor": null})
    );
    for (path, code) in [
        (
            "/v1/devices/shop-1/messages?direction=up",
            "invalid_direction",
        ),
        ("/v1/devices/shop-1/messages?status=lost", "invalid_status"),
        ("/v1/devices/shop-1/messages?peer=12", "invalid_phone"),
        ("/v1/devices/shop-1/messages?since=today", "invalid_time"),
        ("/v1/devices/shop-1/messages?limit=501", "invalid_limit"),
        (
            "/v1/devices/shop-1/messages?cursor=%25%25",
            "invalid_cursor",
        ),
        ("/v1/devices/shop-1/chats?cursor=xyz", "invalid_cursor"),
        (
            "/v1/devices/shop-1/chats/not-a-phone/messages",
            "invalid_phone",
        ),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    for path in [
        "/v1/devices/nope/messages",
        "/v1/devices/nope/chats",
        "/v1/devices/nope/chats/6289870000001/messages",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
    }
}
