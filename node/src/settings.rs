//! The settings rule: cluster-wide settings (the trust-level quota table, the webhook
//! retry settings, the send retry settings), each stored as one store setting (JSON)
//! that every process reads. Any process with the store can read and write them; nodes
//! apply a change within their settings refresh (`fleet/background.rs`), or at once
//! when told (`refresh_settings`).
//!
//! A setting is a type that implements [`StoredSetting`]: its key, its defaults and its
//! check. [`load`] and [`store`] are the one way every setting is read and written.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;
use wafleet_cluster_config::QuotaTable;

use crate::api::FleetError;
use crate::clock::now_ms;
use crate::store::Store;

/// A cluster-wide setting kept in the store as JSON.
pub trait StoredSetting: Serialize + DeserializeOwned + Default {
    /// The store setting that holds it.
    const KEY: &'static str;

    /// Whether the values hold together; the message says what does not.
    fn check(&self) -> Result<(), String>;
}

/// The store setting that holds the trust-level quota table (JSON).
pub const TRUST_LEVELS_SETTING: &str = "trust_levels";

impl StoredSetting for QuotaTable {
    const KEY: &'static str = TRUST_LEVELS_SETTING;

    fn check(&self) -> Result<(), String> {
        QuotaTable::check(self).map_err(|error| error.to_string())
    }
}

/// The setting stored under `T::KEY`, or the defaults when none is stored. A stored
/// value that does not read or hold together is ignored, with a warning.
pub async fn load<T: StoredSetting>(store: &dyn Store) -> Result<T, FleetError> {
    let Some(setting) = store.get_setting(T::KEY).await? else {
        return Ok(T::default());
    };
    Ok(parse(&setting.value).unwrap_or_else(|| {
        warn!(
            setting = T::KEY,
            "the stored setting is unusable; using the defaults"
        );
        T::default()
    }))
}

/// A stored setting, if it reads and holds together.
pub(crate) fn parse<T: StoredSetting>(json: &str) -> Option<T> {
    serde_json::from_str::<T>(json)
        .ok()
        .filter(|value| value.check().is_ok())
}

/// Checks `value` and stores it for every process (`FleetError::Invalid` if it does
/// not hold together).
pub async fn store<T: StoredSetting>(store: &dyn Store, value: &T) -> Result<(), FleetError> {
    value.check().map_err(FleetError::Invalid)?;
    let json = serde_json::to_string(value).map_err(|e| FleetError::Internal(e.to_string()))?;
    store.put_setting(T::KEY, &json, now_ms()).await?;
    Ok(())
}
