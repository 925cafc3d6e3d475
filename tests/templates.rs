//! Message templates and the send retry settings through a real standalone process:
//! a template saved, read, listed page by page, changed and deleted; its text sealed in
//! the data folder; tenants kept apart; bad names, texts and placeholders refused; the
//! retry settings read by anyone and changed only by an operator.

mod common;

use common::client::tenants;
use common::{Standalone, files_containing};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_templates_are_its_own_checked_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    let (admin, acme, globex) = tenants(&app).await;

    let secret = "Halo {{ name }}, kode rahasia {{code}} berlaku sampai {{until}}";
    let (status, made) = acme
        .send(
            Method::POST,
            "/v1/templates",
            Some(json!({"name": "otp", "text": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["variables"], json!(["code", "name", "until"]));
    assert_eq!(made["text"], secret);
    assert_eq!(acme.get(&format!("/v1/templates/{id}")).await, made);

    // The operator sees it under ?tenant=acme; globex does not see it at all.
    let theirs = admin.get(&format!("/v1/templates/{id}?tenant=acme")).await;
    assert_eq!(theirs["id"], id.as_str());
    for method in [Method::GET, Method::DELETE] {
        let (status, code) = globex
            .error(method, &format!("/v1/templates/{id}"), None)
            .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "template_not_found")
        );
    }
    let (status, code) = globex
        .error(
            Method::PUT,
            &format!("/v1/templates/{id}"),
            Some(json!({"name": "x", "text": "y"})),
        )
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "template_not_found")
    );
    let (status, code) = globex
        .error(Method::GET, "/v1/templates?tenant=acme", None)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "tenant_not_found")
    );
    assert_eq!(globex.get("/v1/templates").await["templates"], json!([]));

    // Pages.
    let mut ids = vec![id.clone()];
    for n in 0..4 {
        let (status, more) = acme
            .send(
                Method::POST,
                "/v1/templates",
                Some(json!({"name": format!("t{n}"), "text": format!("text {n}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{more}");
        ids.push(more["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    let (listed, pages) = acme
        .all_pages("/v1/templates?limit=2", "templates", "id")
        .await;
    assert_eq!(listed, ids);
    assert_eq!(pages, 3);

    // Changed: the new text, the same creation time.
    let (status, changed) = acme
        .send(
            Method::PUT,
            &format!("/v1/templates/{id}"),
            Some(json!({"name": "otp-2", "text": "Kode {{code}}"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["variables"], json!(["code"]));
    assert_eq!(changed["created_at"], made["created_at"]);

    // Nothing of either text is readable in the data folder.
    for needle in ["kode rahasia", "Kode {{code}}"] {
        assert_eq!(
            files_containing(dir.path(), needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }

    // Bad input.
    for (body, status, code) in [
        (
            json!({"name": "n", "text": "Hi {{name"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_template",
        ),
        (
            json!({"name": "n", "text": "Hi {{ 1st }}"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_template",
        ),
        (
            json!({"name": " ", "text": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "n", "text": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_text",
        ),
        (
            json!({"name": "n"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"name": "n", "text": "x", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let (got, got_code) = acme
            .error(Method::POST, "/v1/templates", Some(body.clone()))
            .await;
        assert_eq!((got, got_code.as_str()), (status, code), "{body}");
    }

    let (status, deleted) = acme
        .send(Method::DELETE, &format!("/v1/templates/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (status, code) = acme
        .error(Method::GET, &format!("/v1/templates/{id}"), None)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "template_not_found")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_settings_are_read_by_anyone_and_set_by_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    let (admin, acme, _) = tenants(&app).await;

    assert_eq!(
        acme.get("/v1/settings/retries").await,
        json!({"base_delay_ms": 1000, "max_attempts": 8})
    );
    let wanted = json!({"base_delay_ms": 250, "max_attempts": 3});
    let (status, code) = acme
        .error(Method::PUT, "/v1/settings/retries", Some(wanted.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{code}");
    let (status, set) = admin
        .send(Method::PUT, "/v1/settings/retries", Some(wanted.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set, wanted);
    assert_eq!(acme.get("/v1/settings/retries").await, wanted);
    for bad in [
        json!({"base_delay_ms": 0, "max_attempts": 3}),
        json!({"base_delay_ms": 1000, "max_attempts": 51}),
        json!({"base_delay_ms": 1000}),
    ] {
        let (status, _) = admin
            .error(Method::PUT, "/v1/settings/retries", Some(bad.clone()))
            .await;
        assert!(status.is_client_error(), "{bad}: {status}");
    }
    assert_eq!(admin.get("/v1/settings/retries").await, wanted, "unchanged");
}
