//! `wafleet gateway --config FILE`: the settings of one gateway replica.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::check::{self, Invalid};
use super::source::{Source, process_env};
use super::{
    ClusterSettings, ConfigError, HttpSection, MediaSettings, RedisSettings, StoreSettings,
};

/// Everything `wafleet gateway` reads from its config file and environment. The gateway
/// keeps no state: it computes each device's owner with the same placement as the nodes
/// (hence `[cluster]`), serves lists from the store (hence `[store]`) and SSE from the
/// event streams (hence `[redis]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// `[gateway]`: this replica's identity, listeners and nodes.
    pub gateway: GatewaySection,
    /// `[cluster]`: the same section as the nodes' (cookie, shards, liveness).
    pub cluster: ClusterSettings,
    /// `[store]`: the store the nodes use.
    #[serde(default)]
    pub store: StoreSettings,
    /// `[redis]`: the event streams the nodes write.
    #[serde(default)]
    pub redis: RedisSettings,
    /// `[http]`: timeouts and connection cap of the API's and the metrics' listeners.
    #[serde(default)]
    pub http: HttpSection,
    /// `[media]`: the nodes' media storage (uploads are stored by the gateway that
    /// takes them, and any gateway serves any file).
    #[serde(default)]
    pub media: MediaSettings,
}

/// The `[gateway]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// This replica's name, unique in the cluster (required; 1 to 64 of
    /// `A-Z a-z 0-9 . _ -`): the gateway joins the cluster to reach each node's host
    /// actor, and peers tell members apart by name. E.g. `WAFLEET__GATEWAY__NAME=$(POD_NAME)`.
    pub name: String,
    /// Where the REST + SSE API listens (default `0.0.0.0:8080`, as standalone).
    #[serde(default = "default_listen", deserialize_with = "check::socket_addr")]
    pub listen: SocketAddr,
    /// A separate address for `/metrics`. Set, `/metrics` is served there only (the API's
    /// listener answers it 404), so that it can stay off the public port; unset, it is
    /// served on `listen`, like `/healthz`.
    #[serde(default, deserialize_with = "check::socket_addr_opt")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where this gateway's ractor_cluster endpoint listens (default `127.0.0.1:0`, a
    /// free port: the gateway dials the nodes, nodes need not dial it).
    #[serde(
        default = "default_cluster_listen",
        deserialize_with = "check::socket_addr"
    )]
    pub cluster_listen: SocketAddr,
    /// The host name or IP peers dial to reach this gateway, announced to them by
    /// ractor_cluster with `cluster_listen`'s port (nodes that hear of the gateway
    /// through another member dial it there). Defaults to `cluster_listen`'s IP, and is
    /// required when that IP is `0.0.0.0` or `[::]` (which peers cannot dial).
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// Cluster addresses (`host:port`) of nodes to join (required, at least one): the
    /// gateway learns the live members, and so the placement, through them.
    pub seeds: Vec<String>,
    /// A call to a node that has not answered after this long fails with 504
    /// (`request_timeout_ms`, default 10,000, 100 to 300,000).
    #[serde(
        rename = "request_timeout_ms",
        default = "default_request_timeout",
        deserialize_with = "check::millis"
    )]
    pub request_timeout: Duration,
}

impl GatewaySection {
    /// The host peers dial: `advertise_host`, else `cluster_listen`'s IP.
    pub fn advertised_host(&self) -> String {
        match &self.advertise_host {
            Some(host) => host.clone(),
            None => self.cluster_listen.ip().to_string(),
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        check::name("gateway.name", &self.name)?;
        match &self.advertise_host {
            Some(host) if !check::is_host_or_ip(host) => {
                return Err(Invalid::new(
                    "gateway.advertise_host",
                    format!("`{host}` is not a host name or IP address"),
                ));
            }
            None if self.cluster_listen.ip().is_unspecified() => {
                return Err(Invalid::new(
                    "gateway.advertise_host",
                    format!(
                        "required when gateway.cluster_listen ({}) listens on every \
                         interface: peers need a host name or IP they can dial",
                        self.cluster_listen
                    ),
                ));
            }
            _ => {}
        }
        if self.seeds.is_empty() {
            return Err(Invalid::new(
                "gateway.seeds",
                "needs at least one node's cluster address (host:port)",
            ));
        }
        check::host_ports("gateway.seeds", &self.seeds)?;
        if self.metrics_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(Invalid::new(
                "gateway.metrics_listen",
                "is the same address as gateway.listen: leave it unset to serve /metrics there",
            ));
        }
        check::millis_in(
            "gateway.request_timeout_ms",
            self.request_timeout,
            100,
            300_000,
        )
    }
}

impl GatewaySettings {
    /// Reads `path` (TOML) and applies the process's `WAFLEET__SECTION__KEY` environment
    /// variables over it.
    pub fn load(path: &Path) -> Result<GatewaySettings, ConfigError> {
        GatewaySettings::load_with_env(path, process_env()?)
    }

    /// Like [`GatewaySettings::load`], with the environment given explicitly (only the
    /// variables that start with `WAFLEET__` are read).
    pub fn load_with_env<I, K, V>(path: &Path, env: I) -> Result<GatewaySettings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        super::typed(Source::read(path, env)?, GatewaySettings::check)
    }

    fn check(&self) -> Result<(), Invalid> {
        self.gateway.check()?;
        self.cluster.check()?;
        self.store.check()?;
        self.redis.check()?;
        self.http.check()?;
        self.media.check()?;
        if self.http.request_timeout < self.gateway.request_timeout {
            return Err(Invalid::new(
                "http.request_timeout_ms",
                format!(
                    "{} ms is shorter than gateway.request_timeout_ms ({} ms): a device call \
                     that a node does not answer would be cut as a 503 before it can end as \
                     the 504 that says so",
                    self.http.request_timeout.as_millis(),
                    self.gateway.request_timeout.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

fn default_cluster_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::super::ConfigError;
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<GatewaySettings, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        super::super::typed(
            Source::parse(Path::new("gateway.toml"), text, env)?,
            GatewaySettings::check,
        )
    }

    const MINIMAL: &str = r#"
        [gateway]
        name = "gateway-1"
        seeds = ["127.0.0.1:4701"]

        [cluster]
        cookie = "0123456789abcdef0123"
    "#;

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let settings = parse(MINIMAL, &[]).unwrap();
        assert_eq!(settings.gateway.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(settings.gateway.metrics_listen, None);
        assert_eq!(settings.gateway.advertise_host, None);
        assert_eq!(settings.gateway.advertised_host(), "127.0.0.1");
        assert_eq!(settings.gateway.request_timeout, Duration::from_secs(10));
        assert_eq!(settings.cluster.shards, 1024);
    }

    #[test]
    fn environment_overrides_and_errors() {
        let settings = parse(
            MINIMAL,
            &[
                ("WAFLEET__GATEWAY__LISTEN", "127.0.0.1:0"),
                ("WAFLEET__GATEWAY__METRICS_LISTEN", "127.0.0.1:9090"),
                ("WAFLEET__GATEWAY__SEEDS", "a:1,b:2,c:3"),
                ("WAFLEET__GATEWAY__REQUEST_TIMEOUT_MS", "2500"),
            ],
        )
        .unwrap();
        assert_eq!(settings.gateway.listen.port(), 0);
        assert_eq!(
            settings.gateway.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(settings.gateway.seeds.len(), 3);
        assert_eq!(
            settings.gateway.request_timeout,
            Duration::from_millis(2500)
        );

        for (var, value, expected) in [
            ("WAFLEET__GATEWAY__SEEDS", "", "gateway.seeds"),
            (
                "WAFLEET__GATEWAY__REQUEST_TIMEOUT_MS",
                "5",
                "gateway.request_timeout_ms",
            ),
            (
                "WAFLEET__GATEWAY__METRICS_LISTEN",
                "0.0.0.0:8080",
                "gateway.metrics_listen",
            ),
            (
                "WAFLEET__GATEWAY__METRICS_LISTEN",
                "9090",
                "gateway.metrics_listen",
            ),
        ] {
            let err = parse(MINIMAL, &[(var, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::InvalidValue { key, .. } if key == expected),
                "{var}={value}: {err:?}"
            );
        }
    }

    #[test]
    fn a_wildcard_listener_needs_an_advertised_host() {
        let text = MINIMAL.replace(
            "[cluster]",
            "cluster_listen = \"0.0.0.0:4697\"\n\n        [cluster]",
        );
        let err = parse(&text, &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "gateway.advertise_host"),
            "{err:?}"
        );
        assert!(err.to_string().contains("gateway.advertise_host"), "{err}");
        let err = parse(
            MINIMAL,
            &[("WAFLEET__GATEWAY__CLUSTER_LISTEN", "[::]:4697")],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "gateway.advertise_host"),
            "{err:?}"
        );

        let settings = parse(&text, &[("WAFLEET__GATEWAY__ADVERTISE_HOST", "10.1.2.3")]).unwrap();
        assert_eq!(settings.gateway.advertised_host(), "10.1.2.3");
        assert_eq!(settings.gateway.cluster_listen.port(), 4697);
        let settings = parse(
            &text.replace(
                "[cluster]",
                "advertise_host = \"gateway-1.wafleet\"\n\n        [cluster]",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(settings.gateway.advertised_host(), "gateway-1.wafleet");

        // A specific listener is announced as it is, unless told otherwise.
        let settings = parse(
            MINIMAL,
            &[("WAFLEET__GATEWAY__CLUSTER_LISTEN", "10.0.0.7:4697")],
        )
        .unwrap();
        assert_eq!(settings.gateway.advertised_host(), "10.0.0.7");

        let err = parse(&text, &[("WAFLEET__GATEWAY__ADVERTISE_HOST", "not a host")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "gateway.advertise_host"),
            "{err:?}"
        );
    }

    #[test]
    fn the_edge_request_timeout_is_no_shorter_than_a_node_call() {
        let settings = parse(MINIMAL, &[]).unwrap();
        assert_eq!(settings.http.request_timeout, Duration::from_secs(30));
        let err = parse(
            MINIMAL,
            &[
                ("WAFLEET__GATEWAY__REQUEST_TIMEOUT_MS", "20000"),
                ("WAFLEET__HTTP__REQUEST_TIMEOUT_MS", "15000"),
            ],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "http.request_timeout_ms"),
            "{err:?}"
        );
        let settings = parse(MINIMAL, &[("WAFLEET__HTTP__REQUEST_TIMEOUT_MS", "10000")]).unwrap();
        assert_eq!(settings.http.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn node_only_sections_are_unknown_to_the_gateway() {
        let err = parse(MINIMAL, &[("WAFLEET__LEASE__TTL_MS", "3000")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "lease"),
            "{err:?}"
        );
    }
}
