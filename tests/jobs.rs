//! Campaigns through a real standalone process and the simulator: a templated job over
//! three devices reaches every recipient exactly once with its own text; a missing
//! variable is refused before anything exists; a job from a contact tag; a scheduled
//! job waits for its time; pause stops hand-offs, resume goes on, cancel stops for
//! good; a number not on WhatsApp fails for good while the rest arrive; progress comes
//! as `job.progress` events and ends `completed`.

mod common;

use std::time::{Duration, Instant};

use common::client::{Client, tenants};
use common::{KEY, Standalone, WAIT, inbox_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEVICES: [(&str, &str); 3] = [
    ("blast-1", "6281100000001"),
    ("blast-2", "6281100000002"),
    ("blast-3", "6281100000003"),
];

fn recipient(n: usize) -> String {
    format!("6285{n:09}")
}

async fn pair_all(app: &Standalone) {
    for (id, phone) in DEVICES {
        app.pair(id, phone).await;
    }
}

fn admin(app: &Standalone) -> Client<'_> {
    Client {
        app,
        key: KEY.to_owned(),
    }
}

/// Waits until the job's `field` is `value`; returns the job.
async fn until_job(client: &Client<'_>, id: &str, field: &str, value: Value) -> Value {
    let deadline = Instant::now() + WAIT * 3;
    loop {
        let job = client.get(&format!("/v1/jobs/{id}")).await;
        if job[field] == value {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id}: {field} never {value}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message the phone got, as (sender phone, text).
async fn got(app: &Standalone, phone: &str) -> Vec<(String, String)> {
    let inbox = inbox_of(&app.http, &app.base, phone).await;
    inbox
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["from_phone"].as_str().unwrap_or_default().to_owned(),
                        e["text"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_templated_job_reaches_each_recipient_once_over_three_devices() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    pair_all(&app).await;
    let admin = admin(&app);
    let mut events = app.events("/v1/events", None).await;

    let (status, template) = admin
        .send(
            Method::POST,
            "/v1/templates",
            Some(json!({"name": "promo", "text": "Halo {{name}}, kode {{code}}"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    // A contact's saved name fills `name` when the recipient gives none.
    let (status, saved) = admin
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"phone": recipient(0), "name": "Sari"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");

    let mut recipients: Vec<Value> = (0..12)
        .map(|n| json!({"to": recipient(n), "vars": {"name": format!("P{n}"), "code": format!("K{n}")}}))
        .collect();
    recipients[0] = json!({"to": recipient(0), "vars": {"code": "K0"}});
    recipients.push(json!({"to": recipient(3), "vars": {"name": "again", "code": "x"}}));
    let devices: Vec<&str> = DEVICES.iter().map(|(id, _)| *id).collect();

    // One recipient lacks a variable: 422, and no job exists.
    let mut missing = recipients.clone();
    missing[5] = json!({"to": recipient(5), "vars": {"name": "no code"}});
    let (status, code) = admin
        .error(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"name": "broken", "devices": devices, "recipients": missing,
                        "template_id": template["id"]}),
            ),
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "missing_variables")
    );
    assert_eq!(admin.get("/v1/jobs").await["jobs"], json!([]));

    let (status, job) = admin
        .send(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"name": "promo", "devices": devices, "recipients": recipients,
                        "template_id": template["id"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["status"], "running");
    assert_eq!(job["total"], 12, "a number given twice gets one message");
    let id = job["id"].as_str().unwrap().to_owned();

    let done = until_job(&admin, &id, "status", json!("completed")).await;
    assert_eq!(
        (
            done["sent"].as_u64(),
            done["failed"].as_u64(),
            done["pending"].as_u64()
        ),
        (Some(12), Some(0), Some(0)),
        "{done}"
    );
    assert!(done["finished_at"].is_string());

    // Each recipient got exactly one message, with its own text, from a device of the pool.
    let senders: Vec<&str> = DEVICES.iter().map(|(_, phone)| *phone).collect();
    let mut by_device = std::collections::HashMap::new();
    for n in 0..12 {
        let messages = got(&app, &recipient(n)).await;
        let expected = if n == 0 {
            "Halo Sari, kode K0".to_owned()
        } else {
            format!("Halo P{n}, kode K{n}")
        };
        assert_eq!(messages.len(), 1, "recipient {n}: {messages:?}");
        assert_eq!(messages[0].1, expected);
        assert!(senders.contains(&messages[0].0.as_str()), "{messages:?}");
        *by_device.entry(messages[0].0.clone()).or_insert(0) += 1;
    }
    assert!(
        by_device.len() >= 2,
        "the pool shared the work: {by_device:?}"
    );

    let listed = admin
        .get(&format!("/v1/jobs/{id}/recipients?limit=500"))
        .await;
    let listed = listed["recipients"].as_array().unwrap();
    assert_eq!(listed.len(), 12);
    for r in listed {
        assert!(
            matches!(r["status"].as_str(), Some("sent" | "delivered" | "read")),
            "{r}"
        );
        assert!(
            r["device_id"].is_string() && r["message_id"].is_string(),
            "{r}"
        );
        assert_eq!(r["attempts"], 1, "{r}");
    }

    // Progress came as events, ending completed.
    let deadline = Instant::now() + WAIT;
    loop {
        let event = events.next_of_kind("job.progress").await;
        if event.data["job_id"] == id.as_str() && event.data["status"] == "completed" {
            assert_eq!(event.data["sent"], 12, "{}", event.data);
            break;
        }
        assert!(Instant::now() < deadline, "no completed progress event");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_hand_offs_resume_goes_on_cancel_stops_and_a_number_not_on_whatsapp_fails() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start_throttled(dir.path()).await;
    pair_all(&app).await;
    let admin = admin(&app);
    // Retried failures wait little here; "not on WhatsApp" is never retried.
    let (status, _) = admin
        .send(
            Method::PUT,
            "/v1/settings/retries",
            Some(json!({"base_delay_ms": 100, "max_attempts": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let absent = recipient(99);
    let gone = app
        .http
        .post(app.url(&format!("/sim/phones/{absent}/absent")))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());

    let mut recipients: Vec<Value> = (0..30).map(|n| json!({"to": recipient(n)})).collect();
    recipients.insert(1, json!({"to": absent}));
    let (status, job) = admin
        .send(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"name": "slow", "devices": ["blast-1", "blast-2"], "recipients": recipients,
                        "text": "Diskon minggu ini"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();

    // The absent number fails for good, once.
    let deadline = Instant::now() + WAIT;
    let failed = loop {
        let page = admin
            .get(&format!("/v1/jobs/{id}/recipients?status=failed"))
            .await;
        if let Some(r) = page["recipients"].as_array().unwrap().first() {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "the absent number never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["to"], absent.as_str());
    assert_eq!(failed["error"], "not_on_whatsapp");
    assert_eq!(failed["attempts"], 1, "not retried: {failed}");

    // Pause: from a second after it, no message reaches any phone until the resume.
    let (status, paused) = admin
        .send(Method::POST, &format!("/v1/jobs/{id}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["status"], "paused");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = reached(&app, 30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reached(&app, 30).await,
        before,
        "messages reached phones while paused"
    );
    assert!(before < 30, "the job finished before the pause");
    let (status, code) = admin
        .error(Method::POST, &format!("/v1/jobs/{id}/pause"), None)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "job_paused")
    );

    // Resume: more arrive.
    let (status, resumed) = admin
        .send(Method::POST, &format!("/v1/jobs/{id}/resume"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["status"], "running");
    let deadline = Instant::now() + WAIT * 2;
    while reached(&app, 30).await <= before {
        assert!(
            Instant::now() < deadline,
            "nothing reached a phone after resume"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Cancel: what waits is cancelled, and from a second after it nothing more reaches
    // a phone.
    let (status, cancelled) = admin
        .send(Method::POST, &format!("/v1/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled"].as_u64().unwrap() > 0, "{cancelled}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_cancel = reached(&app, 30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reached(&app, 30).await,
        at_cancel,
        "messages after the cancel"
    );
    let end = admin.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        end["sent"].as_u64().unwrap() as usize,
        at_cancel,
        "progress equals the inboxes: {end}"
    );
    let (status, code) = admin
        .error(Method::POST, &format!("/v1/jobs/{id}/resume"), None)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "job_finished")
    );
}

/// Messages the first `n` recipients got, in all.
async fn reached(app: &Standalone, n: usize) -> usize {
    let mut all = 0;
    for i in 0..n {
        all += got(app, &recipient(i)).await.len();
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_faster_device_takes_more_of_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    pair_all(&app).await;
    let admin = admin(&app);
    // NEWCOMER one send a second, VERIFIED four.
    let level = |per_minute: u32, gap: u32| {
        json!({"per_minute": per_minute, "per_hour": per_minute * 40, "per_day": 10_000,
               "min_gap_ms": gap, "jitter_ms": 0, "max_in_flight": 50})
    };
    let (status, table) = admin
        .send(
            Method::PUT,
            "/v1/settings/trust-levels",
            Some(json!({"newcomer": level(60, 1_000), "trusted": level(60, 1_000), "verified": level(240, 250)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{table}");
    let (status, body) = admin
        .send(
            Method::PUT,
            "/v1/devices/blast-1/trust-level",
            Some(json!({"level": "verified"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recipients: Vec<Value> = (0..24).map(|n| json!({"to": recipient(n)})).collect();
    let (status, job) = admin
        .send(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"name": "pace", "devices": ["blast-1", "blast-2"], "recipients": recipients,
                        "text": "cepat"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap();
    until_job(&admin, id, "status", json!("completed")).await;
    let listed = admin
        .get(&format!("/v1/jobs/{id}/recipients?limit=500"))
        .await;
    let by = |device: &str| {
        listed["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["device_id"] == device)
            .count()
    };
    let (fast, slow) = (by("blast-1"), by("blast-2"));
    assert_eq!(fast + slow, 24);
    assert!(fast > slow, "VERIFIED took {fast}, NEWCOMER {slow}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_to_a_contact_tag_waits_for_its_time_and_stays_its_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    let (admin, acme, globex) = tenants(&app).await;
    for (id, phone) in &DEVICES[..1] {
        let (status, body) = admin
            .send(
                Method::POST,
                "/v1/devices",
                Some(json!({"id": id, "name": id, "tenant": "acme"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        app.start_and_pair(id, phone).await;
    }
    let contacts: Vec<Value> = (0..5)
        .map(|n| json!({"phone": recipient(n), "name": format!("C{n}"), "tags": if n % 2 == 0 { vec!["vip"] } else { vec![] }}))
        .collect();
    let (status, body) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"contacts": contacts})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let at = wafleet_node::clock::rfc3339(wafleet_node::clock::now_ms() + 2_000);
    let (status, job) = acme
        .send(
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"name": "vip", "devices": ["blast-1"], "contacts_tag": "VIP",
                        "text": "Untuk pelanggan VIP", "send_at": at}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(
        (job["status"].as_str(), job["total"].as_u64()),
        (Some("scheduled"), Some(3))
    );
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(
        got(&app, &recipient(0)).await.is_empty(),
        "sent before its time"
    );

    // Another tenant neither sees it nor uses acme's device.
    let (status, _) = globex
        .error(Method::GET, &format!("/v1/jobs/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = globex
        .error(Method::POST, &format!("/v1/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = globex
        .error(
            Method::POST,
            "/v1/jobs",
            Some(json!({"name": "x", "devices": ["blast-1"], "recipients": [{"to": recipient(9)}], "text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let done = until_job(&acme, &id, "status", json!("completed")).await;
    assert!(
        done["started_at"].as_str().unwrap() >= at.as_str(),
        "{done}"
    );
    for n in 0..5 {
        let expected = usize::from(n % 2 == 0);
        assert_eq!(
            got(&app, &recipient(n)).await.len(),
            expected,
            "contact {n}"
        );
    }
    // Bad requests.
    for (body, status) in [
        (
            json!({"name": "x", "devices": ["blast-1"], "text": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "devices": ["blast-1"], "contacts_tag": "nobody", "text": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "devices": ["blast-1"], "recipients": [{"to": "12"}], "text": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "x", "devices": ["blast-1"], "recipients": [{"to": recipient(1)}], "text": "x",
                "window": {"start": "08:00", "end": "08:00", "tz": "Asia/Jakarta"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "devices": ["nope"], "recipients": [{"to": recipient(1)}], "text": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (got_status, code) = acme
            .error(Method::POST, "/v1/jobs", Some(body.clone()))
            .await;
        assert_eq!(got_status, status, "{body}: {code}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_devices_recipients_are_sent_by_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    pair_all(&app).await;
    let admin = admin(&app);
    // Two sends a second per device: the job takes a few seconds.
    let level = json!({"per_minute": 120, "per_hour": 2_400, "per_day": 10_000,
                       "min_gap_ms": 500, "jitter_ms": 0, "max_in_flight": 50});
    let (status, table) = admin
        .send(
            Method::PUT,
            "/v1/settings/trust-levels",
            Some(json!({"newcomer": level, "trusted": level, "verified": level})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{table}");
    let recipients: Vec<Value> = (0..30).map(|n| json!({"to": recipient(n)})).collect();
    let devices: Vec<&str> = DEVICES.iter().map(|(id, _)| *id).collect();
    let (status, job) = admin
        .send(
            Method::POST,
            "/v1/jobs",
            Some(json!({"name": "ban", "devices": devices, "recipients": recipients, "text": "halo"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // Once a few went, the network bans the first device's number for a minute.
    while reached(&app, 30).await < 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let banned = app
        .http
        .post(app.url(&format!("/sim/phones/{}/ban", DEVICES[0].1)))
        .json(&json!({"seconds": 60}))
        .send()
        .await
        .unwrap();
    assert!(banned.status().is_success(), "{}", banned.status());

    // The others send everything else; each recipient gets exactly one message.
    let done = until_job(&admin, &id, "status", json!("completed")).await;
    assert_eq!(done["sent"], 30, "{done}");
    for n in 0..30 {
        assert_eq!(got(&app, &recipient(n)).await.len(), 1, "recipient {n}");
    }
    let listed = admin
        .get(&format!("/v1/jobs/{id}/recipients?limit=500"))
        .await;
    let late_by_banned = listed["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["device_id"] == DEVICES[0].0)
        .count();
    assert!(late_by_banned < 30, "{listed}");
}
