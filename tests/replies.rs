//! Quoted replies (`reply_to`) on `wafleet standalone --link sim`, through its HTTP API
//! and the simulator's control API: a phone replies to the device's message and the
//! device hears which one; the device replies to the phone's message and the phone's
//! inbox shows which one; an unknown `reply_to` is refused before anything is stored;
//! and the same in a group, with a text and with a media message.

mod common;

use std::time::{Duration, Instant};

use common::{Standalone, WAIT};
use serde_json::{Value, json};

const DEVICE_PHONE: &str = "6281250000001";
const PHONE_B: &str = "6289890000021";
const PHONE_C: &str = "6289890000022";

/// Waits until `phone`'s inbox holds `n` messages; returns them.
async fn inbox_of(app: &Standalone, phone: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let inbox: Value = app
            .http
            .get(app.url(&format!("/sim/phones/{phone}/inbox")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = inbox.as_array().expect("an inbox").clone();
        if messages.len() >= n || Instant::now() > deadline {
            assert_eq!(messages.len(), n, "{phone}'s inbox: {messages:?}");
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A phone writes (`body` names the chat: `to_phone` or `group`); the simulator's id.
async fn phone_writes(app: &Standalone, phone: &str, body: Value) -> String {
    let written = app
        .http
        .post(app.url(&format!("/sim/phones/{phone}/send")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 202, "{phone} writes {body}");
    let written: Value = written.json().await.unwrap();
    written["message_id"].as_str().unwrap().to_owned()
}

/// The device sends `body`; the new message's id.
async fn send(app: &Standalone, body: Value) -> String {
    let sent = app.post("/v1/devices/shop-1/messages", body.clone()).await;
    assert_eq!(sent.status(), 202, "send {body}");
    let sent: Value = sent.json().await.unwrap();
    sent["id"].as_str().unwrap().to_owned()
}

/// The status and error code of an answer.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn replies_name_the_quoted_message_by_the_id_each_side_knows() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;

    let ours = send(&app, json!({"to": PHONE_B, "text": "ukuran berapa?"})).await;
    inbox_of(&app, PHONE_B, 1).await;

    // The phone replies to our message: message.inbound names it by our id.
    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let theirs = phone_writes(
        &app,
        PHONE_B,
        json!({"to_phone": DEVICE_PHONE, "text": "42", "reply_to": ours}),
    )
    .await;
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["message_id"], theirs.as_str());
    assert_eq!(inbound.data["reply_to"], ours.as_str());
    let stored = app
        .json(&format!("/v1/devices/shop-1/messages/{theirs}"))
        .await;
    assert_eq!(stored["reply_to"], ours.as_str());

    // We reply to theirs: the phone's inbox shows the reply quoting its own message.
    let answer = send(
        &app,
        json!({"to": PHONE_B, "text": "siap, 42", "reply_to": theirs}),
    )
    .await;
    let inbox = inbox_of(&app, PHONE_B, 2).await;
    assert_eq!(inbox[1]["message_id"], answer.as_str());
    assert_eq!(inbox[1]["reply_to"], theirs.as_str());
    assert_eq!(inbox[0].get("reply_to"), None, "the first is no reply");
    let stored = app
        .json(&format!("/v1/devices/shop-1/messages/{answer}"))
        .await;
    assert_eq!(stored["reply_to"], theirs.as_str());
    // The plain message shows none.
    let plain = app
        .json(&format!("/v1/devices/shop-1/messages/{ours}"))
        .await;
    assert_eq!(plain.get("reply_to"), None);

    // A reply_to the log does not have: refused, nothing stored.
    let before = app.json("/v1/devices/shop-1/messages").await["messages"]
        .as_array()
        .unwrap()
        .len();
    for unknown in ["msg_00000000000000000000000000000000", ""] {
        let refused = app
            .post(
                "/v1/devices/shop-1/messages",
                json!({"to": PHONE_B, "text": "?", "reply_to": unknown}),
            )
            .await;
        assert_eq!(
            outcome(refused).await,
            (422, "reply_to_not_found".to_owned()),
            "reply_to {unknown:?}"
        );
    }
    let after = app.json("/v1/devices/shop-1/messages").await["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before);

    // The OpenAPI document says so.
    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &spec["components"]["schemas"];
    for schema in ["SendMessage", "Message"] {
        let field = &schemas[schema]["properties"]["reply_to"];
        assert!(
            field["description"].is_string(),
            "{schema}.reply_to: {field}"
        );
    }
    let send_doc = spec["paths"]["/v1/devices/{id}/messages"]["post"]["description"]
        .as_str()
        .unwrap();
    assert!(send_doc.contains("reply_to_not_found"), "{send_doc}");

    // Another device's message is not this device's to quote.
    app.pair("shop-2", "6281250000002").await;
    let refused = app
        .post(
            "/v1/devices/shop-2/messages",
            json!({"to": PHONE_B, "text": "?", "reply_to": ours}),
        )
        .await;
    assert_eq!(
        outcome(refused).await,
        (422, "reply_to_not_found".to_owned())
    );

    // A repeat under the same Idempotency-Key is the same reply; quoting another
    // message under it is another message.
    let keyed = |reply_to: &str| {
        app.http
            .post(app.url("/v1/devices/shop-1/messages"))
            .bearer_auth(common::KEY)
            .header("idempotency-key", "reply-once")
            .json(&json!({"to": PHONE_B, "text": "ok", "reply_to": reply_to}))
            .send()
    };
    assert_eq!(keyed(&theirs).await.unwrap().status(), 202);
    let again = keyed(&theirs).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        outcome(keyed(&ours).await.unwrap()).await,
        (409, "idempotency_key_reused".to_owned())
    );
}

#[tokio::test]
async fn replies_in_a_group_quote_its_messages() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let created = app
        .post(
            "/v1/devices/shop-1/groups",
            json!({"subject": "Gudang", "participants": [PHONE_B, PHONE_C]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let group: Value = created.json().await.unwrap();
    let group = group["id"].as_str().unwrap().to_owned();

    // A participant writes in the group; the device quotes it there.
    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let question = phone_writes(
        &app,
        PHONE_B,
        json!({"group": group, "text": "stok habis?"}),
    )
    .await;
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["message_id"], question.as_str());
    assert_eq!(inbound.data.get("reply_to"), None);
    let answer = send(
        &app,
        json!({"to": group, "text": "masih ada", "reply_to": question}),
    )
    .await;
    for phone in [PHONE_B, PHONE_C] {
        let inbox = inbox_of(&app, phone, 1).await;
        assert_eq!(inbox[0]["message_id"], answer.as_str());
        assert_eq!(inbox[0]["group"], group.as_str());
        assert_eq!(inbox[0]["reply_to"], question.as_str(), "{phone}");
    }

    // A media message replies too (the simulated link uploads the file first).
    let uploaded = app
        .http
        .post(app.url("/v1/media"))
        .bearer_auth(common::KEY)
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.4 stok".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().await.unwrap();
    let list = send(
        &app,
        json!({"to": group, "media": {"id": uploaded["id"], "type": "document", "caption": "daftar"},
            "reply_to": question}),
    )
    .await;
    let inbox = inbox_of(&app, PHONE_B, 2).await;
    assert_eq!(inbox[1]["message_id"], list.as_str());
    assert_eq!(inbox[1]["media"]["type"], "document");
    assert_eq!(inbox[1]["reply_to"], question.as_str());

    // Another participant quotes the device's message in the group.
    let follow_up = phone_writes(
        &app,
        PHONE_C,
        json!({"group": group, "text": "berapa?", "reply_to": answer}),
    )
    .await;
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["message_id"], follow_up.as_str());
    assert_eq!(inbound.data["group"], group.as_str());
    assert_eq!(inbound.data["from"], PHONE_C);
    assert_eq!(inbound.data["reply_to"], answer.as_str());
}
