//! Keys across the gateways of a cluster: a key made on one gateway works on another,
//! another tenant's device (and contact book) is hidden there too, and a key revoked
//! through one gateway is refused by the other within 2 s.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wafleet_load::scenario::cluster::{COOKIE, GatewayProcess, NodePlan, NodeProcess, SimProcess};
use wafleet_load::scenario::process::{ADMIN_KEY, RedisServer};

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");
const WAIT: Duration = Duration::from_secs(20);

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_through_one_gateway_is_refused_by_another_within_2_s() {
    let redis = RedisServer::start().await.unwrap();
    let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plans = NodePlan::cluster(
        1,
        &dir.path().join("wafleet.db"),
        &redis.url,
        std::slice::from_ref(&sim.ws),
    )
    .unwrap();
    let mut node = NodeProcess::start(Path::new(WAFLEET), dir.path(), &plans[0], COOKIE)
        .await
        .unwrap();
    node.wait_members(&["node-1"], WAIT).await.unwrap();
    let seeds = [plans[0].address()];
    let mut gateways = Vec::new();
    for name in ["gw-1", "gw-2"] {
        let gateway = GatewayProcess::start(
            Path::new(WAFLEET),
            dir.path(),
            name,
            &seeds,
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
    use reqwest::Method;

    for tenant in ["acme", "globex"] {
        let made = send(
            &http,
            Method::POST,
            format!("{one}/v1/tenants"),
            ADMIN_KEY,
            Some(json!({"id": tenant, "name": tenant})),
        )
        .await;
        assert_eq!(made.status(), 201);
    }
    let device = send(
        &http,
        Method::POST,
        format!("{one}/v1/devices"),
        ADMIN_KEY,
        Some(json!({"id": "acme-dev", "name": "acme", "tenant": "acme"})),
    )
    .await;
    assert_eq!(device.status(), 201);
    let made = send(
        &http,
        Method::POST,
        format!("{one}/v1/keys"),
        ADMIN_KEY,
        Some(json!({"name": "globex app", "role": "user", "tenant": "globex"})),
    )
    .await;
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    let (id, key) = (made["id"].as_str().unwrap(), made["key"].as_str().unwrap());

    let listed = send(&http, Method::GET, format!("{two}/v1/devices"), key, None).await;
    assert_eq!(listed.status(), 200, "a key made on gw-1 works on gw-2");
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(
        listed["devices"],
        json!([]),
        "globex sees none of acme's devices"
    );
    for path in ["/v1/devices/acme-dev", "/v1/devices/acme-dev/limits"] {
        let hidden = send(&http, Method::GET, format!("{two}{path}"), key, None).await;
        assert_eq!(hidden.status(), 404, "{path}");
    }
    let start = send(
        &http,
        Method::POST,
        format!("{two}/v1/devices/acme-dev/start"),
        key,
        None,
    )
    .await;
    assert_eq!(start.status(), 404);

    // A contact saved through one gateway is read through the other; globex sees none.
    let saved = send(
        &http,
        Method::POST,
        format!("{one}/v1/contacts?tenant=acme"),
        ADMIN_KEY,
        Some(json!({"phone": "6281200000077", "name": "acme buyer", "tags": ["vip"]})),
    )
    .await;
    assert_eq!(saved.status(), 201);
    let listed: Value = send(
        &http,
        Method::GET,
        format!("{two}/v1/contacts?tenant=acme&tag=vip"),
        ADMIN_KEY,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed["contacts"][0]["name"], "acme buyer", "{listed}");
    let theirs: Value = send(&http, Method::GET, format!("{two}/v1/contacts"), key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        theirs["contacts"],
        json!([]),
        "globex sees none of acme's contacts"
    );
    let hidden = send(
        &http,
        Method::GET,
        format!("{two}/v1/contacts/6281200000077"),
        key,
        None,
    )
    .await;
    assert_eq!(hidden.status(), 404);

    let revoked = send(
        &http,
        Method::DELETE,
        format!("{one}/v1/keys/{id}"),
        ADMIN_KEY,
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let at = Instant::now();
    loop {
        let status = send(&http, Method::GET, format!("{two}/v1/devices"), key, None)
            .await
            .status();
        if status == 401 {
            println!("gw-2 refused the revoked key after {:?}", at.elapsed());
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(2),
            "gw-2 still accepts a key revoked on gw-1 after 2 s ({status})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
