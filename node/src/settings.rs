//! The settings rule: the trust-level quota table, stored as one store setting (JSON)
//! that every node reads. Any process with the store can read and write it; nodes apply
//! a change within their settings refresh (`fleet/background.rs`), or at once when told
//! (`refresh_settings`).

use tracing::warn;
use wafleet_cluster_config::QuotaTable;

use crate::api::FleetError;
use crate::clock::now_ms;
use crate::store::Store;

/// The store setting that holds the trust-level quota table (JSON).
pub const TRUST_LEVELS_SETTING: &str = "trust_levels";

/// The quota table stored in the settings, or the defaults when none is stored.
pub async fn load_quota_table(store: &dyn Store) -> Result<QuotaTable, FleetError> {
    let Some(setting) = store.get_setting(TRUST_LEVELS_SETTING).await? else {
        return Ok(QuotaTable::default());
    };
    Ok(parse_quota_table(&setting.value).unwrap_or_else(|| {
        warn!("the stored trust-level table is unusable; using the defaults");
        QuotaTable::default()
    }))
}

/// A stored quota table, if it reads and holds together.
pub(crate) fn parse_quota_table(json: &str) -> Option<QuotaTable> {
    serde_json::from_str::<QuotaTable>(json)
        .ok()
        .filter(|table| table.check().is_ok())
}

/// Checks `table` and stores it as the cluster's quota table. Any process with the
/// store can (a gateway does); nodes pick it up within their settings refresh.
pub async fn store_quota_table(store: &dyn Store, table: &QuotaTable) -> Result<(), FleetError> {
    table
        .check()
        .map_err(|error| FleetError::Invalid(error.to_string()))?;
    let json = serde_json::to_string(table).map_err(|e| FleetError::Internal(e.to_string()))?;
    store
        .put_setting(TRUST_LEVELS_SETTING, &json, now_ms())
        .await?;
    Ok(())
}
