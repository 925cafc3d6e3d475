//! Media files through `wafleet standalone`'s HTTP API: uploads (raw and multipart)
//! stored sealed and read back byte for byte, size limits enforced before anything is
//! stored, other tenants kept out.

mod common;

use common::{KEY, Standalone, inbox_of};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The image limit the standalone runs with, so a refused upload stays small.
const IMAGE_LIMIT: usize = 2 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

async fn upload(
    app: &Standalone,
    key: &str,
    query: &str,
    mime: &str,
    data: Vec<u8>,
) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/media{query}")))
        .bearer_auth(key)
        .header("content-type", mime)
        .body(data)
        .send()
        .await
        .unwrap()
}

/// Every file under `dir`, at any depth, read whole.
fn stored_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(stored_files(&path));
        } else {
            out.push(std::fs::read(path).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn uploads_are_stored_sealed_and_read_back_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let limit = IMAGE_LIMIT.to_string();
    let app = Standalone::start_with_env(
        data.path(),
        &[("WAFLEET__MEDIA__LIMITS__IMAGE_BYTES", limit.as_str())],
    )
    .await;

    // A raw upload.
    let photo = noise(IMAGE_LIMIT - 1000, 1);
    let created = upload(&app, KEY, "?filename=photo.png", "image/png", photo.clone()).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["mime"], "image/png");
    assert_eq!(created["type"], "image");
    assert_eq!(created["size"], photo.len());
    assert_eq!(created["sha256"], hex(&Sha256::digest(&photo)));
    assert_eq!(created["filename"], "photo.png");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("med_") && id.len() == 36, "{id}");

    let got = app.get(&format!("/v1/media/{id}")).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(
        got.headers()["content-length"],
        photo.len().to_string().as_str()
    );
    assert_eq!(
        got.headers()["content-disposition"],
        "attachment; filename=\"photo.png\""
    );
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert_eq!(got.bytes().await.unwrap().as_ref(), photo.as_slice());

    // Multipart: the field's own type and name.
    let pdf = noise(300_000, 2);
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf.clone())
                .file_name("faktur.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let created = app
        .http
        .post(app.url("/v1/media"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (&created["mime"], &created["type"], &created["filename"]),
        (
            &json!("application/pdf"),
            &json!("document"),
            &json!("faktur.pdf")
        )
    );
    let pdf_id = created["id"].as_str().unwrap();
    let got = app.get(&format!("/v1/media/{pdf_id}")).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), pdf.as_slice());

    // Nothing in the media folder holds the bytes or the names in clear.
    let files = stored_files(&data.path().join("media"));
    assert!(files.len() >= 4, "{} files", files.len());
    for file in &files {
        for (plain, what) in [(&photo[5000..5064], "photo"), (&pdf[9000..9064], "pdf")] {
            assert!(!file.windows(64).any(|w| w == plain), "{what} in clear");
        }
        assert!(!file.windows(10).any(|w| w == b"faktur.pdf"));
    }
}

#[tokio::test]
async fn past_the_limit_nothing_is_stored_and_others_see_nothing() {
    let data = tempfile::tempdir().unwrap();
    let limit = IMAGE_LIMIT.to_string();
    let app = Standalone::start_with_env(
        data.path(),
        &[("WAFLEET__MEDIA__LIMITS__IMAGE_BYTES", limit.as_str())],
    )
    .await;
    let big = noise(IMAGE_LIMIT + 1, 3);

    // Announced by Content-Length: refused before a byte is read.
    let refused = upload(&app, KEY, "", "image/jpeg", big.clone()).await;
    assert_eq!(refused.status(), 413);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    // Streamed without a length: refused when it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let streamed = app
        .http
        .post(app.url("/v1/media"))
        .bearer_auth(KEY)
        .header("content-type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // The server answers 413 as soon as the limit is passed and closes the connection
    // without reading the rest, so a client still sending may see the close first.
    match streamed {
        Ok(response) => assert_eq!(response.status(), 413),
        Err(error) => assert!(error.is_request(), "{error}"),
    }
    let media = data.path().join("media");
    assert!(
        stored_files(&media).is_empty(),
        "a refused upload leaves nothing"
    );
    // The same bytes as a document are fine.
    let document = upload(&app, KEY, "?type=document", "image/jpeg", big).await;
    assert_eq!(document.status(), 201);
    let id = document.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bad input.
    let bad_type = upload(&app, KEY, "?type=gif", "image/gif", vec![1]).await;
    assert_eq!(bad_type.status(), 400);
    let bad_mime = upload(&app, KEY, "", "image", vec![1]).await;
    assert_eq!(bad_mime.status(), 400);
    assert_eq!(app.get("/v1/media/nope").await.status(), 400);
    let unknown = app
        .get("/v1/media/med_0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "media_not_found"
    );

    // Another tenant's key sees nothing; its own uploads are its own.
    let tenant = app
        .post("/v1/tenants", json!({"id": "globex", "name": "Globex"}))
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
    let theirs = app
        .http
        .get(app.url(&format!("/v1/media/{id}")))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let own = upload(&app, &globex, "", "text/plain", b"hello".to_vec()).await;
    assert_eq!(own.status(), 201);
    let own_id = own.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = app
        .http
        .get(app.url(&format!("/v1/media/{own_id}")))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(read.text().await.unwrap(), "hello");
    // Deleted: gone for good; another tenant cannot delete it.
    let theirs = app
        .http
        .delete(app.url(&format!("/v1/media/{own_id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 200, "an admin of every tenant may");
    let again = app
        .http
        .get(app.url(&format!("/v1/media/{own_id}")))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let not_theirs = app
        .http
        .delete(app.url(&format!("/v1/media/{id}")))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(not_theirs.status(), 404);
    assert_eq!(app.get(&format!("/v1/media/{id}")).await.status(), 200);
    let other_tenant = upload(&app, &globex, "?tenant=default", "text/plain", vec![1]).await;
    assert_eq!(other_tenant.status(), 404);
    for bad in ["?tenant=", "?tenant=nobody"] {
        let refused = upload(&app, KEY, bad, "text/plain", vec![1]).await;
        assert_eq!(refused.status(), 404, "{bad}");
    }
}

const DEVICE_PHONE: &str = "6281230000077";
const FRIEND: &str = "6289870000011";

/// The message's status, waiting (event-driven) until it is `status` or failed.
async fn until_message(events: &mut common::Sse, message_id: &str, status: &str) -> Value {
    loop {
        let event = events.next_of_kind("message.status").await;
        if event.data["message_id"] == message_id
            && (event.data["status"] == status || event.data["status"] == "failed")
        {
            return event.data;
        }
    }
}

async fn upload_id(app: &Standalone, query: &str, mime: &str, data: Vec<u8>) -> Value {
    let created = upload(app, KEY, query, mime, data).await;
    assert_eq!(created.status(), 201);
    created.json().await.unwrap()
}

#[tokio::test]
async fn media_is_sent_to_phones_and_received_from_them() {
    let data = tempfile::tempdir().unwrap();
    let limit = IMAGE_LIMIT.to_string();
    let app = Standalone::start_with_env(
        data.path(),
        &[
            ("WAFLEET__MEDIA__LIMITS__IMAGE_BYTES", limit.as_str()),
            ("WAFLEET__MEDIA__ALLOW_PRIVATE_URLS", "true"),
        ],
    )
    .await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let mut events = app.events("/v1/devices/shop-1/events", None).await;

    // An upload, sent with a caption: the phone's inbox has the same bytes' SHA-256.
    let photo = noise(IMAGE_LIMIT - 10, 5);
    let uploaded = upload_id(&app, "", "image/jpeg", photo.clone()).await;
    let sent = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": FRIEND, "text": "lihat", "media": {"id": uploaded["id"], "type": "image"}}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let message_id = sent.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outcome = until_message(&mut events, &message_id, "delivered").await;
    assert_eq!(outcome["status"], "delivered", "{outcome}");
    let inbox = inbox_of(&app.http, &app.base, FRIEND).await;
    let got = &inbox[0];
    assert_eq!(got["text"], "lihat");
    assert_eq!(got["media"]["type"], "image");
    assert_eq!(got["media"]["mime"], "image/jpeg");
    assert_eq!(got["media"]["size"], photo.len());
    assert_eq!(got["media"]["sha256"], hex(&Sha256::digest(&photo)));
    assert_eq!(got["media"]["caption"], "lihat");
    // A media send passes the rate limiter like a text: one send spent.
    let limits = app.json("/v1/devices/shop-1/limits").await;
    assert_eq!(limits["day"]["spent"], 1, "{limits}");
    let logged = app
        .json(&format!("/v1/devices/shop-1/messages/{message_id}"))
        .await;
    assert_eq!(logged["text"], "lihat");
    assert_eq!(logged["media"]["id"], uploaded["id"]);
    assert_eq!(logged["media"]["sha256"], uploaded["sha256"]);

    // By URL: fetched, stored, sent.
    let served = noise(40_000, 6);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = served.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/files/nota%20lunas.pdf",
            axum::routing::get(
                move || async move { ([("content-type", "application/pdf")], body) },
            ),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let sent = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": FRIEND, "media": {"url": format!("http://{addr}/files/nota%20lunas.pdf"), "type": "document"}}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let by_url = sent.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outcome = until_message(&mut events, &by_url, "delivered").await;
    assert_eq!(outcome["status"], "delivered", "{outcome}");
    let inbox = inbox_of(&app.http, &app.base, FRIEND).await;
    assert_eq!(inbox[1]["media"]["sha256"], hex(&Sha256::digest(&served)));
    assert_eq!(inbox[1]["media"]["filename"], "nota lunas.pdf");
    assert_eq!(inbox[1]["media"]["mime"], "application/pdf");

    // Refused before anything is queued.
    let document = upload_id(
        &app,
        "?type=document",
        "image/jpeg",
        noise(IMAGE_LIMIT + 1, 7),
    )
    .await;
    let too_large = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": FRIEND, "media": {"id": document["id"], "type": "image"}}),
        )
        .await;
    assert_eq!(too_large.status(), 413);
    for (media, status) in [
        (
            json!({"id": "med_0123456789abcdef0123456789abcdef", "type": "image"}),
            404,
        ),
        (json!({"type": "image"}), 422),
        (
            json!({"id": uploaded["id"], "url": "http://x/y", "type": "image"}),
            422,
        ),
        (json!({"id": uploaded["id"], "type": "gif"}), 400),
        (
            json!({"url": "http://127.0.0.1:9/none.png", "type": "image"}),
            422,
        ),
    ] {
        let refused = app
            .post(
                "/v1/devices/shop-1/messages",
                json!({"to": FRIEND, "media": media.clone()}),
            )
            .await;
        assert_eq!(refused.status(), status, "{media}");
    }
    let no_text = app
        .post("/v1/devices/shop-1/messages", json!({"to": FRIEND}))
        .await;
    assert_eq!(no_text.status(), 422);

    // A phone sends a PDF: message.inbound names the file; its bytes come back.
    let pdf = noise(120_000, 8);
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pdf);
    let phone_sent = app
        .http
        .post(app.url(&format!("/sim/phones/{FRIEND}/send")))
        .json(
            &json!({"to_phone": DEVICE_PHONE, "media": {"type": "document",
            "mime": "application/pdf", "data_base64": encoded, "caption": "tagihan",
            "filename": "tagihan.pdf"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(phone_sent.status(), 202);
    let inbound = events.next_of_kind("message.inbound").await;
    let media = &inbound.data["media"];
    assert_eq!(media["type"], "document");
    assert_eq!(media["mime"], "application/pdf");
    assert_eq!(media["size"], pdf.len());
    assert_eq!(media["caption"], "tagihan");
    assert_eq!(inbound.data["text"], "tagihan");
    let file = app
        .get(&format!("/v1/media/{}", media["id"].as_str().unwrap()))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.headers()["content-disposition"],
        "attachment; filename=\"tagihan.pdf\""
    );
    assert_eq!(file.bytes().await.unwrap().as_ref(), pdf.as_slice());
    let log = app.json("/v1/devices/shop-1/messages?direction=in").await;
    assert_eq!(log["messages"][0]["media"]["id"], media["id"]);
}

/// The names of every file under `dir`, at any depth.
fn stored_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(stored_names(&path));
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn received_files_are_deleted_with_their_device_and_uploads_stay() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("shop-1", DEVICE_PHONE).await;
    let mut events = app.events("/v1/devices/shop-1/events", None).await;

    // An upload, sent: the tenant's file, not the device's.
    let uploaded = upload_id(&app, "", "image/png", noise(5_000, 11)).await;
    let sent = app
        .post(
            "/v1/devices/shop-1/messages",
            json!({"to": FRIEND, "media": {"id": uploaded["id"], "type": "image"}}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let message_id = sent.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until_message(&mut events, &message_id, "delivered").await;

    // A phone sends a file: stored as two objects named after its id.
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        noise(30_000, 12),
    );
    let phone_sent = app
        .http
        .post(app.url(&format!("/sim/phones/{FRIEND}/send")))
        .json(
            &json!({"to_phone": DEVICE_PHONE, "media": {"type": "document",
            "mime": "application/pdf", "data_base64": encoded}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(phone_sent.status(), 202);
    let inbound = events.next_of_kind("message.inbound").await;
    let received = inbound.data["media"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/v1/media/{received}")).await.status(),
        200
    );
    let objects_of = |id: &str| {
        stored_names(&data.path().join("media"))
            .into_iter()
            .filter(|name| name.starts_with(id))
            .count()
    };
    assert_eq!(objects_of(&received), 2, "its bytes and its record");

    let deleted = app
        .http
        .delete(app.url("/v1/devices/shop-1"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let gone = app.get(&format!("/v1/media/{received}")).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(objects_of(&received), 0, "objects left in the data folder");
    let uploaded_id = uploaded["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/media/{uploaded_id}")).await.status(),
        200
    );
    assert_eq!(objects_of(uploaded_id), 2);
}

/// Issue 15's first acceptance point, through a cluster on one machine (one node, two
/// gateways, a simulator process): a 5 MB image uploaded through one gateway and sent
/// reaches the phone with the same SHA-256; a PDF the phone sends is named by
/// `message.inbound`, and another gateway returns the same bytes for it.
#[tokio::test]
async fn through_a_cluster_a_photo_goes_out_and_a_pdf_comes_in_whole() {
    use std::path::Path;
    use wafleet_load::scenario::cluster::{
        COOKIE, GatewayProcess, NodePlan, NodeProcess, SimProcess,
    };
    use wafleet_load::scenario::process::RedisServer;
    const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");

    let redis = RedisServer::start().await.unwrap();
    let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wafleet.db");
    let plans = NodePlan::cluster(1, &db, &redis.url, std::slice::from_ref(&sim.ws)).unwrap();
    let mut node = NodeProcess::start(Path::new(WAFLEET), dir.path(), &plans[0], COOKIE)
        .await
        .unwrap();
    node.wait_members(&["node-1"], common::WAIT).await.unwrap();
    let mut gateways = Vec::new();
    for name in ["gw-1", "gw-2"] {
        let gateway = GatewayProcess::start(
            Path::new(WAFLEET),
            dir.path(),
            name,
            &[plans[0].address()],
            &plans[0],
            COOKIE,
            1,
        )
        .await
        .unwrap();
        gateways.push(gateway);
    }
    let (one, two) = (gateways[0].base.clone(), gateways[1].base.clone());
    let http = reqwest::Client::new();
    let mut events = common::Sse::connect(&http, &format!("{one}/v1/events"), None).await;
    common::post_routed(
        &http,
        &format!("{one}/v1/devices"),
        json!({"id": "shop-c", "name": "shop"}),
    )
    .await;
    common::post_routed(&http, &format!("{one}/v1/devices/shop-c/start"), json!({})).await;
    common::scan_until_ready(&http, &sim.base, DEVICE_PHONE, &mut events).await;

    // A 5 MB image, uploaded through one gateway and sent.
    let photo = noise(5 << 20, 9);
    let created = http
        .post(format!("{one}/v1/media"))
        .bearer_auth(KEY)
        .header("content-type", "image/jpeg")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let sha = hex(&Sha256::digest(&photo));
    assert_eq!(created["sha256"], sha);
    let sent = common::post_routed(
        &http,
        &format!("{one}/v1/devices/shop-c/messages"),
        json!({"to": FRIEND, "media": {"id": created["id"], "type": "image"}, "text": "foto"}),
    )
    .await;
    let outcome = until_message(&mut events, sent["id"].as_str().unwrap(), "delivered").await;
    assert_eq!(outcome["status"], "delivered", "{outcome}");
    let inbox = inbox_of(&http, &sim.base, FRIEND).await;
    assert_eq!(inbox[0]["media"]["sha256"], sha);
    assert_eq!(inbox[0]["media"]["size"], photo.len());
    assert_eq!(inbox[0]["text"], "foto");
    let back = http
        .get(format!(
            "{two}/v1/media/{}",
            created["id"].as_str().unwrap()
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(back.bytes().await.unwrap().as_ref(), photo.as_slice());

    // A PDF from the phone: named by message.inbound, the same bytes from the other gateway.
    let pdf = noise(700_000, 10);
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pdf);
    let phone_sent = http
        .post(format!("{}/sim/phones/{FRIEND}/send", sim.base))
        .json(
            &json!({"to_phone": DEVICE_PHONE, "media": {"type": "document",
            "mime": "application/pdf", "data_base64": encoded, "filename": "invoice.pdf"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(phone_sent.status(), 202);
    let inbound = events.next_of_kind("message.inbound").await;
    let media = &inbound.data["media"];
    assert_eq!(
        (&media["type"], &media["mime"]),
        (&json!("document"), &json!("application/pdf"))
    );
    assert_eq!(media["sha256"], hex(&Sha256::digest(&pdf)));
    let got = http
        .get(format!("{two}/v1/media/{}", media["id"].as_str().unwrap()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), pdf.as_slice());
    assert!(
        stored_files(&dir.path().join("media")).len() >= 4,
        "both files and their records, beside the cluster's store"
    );
}
