//! A group's chat on `wafleet standalone --link sim`, through its HTTP API and the
//! simulator's control API: marked read, every author's phone sees its messages `read`;
//! listed with the group's subject as its name (learned from a group reply, or from one
//! group list asked for a group the device did not know); and media in a group, both ways — an
//! image with a caption and a mention reaches every member with the same SHA-256, and
//! a PDF a member sends is announced by `message.inbound` with the group, the author
//! and the file, whose bytes `/v1/media/{id}` returns.

mod common;

use common::{KEY, Standalone};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DEVICE_PHONE: &str = "6281250000001";
const PHONE_B: &str = "6289890000021";
const PHONE_C: &str = "6289890000022";
const PHONE_D: &str = "6289890000023";
const MEMBER_PHONE: &str = "6281250000002";

/// Creates a group of the device `shop-1` with `members`; its id.
async fn create_group(app: &Standalone, subject: &str, members: &[&str]) -> String {
    create_group_of(app, "shop-1", subject, members).await
}

/// Creates a group of `device` with `members`; its id.
async fn create_group_of(
    app: &Standalone,
    device: &str,
    subject: &str,
    members: &[&str],
) -> String {
    let created = app
        .post(
            &format!("/v1/devices/{device}/groups"),
            json!({"subject": subject, "participants": members}),
        )
        .await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .expect("a group id")
        .to_owned()
}

/// `phone` writes `body` (its `text` and/or `media`) in group `group`: the simulator's
/// answer.
async fn write_in_group(app: &Standalone, phone: &str, group: &str, mut body: Value) -> Value {
    body["group"] = json!(group);
    let sent = app
        .http
        .post(app.url(&format!("/sim/phones/{phone}/send")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    sent.json().await.unwrap()
}

/// The chat `id` of `shop-1`'s chat list.
async fn chat(app: &Standalone, id: &str) -> Value {
    let chats = app.json("/v1/devices/shop-1/chats").await;
    chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|chat| chat["id"] == id)
        .unwrap_or_else(|| panic!("no chat {id}: {chats}"))
        .clone()
}

/// The statuses of what `phone` sent, as its phone sees them: `(to, text, status)`.
async fn sent_view(app: &Standalone, phone: &str) -> Vec<(String, String, String)> {
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
            let field = |name: &str| m[name].as_str().unwrap().to_owned();
            (field("to_phone"), field("text"), field("status"))
        })
        .collect()
}

fn seen(to: &str, text: &str, status: &str) -> (String, String, String) {
    (to.to_owned(), text.to_owned(), status.to_owned())
}

#[tokio::test]
async fn a_group_chat_marked_read_shows_every_author_their_messages_read() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let group = create_group(&app, "Gudang Timur", &[PHONE_B, PHONE_C]).await;
    let mut events = app.events("/v1/devices/shop-1/events", None).await;

    // Two members write in the group, one of them also 1:1.
    for (phone, text) in [
        (PHONE_B, "stok habis"),
        (PHONE_C, "siap"),
        (PHONE_B, "kirim besok"),
    ] {
        write_in_group(&app, phone, &group, json!({"text": text})).await;
    }
    let direct = app
        .http
        .post(app.url(&format!("/sim/phones/{PHONE_B}/send")))
        .json(&json!({"to_phone": DEVICE_PHONE, "text": "pribadi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 202);
    for _ in 0..4 {
        events.next_of_kind("message.inbound").await;
    }
    assert_eq!(chat(&app, &group).await["unread"], 3);

    let read = app
        .post(&format!("/v1/devices/shop-1/chats/{group}/read"), json!({}))
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), json!({"read": 3}));
    assert_eq!(chat(&app, &group).await["unread"], 0);
    assert_eq!(
        chat(&app, PHONE_B).await["unread"],
        1,
        "the 1:1 chat stays unread"
    );

    // Each author's phone sees its group messages read, and nothing else. The device's
    // connection handles frames in order: once a number check is answered, the read
    // receipts sent before it have reached the simulator.
    let check = app
        .post(
            "/v1/devices/shop-1/contacts/check",
            json!({"phones": [PHONE_D]}),
        )
        .await;
    assert_eq!(check.status(), 200);
    assert_eq!(
        sent_view(&app, PHONE_B).await,
        [
            seen(&group, "stok habis", "read"),
            seen(&group, "kirim besok", "read"),
            seen(DEVICE_PHONE, "pribadi", "delivered"),
        ]
    );
    assert_eq!(
        sent_view(&app, PHONE_C).await,
        [seen(&group, "siap", "read")]
    );
    let log = app
        .json(&format!("/v1/devices/shop-1/chats/{group}/messages"))
        .await;
    for message in log["messages"].as_array().unwrap() {
        assert_eq!(message["status"], "read", "{message}");
    }

    // Nothing left; a malformed group id is refused.
    let again = app
        .post(&format!("/v1/devices/shop-1/chats/{group}/read"), json!({}))
        .await;
    assert_eq!(again.json::<Value>().await.unwrap(), json!({"read": 0}));
    let bad = app
        .http
        .post(app.url("/v1/devices/shop-1/chats/12@g.us/read"))
        .bearer_auth(KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// Bytes that compress badly and never repeat a 64-byte window.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What reached `phone`, as the simulator shows its inbox.
async fn inbox(app: &Standalone, phone: &str) -> Vec<Value> {
    let inbox = common::inbox_of(&app.http, &app.base, phone).await;
    inbox.as_array().expect("an inbox").clone()
}

#[tokio::test]
async fn media_goes_to_every_member_of_a_group_and_a_members_pdf_comes_back_whole() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let group = create_group(&app, "Tim Foto", &[PHONE_B, PHONE_C, PHONE_D]).await;
    let mut events = app.events("/v1/devices/shop-1/events", None).await;

    // An image with a caption and a mention, to the group: one message.
    let photo = noise(300_000, 21);
    let uploaded = app
        .http
        .post(app.url("/v1/media"))
        .bearer_auth(KEY)
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().await.unwrap();
    assert_eq!(uploaded["sha256"], sha256_hex(&photo));
    let sent = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": group, "media": {"id": uploaded["id"], "type": "image",
                "caption": "foto gudang @B"}, "mentions": [PHONE_B]}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let message_id = sent.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let event = events.next_of_kind("message.status").await;
        if event.data["message_id"] == message_id.as_str() {
            assert_ne!(event.data["status"], "failed", "{}", event.data);
            if event.data["status"] == "delivered" {
                break;
            }
        }
    }
    for phone in [PHONE_B, PHONE_C, PHONE_D] {
        let got = inbox(&app, phone).await;
        assert_eq!(got.len(), 1, "{phone}: {got:?}");
        let got = &got[0];
        assert_eq!(got["group"], json!(group), "{phone}");
        assert_eq!(got["from_phone"], DEVICE_PHONE);
        assert_eq!(got["mentions"], json!([PHONE_B]), "{phone}");
        assert_eq!(got["text"], "foto gudang @B");
        let media = &got["media"];
        assert_eq!(media["type"], "image", "{phone}");
        assert_eq!(media["mime"], "image/jpeg");
        assert_eq!(media["size"], photo.len());
        assert_eq!(media["sha256"], sha256_hex(&photo), "{phone}");
        assert_eq!(media["caption"], "foto gudang @B");
    }
    let logged = app
        .json(&format!("/v1/devices/shop-1/messages/{message_id}"))
        .await;
    assert_eq!(logged["to"], json!(group), "{logged}");
    assert_eq!(logged["media"]["sha256"], sha256_hex(&photo));
    assert_eq!(logged["mentions"], json!([PHONE_B]));

    // A member sends a PDF in the group: message.inbound names the group, the author
    // and the file; the file's bytes come back whole.
    let pdf = noise(150_000, 22);
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pdf);
    write_in_group(
        &app,
        PHONE_C,
        &group,
        json!({"media": {"type": "document", "mime": "application/pdf",
            "data_base64": encoded, "caption": "nota", "filename": "nota.pdf"}}),
    )
    .await;
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["group"], json!(group), "{}", inbound.data);
    assert_eq!(inbound.data["from"], PHONE_C);
    assert_eq!(inbound.data["text"], "nota");
    let media = &inbound.data["media"];
    assert_eq!(media["type"], "document");
    assert_eq!(media["mime"], "application/pdf");
    assert_eq!(media["size"], pdf.len());
    assert_eq!(media["sha256"], sha256_hex(&pdf));
    assert_eq!(media["caption"], "nota");
    assert_eq!(media["filename"], "nota.pdf");
    let file = app
        .get(&format!("/v1/media/{}", media["id"].as_str().unwrap()))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.bytes().await.unwrap().as_ref(), pdf.as_slice());

    // The group's conversation shows both, each with its file.
    let conversation = app
        .json(&format!("/v1/devices/shop-1/chats/{group}/messages"))
        .await;
    let shown: Vec<(Value, Value)> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].clone(), m["media"]["sha256"].clone()))
        .collect();
    assert_eq!(
        shown,
        [
            (json!(PHONE_C), json!(sha256_hex(&pdf))),
            (Value::Null, json!(sha256_hex(&photo)))
        ],
        "{conversation}"
    );
}

#[tokio::test]
async fn a_group_chat_is_named_by_the_groups_subject() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    app.pair("shop-2", MEMBER_PHONE).await;
    let mut events = app.events("/v1/devices/shop-1/events", None).await;

    // A group the device created: its node learned the subject from the reply.
    let own = create_group(&app, "Gudang Timur", &[PHONE_B]).await;
    write_in_group(&app, PHONE_B, &own, json!({"text": "stok habis"})).await;
    events.next_of_kind("message.inbound").await;
    let chat_of_own = chat(&app, &own).await;
    assert_eq!(chat_of_own["is_group"], true);
    assert_eq!(chat_of_own["name"], "Gudang Timur", "{chat_of_own}");

    // A group another member created: unknown, so the node asks the network for the
    // device's group list once.
    let theirs = create_group_of(&app, "shop-2", "Keluarga", &[DEVICE_PHONE, PHONE_C]).await;
    write_in_group(&app, PHONE_C, &theirs, json!({"text": "makan malam?"})).await;
    events.next_of_kind("message.inbound").await;
    assert_eq!(chat(&app, &theirs).await["name"], "Keluarga");
    assert_eq!(chat(&app, &own).await["name"], "Gudang Timur");

    // Another one soon after: not asked again within the interval, so unnamed for now.
    let later = create_group_of(&app, "shop-2", "Arisan", &[DEVICE_PHONE, PHONE_C]).await;
    write_in_group(&app, PHONE_C, &later, json!({"text": "minggu depan"})).await;
    events.next_of_kind("message.inbound").await;
    assert_eq!(chat(&app, &later).await["name"], Value::Null);
    // Reading the group names it (the reply teaches its subject).
    let info = app
        .json(&format!("/v1/devices/shop-1/groups/{later}"))
        .await;
    assert_eq!(info["subject"], "Arisan");
    assert_eq!(chat(&app, &later).await["name"], "Arisan");
    // A phone's chat is still named by the contact book only (none saved: null).
    let direct = app
        .http
        .post(app.url(&format!("/sim/phones/{PHONE_B}/send")))
        .json(&json!({"to_phone": DEVICE_PHONE, "text": "pribadi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 202);
    events.next_of_kind("message.inbound").await;
    assert_eq!(chat(&app, PHONE_B).await["name"], Value::Null);
}
