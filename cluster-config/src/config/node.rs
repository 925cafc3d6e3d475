//! `wafleet node --config FILE`: the settings of one cluster node.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use super::check::{self, Invalid};
use super::source::{Source, process_env};
use super::{
    ClusterSettings, ConfigError, HttpSection, LeaseSettings, LinkSettings, MediaSettings,
    RecoverySettings, RedisSettings, StoreSettings, WebhooksSection,
};

/// Everything `wafleet node` reads from its config file and environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// `[node]`: who this node is and where it listens.
    pub node: NodeSection,
    /// `[cluster]`: what every process of the cluster shares (cookie, shards, liveness).
    pub cluster: ClusterSettings,
    /// `[lease]`: shard leases.
    #[serde(default)]
    pub lease: LeaseSettings,
    /// `[store]`: the store.
    #[serde(default)]
    pub store: StoreSettings,
    /// `[redis]`: the event streams.
    #[serde(default)]
    pub redis: RedisSettings,
    /// `[recovery]`: pacing of device starts.
    #[serde(default)]
    pub recovery: RecoverySettings,
    /// `[link]`: what devices connect to (WhatsApp, or a simulator).
    #[serde(default)]
    pub link: LinkSettings,
    /// `[webhooks]`: sending webhook deliveries.
    #[serde(default)]
    pub webhooks: WebhooksSection,
    /// `[http]`: timeouts and connection cap of the node's HTTP listener.
    #[serde(default)]
    pub http: HttpSection,
    /// `[media]`: where media bytes are kept, and the size limit of each kind.
    #[serde(default)]
    pub media: MediaSettings,
}

/// The `[node]` section: this node's identity and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's name, unique in the cluster (required; 1 to 64 of `A-Z a-z 0-9 . _ -`).
    /// It is the node's identity in ractor_cluster, in placement (shards are assigned to
    /// names), in leases, and in the API (a device's `node`). Keep it stable across
    /// restarts, e.g. the StatefulSet pod name: `WAFLEET__NODE__NAME=$(POD_NAME)`.
    pub name: String,
    /// Where ractor_cluster listens for peers (default `0.0.0.0:4697`).
    #[serde(
        default = "default_cluster_listen",
        deserialize_with = "check::socket_addr"
    )]
    pub cluster_listen: SocketAddr,
    /// The host name or IP peers dial to reach this node, announced to them by
    /// ractor_cluster with `cluster_listen`'s port. Defaults to `cluster_listen`'s IP,
    /// and is required when that IP is `0.0.0.0` or `[::]` (which peers cannot dial).
    #[serde(default)]
    pub advertise_host: Option<String>,
    /// Cluster addresses (`host:port`) of nodes to join at start; empty for the first
    /// node. A few are enough: the members they report in their heartbeats introduce
    /// the rest of the cluster.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Where this node serves `/metrics`, `/healthz` and `/readyz` (default
    /// `0.0.0.0:8081`).
    #[serde(
        default = "default_http_listen",
        deserialize_with = "check::socket_addr"
    )]
    pub http_listen: SocketAddr,
}

impl NodeSection {
    /// The host peers dial: `advertise_host`, else `cluster_listen`'s IP.
    pub fn advertised_host(&self) -> String {
        match &self.advertise_host {
            Some(host) => host.clone(),
            None => self.cluster_listen.ip().to_string(),
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        check::name("node.name", &self.name)?;
        match &self.advertise_host {
            Some(host) if !check::is_host_or_ip(host) => {
                return Err(Invalid::new(
                    "node.advertise_host",
                    format!("`{host}` is not a host name or IP address"),
                ));
            }
            None if self.cluster_listen.ip().is_unspecified() => {
                return Err(Invalid::new(
                    "node.advertise_host",
                    format!(
                        "required when node.cluster_listen ({}) listens on every interface: \
                         peers need a host name or IP they can dial",
                        self.cluster_listen
                    ),
                ));
            }
            _ => {}
        }
        check::host_ports("node.seeds", &self.seeds)
    }
}

impl NodeSettings {
    /// Reads `path` (TOML) and applies the process's `WAFLEET__SECTION__KEY` environment
    /// variables over it.
    pub fn load(path: &Path) -> Result<NodeSettings, ConfigError> {
        NodeSettings::load_with_env(path, process_env()?)
    }

    /// Like [`NodeSettings::load`], with the environment given explicitly (only the
    /// variables that start with `WAFLEET__` are read): tests pass a map rather than
    /// touch the process environment.
    pub fn load_with_env<I, K, V>(path: &Path, env: I) -> Result<NodeSettings, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        super::typed(Source::read(path, env)?, NodeSettings::check)
    }

    fn check(&self) -> Result<(), Invalid> {
        self.node.check()?;
        self.cluster.check()?;
        self.lease.check()?;
        self.store.check()?;
        self.redis.check()?;
        self.recovery.check()?;
        self.link.check()?;
        self.webhooks.check()?;
        self.http.check()?;
        self.media.check()
    }
}

fn default_cluster_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4697))
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8081))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{ConfigError, MediaBackend, MediaSettings, Origin, StoreKind};
    use super::*;

    const COOKIE: &str = "0123456789abcdef0123";

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<NodeSettings, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        super::super::typed(
            Source::parse(Path::new("node.toml"), text, env)?,
            NodeSettings::check,
        )
    }

    const MINIMAL: &str = r#"
        [node]
        name = "node-1"
        cluster_listen = "127.0.0.1:4701"

        [cluster]
        cookie = "0123456789abcdef0123"
    "#;

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let settings = parse(MINIMAL, &[]).unwrap();
        assert_eq!(settings.node.name, "node-1");
        assert_eq!(settings.node.advertised_host(), "127.0.0.1");
        assert_eq!(settings.cluster.cookie.expose(), COOKIE);
        assert_eq!(settings.cluster.shards, 1024);
        assert_eq!(settings.lease, LeaseSettings::default());
        assert_eq!(settings.store, StoreSettings::default());
        assert_eq!(settings.redis, RedisSettings::default());
        assert_eq!(settings.recovery, RecoverySettings::default());
        assert_eq!(settings.media, MediaSettings::default());
    }

    #[test]
    fn cluster_tls_comes_from_the_file_or_the_environment_and_all_three_files_go_together() {
        let file = format!(
            "{MINIMAL}\n[cluster.tls]\ncert = \"/tls/tls.crt\"\nkey = \"/tls/tls.key\"\nca = \"/tls/ca.crt\"\nrequired = true\n"
        );
        let settings = parse(&file, &[]).unwrap();
        let files = settings.cluster.tls.files().unwrap();
        assert_eq!(files.cert, Path::new("/tls/tls.crt"));
        assert_eq!(files.server_name, "wafleet-cluster");
        let settings = parse(
            MINIMAL,
            &[
                ("WAFLEET__CLUSTER__TLS__CERT", "/tls/tls.crt"),
                ("WAFLEET__CLUSTER__TLS__KEY", "/tls/tls.key"),
                ("WAFLEET__CLUSTER__TLS__CA", "/tls/ca.crt"),
                ("WAFLEET__CLUSTER__TLS__SERVER_NAME", "cluster.example"),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.cluster.tls.files().unwrap().server_name,
            "cluster.example"
        );
        let err = parse(MINIMAL, &[("WAFLEET__CLUSTER__TLS__CERT", "/tls/tls.crt")]).unwrap_err();
        assert!(err.to_string().contains("cluster.tls.key"), "{err}");
        let err = parse(MINIMAL, &[("WAFLEET__CLUSTER__TLS__REQUIRED", "true")]).unwrap_err();
        assert!(err.to_string().contains("cluster.tls.cert"), "{err}");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let settings = parse(
            MINIMAL,
            &[
                ("WAFLEET__NODE__NAME", "node-7"),
                ("WAFLEET__NODE__SEEDS", "node-1:4701,node-2:4702"),
                ("WAFLEET__CLUSTER__COOKIE", "ffffffffffffffffffff"),
                ("WAFLEET__CLUSTER__SHARDS", "256"),
                ("WAFLEET__LEASE__TTL_MS", "5000"),
                ("WAFLEET__STORE__KIND", "scylla"),
                ("WAFLEET__STORE__SCYLLA__URIS", "scylla-1:9042"),
                ("WAFLEET__STORE__MASTER_KEY_FILE", "/run/secrets/master.key"),
                ("WAFLEET__RECOVERY__JITTER_MS", "0"),
            ],
        )
        .unwrap();
        assert_eq!(settings.node.name, "node-7");
        assert_eq!(settings.node.seeds, ["node-1:4701", "node-2:4702"]);
        assert_eq!(settings.cluster.cookie.expose(), "ffffffffffffffffffff");
        assert_eq!(settings.cluster.shards, 256);
        assert_eq!(settings.lease.ttl, Duration::from_secs(5));
        assert_eq!(settings.store.kind, StoreKind::Scylla);
        assert_eq!(settings.store.scylla.uris, ["scylla-1:9042"]);
        assert_eq!(
            settings.store.master_key_file.as_deref(),
            Some(Path::new("/run/secrets/master.key"))
        );
        assert_eq!(settings.recovery.jitter, Duration::ZERO);
    }

    #[test]
    fn s3_media_comes_from_the_environment_with_its_credentials() {
        let settings = parse(
            MINIMAL,
            &[
                ("WAFLEET__MEDIA__BACKEND", "s3"),
                ("WAFLEET__MEDIA__S3__BUCKET", "wafleet-media"),
                ("WAFLEET__MEDIA__S3__ENDPOINT", "http://127.0.0.1:9000"),
                ("WAFLEET__MEDIA__S3__PATH_STYLE", "true"),
                ("WAFLEET__MEDIA__S3__ACCESS_KEY_ID", "AKIAEXAMPLE"),
                ("WAFLEET__MEDIA__S3__SECRET_ACCESS_KEY", "s3cret"),
                ("WAFLEET__MEDIA__LIMITS__IMAGE_BYTES", "5242880"),
            ],
        )
        .unwrap();
        assert_eq!(settings.media.backend, MediaBackend::S3);
        assert_eq!(settings.media.s3.bucket, "wafleet-media");
        assert_eq!(
            settings.media.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(settings.media.s3.path_style);
        assert_eq!(
            settings.media.s3.secret_access_key.as_deref(),
            Some("s3cret")
        );
        assert_eq!(settings.media.limits.image_bytes, 5 << 20);
        let err = parse(MINIMAL, &[("WAFLEET__MEDIA__BACKEND", "s3")]).unwrap_err();
        assert!(err.to_string().contains("media.s3.bucket"), "{err}");
    }

    #[test]
    fn several_simulators_come_from_the_file_or_the_environment() {
        let file = format!(
            "{MINIMAL}\n[link]\nkind = \"sim\"\nsim_urls = [\"ws://127.0.0.1:8090/ws\", \"ws://127.0.0.1:8091/ws\"]\n"
        );
        let settings = parse(&file, &[]).unwrap();
        assert_eq!(
            settings.link.sim_urls(),
            ["ws://127.0.0.1:8090/ws", "ws://127.0.0.1:8091/ws"]
        );
        let from_env = parse(
            MINIMAL,
            &[
                ("WAFLEET__LINK__KIND", "sim"),
                ("WAFLEET__LINK__SIM_URLS", "ws://a:1/ws,ws://b:2/ws"),
            ],
        )
        .unwrap();
        assert_eq!(from_env.link.sim_urls(), ["ws://a:1/ws", "ws://b:2/ws"]);
        let err = parse(&file, &[("WAFLEET__LINK__SIM_URL", "ws://c:3/ws")]).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn a_pinned_whatsapp_version_and_url_come_from_the_file_or_the_environment() {
        let file = format!(
            "{MINIMAL}\n[link]\nwhatsapp_url = \"ws://127.0.0.1:9000/ws/chat\"\nwhatsapp_version = \"2.3000.1023456789\"\n"
        );
        let settings = parse(&file, &[]).unwrap();
        assert_eq!(
            settings.link.whatsapp_url.as_deref(),
            Some("ws://127.0.0.1:9000/ws/chat")
        );
        assert_eq!(
            settings.link.whatsapp_version.map(|v| v.parts),
            Some((2, 3000, 1_023_456_789))
        );
        let from_env = parse(MINIMAL, &[("WAFLEET__LINK__WHATSAPP_VERSION", "2.3000.7")]).unwrap();
        assert_eq!(
            from_env.link.whatsapp_version.map(|v| v.parts),
            Some((2, 3000, 7))
        );
        assert_eq!(parse(MINIMAL, &[]).unwrap().link.whatsapp_version, None);

        let err = parse(&file.replace("2.3000.1023456789", "2.3000"), &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("link.whatsapp_version"), "{text}");
        assert!(text.contains("like 2.3000.1023456789"), "{text}");
        let err = parse(MINIMAL, &[("WAFLEET__LINK__WHATSAPP_VERSION", "latest")]).unwrap_err();
        assert!(
            err.to_string().contains("WAFLEET__LINK__WHATSAPP_VERSION"),
            "{err}"
        );
        let err = parse(&file.replace("ws://127.0.0.1", "http://127.0.0.1"), &[]).unwrap_err();
        assert!(err.to_string().contains("link.whatsapp_url"), "{err}");
    }

    #[test]
    fn the_cookie_is_required_and_has_no_default() {
        let err = parse(&MINIMAL.replace(&format!("cookie = \"{COOKIE}\""), ""), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, var, .. }
                if key == "cluster.cookie" && var == "WAFLEET__CLUSTER__COOKIE"),
            "{err:?}"
        );
        let err = parse(
            &MINIMAL
                .replace("[cluster]", "")
                .replace(&format!("cookie = \"{COOKIE}\""), ""),
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, .. } if key == "cluster"),
            "{err:?}"
        );
        let err = parse(MINIMAL, &[("WAFLEET__CLUSTER__COOKIE", "")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, origin: Origin::Environment(_), .. } if key == "cluster.cookie"),
            "{err:?}"
        );
    }

    #[test]
    fn a_wildcard_listener_needs_an_advertised_host() {
        let text = MINIMAL.replace("127.0.0.1:4701", "0.0.0.0:4701");
        let err = parse(&text, &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "node.advertise_host"),
            "{err:?}"
        );
        let settings = parse(
            &text,
            &[("WAFLEET__NODE__ADVERTISE_HOST", "node-1.wafleet")],
        )
        .unwrap();
        assert_eq!(settings.node.advertised_host(), "node-1.wafleet");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("WAFLEET__NODE__NAME", "node 1", "node.name"),
            (
                "WAFLEET__NODE__CLUSTER_LISTEN",
                "localhost:4701",
                "node.cluster_listen",
            ),
            (
                "WAFLEET__NODE__HTTP_LISTEN",
                "127.0.0.1",
                "node.http_listen",
            ),
            ("WAFLEET__NODE__SEEDS", "node-2", "node.seeds"),
            ("WAFLEET__CLUSTER__SHARDS", "0", "cluster.shards"),
            ("WAFLEET__CLUSTER__SHARDS", "-3", "cluster.shards"),
            (
                "WAFLEET__CLUSTER__HEARTBEAT_INTERVAL_MS",
                "1",
                "cluster.heartbeat_interval_ms",
            ),
            (
                "WAFLEET__CLUSTER__FAILURE_TIMEOUT_MS",
                "500",
                "cluster.failure_timeout_ms",
            ),
            (
                "WAFLEET__LEASE__RENEW_INTERVAL_MS",
                "1500",
                "lease.renew_interval_ms",
            ),
            ("WAFLEET__STORE__KIND", "redb", "store.kind"),
            ("WAFLEET__REDIS__URL", "localhost:6379", "redis.url"),
            (
                "WAFLEET__REDIS__STREAM_MAX_LEN",
                "0",
                "redis.stream_max_len",
            ),
            (
                "WAFLEET__RECOVERY__CONCURRENCY",
                "0",
                "recovery.concurrency",
            ),
        ];
        for (var, value, expected) in cases {
            let err = parse(MINIMAL, &[(var, value)]).unwrap_err();
            match &err {
                ConfigError::InvalidValue { key, origin, .. } => {
                    assert_eq!(key, expected, "{var}={value}: {err}");
                    if key != "cluster.failure_timeout_ms" {
                        assert_eq!(origin, &Origin::Environment(var.to_string()), "{err}");
                    }
                }
                other => panic!("{var}={value}: {other:?}"),
            }
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_named() {
        let err = parse(&format!("{MINIMAL}\n[lease]\nttl = 3000\n"), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "lease.ttl"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("node.toml") && message.contains("ttl_ms"),
            "{message}"
        );

        let err = parse(
            &format!("{MINIMAL}\n[gateway]\nlisten = \"0.0.0.0:8080\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "gateway"),
            "{err:?}"
        );
    }
}
