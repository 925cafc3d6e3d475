//! The example config files under `deploy/` load, as shipped, with only the cookie added
//! through the environment (where the examples tell operators to put it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use wafleet_cluster_config::{
    ConfigError, GatewaySettings, HttpSection, NodeSettings, Placement, StoreKind,
};

const COOKIE: &str = "4f1c2b9e8d7a6f5e4d3c2b1a09f8e7d6";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn cookie() -> [(&'static str, &'static str); 1] {
    [("WAFLEET__CLUSTER__COOKIE", COOKIE)]
}

#[test]
fn the_node_example_loads() {
    let settings = NodeSettings::load_with_env(&deploy("node.example.toml"), cookie()).unwrap();
    assert_eq!(settings.node.name, "node-1");
    assert_eq!(settings.node.seeds.len(), 2);
    assert_eq!(settings.cluster.cookie.expose(), COOKIE);
    assert_eq!(settings.cluster.shards, 1024);
    assert!(settings.cluster.detection_bound() <= Duration::from_secs(2));
    assert_eq!(settings.store.kind, StoreKind::Sqlite);
    assert_eq!(settings.recovery.concurrency, 128);
    assert_eq!(settings.http, HttpSection::default());
}

#[test]
fn the_gateway_example_loads() {
    let settings =
        GatewaySettings::load_with_env(&deploy("gateway.example.toml"), cookie()).unwrap();
    assert_eq!(settings.gateway.name, "gateway-1");
    assert_eq!(settings.gateway.seeds.len(), 3);
    assert_eq!(settings.gateway.request_timeout, Duration::from_secs(10));
    assert_eq!(settings.http, HttpSection::default());
}

#[test]
fn node_and_gateway_examples_agree_on_the_cluster() {
    let node = NodeSettings::load_with_env(&deploy("node.example.toml"), cookie()).unwrap();
    let gateway =
        GatewaySettings::load_with_env(&deploy("gateway.example.toml"), cookie()).unwrap();
    assert_eq!(node.cluster, gateway.cluster);
    assert_eq!(node.store.kind, gateway.store.kind);
    assert_eq!(node.store.sqlite, gateway.store.sqlite);
    assert_eq!(node.redis, gateway.redis);
    // Same settings, same member list: the same owner for every device.
    let members = ["node-1", "node-2", "node-3"];
    let a = Placement::new(node.cluster.shards, members).unwrap();
    let b = Placement::new(gateway.cluster.shards, members).unwrap();
    assert_eq!(a, b);
}

#[test]
fn the_examples_ship_no_cookie() {
    let err = NodeSettings::load_with_env(&deploy("node.example.toml"), [("", ""); 0]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::MissingKey { key, .. } if key == "cluster.cookie"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("WAFLEET__CLUSTER__COOKIE"), "{message}");
    assert!(message.contains("node.example.toml"), "{message}");

    let err =
        GatewaySettings::load_with_env(&deploy("gateway.example.toml"), [("", ""); 0]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::MissingKey { key, .. } if key == "cluster.cookie"),
        "{err:?}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let err =
        NodeSettings::load_with_env(Path::new("/nonexistent/node.toml"), cookie()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/node.toml"), "{err}");
}

#[test]
fn each_process_refuses_the_other_s_file() {
    let err = NodeSettings::load_with_env(&deploy("gateway.example.toml"), cookie()).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if key == "gateway"),
        "{err:?}"
    );
    // The node's file has several keys the gateway does not know; the first is named.
    let err = GatewaySettings::load_with_env(&deploy("node.example.toml"), cookie()).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if ["lease", "node", "recovery"].contains(&key.as_str())),
        "{err:?}"
    );
}

/// The README's three-node cluster on one machine: every file loads, the nodes seed each
/// other, and the gateway seeds all of them and shares their store and redis.
#[test]
fn the_local_three_node_cluster_configs_load_and_agree() {
    let gateway = GatewaySettings::load_with_env(&deploy("local/gateway.toml"), cookie()).unwrap();
    let mut addresses = Vec::new();
    for i in 1..=3 {
        let node = NodeSettings::load_with_env(&deploy(&format!("local/node-{i}.toml")), cookie())
            .unwrap();
        assert_eq!(node.node.name, format!("node-{i}"));
        assert_eq!(node.node.seeds.len(), 2);
        assert_eq!(node.store.sqlite.path, gateway.store.sqlite.path);
        assert_eq!(node.redis.url, gateway.redis.url);
        addresses.push(node.node.cluster_listen.to_string());
    }
    assert_eq!(gateway.gateway.seeds, addresses);
}
