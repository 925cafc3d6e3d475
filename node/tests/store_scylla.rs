//! The ScyllaDB store: the conformance suite against a real ScyllaDB when `SCYLLA_URI` is
//! set, and, always, how the store fails when the cluster cannot be reached, driven
//! through `scylla-proxy` in dry mode (a fake node that answers only what its rules say)
//! or a port nothing listens on. Every address here is on loopback.
//!
//! The store's behaviour over the wire on a running session (LWT not applied, timeouts,
//! a connection lost mid-request, migrations) is tested in the crate, against a fake
//! node: `node/src/store/scylla/proxy_tests.rs`.
//!
//! What neither proves without a server: that the CQL runs as the module docs
//! say on a real ScyllaDB (LWT outcomes, static-column conditions, paging). Run it with
//! `SCYLLA_URI=127.0.0.1:9042 cargo test -p wafleet-node --test store_scylla` against a
//! ScyllaDB (e.g. `docker run -p 9042:9042 scylladb/scylla --smp 1`) to prove that.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestOpcode, RequestReaction, RequestRule,
    example_db_errors, get_exclusive_local_address,
};
use wafleet_node::store::scylla::schema::KeyspaceOptions;
use wafleet_node::store::{ScyllaConfig, ScyllaStore, StoreError, conformance};

fn config(uris: Vec<String>, keyspace: &str) -> ScyllaConfig {
    ScyllaConfig {
        uris,
        keyspace: KeyspaceOptions {
            name: keyspace.to_owned(),
            replication_factor: 1,
            tablets: false,
        },
        local_dc: None,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_millis(500),
        shards: 1024,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(scylla_uri),
    ignore = "SCYLLA_URI is not set: no ScyllaDB to run the conformance suite against \
              (set it to a ScyllaDB's host:port, e.g. 127.0.0.1:9042)"
)]
async fn scylla_passes_the_conformance_suite() {
    let Ok(uri) = std::env::var("SCYLLA_URI") else {
        println!(
            "SKIPPED scylla_passes_the_conformance_suite: SCYLLA_URI is not set \
             (set it to a ScyllaDB's host:port, e.g. 127.0.0.1:9042, to run the suite)"
        );
        return;
    };
    // A fresh keyspace per run, so runs never see each other's devices counts.
    let keyspace = format!("wafleet_test_{}", uuid::Uuid::new_v4().simple());
    let mut config = config(vec![uri], &keyspace);
    config.connect_timeout = Duration::from_secs(10);
    let store = ScyllaStore::connect(&config).await.expect("connect");
    conformance::run_all(&store).await;
    // A second connect finds the schema in place and migrates nothing.
    let again = ScyllaStore::connect(&config).await.expect("reconnect");
    conformance::check_lease_acquire_and_renew(&again).await;
}

#[track_caller]
fn expect_unavailable(result: Result<ScyllaStore, StoreError>, needle: &str) -> String {
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            message
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_is_unavailable_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let started = Instant::now();
    let result = ScyllaStore::connect(&config(vec![addr.to_string()], "wafleet")).await;
    let message = expect_unavailable(result, &format!("cannot connect to scylla at {addr}"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: {message}",
        started.elapsed()
    );
}

/// A fake node on a loopback address of its own, answering by `rules` only.
async fn dry_node(rules: Vec<RequestRule>) -> (SocketAddr, scylla_proxy::RunningProxy) {
    let addr = SocketAddr::new(get_exclusive_local_address(), 9042);
    let node = Node::builder()
        .proxy_address(addr)
        .request_rules(rules)
        .build_dry_mode();
    let running = Proxy::builder()
        .with_node(node)
        .build()
        .run()
        .await
        .expect("proxy runs");
    (addr, running)
}

#[tokio::test]
async fn a_node_that_never_answers_the_handshake_times_out_as_unavailable() {
    // Every frame is dropped: the TCP connection opens, the CQL handshake never ends.
    let (addr, proxy) = dry_node(vec![RequestRule(
        Condition::True,
        RequestReaction::drop_frame(),
    )])
    .await;
    let config = config(vec![addr.to_string()], "wafleet");
    let started = Instant::now();
    let result = ScyllaStore::connect(&config).await;
    expect_unavailable(result, "cannot connect to scylla");
    assert!(
        started.elapsed() <= config.connect_timeout * 2 + Duration::from_secs(2),
        "bounded by the connect timeout, took {:?}",
        started.elapsed()
    );
    proxy.finish().await.expect("proxy");
}

#[tokio::test]
async fn a_node_that_drops_the_connection_is_unavailable() {
    let (addr, proxy) = dry_node(vec![RequestRule(
        Condition::RequestOpcode(RequestOpcode::Options)
            .or(Condition::RequestOpcode(RequestOpcode::Startup)),
        RequestReaction::drop_connection(),
    )])
    .await;
    let result = ScyllaStore::connect(&config(vec![addr.to_string()], "wafleet")).await;
    expect_unavailable(result, &addr.ip().to_string());
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn a_node_that_answers_errors_is_unavailable_not_a_panic() {
    let (addr, proxy) = dry_node(vec![RequestRule(
        Condition::True,
        RequestReaction::forge_with_error(example_db_errors::overloaded()),
    )])
    .await;
    let result = ScyllaStore::connect(&config(vec![addr.to_string()], "wafleet")).await;
    expect_unavailable(result, "cannot connect to scylla");
    let _ = proxy.finish().await;
}
