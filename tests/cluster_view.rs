//! `GET /v1/cluster`: what a gateway tells of the cluster (the dashboard's Cluster
//! page). A standalone is one node without shards; a 2-node cluster's gateway lists both
//! nodes with the devices each runs (from their heartbeats) and the shards each holds.

mod common;

use std::path::Path;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wafleet_cluster_config::Placement;
use wafleet_load::scenario::cluster::LocalCluster;
use wafleet_load::scenario::process::ADMIN_KEY;

use common::{Standalone, WAIT};

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");

#[tokio::test(flavor = "multi_thread")]
async fn a_standalone_is_one_node_without_shards_and_admins_only_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = Standalone::start(dir.path()).await;
    app.create_and_start("view-1").await;

    let view = app.json("/v1/cluster").await;
    assert_eq!(view["mode"], "standalone", "{view}");
    assert_eq!(view["shards"], 0);
    assert_eq!(view["recovering"], json!([]));
    assert_eq!(view["devices"], 1);
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{view}");
    assert!(nodes[0]["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(nodes[0]["devices_running"], 1, "view-1 shows a QR: it runs");
    assert_eq!(nodes[0]["shards_held"], 0);
    assert_eq!(nodes[0]["shards_placed"], 0);

    // A user key, and a tenant's admin: the cluster is the installation's, not theirs.
    let (admin, acme, _) = common::client::tenants(&app).await;
    let (status, code) = acme.error(Method::GET, "/v1/cluster", None).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, made) = admin
        .send(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": "acme admin", "role": "admin", "tenant": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let tenant_admin = common::client::Client {
        app: &app,
        key: made["key"].as_str().unwrap().to_owned(),
    };
    let (status, _) = tenant_admin.error(Method::GET, "/v1/cluster", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let doc = admin.get("/openapi.json").await;
    assert!(doc["paths"]["/v1/cluster"]["get"].is_object(), "documented");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_gateway_lists_its_nodes_with_their_devices_and_shards() {
    let cluster = LocalCluster::start(Path::new(WAFLEET), 2).await.unwrap();
    let names = cluster.names();
    let placement = Placement::new(1024, &names).unwrap();
    let http = reqwest::Client::new();
    let base = cluster.gateway.base.clone();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}")).bearer_auth(ADMIN_KEY);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let created = http
        .post(format!("{base}/v1/devices"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"id": "view-c1", "name": "view"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let started = http
        .post(format!("{base}/v1/devices/view-c1/start"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(started.status().is_success(), "{}", started.status());
    let owner = placement.owner_of("view-c1").to_owned();

    // Heartbeats carry the counts every 250 ms: wait for the one after the start.
    let started_at = Instant::now();
    let view = loop {
        let view = get("/v1/cluster").await;
        let running_on_owner = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == owner.as_str())
            .map(|n| n["devices_running"].clone());
        // (The device count is the census, at most a second old.)
        if running_on_owner == Some(json!(1))
            && view["recovering"] == json!([])
            && view["devices"] == 1
        {
            break view;
        }
        assert!(started_at.elapsed() < WAIT, "never settled: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(view["mode"], "cluster");
    assert_eq!(view["shards"], 1024);
    assert_eq!(view["devices"], 1);
    let nodes = view["nodes"].as_array().unwrap();
    let listed: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut held = 0;
    for node in nodes {
        let name = node["name"].as_str().unwrap();
        let placed = placement.shards_of(name).count() as u64;
        assert_eq!(node["shards_placed"], placed, "{node}");
        assert_eq!(node["shards_held"], placed, "settled: {node}");
        assert!(node["http_addr"].as_str().is_some(), "{node}");
        let running = if name == owner { 1 } else { 0 };
        assert_eq!(node["devices_running"], running, "{node}");
        held += placed;
    }
    assert_eq!(held, 1024);

    // Every gateway serves the dashboard, under the same-origin policy.
    let page = http.get(format!("{base}/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    let script = http
        .get(format!("{base}/ui/js/main.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().contains("PAGES"));
}
