//! The contact book through a real standalone process: saving one contact and
//! importing many, tags (set, counted, filtered on, page by page), deleting, every
//! change audited, tenants kept apart (another tenant's key sees none of it), and the
//! errors of bad input.

mod common;

use std::time::{Duration, Instant};

use common::Standalone;
use common::client::tenants;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn phone(n: usize) -> String {
    format!("62812{n:08}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_contact_book_saves_imports_tags_pages_and_stays_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    let (admin, acme, globex) = tenants(&app).await;

    // One contact: created (201), then saved again (200): renamed, tags kept.
    let (status, ani) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"phone": "+6281100000001", "name": "Ani", "tags": ["VIP", "lead", "vip"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ani}");
    assert_eq!(ani["phone"], "6281100000001", "digits, without the +");
    assert_eq!(
        ani["tags"],
        json!(["lead", "vip"]),
        "lower case, once each, sorted"
    );
    let (status, again) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"phone": "6281100000001", "name": "Ani S"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["name"], "Ani S");
    assert_eq!(again["tags"], json!(["lead", "vip"]));
    assert_eq!(again["created_at"], ani["created_at"]);
    assert_eq!(acme.get("/v1/contacts/6281100000001").await, again);

    // An import: 120 contacts, every other one "promo", every third "vip".
    let contacts: Vec<Value> = (0..120)
        .map(|n| {
            let mut tags = Vec::new();
            if n % 2 == 0 {
                tags.push("promo");
            }
            if n % 3 == 0 {
                tags.push("VIP");
            }
            json!({"phone": phone(n), "name": format!("customer {n}"), "tags": tags})
        })
        .collect();
    let (status, imported) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"contacts": contacts})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{imported}");
    assert_eq!(imported, json!({"created": 120, "updated": 0}));
    let (status, imported) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"contacts": [
                {"phone": phone(0), "name": "first customer"},
                {"phone": phone(200), "name": "new one", "tags": ["promo"]},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(imported, json!({"created": 1, "updated": 1}));

    // By tag, page by page, in phone order.
    let promo: Vec<String> = (0..120).step_by(2).chain([200]).map(phone).collect();
    let (listed, pages) = acme
        .all_pages("/v1/contacts?tag=promo&limit=25", "contacts", "phone")
        .await;
    assert_eq!(listed, promo);
    assert!(pages >= 3, "{pages} pages");
    let (vip, _) = acme
        .all_pages("/v1/contacts?tag=VIP&limit=500", "contacts", "phone")
        .await;
    assert_eq!(vip.len(), 41, "40 imported and Ani: {vip:?}");
    assert_eq!(vip[0], "6281100000001");
    let (everyone, _) = acme.all_pages("/v1/contacts", "contacts", "phone").await;
    assert_eq!(everyone.len(), 122);
    // A search: a phone or a name prefix, with a tag or not.
    let (found, _) = acme
        .all_pages("/v1/contacts?q=Customer%2011", "contacts", "phone")
        .await;
    let elevens: Vec<String> = [11].into_iter().chain(110..120).map(phone).collect();
    assert_eq!(found, elevens);
    let (found, _) = acme
        .all_pages(
            "/v1/contacts?q=customer%2011&tag=promo",
            "contacts",
            "phone",
        )
        .await;
    let even: Vec<String> = (110..120).step_by(2).map(phone).collect();
    assert_eq!(found, even);
    let (found, _) = acme
        .all_pages("/v1/contacts?q=%2B628110", "contacts", "phone")
        .await;
    assert_eq!(found, ["6281100000001"]);
    let first = acme.get("/v1/contacts?limit=1").await;
    assert_eq!(first["contacts"][0]["phone"], "6281100000001");
    assert_eq!(first["next_cursor"], "6281100000001");
    assert_eq!(
        acme.get(&format!("/v1/contacts/{}", phone(0))).await["name"],
        "first customer"
    );
    assert_eq!(
        acme.get("/v1/tags").await,
        json!({"tags": [
            {"tag": "lead", "count": 1},
            {"tag": "promo", "count": 61},
            {"tag": "vip", "count": 41},
        ], "next_cursor": null})
    );
    let paged = acme.get("/v1/tags?limit=1&cursor=lead").await;
    assert_eq!(paged["tags"], json!([{"tag": "promo", "count": 61}]));
    assert_eq!(paged["next_cursor"], "promo");

    // Tags replaced; a contact deleted.
    let (status, retagged) = acme
        .send(
            Method::PUT,
            "/v1/contacts/6281100000001/tags",
            Some(json!({"tags": ["Promo"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retagged}");
    assert_eq!(retagged["tags"], json!(["promo"]));
    let (status, deleted) = acme
        .send(Method::DELETE, &format!("/v1/contacts/{}", phone(2)), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted, json!({"id": phone(2), "deleted": true}));
    assert_eq!(
        acme.error(Method::GET, &format!("/v1/contacts/{}", phone(2)), None)
            .await,
        (StatusCode::NOT_FOUND, "contact_not_found".to_owned())
    );
    assert_eq!(
        acme.get("/v1/tags").await["tags"],
        json!([{"tag": "promo", "count": 61}, {"tag": "vip", "count": 40}]),
        "lead is gone with Ani's old tags; one promo deleted, Ani's added"
    );

    // Another tenant's key sees none of it, and changes none of it.
    assert_eq!(
        globex.get("/v1/contacts").await,
        json!({"contacts": [], "next_cursor": null})
    );
    assert_eq!(
        globex.get("/v1/contacts?tag=promo").await["contacts"],
        json!([])
    );
    assert_eq!(globex.get("/v1/tags").await["tags"], json!([]));
    let ani = "/v1/contacts/6281100000001";
    for (method, path, body) in [
        (Method::GET, ani.to_owned(), None),
        (Method::DELETE, ani.to_owned(), None),
        (
            Method::PUT,
            format!("{ani}/tags"),
            Some(json!({"tags": []})),
        ),
        (Method::GET, "/v1/contacts?tenant=acme".to_owned(), None),
        (Method::GET, "/v1/tags?tenant=acme".to_owned(), None),
    ] {
        let (status, _) = globex.error(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, mine) = globex
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"phone": "6281100000001", "name": "Globex's own Ani"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same phone is another contact: {mine}"
    );
    assert_eq!(acme.get(ani).await["name"], "Ani S", "acme's is untouched");
    assert_eq!(acme.get(ani).await["tags"], json!(["promo"]));

    // The operator works on a tenant's book by name, and on `default` without one.
    let (acme_all, _) = admin
        .all_pages("/v1/contacts?tenant=acme&limit=500", "contacts", "phone")
        .await;
    assert_eq!(
        acme_all,
        acme.all_pages("/v1/contacts?limit=500", "contacts", "phone")
            .await
            .0
    );
    assert_eq!(
        admin
            .error(Method::GET, "/v1/contacts?tenant=nope", None)
            .await,
        (StatusCode::NOT_FOUND, "tenant_not_found".to_owned())
    );
    let (status, _) = admin
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"phone": "6281100000009", "name": "default's"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        admin.get("/v1/contacts").await["contacts"][0]["name"],
        "default's"
    );
    assert_eq!(
        acme.error(Method::GET, "/v1/contacts/6281100000009", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Every change is audited, with its outcome.
    let at = Instant::now();
    let audit = loop {
        let audit = admin.get("/v1/audit?limit=500").await;
        let text = audit.to_string();
        if text.contains("delete_contact") || at.elapsed() > Duration::from_secs(5) {
            break audit;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let entries = audit["entries"].as_array().unwrap();
    let of = |action: &str, tenant: &str, status: u64| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["tenant"] == tenant && e["status"] == status)
    };
    assert!(of("save_contacts", "acme", 201), "{audit}");
    assert!(of("save_contacts", "acme", 200), "{audit}");
    assert!(of("set_contact_tags", "acme", 200), "{audit}");
    assert!(of("delete_contact", "acme", 200), "{audit}");
    assert!(of("delete_contact", "globex", 404), "{audit}");
    assert!(
        !entries.iter().any(|e| e["action"] == "list_contacts"),
        "reads are not audited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_contact_input_gets_a_clear_error_and_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    let (_, acme, _) = tenants(&app).await;
    let save = |body: Value| {
        let acme = &acme;
        async move { acme.error(Method::POST, "/v1/contacts", Some(body)).await }
    };
    let bad = StatusCode::BAD_REQUEST;
    assert_eq!(
        save(json!({"phone": "0812-345", "name": "x"})).await,
        (bad, "invalid_phone".to_owned())
    );
    assert_eq!(
        save(json!({"phone": "6281100000001", "name": " "})).await,
        (bad, "invalid_name".to_owned())
    );
    assert_eq!(
        save(json!({"phone": "6281100000001", "name": "x", "tags": ["a b"]})).await,
        (bad, "invalid_tag".to_owned())
    );
    let many: Vec<String> = (0..21).map(|n| format!("t{n}")).collect();
    assert_eq!(
        save(json!({"phone": "6281100000001", "name": "x", "tags": many})).await,
        (bad, "too_many_tags".to_owned())
    );
    assert_eq!(
        save(json!({"phone": "6281100000001"})).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body".to_owned())
    );
    assert_eq!(
        save(json!({"phone": "6281100000001", "name": "x", "email": "a@b"})).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body".to_owned())
    );
    // An import is checked whole before anything is saved.
    let mut contacts: Vec<Value> = (0..5)
        .map(|n| json!({"phone": phone(n), "name": "ok"}))
        .collect();
    contacts[3]["phone"] = json!("12");
    let (status, body) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"contacts": contacts})),
        )
        .await;
    assert_eq!(status, bad);
    assert_eq!(body["error"]["code"], "invalid_phone");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contacts[3]"),
        "{body}"
    );
    assert_eq!(acme.get("/v1/contacts").await["contacts"], json!([]));
    let too_many: Vec<Value> = (0..1001)
        .map(|n| json!({"phone": phone(n), "name": "c"}))
        .collect();
    assert_eq!(
        save(json!({"contacts": too_many})).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_contacts".to_owned()
        )
    );
    assert_eq!(acme.get("/v1/contacts").await["contacts"], json!([]));

    // Paths and queries.
    for (method, path, code) in [
        (Method::GET, "/v1/contacts/abc", "invalid_phone"),
        (Method::DELETE, "/v1/contacts/123", "invalid_phone"),
        (Method::GET, "/v1/contacts?limit=0", "invalid_limit"),
        (Method::GET, "/v1/contacts?limit=501", "invalid_limit"),
        (Method::GET, "/v1/contacts?cursor=abc", "invalid_cursor"),
        (Method::GET, "/v1/contacts?tag=a%20b", "invalid_tag"),
        (Method::GET, "/v1/contacts?q=%20", "invalid_search"),
        (Method::GET, "/v1/contacts?color=red", "invalid_query"),
        (Method::GET, "/v1/tags?cursor=a%20b", "invalid_cursor"),
    ] {
        assert_eq!(
            acme.error(method.clone(), path, None).await,
            (bad, code.to_owned()),
            "{method} {path}"
        );
    }
    assert_eq!(
        acme.error(
            Method::PUT,
            "/v1/contacts/6281100000001/tags",
            Some(json!({"tags": ["vip"]}))
        )
        .await,
        (StatusCode::NOT_FOUND, "contact_not_found".to_owned())
    );
    let (status, _) = acme
        .send(
            Method::POST,
            "/v1/contacts",
            Some(json!({"phone": "6281100000001", "name": "Ani"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        acme.error(
            Method::PUT,
            "/v1/contacts/6281100000001/tags",
            Some(json!({"tags": ["no way"]}))
        )
        .await,
        (bad, "invalid_tag".to_owned())
    );
    assert_eq!(
        acme.error(
            Method::PUT,
            "/v1/contacts/6281100000001/tags",
            Some(json!({}))
        )
        .await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body".to_owned())
    );
    assert_eq!(
        acme.get("/v1/contacts/6281100000001").await["tags"],
        json!([])
    );
}
