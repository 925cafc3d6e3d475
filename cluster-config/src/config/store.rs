//! `[store]`: where devices, credentials, leases and the outbox live.

use std::path::PathBuf;

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
}

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
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        ScyllaSettings {
            uris: Vec::new(),
            keyspace: default_keyspace(),
        }
    }
}

impl StoreSettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
