//! `[store]`: where devices, credentials, leases and the outbox live.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::check::{self, Invalid};

/// The `[store]` section: `kind` picks the implementation, and its sub-table
/// (`[store.sqlite]` or `[store.scylla]`) configures it. The other sub-table may stay in
/// the file (so an environment variable can switch `kind`) and is then ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which store (`"sqlite"` or `"scylla"`, default `"sqlite"`).
    #[serde(default)]
    pub kind: StoreKind,
    /// The embedded store's settings, used when `kind = "sqlite"`.
    #[serde(default)]
    pub sqlite: SqliteSettings,
    /// ScyllaDB's settings, used when `kind = "scylla"`.
    #[serde(default)]
    pub scylla: ScyllaSettings,
    /// A file holding the master key that seals every device's credentials in the store
    /// (standard base64 of 32 bytes, like `WAFLEET_MASTER_KEY`, which wins when set). It
    /// is read, never created. Unset: with SQLite, `master.key` beside the database file
    /// (created on first start); with ScyllaDB, `WAFLEET_MASTER_KEY` is then required.
    /// See [`StoreSettings::master_key_source`].
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
}

/// Where a node gets the master key that seals credentials in the store. Every node of
/// a cluster must use the same key: a node cannot open what another sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `WAFLEET_MASTER_KEY` (standard base64 of 32 bytes).
    Environment,
    /// `store.master_key_file`, which must exist (it is never created).
    File(PathBuf),
    /// `master.key` in this folder, the SQLite file's, created on first start: the nodes
    /// that share the SQLite file share the folder, and so the key.
    BesideSqlite(PathBuf),
}

/// A ScyllaDB store, and neither `WAFLEET_MASTER_KEY` nor `store.master_key_file`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "store.kind = \"scylla\" needs the cluster's master key: set WAFLEET_MASTER_KEY (standard \
     base64 of 32 bytes) or store.master_key_file (WAFLEET__STORE__MASTER_KEY_FILE), the same \
     key on every node. A node never creates one for a shared store: each node would make a \
     different key and could not open the credentials another node sealed"
)]
pub struct NoMasterKey;

/// Which store implementation a process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file (WAL mode), which several node processes on one machine can share:
    /// the local cluster and its tests.
    #[default]
    Sqlite,
    /// A ScyllaDB cluster: production clusters of several machines.
    Scylla,
}

/// `[store.sqlite]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSettings {
    /// The database file (default `wafleet-data/cluster.db`). Every process of a local
    /// cluster points at the same file; it is created if missing.
    #[serde(default = "default_sqlite_path")]
    pub path: PathBuf,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        SqliteSettings {
            path: default_sqlite_path(),
        }
    }
}

/// `[store.scylla]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaSettings {
    /// Contact points as `host:port` (CQL port, usually 9042); required when
    /// `kind = "scylla"`. The driver discovers the rest of the ring from them.
    #[serde(default)]
    pub uris: Vec<String>,
    /// The keyspace wafleet creates and uses (default `wafleet`): letters, digits and
    /// `_`, starting with a letter, at most 48 characters (CQL's rule).
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// Copies of each row the keyspace keeps in every datacenter (default 3), used when
    /// the node creates the keyspace (an existing keyspace is left as it is).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u32,
    /// The datacenter this process lives in (optional): requests go to its nodes first,
    /// and consistency is LOCAL_QUORUM / LOCAL_SERIAL within it either way.
    #[serde(default)]
    pub local_dc: Option<String>,
    /// How long one request may take, retries included, before the store reports it
    /// unavailable (default 5000 ms; the client timeout, above the server's own).
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "check::millis"
    )]
    pub request_timeout_ms: Duration,
    /// How long to wait for a TCP connection and the CQL handshake (default 5000 ms).
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "check::millis"
    )]
    pub connect_timeout_ms: Duration,
    /// Whether the created keyspace uses tablets (default `false`). wafleet relies on
    /// lightweight transactions, which ScyllaDB releases up to 2025.3 refuse in tablets
    /// keyspaces: the keyspace is created `AND tablets = {'enabled': false}` unless this is
    /// `true`. Set it to `true` on a release that supports LWT with tablets; on ScyllaDB
    /// before 6.0 (which has no tablets and rejects the option) set it to `true` as well,
    /// so that the option is left out.
    #[serde(default)]
    pub tablets: bool,
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        ScyllaSettings {
            uris: Vec::new(),
            keyspace: default_keyspace(),
            replication_factor: default_replication_factor(),
            local_dc: None,
            request_timeout_ms: default_request_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            tablets: false,
        }
    }
}

impl StoreSettings {
    /// Where a node's master key comes from, `key_in_environment` telling whether
    /// `WAFLEET_MASTER_KEY` is set (it wins, even when empty: an empty key is refused
    /// when read, never replaced): else `store.master_key_file`; else, with SQLite only,
    /// `master.key` beside the database file. A ScyllaDB store with neither is an error,
    /// never a new key.
    pub fn master_key_source(
        &self,
        key_in_environment: bool,
    ) -> Result<MasterKeySource, NoMasterKey> {
        if key_in_environment {
            return Ok(MasterKeySource::Environment);
        }
        if let Some(file) = &self.master_key_file {
            return Ok(MasterKeySource::File(file.clone()));
        }
        match self.kind {
            StoreKind::Sqlite => Ok(MasterKeySource::BesideSqlite(
                self.sqlite
                    .path
                    .parent()
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), PathBuf::from),
            )),
            StoreKind::Scylla => Err(NoMasterKey),
        }
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self
            .master_key_file
            .as_ref()
            .is_some_and(|file| file.as_os_str().is_empty())
        {
            return Err(Invalid::new(
                "store.master_key_file",
                "must be a file's path or left out",
            ));
        }
        match self.kind {
            StoreKind::Sqlite => {
                if self.sqlite.path.as_os_str().is_empty() {
                    return Err(Invalid::new("store.sqlite.path", "must not be empty"));
                }
            }
            StoreKind::Scylla => {
                if self.scylla.uris.is_empty() {
                    return Err(Invalid::new(
                        "store.scylla.uris",
                        "needs at least one contact point (host:port) when store.kind = \"scylla\"",
                    ));
                }
                check::host_ports("store.scylla.uris", &self.scylla.uris)?;
                let keyspace = &self.scylla.keyspace;
                let ok = (1..=48).contains(&keyspace.len())
                    && keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
                    && keyspace
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(Invalid::new(
                        "store.scylla.keyspace",
                        format!(
                            "`{keyspace}` is not a keyspace name: a letter, then up to 47 \
                             letters, digits or _"
                        ),
                    ));
                }
                if !(1..=15).contains(&self.scylla.replication_factor) {
                    return Err(Invalid::new(
                        "store.scylla.replication_factor",
                        "must be between 1 and 15",
                    ));
                }
                if let Some(dc) = &self.scylla.local_dc
                    && (dc.trim().is_empty() || dc.contains(['\'', '"']))
                {
                    return Err(Invalid::new(
                        "store.scylla.local_dc",
                        "must be a datacenter name (not empty, no quotes) or left out",
                    ));
                }
                for (key, value) in [
                    (
                        "store.scylla.request_timeout_ms",
                        self.scylla.request_timeout_ms,
                    ),
                    (
                        "store.scylla.connect_timeout_ms",
                        self.scylla.connect_timeout_ms,
                    ),
                ] {
                    if !(Duration::from_millis(100)..=Duration::from_secs(120)).contains(&value) {
                        return Err(Invalid::new(key, "must be between 100 and 120000 ms"));
                    }
                }
            }
        }
        Ok(())
    }
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("wafleet-data/cluster.db")
}

fn default_keyspace() -> String {
    "wafleet".into()
}

fn default_replication_factor() -> u32 {
    3
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn scylla() -> StoreSettings {
        StoreSettings {
            kind: StoreKind::Scylla,
            scylla: ScyllaSettings {
                uris: vec!["scylla-1:9042".into()],
                ..ScyllaSettings::default()
            },
            ..StoreSettings::default()
        }
    }

    #[test]
    fn scylla_takes_the_master_key_from_the_environment_or_a_file_never_a_new_one() {
        let store = scylla();
        assert_eq!(store.master_key_source(false), Err(NoMasterKey));
        let message = NoMasterKey.to_string();
        for named in [
            "WAFLEET_MASTER_KEY",
            "store.master_key_file",
            "WAFLEET__STORE__MASTER_KEY_FILE",
        ] {
            assert!(message.contains(named), "{message}");
        }
        assert_eq!(
            store.master_key_source(true),
            Ok(MasterKeySource::Environment)
        );

        let with_file = StoreSettings {
            master_key_file: Some("/run/secrets/master.key".into()),
            ..store
        };
        assert_eq!(with_file.check(), Ok(()));
        assert_eq!(
            with_file.master_key_source(false),
            Ok(MasterKeySource::File("/run/secrets/master.key".into()))
        );
        assert_eq!(
            with_file.master_key_source(true),
            Ok(MasterKeySource::Environment),
            "the environment wins, as everywhere"
        );
    }

    #[test]
    fn sqlite_keeps_its_master_key_beside_the_database_unless_told_otherwise() {
        let store = StoreSettings::default();
        assert_eq!(
            store.master_key_source(false),
            Ok(MasterKeySource::BesideSqlite("wafleet-data".into()))
        );
        assert_eq!(
            store.master_key_source(true),
            Ok(MasterKeySource::Environment)
        );
        let bare = StoreSettings {
            sqlite: SqliteSettings {
                path: "cluster.db".into(),
            },
            ..StoreSettings::default()
        };
        assert_eq!(
            bare.master_key_source(false),
            Ok(MasterKeySource::BesideSqlite(".".into()))
        );
        let with_file = StoreSettings {
            master_key_file: Some("keys/master.key".into()),
            ..StoreSettings::default()
        };
        assert_eq!(
            with_file.master_key_source(false),
            Ok(MasterKeySource::File(Path::new("keys/master.key").into()))
        );
        let empty = StoreSettings {
            master_key_file: Some(PathBuf::new()),
            ..StoreSettings::default()
        };
        assert_eq!(empty.check().unwrap_err().key, "store.master_key_file");
    }

    #[test]
    fn sqlite_is_the_default_and_valid() {
        assert_eq!(StoreSettings::default().check(), Ok(()));
        assert_eq!(StoreSettings::default().kind, StoreKind::Sqlite);
    }

    #[test]
    fn scylla_needs_contact_points_and_a_plain_keyspace() {
        let mut store = StoreSettings {
            kind: StoreKind::Scylla,
            ..StoreSettings::default()
        };
        assert_eq!(store.check().unwrap_err().key, "store.scylla.uris");
        store.scylla.uris = vec!["scylla-1:9042".into(), "scylla-2:9042".into()];
        assert_eq!(store.check(), Ok(()));
        store.scylla.uris.push("scylla-3".into());
        assert_eq!(store.check().unwrap_err().key, "store.scylla.uris");
        store.scylla.uris.pop();
        for bad in ["", "1wafleet", "wafleet-prod", &"k".repeat(49)] {
            store.scylla.keyspace = bad.into();
            assert_eq!(
                store.check().unwrap_err().key,
                "store.scylla.keyspace",
                "{bad}"
            );
        }
    }

    #[test]
    fn scylla_replication_datacenter_and_timeouts_are_checked() {
        let valid = StoreSettings {
            kind: StoreKind::Scylla,
            scylla: ScyllaSettings {
                uris: vec!["127.0.0.1:9042".into()],
                ..ScyllaSettings::default()
            },
            ..StoreSettings::default()
        };
        assert_eq!(valid.check(), Ok(()));
        assert_eq!(valid.scylla.replication_factor, 3);
        assert_eq!(valid.scylla.request_timeout_ms, Duration::from_secs(5));
        assert!(!valid.scylla.tablets, "tablets are off by default, for LWT");

        type Breaker = fn(&mut ScyllaSettings);
        let cases: [(&str, Breaker); 7] = [
            ("store.scylla.replication_factor", |s| {
                s.replication_factor = 0
            }),
            ("store.scylla.replication_factor", |s| {
                s.replication_factor = 16
            }),
            ("store.scylla.local_dc", |s| s.local_dc = Some(" ".into())),
            ("store.scylla.local_dc", |s| {
                s.local_dc = Some("dc1'".into())
            }),
            ("store.scylla.request_timeout_ms", |s| {
                s.request_timeout_ms = Duration::from_millis(99)
            }),
            ("store.scylla.request_timeout_ms", |s| {
                s.request_timeout_ms = Duration::from_secs(121)
            }),
            ("store.scylla.connect_timeout_ms", |s| {
                s.connect_timeout_ms = Duration::ZERO
            }),
        ];
        for (key, breaker) in cases {
            let mut store = valid.clone();
            breaker(&mut store.scylla);
            assert_eq!(store.check().unwrap_err().key, key);
        }
        let mut with_dc = valid.clone();
        with_dc.scylla.local_dc = Some("eu-west".into());
        assert_eq!(with_dc.check(), Ok(()));
    }

    #[test]
    fn scylla_keys_parse_from_toml() {
        let store: StoreSettings = toml::from_str(
            r#"
            kind = "scylla"
            [scylla]
            uris = ["10.0.0.1:9042"]
            keyspace = "fleet"
            replication_factor = 1
            local_dc = "dc1"
            request_timeout_ms = 2500
            connect_timeout_ms = 1000
            tablets = true
            "#,
        )
        .expect("parse");
        assert_eq!(store.check(), Ok(()));
        let s = &store.scylla;
        assert_eq!(
            (
                s.keyspace.as_str(),
                s.replication_factor,
                s.local_dc.as_deref()
            ),
            ("fleet", 1, Some("dc1"))
        );
        assert_eq!(
            (s.request_timeout_ms, s.connect_timeout_ms, s.tablets),
            (Duration::from_millis(2500), Duration::from_secs(1), true)
        );
    }
}
