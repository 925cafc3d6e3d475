//! The master keys a process runs with, and `wafleet master-key` / `wafleet data-key`:
//! rotating them without stopping anything.
//!
//! Where the keys come from: `WAFLEET_MASTER_KEY` (the current key, `[VERSION:]BASE64`)
//! with `WAFLEET_MASTER_KEY_PREVIOUS` (older keys that still open what they sealed), else
//! a key file (`store.master_key_file`, or `master.key` in the data folder or beside a
//! shared SQLite file), whose first line is the current key. A process that reads a key
//! file reads it again when it meets a version it does not know, so a rotation made in
//! the file reaches running processes without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use wafleet_cluster_config::{MasterKeySource, NodeSettings, StoreSettings};
use wafleet_node::seal::data_keys::DataKeys;
use wafleet_node::seal::{
    KeySource, MasterKey, MasterKeys, Sealer, key_file_path, load_master_key_file,
    load_or_create_master_key, master_keys_from_env, replace_key_file,
};
use wafleet_node::store::{SqliteStore, Store};

/// The environment variables that hold master keys.
const ENV_CURRENT: &str = "WAFLEET_MASTER_KEY";
const ENV_PREVIOUS: &str = "WAFLEET_MASTER_KEY_PREVIOUS";

/// The sealer of a node or gateway: every process of a cluster needs the same keys
/// (each must open every device's credentials and every tenant's data keys). From the
/// environment, else `store.master_key_file`, else, with SQLite only, `master.key` beside
/// the shared database file, created on first start. With ScyllaDB and neither, the
/// process refuses to start: a key it made up would differ from every other process's.
pub(crate) fn cluster_sealer(store: &StoreSettings) -> anyhow::Result<Sealer> {
    let current = env_value(ENV_CURRENT);
    let source = store.master_key_source(current.is_some())?;
    let sealer = match source {
        MasterKeySource::Environment => {
            Sealer::from_keys(from_env(current.as_deref().unwrap_or_default())?)
        }
        MasterKeySource::File(path) => reloading(
            load_master_key_file(&path).context("cannot load the master key")?,
            path,
        ),
        MasterKeySource::BesideSqlite(dir) => reloading(
            load_or_create_master_key(&dir, None).context("cannot load the master key")?,
            key_file_path(&dir),
        ),
    };
    Ok(sealer)
}

/// The sealer of a standalone process: the environment's keys, else the data folder's
/// `master.key` (made on first start).
pub(crate) fn standalone_sealer(data: &Path) -> anyhow::Result<Sealer> {
    match env_value(ENV_CURRENT) {
        Some(current) => Ok(Sealer::from_keys(from_env(&current)?)),
        None => Ok(reloading(
            load_or_create_master_key(data, None).context("cannot load the master key")?,
            key_file_path(data),
        )),
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn from_env(current: &str) -> anyhow::Result<MasterKeys> {
    master_keys_from_env(current, env_value(ENV_PREVIOUS).as_deref())
        .context("cannot load the master key")
}

fn reloading(keys: MasterKeys, path: PathBuf) -> Sealer {
    let source: KeySource = Arc::new(move || load_master_key_file(&path));
    Sealer::reloading(keys, source)
}

/// `wafleet master-key …`
#[derive(Debug, Subcommand)]
pub(crate) enum MasterKeyCommand {
    /// Makes a new master key (the next version) current in the key file, keeps the
    /// old ones in it as previous, then wraps every tenant's data key again under the
    /// new key. Running processes that read the same file take the new key when they
    /// first meet it. For keys given in the environment, use `new` and `rewrap`.
    Rotate(Place),
    /// Wraps every tenant's data key again under the current master key (after the
    /// keys in the environment were changed), so that the previous key can be retired.
    Rewrap(Place),
    /// Prints a new random key as VERSION:BASE64, for WAFLEET_MASTER_KEY.
    New {
        /// The version to give it: one above every key in use.
        #[arg(long)]
        version: u32,
    },
}

/// `wafleet data-key …`
#[derive(Debug, Subcommand)]
pub(crate) enum DataKeyCommand {
    /// Starts a new data key for a tenant: texts sealed from now on (by every process
    /// within a minute) use it; what was sealed before still opens.
    Rotate {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        place: Place,
    },
}

/// Which system: a standalone's data folder or a cluster node's settings.
#[derive(Debug, ClapArgs)]
#[group(required = true, multiple = false)]
pub(crate) struct Place {
    /// A standalone's data folder (its `master.key` and `wafleet.db`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// A cluster node's TOML settings (its `[store]`, and its key file or the keys in
    /// the environment).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// What a command works on: the key file (if the keys are in one), the sealer and the
/// store.
struct Opened {
    key_file: Option<PathBuf>,
    keys: MasterKeys,
    store: Arc<dyn Store>,
}

impl Place {
    async fn open(&self) -> anyhow::Result<Opened> {
        let in_env = env_value(ENV_CURRENT);
        match (&self.data, &self.config) {
            (Some(data), _) => {
                let key_file = key_file_path(data);
                let keys = match &in_env {
                    Some(current) => from_env(current)?,
                    None => {
                        load_master_key_file(&key_file).context("cannot load the master key")?
                    }
                };
                let store =
                    SqliteStore::open(&data.join("wafleet.db")).context("cannot open the store")?;
                Ok(Opened {
                    key_file: in_env.is_none().then_some(key_file),
                    keys,
                    store: Arc::new(store),
                })
            }
            (None, Some(config)) => {
                let settings = NodeSettings::load(config)?;
                let (key_file, keys) = match settings.store.master_key_source(in_env.is_some())? {
                    MasterKeySource::Environment => {
                        (None, from_env(in_env.as_deref().unwrap_or_default())?)
                    }
                    MasterKeySource::File(path) => {
                        let keys =
                            load_master_key_file(&path).context("cannot load the master key")?;
                        (Some(path), keys)
                    }
                    MasterKeySource::BesideSqlite(dir) => {
                        let path = key_file_path(&dir);
                        let keys =
                            load_master_key_file(&path).context("cannot load the master key")?;
                        (Some(path), keys)
                    }
                };
                let store = crate::store::open(&settings.store, settings.cluster.shards).await?;
                Ok(Opened {
                    key_file,
                    keys,
                    store,
                })
            }
            (None, None) => bail!("give --data DIR or --config FILE"),
        }
    }
}

pub(crate) async fn master_key(command: MasterKeyCommand) -> anyhow::Result<()> {
    match command {
        MasterKeyCommand::New { version } => {
            if version == 0 {
                bail!("--version must be 1 or more");
            }
            let key = MasterKey::generate(version)?;
            println!("{}:{}", key.version(), key.to_base64());
            Ok(())
        }
        MasterKeyCommand::Rotate(place) => {
            let opened = place.open().await?;
            let Some(key_file) = opened.key_file else {
                bail!(
                    "the master keys come from {ENV_CURRENT}: make a key with `wafleet master-key new --version N`, \
                     give it to every process as {ENV_CURRENT} with the old one in {ENV_PREVIOUS} \
                     (a rolling restart), then run `wafleet master-key rewrap`"
                );
            };
            let rotated = opened.keys.rotated()?;
            replace_key_file(&key_file, &rotated)?;
            println!(
                "master key version {} is current in {} (versions kept: {})",
                rotated.current.version(),
                key_file.display(),
                rotated
                    .previous
                    .iter()
                    .map(|k| k.version().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            rewrap(opened.store, rotated).await
        }
        MasterKeyCommand::Rewrap(place) => {
            let opened = place.open().await?;
            rewrap(opened.store, opened.keys).await
        }
    }
}

async fn rewrap(store: Arc<dyn Store>, keys: MasterKeys) -> anyhow::Result<()> {
    let version = keys.current.version();
    let data_keys = DataKeys::new(store, Arc::new(Sealer::from_keys(keys)));
    let done = data_keys
        .rewrap_all()
        .await
        .context("cannot wrap the data keys again")?;
    println!(
        "data keys wrapped again under master key version {version}: {} (already were: {})",
        done.rewrapped, done.current
    );
    Ok(())
}

pub(crate) async fn data_key(command: DataKeyCommand) -> anyhow::Result<()> {
    match command {
        DataKeyCommand::Rotate { tenant, place } => {
            wafleet_node::access::directory::check_tenant_id(&tenant)?;
            let opened = place.open().await?;
            let data_keys = DataKeys::new(opened.store, Arc::new(Sealer::from_keys(opened.keys)));
            let version = data_keys
                .rotate(&tenant)
                .await
                .context("cannot make the new data key")?;
            println!("tenant {tenant}: data key version {version} is current");
            Ok(())
        }
    }
}
