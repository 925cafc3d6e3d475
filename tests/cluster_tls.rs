//! Cluster traffic over mutual TLS, with real processes on 127.0.0.1: `wafleet node`,
//! `wafleet gateway`, `wafleet sim`, redis. A recording proxy ([`wire_tap`]) sits
//! between the gateway and the node, and a message with a distinctive text goes through
//! it: under TLS the text reaches the phone and never shows in the recorded bytes; in
//! clear (the control, so the check can fail) the same proxy sees it. Peers whose
//! certificate is not signed by the cluster CA, or that have none, are refused.
//! Every wait is bounded.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wafleet_load::scenario::certs::{ClusterCerts, SERVER_NAME};
use wafleet_load::scenario::cluster::{COOKIE, GatewayProcess, NodePlan, NodeProcess, SimProcess};
use wafleet_load::scenario::process::{RedisServer, unthrottle};

mod common;
#[path = "cluster_tls/wire_tap.rs"]
mod wire_tap;

use wire_tap::WireTap;

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");
const WAIT: Duration = Duration::from_secs(20);
const PHONE: &str = "6289870000001";

/// What went through the tap while one message was sent through the gateway.
struct Sent {
    text: String,
    tap: WireTap,
}

/// One node, a gateway whose only seed is a tap in front of the node, one paired device,
/// one message sent through the gateway and read back from the phone's inbox.
async fn send_one_message_through_a_tap(tls: bool) -> Sent {
    let redis = RedisServer::start().await.unwrap();
    let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wafleet.db");
    let mut plans = NodePlan::cluster(1, &db, &redis.url, std::slice::from_ref(&sim.ws)).unwrap();
    if tls {
        plans[0].tls = Some(ClusterCerts::generate(dir.path(), "cluster").unwrap());
    }
    let mut node = NodeProcess::start(Path::new(WAFLEET), dir.path(), &plans[0], COOKIE)
        .await
        .unwrap();
    node.wait_members(&["node-1"], WAIT).await.unwrap();
    let tap = WireTap::start(plans[0].address()).await;
    let gateway = GatewayProcess::start(
        Path::new(WAFLEET),
        dir.path(),
        "gw-1",
        std::slice::from_ref(&tap.addr),
        &plans[0],
        COOKIE,
        1,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    unthrottle(&http, &gateway.base).await.unwrap();

    let id = "tls-dev-1";
    let mut events =
        common::Sse::connect(&http, &format!("{}/v1/events", gateway.base), None).await;
    common::post_routed(
        &http,
        &format!("{}/v1/devices", gateway.base),
        json!({"id": id, "name": id}),
    )
    .await;
    common::post_routed(
        &http,
        &format!("{}/v1/devices/{id}/start", gateway.base),
        json!({}),
    )
    .await;
    // QR shown → scanned by the simulated phone → READY; bounded by the SSE's WAIT.
    common::scan_until_ready(&http, &sim.base, "6281230000001", &mut events).await;

    let text = format!("tls-probe-{}", uuid_like());
    let before = tap.bytes();
    common::post_routed(
        &http,
        &format!("{}/v1/devices/{id}/messages", gateway.base),
        json!({"to": PHONE, "text": text}),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let inbox: Value = http
            .get(format!("{}/sim/phones/{PHONE}/inbox", sim.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if inbox
            .as_array()
            .is_some_and(|messages| messages.iter().any(|m| m["text"] == text.as_str()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the message never reached the phone: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tap.connections() >= 1, "the gateway never dialed the tap");
    // The command went through the tap, not around it (the gateway knows the node only
    // by the tap's address: nodes do not report a session with a gateway).
    assert!(
        tap.bytes() >= before + text.len(),
        "only {} bytes crossed the tap while the message was sent",
        tap.bytes() - before
    );
    Sent { text, tap }
}

#[tokio::test]
async fn a_message_through_a_tls_cluster_never_shows_in_the_bytes_on_the_wire() {
    let sent = send_one_message_through_a_tap(true).await;
    println!(
        "{} bytes over {} connection(s) through the tap",
        sent.tap.bytes(),
        sent.tap.connections()
    );
    assert!(sent.tap.bytes() > 0);
    assert!(
        !sent.tap.saw(sent.text.as_bytes()),
        "the message text crossed the wire in clear"
    );
    // Nor does the cookie-handshake's node name, which the plain protocol sends first.
    assert!(
        !sent.tap.saw(b"gw-1@"),
        "the gateway's cluster name crossed in clear"
    );
}

/// The control of the test above: the same tap, the same message, TLS off. Were the
/// tap blind (wrong peer, nothing forwarded), this would fail.
#[tokio::test]
async fn in_clear_the_same_tap_sees_the_message_text() {
    let sent = send_one_message_through_a_tap(false).await;
    assert!(
        sent.tap.saw(sent.text.as_bytes()),
        "the tap did not see the text of a message sent in clear ({} bytes)",
        sent.tap.bytes()
    );
}

/// Under TLS, processes given one seed still reach every member: node-2 and node-3 seed
/// only node-1 and find each other through node-1's heartbeats (ractor_cluster's own
/// transitive discovery would dial them without TLS, so wafleet does it); a gateway
/// seeded with node-1 alone hears all three (it needs a session with each).
#[tokio::test]
async fn under_tls_processes_seeded_with_one_node_reach_every_member() {
    let redis = RedisServer::start().await.unwrap();
    let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wafleet.db");
    let mut plans = NodePlan::cluster(3, &db, &redis.url, std::slice::from_ref(&sim.ws)).unwrap();
    let certs = ClusterCerts::generate(dir.path(), "cluster").unwrap();
    let first = plans[0].address();
    for plan in &mut plans {
        plan.tls = Some(certs.clone());
        plan.seeds = if plan.name == "node-1" {
            Vec::new()
        } else {
            vec![first.clone()]
        };
    }
    let mut nodes = Vec::new();
    for plan in &plans {
        nodes.push(
            NodeProcess::start(Path::new(WAFLEET), dir.path(), plan, COOKIE)
                .await
                .unwrap(),
        );
    }
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2", "node-3"], WAIT)
            .await
            .unwrap();
    }
    // Waits (bounded, 20 s) until the gateway hears all three nodes.
    GatewayProcess::start(
        Path::new(WAFLEET),
        dir.path(),
        "gw-1",
        std::slice::from_ref(&first),
        &plans[0],
        COOKIE,
        3,
    )
    .await
    .unwrap();
}

/// node-1 has a certificate of the cluster CA; node-2 one of another CA; node-3 none
/// (TLS off). All share the cookie and seed each other. Nobody joins anybody, and a TLS
/// client that shows no certificate has its connection closed by node-1.
#[tokio::test]
async fn peers_without_a_certificate_of_the_cluster_ca_are_refused() {
    let redis = RedisServer::start().await.unwrap();
    let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wafleet.db");
    let mut plans = NodePlan::cluster(3, &db, &redis.url, std::slice::from_ref(&sim.ws)).unwrap();
    let cluster = ClusterCerts::generate(dir.path(), "cluster").unwrap();
    plans[0].tls = Some(cluster.clone());
    plans[1].tls = Some(ClusterCerts::generate(dir.path(), "stranger").unwrap());
    let mut nodes = Vec::new();
    for plan in &plans {
        nodes.push(
            NodeProcess::start(Path::new(WAFLEET), dir.path(), plan, COOKIE)
                .await
                .unwrap(),
        );
    }
    for node in &mut nodes {
        let me = node.name.clone();
        node.wait_members(&[me.as_str()], WAIT).await.unwrap();
    }

    // Seeds are dialed every 250 ms: 3 s is a dozen refused attempts each way.
    let window = Duration::from_secs(3);
    let (a, b) = nodes.split_at_mut(1);
    let (b, c) = b.split_at_mut(1);
    let (seen_1, seen_2, seen_3) = tokio::join!(
        a[0].members_seen_during(window),
        b[0].members_seen_during(window),
        c[0].members_seen_during(window)
    );
    assert!(seen_1.is_empty(), "node-1 (cluster CA) saw {seen_1:?}");
    assert!(seen_2.is_empty(), "node-2 (another CA) saw {seen_2:?}");
    assert!(seen_3.is_empty(), "node-3 (no TLS) saw {seen_3:?}");
    let members: Value = reqwest::get(format!("{}/cluster/members", nodes[0].http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !members.to_string().contains("node-2") && !members.to_string().contains("node-3"),
        "node-1 lists a refused peer: {members}"
    );

    // A TLS client that trusts the cluster CA but shows no certificate of its own.
    let closed = tls_client_without_a_certificate(&cluster, &plans[0].address()).await;
    assert!(
        closed,
        "node-1 kept talking to a client without a certificate"
    );
}

/// Dials `address` with TLS, trusting `certs.ca` but presenting no certificate, and
/// writes a few bytes: true if node-1 then closes the connection or fails the
/// handshake (within 5 s).
async fn tls_client_without_a_certificate(certs: &ClusterCerts, address: &str) -> bool {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::aws_lc_rs};

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&certs.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let attempt = async {
        // TLS 1.3: the client's side of the handshake may complete before the server
        // has checked the (missing) client certificate; the refusal comes as an alert.
        let Ok(mut stream) = connector.connect(name, tcp).await else {
            return true;
        };
        if stream.write_all(&[0u8; 16]).await.is_err() {
            return true;
        }
        let mut buffer = [0u8; 64];
        matches!(stream.read(&mut buffer).await, Err(_) | Ok(0))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or(false)
}

/// A text no other part of the traffic contains by chance.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}
