//! WhatsApp groups on `wafleet standalone --link sim`, through its HTTP API and the
//! simulator's control API: a group of three simulated phones, a message with a
//! mention, one participant removed, another message — and the phones' inboxes show
//! exactly that; listing, reading, admins, a phone writing to the group, the rate
//! limiter counting a group send once, and the errors.

mod common;

use std::time::{Duration, Instant};

use common::{KEY, Standalone, WAIT};
use serde_json::{Value, json};

const DEVICE_PHONE: &str = "6281240000001";
const MEMBER_PHONE: &str = "6281240000002";
const PHONE_B: &str = "6289880000011";
const PHONE_C: &str = "6289880000012";
const PHONE_D: &str = "6289880000013";

/// The status and error code of an answer.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn delete(app: &Standalone, path: &str) -> reqwest::Response {
    app.http
        .delete(app.url(path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
}

/// A phone's inbox as the simulator shows it.
async fn inbox(app: &Standalone, phone: &str) -> Vec<Value> {
    let inbox: Value = app
        .http
        .get(app.url(&format!("/sim/phones/{phone}/inbox")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    inbox.as_array().expect("an inbox").clone()
}

/// Waits until `phone`'s inbox holds `n` messages.
async fn inbox_of(app: &Standalone, phone: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let messages = inbox(app, phone).await;
        if messages.len() >= n || Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What an inbox shows of each message: `(text, group, mentions)`.
fn shown(messages: &[Value]) -> Vec<(String, Value, Value)> {
    messages
        .iter()
        .map(|m| {
            let text = m["text"].as_str().unwrap().to_owned();
            (text, m["group"].clone(), m["mentions"].clone())
        })
        .collect()
}

async fn send(app: &Standalone, body: Value) -> reqwest::Response {
    app.post("/v1/devices/shop-1/messages", body).await
}

fn phones_of(group: &Value) -> Vec<(String, bool)> {
    group["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            (
                p["phone"].as_str().unwrap().to_owned(),
                p["admin"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn member(phone: &str, admin: bool) -> (String, bool) {
    (phone.to_owned(), admin)
}

#[tokio::test]
async fn a_group_of_three_phones_gets_a_mention_then_one_is_removed_and_inboxes_show_exactly_that()
{
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;

    let created = app
        .post(
            "/v1/devices/shop-1/groups",
            json!({"subject": "Tim Jakarta", "participants": [PHONE_B, format!("+{PHONE_C}"), PHONE_D]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let group: Value = created.json().await.unwrap();
    let id = group["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("120363") && id.ends_with("@g.us"), "{id}");
    assert_eq!(group["subject"], "Tim Jakarta");
    assert_eq!(group["creator"], DEVICE_PHONE);
    assert_eq!(
        phones_of(&group),
        [
            member(DEVICE_PHONE, true),
            member(PHONE_B, false),
            member(PHONE_C, false),
            member(PHONE_D, false)
        ]
    );

    // A group send passes the rate limiter once.
    let before = app.json("/v1/devices/shop-1/limits").await;
    let first = send(
        &app,
        json!({"to": id, "text": "rapat jam 3 @B", "mentions": [format!("+{PHONE_B}")]}),
    )
    .await;
    assert_eq!(first.status(), 202);
    let after = app.json("/v1/devices/shop-1/limits").await;
    for window in ["minute", "hour", "day"] {
        let spent = |limits: &Value| limits[window]["spent"].as_u64().expect("spent");
        assert_eq!(
            spent(&after),
            spent(&before) + 1,
            "{window}: {before} then {after}"
        );
    }
    for phone in [PHONE_B, PHONE_C, PHONE_D] {
        assert_eq!(inbox_of(&app, phone, 1).await.len(), 1, "{phone}");
    }

    let removed = delete(
        &app,
        &format!("/v1/devices/shop-1/groups/{id}/participants/{PHONE_D}"),
    )
    .await;
    assert_eq!(removed.status(), 200);
    let group: Value = removed.json().await.unwrap();
    assert!(!phones_of(&group).iter().any(|(phone, _)| phone == PHONE_D));

    assert_eq!(
        send(&app, json!({"to": id, "text": "sudah selesai"}))
            .await
            .status(),
        202
    );
    let mention = ("rapat jam 3 @B".to_owned(), json!(id), json!([PHONE_B]));
    let second = ("sudah selesai".to_owned(), json!(id), Value::Null);
    for phone in [PHONE_B, PHONE_C] {
        let messages = inbox_of(&app, phone, 2).await;
        assert_eq!(
            shown(&messages),
            [mention.clone(), second.clone()],
            "{phone}"
        );
        assert!(messages.iter().all(|m| m["from_phone"] == DEVICE_PHONE));
    }
    // Give a stray delivery to the removed phone the time it would take.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shown(&inbox(&app, PHONE_D).await), [mention]);
    assert!(
        inbox(&app, DEVICE_PHONE).await.is_empty(),
        "not to the sender"
    );

    // The simulator holds the group as the API said.
    let held: Value = app
        .http
        .get(app.url(&format!("/sim/groups/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        phones_of(&held),
        [
            member(DEVICE_PHONE, true),
            member(PHONE_B, false),
            member(PHONE_C, false)
        ]
    );

    // The messages are in the group's chat, which is a group.
    let chats = app.json("/v1/devices/shop-1/chats").await;
    let chat = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|chat| chat["id"] == json!(id))
        .unwrap_or_else(|| panic!("no chat for {id}: {chats}"))
        .clone();
    assert_eq!(chat["is_group"], true);
    let conversation = app
        .json(&format!("/v1/devices/shop-1/chats/{id}/messages"))
        .await;
    let mentioned: Vec<Value> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mentions"].clone())
        .collect();
    assert_eq!(mentioned, [Value::Null, json!([PHONE_B])], "newest first");
}

#[tokio::test]
async fn groups_are_listed_read_changed_by_admins_and_phones_write_to_them() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    app.pair("shop-2", MEMBER_PHONE).await;

    let created = app
        .post(
            "/v1/devices/shop-1/groups",
            json!({"subject": "Keluarga", "participants": [MEMBER_PHONE, PHONE_B]}),
        )
        .await;
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Both devices list it; the member reads it too.
    for device in ["shop-1", "shop-2"] {
        let list = app.json(&format!("/v1/devices/{device}/groups")).await;
        let ids: Vec<&Value> = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| &g["id"])
            .collect();
        assert_eq!(ids, [&json!(id)], "{device}");
    }
    let info = app.json(&format!("/v1/devices/shop-2/groups/{id}")).await;
    assert_eq!(info["subject"], "Keluarga");

    // Only admins change it.
    let by_member = app
        .post(
            &format!("/v1/devices/shop-2/groups/{id}/participants"),
            json!({"phones": [PHONE_C]}),
        )
        .await;
    assert_eq!(
        outcome(by_member).await,
        (422, "not_group_admin".to_owned())
    );
    let promoted = app
        .post(
            &format!("/v1/devices/shop-1/groups/{id}/admins"),
            json!({"phone": MEMBER_PHONE}),
        )
        .await;
    assert_eq!(promoted.status(), 200);
    let promoted: Value = promoted.json().await.unwrap();
    assert!(phones_of(&promoted).contains(&member(MEMBER_PHONE, true)));
    let added = app
        .post(
            &format!("/v1/devices/shop-2/groups/{id}/participants"),
            json!({"phones": [PHONE_C]}),
        )
        .await;
    assert_eq!(added.status(), 200);
    assert!(phones_of(&added.json().await.unwrap()).contains(&member(PHONE_C, false)));
    let demoted = delete(
        &app,
        &format!("/v1/devices/shop-2/groups/{id}/admins/{DEVICE_PHONE}"),
    )
    .await;
    assert_eq!(demoted.status(), 200);
    assert!(phones_of(&demoted.json().await.unwrap()).contains(&member(DEVICE_PHONE, false)));
    let now_refused = delete(
        &app,
        &format!("/v1/devices/shop-1/groups/{id}/participants/{PHONE_C}"),
    )
    .await;
    assert_eq!(
        outcome(now_refused).await,
        (422, "not_group_admin".to_owned())
    );

    // A phone writes to the group: both devices hear it, naming the group and the writer.
    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let written = app
        .http
        .post(app.url(&format!("/sim/phones/{PHONE_B}/send")))
        .json(&json!({"group": id, "text": "siapa ikut?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 202);
    let inbound = events.next_of_kind("message.inbound").await;
    assert_eq!(inbound.data["group"], json!(id));
    assert_eq!(inbound.data["from"], PHONE_B);
    assert_eq!(inbound.data["text"], "siapa ikut?");
    let log = app
        .json(&format!("/v1/devices/shop-1/chats/{id}/messages"))
        .await;
    let message = &log["messages"][0];
    assert_eq!(
        (&message["group"], &message["from"]),
        (&json!(id), &json!(PHONE_B))
    );
}

#[tokio::test]
async fn group_errors_are_clear() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let unknown = "120363000000000001@g.us";

    let missing = app
        .get(&format!("/v1/devices/shop-1/groups/{unknown}"))
        .await;
    assert_eq!(outcome(missing).await, (404, "group_not_found".to_owned()));
    let to_missing = delete(
        &app,
        &format!("/v1/devices/shop-1/groups/{unknown}/admins/{PHONE_B}"),
    )
    .await;
    assert_eq!(
        outcome(to_missing).await,
        (404, "group_not_found".to_owned())
    );

    for (body, code) in [
        (
            json!({"subject": "ok", "participants": ["12"]}),
            "invalid_phone",
        ),
        (
            json!({"subject": "ok", "participants": []}),
            "invalid_phones",
        ),
        (
            json!({"subject": " ", "participants": [PHONE_B]}),
            "invalid_subject",
        ),
        (
            json!({"subject": "x".repeat(101), "participants": [PHONE_B]}),
            "invalid_subject",
        ),
    ] {
        let created = app.post("/v1/devices/shop-1/groups", body.clone()).await;
        assert_eq!(outcome(created).await, (400, code.to_owned()), "{body}");
    }
    let absent = app
        .http
        .post(app.url(&format!("/sim/phones/{PHONE_D}/absent")))
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 200);
    let with_absent = app
        .post(
            "/v1/devices/shop-1/groups",
            json!({"subject": "ok", "participants": [PHONE_D]}),
        )
        .await;
    assert_eq!(
        outcome(with_absent).await,
        (422, "not_on_whatsapp".to_owned())
    );
    let bad_id = app
        .get("/v1/devices/shop-1/groups/12345@s.whatsapp.net")
        .await;
    assert_eq!(outcome(bad_id).await, (400, "invalid_group_id".to_owned()));
    let bad_phone = delete(
        &app,
        &format!("/v1/devices/shop-1/groups/{unknown}/participants/12"),
    )
    .await;
    assert_eq!(outcome(bad_phone).await, (400, "invalid_phone".to_owned()));
    for (body, code) in [
        (json!({"to": "123@g.us", "text": "hi"}), "invalid_group_id"),
        (
            json!({"to": PHONE_B, "text": "hi", "mentions": ["12"]}),
            "invalid_phone",
        ),
        (
            json!({"to": PHONE_B, "text": "hi", "mentions": vec![PHONE_B; 51]}),
            "invalid_mentions",
        ),
    ] {
        let sent = send(&app, body.clone()).await;
        assert_eq!(outcome(sent).await, (400, code.to_owned()), "{body}");
    }

    // A send to a group the device is not in fails, saying why.
    let mut events = app.events("/v1/devices/shop-1/events", None).await;
    let stray = send(&app, json!({"to": unknown, "text": "hello?"})).await;
    assert_eq!(stray.status(), 202);
    let failed = loop {
        let status = events.next_of_kind("message.status").await;
        if status.data["status"] == "failed" {
            break status;
        }
    };
    assert_eq!(failed.data["error"], "group_not_found", "{:?}", failed.data);

    // Created, never started: nothing to ask WhatsApp with.
    let idle = app
        .post("/v1/devices", json!({"id": "idle-1", "name": "idle"}))
        .await;
    assert_eq!(idle.status(), 201);
    let not_ready = app.get("/v1/devices/idle-1/groups").await;
    assert_eq!(
        outcome(not_ready).await,
        (409, "device_not_ready".to_owned())
    );

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
    let globex = key.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = app
        .http
        .get(app.url("/v1/devices/shop-1/groups"))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
}
