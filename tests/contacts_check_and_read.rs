//! Number checks and marking a chat read on `wafleet standalone --link sim`, through its
//! HTTP API and the simulator's control API: which numbers are on WhatsApp (a number
//! made absent in the simulator is not), and a chat marked read drops its unread count
//! to 0 and turns the sender's messages `read` on the sender's phone.

mod common;

use common::{KEY, Standalone};
use serde_json::{Value, json};

const DEVICE_PHONE: &str = "6281230000077";
const PRESENT: &str = "6289870000011";
const ABSENT: &str = "6289870000012";
const SENDER: &str = "6289870000013";

/// A phone writes to the device; returns when the device has stored it.
async fn receive(app: &Standalone, text: &str) {
    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let sent = app
        .http
        .post(app.url(&format!("/sim/phones/{SENDER}/send")))
        .json(&json!({"to_phone": DEVICE_PHONE, "text": text}))
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success());
    while events.next_of_kind("message.inbound").await.data["text"] != text {}
}

/// The status and error code of a POST.
async fn refused(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// The unread count of the chat with `peer`.
async fn unread(app: &Standalone, peer: &str) -> u64 {
    let chats = app.json("/v1/devices/shop-1/chats").await;
    chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|chat| chat["id"] == peer)
        .unwrap_or_else(|| panic!("no chat with {peer}: {chats}"))["unread"]
        .as_u64()
        .unwrap()
}

/// The statuses of what `phone` sent, as its phone sees them.
async fn sent_view(app: &Standalone, phone: &str) -> Vec<(String, String)> {
    let sent: Value = app
        .http
        .get(app.url(&format!("/sim/phones/{phone}/sent")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sent.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = m["text"].as_str().unwrap().to_owned();
            (text, m["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

async fn check(app: &Standalone, phones: Value) -> reqwest::Response {
    app.post(
        "/v1/devices/shop-1/contacts/check",
        json!({ "phones": phones }),
    )
    .await
}

#[tokio::test]
async fn numbers_are_checked_and_a_chat_marked_read_turns_the_senders_messages_read() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;

    // Every number is on WhatsApp until the simulator makes it absent.
    let absent = app
        .http
        .post(app.url(&format!("/sim/phones/{ABSENT}/absent")))
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 200);
    let checked = check(&app, json!([format!("+{PRESENT}"), ABSENT])).await;
    assert_eq!(checked.status(), 200);
    let checked: Value = checked.json().await.unwrap();
    assert_eq!(
        checked,
        json!({"results": [
            {"phone": PRESENT, "on_whatsapp": true, "jid": format!("{PRESENT}@s.whatsapp.net")},
            {"phone": ABSENT, "on_whatsapp": false, "jid": null},
        ]})
    );

    // Bad phones are refused before anything is asked.
    for (phones, code) in [
        (json!(["12"]), "invalid_phone"),
        (json!([PRESENT, "62812345678x"]), "invalid_phone"),
        (json!([]), "invalid_phones"),
        (json!(vec![PRESENT; 51]), "invalid_phones"),
    ] {
        let answer = refused(check(&app, phones.clone()).await).await;
        assert_eq!(answer, (400, code.to_owned()), "{phones}");
    }
    let shapeless = refused(check(&app, json!("6281234567890")).await).await;
    assert_eq!(shapeless.0, 422);

    // Two messages from a phone: unread 2, then read with one call.
    receive(&app, "first").await;
    receive(&app, "second").await;
    assert_eq!(unread(&app, SENDER).await, 2);
    let read = app
        .post(
            &format!("/v1/devices/shop-1/chats/{SENDER}/read"),
            json!({}),
        )
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), json!({"read": 2}));
    assert_eq!(unread(&app, SENDER).await, 0);
    let conversation = app
        .json(&format!("/v1/devices/shop-1/chats/{SENDER}/messages"))
        .await;
    for message in conversation["messages"].as_array().unwrap() {
        assert_eq!(message["status"], "read", "{message}");
        assert!(message["read_at"].is_string(), "{message}");
    }
    // The device's connection handles frames in order: once a number check is
    // answered, the read receipts sent before it have reached the simulator.
    assert_eq!(check(&app, json!([PRESENT])).await.status(), 200);
    assert_eq!(
        sent_view(&app, SENDER).await,
        [
            ("first".to_owned(), "read".to_owned()),
            ("second".to_owned(), "read".to_owned())
        ]
    );
    // Nothing left to read.
    let again = app
        .post(
            &format!("/v1/devices/shop-1/chats/{SENDER}/read"),
            json!({}),
        )
        .await;
    assert_eq!(again.json::<Value>().await.unwrap(), json!({"read": 0}));

    let bad_chat = app
        .post("/v1/devices/shop-1/chats/12/read", json!({}))
        .await;
    assert_eq!(refused(bad_chat).await, (400, "invalid_phone".to_owned()));
    let unknown = app
        .post(
            &format!("/v1/devices/nobody/chats/{SENDER}/read"),
            json!({}),
        )
        .await;
    assert_eq!(refused(unknown).await.0, 404);
}

#[tokio::test]
async fn a_device_that_is_not_ready_refuses_and_another_tenant_sees_nothing() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let created = app
        .post("/v1/devices", json!({"id": "idle-1", "name": "idle"}))
        .await;
    assert_eq!(created.status(), 201);

    // Created, never started: nothing to ask the network with.
    let check = app
        .post(
            "/v1/devices/idle-1/contacts/check",
            json!({"phones": [PRESENT]}),
        )
        .await;
    assert_eq!(refused(check).await, (409, "device_not_ready".to_owned()));
    let read = app
        .post(
            &format!("/v1/devices/idle-1/chats/{SENDER}/read"),
            json!({}),
        )
        .await;
    assert_eq!(refused(read).await, (409, "device_not_ready".to_owned()));

    // Another tenant's key does not find the device.
    let tenant = app
        .post(
            "/v1/tenants",
            json!({"id": "globex", "name": "Globex", "max_devices": 1}),
        )
        .await;
    assert_eq!(tenant.status(), 201);
    let key = app
        .post(
            "/v1/keys",
            json!({"name": "globex app", "role": "user", "tenant": "globex"}),
        )
        .await;
    assert_eq!(key.status(), 201);
    let globex = key.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(globex, KEY);
    for (path, body) in [
        (
            "/v1/devices/shop-1/contacts/check".to_owned(),
            json!({"phones": [PRESENT]}),
        ),
        (format!("/v1/devices/shop-1/chats/{SENDER}/read"), json!({})),
    ] {
        let response = app
            .http
            .post(app.url(&path))
            .bearer_auth(&globex)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path} with another tenant's key");
    }
}
