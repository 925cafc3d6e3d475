//! Tenants, keys, users and the audit log through a real standalone process: no route
//! lets one tenant's key reach another tenant's data; revocation, rotation, login,
//! locking and the audit export.

mod common;

use std::time::{Duration, Instant};

use common::{KEY, Standalone};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ACME_PHONE: &str = "6281111111111";
/// A contact in acme's contact book.
const ACME_CONTACT: &str = "6281111111199";

struct Caller<'a> {
    wafleet: &'a Standalone,
    key: String,
}

impl Caller<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .wafleet
            .http
            .request(method, self.wafleet.url(path))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

async fn created(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{what}: {body}");
    body
}

/// Two tenants with a user key each; acme has a paired device with a message.
struct TwoTenants {
    acme_key: String,
    acme_key_id: String,
    globex_key: String,
    message_id: String,
    /// A file acme uploaded.
    media_id: String,
    /// Acme's template and job.
    template_id: String,
    job_id: String,
}

async fn two_tenants(wafleet: &Standalone) -> TwoTenants {
    let admin = Caller {
        wafleet,
        key: KEY.to_owned(),
    };
    for (id, max) in [("acme", 5), ("globex", 1)] {
        let body = json!({"id": id, "name": id.to_uppercase(), "max_devices": max});
        created(
            admin.send(Method::POST, "/v1/tenants", Some(body)).await,
            "tenant",
        )
        .await;
    }
    let key =
        |tenant: &str| json!({"name": format!("{tenant} app"), "role": "user", "tenant": tenant});
    let acme = created(
        admin
            .send(Method::POST, "/v1/keys", Some(key("acme")))
            .await,
        "key",
    )
    .await;
    let globex = created(
        admin
            .send(Method::POST, "/v1/keys", Some(key("globex")))
            .await,
        "key",
    )
    .await;
    let acme_caller = Caller {
        wafleet,
        key: acme["key"].as_str().unwrap().to_owned(),
    };
    let device = json!({"id": "acme-1", "name": "acme shop"});
    let device = created(
        acme_caller
            .send(Method::POST, "/v1/devices", Some(device))
            .await,
        "device",
    )
    .await;
    assert_eq!(
        device["tenant"], "acme",
        "a tenant key's device is the tenant's"
    );
    let contact = json!({"phone": ACME_CONTACT, "name": "acme buyer", "tags": ["acme-vip"]});
    created(
        acme_caller
            .send(Method::POST, "/v1/contacts", Some(contact))
            .await,
        "contact",
    )
    .await;
    wafleet.start_and_pair("acme-1", ACME_PHONE).await;
    let sent = acme_caller
        .send(
            Method::POST,
            "/v1/devices/acme-1/messages",
            Some(json!({"to": "6289999999999", "text": "acme secret text"})),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent: Value = sent.json().await.unwrap();
    let media = created(
        acme_caller
            .send(
                Method::POST,
                "/v1/media?filename=acme.json",
                Some(json!({"note": "acme secret text"})),
            )
            .await,
        "media",
    )
    .await;
    let template = created(
        acme_caller
            .send(
                Method::POST,
                "/v1/templates",
                Some(json!({"name": "acme promo", "text": "acme secret text {{name}}"})),
            )
            .await,
        "template",
    )
    .await;
    let job = created(
        acme_caller
            .send(
                Method::POST,
                "/v1/jobs",
                Some(json!({"name": "acme blast", "devices": ["acme-1"],
                            "recipients": [{"to": "6289999999998"}], "text": "acme secret text"})),
            )
            .await,
        "job",
    )
    .await;
    TwoTenants {
        template_id: template["id"].as_str().unwrap().to_owned(),
        job_id: job["id"].as_str().unwrap().to_owned(),
        media_id: media["id"].as_str().unwrap().to_owned(),
        acme_key: acme_caller.key,
        acme_key_id: acme["id"].as_str().unwrap().to_owned(),
        globex_key: globex["key"].as_str().unwrap().to_owned(),
        message_id: sent["id"].as_str().unwrap().to_owned(),
    }
}

/// What would show that a body leaked acme's data.
const ACME_MARKS: [&str; 6] = [
    "acme-1",
    "ACME",
    ACME_PHONE,
    "acme secret text",
    "acme buyer",
    "acme-vip",
];

fn leaks(body: &str) -> Option<&'static str> {
    ACME_MARKS.into_iter().find(|mark| body.contains(mark))
}

/// The body of a response, or what an event stream sent within `listen`.
async fn body_of(response: reqwest::Response, listen: Duration) -> String {
    let is_stream = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if !is_stream {
        return response.text().await.unwrap_or_default();
    }
    let mut text = String::new();
    let mut stream = response.bytes_stream();
    let deadline = tokio::time::Instant::now() + listen;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_lets_a_tenant_reach_another_tenants_data() {
    let dir = tempfile::tempdir().unwrap();
    let wafleet = Standalone::start(dir.path()).await;
    let setup = two_tenants(&wafleet).await;
    let globex = Caller {
        wafleet: &wafleet,
        key: setup.globex_key.clone(),
    };
    let acme_user = created(
        Caller {
            wafleet: &wafleet,
            key: KEY.to_owned(),
        }
        .send(
            Method::POST,
            "/v1/users",
            Some(json!({"username": "acme-boss", "password": "long enough pw", "role": "admin", "tenant": "acme"})),
        )
        .await,
        "user",
    )
    .await;
    assert_eq!(acme_user["tenant"], "acme");

    let doc: Value = wafleet.json("/openapi.json").await;
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            if path == "/v1/auth/login" {
                continue;
            }
            // Every parameter names one of acme's things.
            let concrete = path
                .replace("{message_id}", &setup.message_id)
                .replace("{event_id}", "acme-event")
                .replace("{group_id}", "120363000000000001@g.us")
                .replace("{phone}", "6289999999999")
                .replace(
                    "{id}",
                    if path.starts_with("/v1/contacts") {
                        ACME_CONTACT
                    } else if path.starts_with("/v1/tenants") {
                        "acme"
                    } else if path.starts_with("/v1/keys") {
                        &setup.acme_key_id
                    } else if path.starts_with("/v1/users") {
                        "acme-boss"
                    } else if path.starts_with("/v1/media") {
                        &setup.media_id
                    } else if path.starts_with("/v1/templates") {
                        &setup.template_id
                    } else if path.starts_with("/v1/jobs") {
                        &setup.job_id
                    } else {
                        "acme-1"
                    },
                );
            let body =
                matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            let response = globex.send(method.clone(), &concrete, body).await;
            let status = response.status();
            let text = body_of(response, Duration::from_millis(500)).await;
            tried += 1;
            if path.contains('{') {
                assert!(
                    matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                    "{method} {concrete} with another tenant's key: {status} {text}"
                );
            } else {
                assert!(
                    !status.is_success()
                        || !path.starts_with("/v1/settings")
                        || method == Method::GET,
                    "{method} {concrete}: a user key changed shared settings ({status})"
                );
            }
            // An error may repeat the id the caller gave; nothing else of acme's.
            let mut rest = text.clone();
            for given in concrete
                .split('/')
                .filter(|part| !path.split('/').any(|p| p == *part))
            {
                rest = rest.replace(given, "");
            }
            assert_eq!(leaks(&rest), None, "{method} {concrete} leaked: {text}");
        }
    }
    assert!(tried >= 30, "walked {tried} operations");

    // Events: globex's stream carries none of acme's, while acme's device changes.
    let stream = globex.send(Method::GET, "/v1/events", None).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let acme = Caller {
        wafleet: &wafleet,
        key: setup.acme_key.clone(),
    };
    let mut acme_events = wafleet.events("/v1/devices/acme-1/events", None).await;
    // Acme's key on every device it sees: a tenant's stream.
    let acme_stream = acme.send(Method::GET, "/v1/events", None).await;
    assert_eq!(acme_stream.status(), StatusCode::OK);
    let stopped = acme
        .send(Method::POST, "/v1/devices/acme-1/stop", None)
        .await;
    assert_eq!(stopped.status(), StatusCode::ACCEPTED);
    let seen = acme_events.until_status("STOPPED").await;
    assert_eq!(seen.data["tenant"], "acme", "events name their tenant");
    let text = body_of(stream, Duration::from_secs(1)).await;
    assert_eq!(leaks(&text), None, "globex's stream: {text}");
    let text = body_of(acme_stream, Duration::from_secs(1)).await;
    assert!(
        text.contains("\"STOPPED\"") && text.contains("acme-1"),
        "acme's own stream carries its device's events: {text}"
    );

    // Acme's own key sees its device; globex's device limit holds.
    let listed: Value = acme
        .send(Method::GET, "/v1/devices", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["devices"].as_array().unwrap().len(), 1, "{listed}");
    let contact: Value = acme
        .send(Method::GET, &format!("/v1/contacts/{ACME_CONTACT}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        contact["tags"],
        json!(["acme-vip"]),
        "the walk changed none of acme's contacts: {contact}"
    );
    // The walk may have made globex devices (a compatibility create needs no body).
    let own: Value = globex
        .send(Method::GET, "/v1/devices", None)
        .await
        .json()
        .await
        .unwrap();
    let room = own["devices"].as_array().unwrap().len() + 1;
    let admin = Caller {
        wafleet: &wafleet,
        key: KEY.to_owned(),
    };
    let limit = admin
        .send(
            Method::PATCH,
            "/v1/tenants/globex",
            Some(json!({"max_devices": room})),
        )
        .await;
    assert_eq!(limit.status(), StatusCode::OK);
    let first = globex
        .send(
            Method::POST,
            "/v1/devices",
            Some(json!({"id": "globex-1", "name": "g"})),
        )
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = globex
        .send(
            Method::POST,
            "/v1/devices",
            Some(json!({"id": "globex-2", "name": "g"})),
        )
        .await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_device_limit");
    let elsewhere = globex
        .send(
            Method::POST,
            "/v1/devices",
            Some(json!({"id": "globex-3", "name": "g", "tenant": "acme"})),
        )
        .await;
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_keys_stop_within_2_s_and_rotated_secrets_after_their_grace() {
    let dir = tempfile::tempdir().unwrap();
    let wafleet = Standalone::start(dir.path()).await;
    let admin = Caller {
        wafleet: &wafleet,
        key: KEY.to_owned(),
    };
    let body = json!({"name": "ops", "role": "admin", "tenant": "default"});
    let key = created(
        admin.send(Method::POST, "/v1/keys", Some(body)).await,
        "key",
    )
    .await;
    let id = key["id"].as_str().unwrap();
    let old = Caller {
        wafleet: &wafleet,
        key: key["key"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        old.send(Method::GET, "/v1/devices", None).await.status(),
        200
    );
    let listed: Value = admin
        .send(Method::GET, "/v1/keys", None)
        .await
        .json()
        .await
        .unwrap();
    let shown = listed.to_string();
    assert!(
        !shown.contains(&old.key),
        "a listed key shows no secret: {shown}"
    );

    let rotated = admin
        .send(
            Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            Some(json!({"grace_seconds": 2})),
        )
        .await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let new = Caller {
        wafleet: &wafleet,
        key: rotated["key"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        new.send(Method::GET, "/v1/devices", None).await.status(),
        200
    );
    assert_eq!(
        old.send(Method::GET, "/v1/devices", None).await.status(),
        200,
        "in grace"
    );
    let grace_end = Instant::now() + Duration::from_secs(2);
    tokio::time::sleep_until((grace_end + Duration::from_millis(1200)).into()).await;
    assert_eq!(
        old.send(Method::GET, "/v1/devices", None).await.status(),
        401,
        "grace over"
    );
    assert_eq!(
        new.send(Method::GET, "/v1/devices", None).await.status(),
        200
    );

    let revoked = admin
        .send(Method::DELETE, &format!("/v1/keys/{id}"), None)
        .await;
    assert_eq!(revoked.status(), 200);
    let at = Instant::now();
    while new.send(Method::GET, "/v1/devices", None).await.status() != 401 {
        assert!(
            at.elapsed() < Duration::from_secs(2),
            "revoked key still works after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_log_in_locked_users_cannot_and_wrong_passwords_slow_attempts_all_audited() {
    let dir = tempfile::tempdir().unwrap();
    let wafleet = Standalone::start(dir.path()).await;
    let admin = Caller {
        wafleet: &wafleet,
        key: KEY.to_owned(),
    };
    let body = json!({"username": "ana", "password": "correct horse battery", "role": "user", "tenant": "default"});
    created(
        admin.send(Method::POST, "/v1/users", Some(body)).await,
        "user",
    )
    .await;
    let login = |password: &str| {
        wafleet
            .http
            .post(wafleet.url("/v1/auth/login"))
            .json(&json!({"username": "ana", "password": password}))
            .send()
    };
    let ok = login("correct horse battery").await.unwrap();
    assert_eq!(ok.status(), 200);
    let token: Value = ok.json().await.unwrap();
    let ana = Caller {
        wafleet: &wafleet,
        key: token["token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        ana.send(Method::GET, "/v1/devices", None).await.status(),
        200
    );
    assert_eq!(
        ana.send(Method::GET, "/v1/users", None).await.status(),
        403,
        "a user is not an admin"
    );

    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(login("wrong password!").await.unwrap().status().as_u16());
    }
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "ten wrong passwords are slowed: {statuses:?}"
    );
    let slowed = login("correct horse battery").await.unwrap();
    assert_eq!(slowed.status(), 429, "even the right password waits");
    assert!(slowed.headers().contains_key("retry-after"));

    let lock = admin
        .send(
            Method::PATCH,
            "/v1/users/ana",
            Some(json!({"locked": true})),
        )
        .await;
    assert_eq!(lock.status(), 200);
    assert_eq!(
        ana.send(Method::GET, "/v1/devices", None).await.status(),
        401,
        "a locked user's token stops"
    );

    // The audit log has the changes, with actor, tenant and outcome, as CSV.
    let at = Instant::now();
    let csv = loop {
        let response = admin.send(Method::GET, "/v1/audit?format=csv", None).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = response.text().await.unwrap();
        if csv.contains("patch_user") || at.elapsed() > Duration::from_secs(5) {
            break csv;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,at,actor,tenant,action,target,source,status,outcome"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",bootstrap,,create_user,/v1/users,127.0.0.1,201,ok")),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",user:ana,,login,/v1/auth/login,127.0.0.1,401,unauthorized")),
        "{csv}"
    );
    assert!(
        lines.iter().any(|l| l.contains("too_many_attempts")),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",bootstrap,,patch_user,/v1/users/ana,127.0.0.1,200,ok")),
        "{csv}"
    );
    let filtered: Value = admin
        .send(Method::GET, "/v1/audit?action=patch_user", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        filtered["entries"].as_array().unwrap().len(),
        1,
        "{filtered}"
    );
    assert!(
        !csv.contains("correct horse"),
        "no password in the audit log"
    );
}
