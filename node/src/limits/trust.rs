//! A device's standing: its [`TrustRecord`] (sealed in its vault), its promotion from
//! NEWCOMER to TRUSTED, and the byte cell a device shares its level through.
//!
//! # Trust levels
//!
//! A NEWCOMER that has been linked for [`NodeConfig::promote_after`] (7 days), is
//! READY, and was not banned in that time, becomes TRUSTED: checked every
//! [`NodeConfig::trust_check_interval`], with no restart. VERIFIED is only ever set by
//! an admin. A ban from the link demotes the device to NEWCOMER, pauses its sending
//! until the ban ends, and emits a `status` event with `reason: "banned"` (done by the
//! limiter, [`super::actor`]).
//!
//! [`NodeConfig::promote_after`]: crate::context::NodeConfig::promote_after
//! [`NodeConfig::trust_check_interval`]: crate::context::NodeConfig::trust_check_interval

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::context::NodeContext;
use crate::events::EventKind;
use crate::metrics;
use crate::store::{DevicePatch, DeviceStatus, StoreError, TrustLevel};
use crate::vault::{DeviceVault, VaultError};

/// The vault namespace and key of a device's [`TrustRecord`].
pub const TRUST_NAMESPACE: &str = "wafleet";
pub const TRUST_KEY: &str = "trust";

/// A device's standing, kept sealed in its vault ([`TRUST_NAMESPACE`]/[`TRUST_KEY`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// When the current link was made (first seen connected, for older links).
    #[serde(default)]
    pub linked_at_ms: Option<i64>,
    /// When the last ban signal came.
    #[serde(default)]
    pub last_ban_ms: Option<i64>,
    /// Sending is paused until then.
    #[serde(default)]
    pub banned_until_ms: Option<i64>,
}

impl TrustRecord {
    /// The end of the pause, if sending is paused at `now_ms`.
    pub fn paused_until(&self, now_ms: i64) -> Option<i64> {
        self.banned_until_ms.filter(|&until| until > now_ms)
    }

    /// Whether a device at `level`, READY or not, has earned TRUSTED at `now_ms`.
    pub fn earns_promotion(
        &self,
        level: TrustLevel,
        ready: bool,
        promote_after_ms: i64,
        now_ms: i64,
    ) -> bool {
        let since = now_ms.saturating_sub(promote_after_ms);
        level == TrustLevel::Newcomer
            && ready
            && self.linked_at_ms.is_some_and(|linked| linked <= since)
            && self.last_ban_ms.is_none_or(|ban| ban <= since)
    }

    /// Reads a device's record from its vault (absent or unreadable: empty).
    pub async fn load(vault: &DeviceVault) -> Result<TrustRecord, VaultError> {
        match vault.get(TRUST_NAMESPACE, TRUST_KEY).await {
            Ok(Some(bytes)) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                warn!(device_id = vault.device_id(), %error, "unreadable trust record, starting over");
                TrustRecord::default()
            })),
            Ok(None) => Ok(TrustRecord::default()),
            Err(VaultError::Corrupt { .. }) => Ok(TrustRecord::default()),
            Err(error) => Err(error),
        }
    }

    pub(super) async fn save(&self, vault: &DeviceVault) -> Result<(), VaultError> {
        let bytes = serde_json::to_vec(self).expect("a trust record always serializes");
        vault.put(TRUST_NAMESPACE, TRUST_KEY, &bytes).await
    }
}

pub(super) fn vault_store_error(error: VaultError) -> StoreError {
    match error {
        VaultError::Store(error) => error,
        VaultError::Corrupt { namespace, key } => {
            StoreError::Corrupt(format!("{namespace}/{key} does not decrypt"))
        }
    }
}

/// A trust level as a byte, for the cell a device shares with its limiter.
pub(crate) fn level_to_u8(level: TrustLevel) -> u8 {
    match level {
        TrustLevel::Newcomer => 0,
        TrustLevel::Trusted => 1,
        TrustLevel::Verified => 2,
    }
}

pub(crate) fn level_from_u8(byte: u8) -> TrustLevel {
    match byte {
        1 => TrustLevel::Trusted,
        2 => TrustLevel::Verified,
        _ => TrustLevel::Newcomer,
    }
}

/// A new link: its week towards TRUSTED starts at `now_ms` (a new link starts over: no
/// ban on record). Returns the record written.
pub(crate) async fn record_link(
    vault: &DeviceVault,
    now_ms: i64,
) -> Result<TrustRecord, StoreError> {
    let trust = TrustRecord {
        linked_at_ms: Some(now_ms),
        ..TrustRecord::default()
    };
    trust.save(vault).await.map_err(vault_store_error)?;
    Ok(trust)
}

/// Promotes the device to TRUSTED if it has earned it (a NEWCOMER linked for
/// [`NodeConfig::promote_after`](crate::context::NodeConfig::promote_after), READY, not
/// banned meanwhile): stores the level under the vault's fence and emits a `status` event
/// with `reason: "promoted"`. Returns the new level when it changed. A device linked
/// before link times were kept starts its week now.
pub(crate) async fn promote_if_earned(
    ctx: &NodeContext,
    device_id: &str,
    vault: &DeviceVault,
) -> Result<Option<TrustLevel>, StoreError> {
    let now = ctx.clock.now_ms();
    let promote_after = i64::try_from(ctx.config.promote_after.as_millis()).unwrap_or(i64::MAX);
    let Some(record) = ctx.store.get_device(device_id).await? else {
        return Ok(None);
    };
    if record.trust_level != TrustLevel::Newcomer || record.phone.is_none() {
        return Ok(None);
    }
    let mut trust = TrustRecord::load(vault).await.map_err(vault_store_error)?;
    if trust.linked_at_ms.is_none() {
        trust.linked_at_ms = Some(now);
        trust.save(vault).await.map_err(vault_store_error)?;
    }
    let ready = record.status == DeviceStatus::Ready;
    if !trust.earns_promotion(record.trust_level, ready, promote_after, now) {
        return Ok(None);
    }
    let patch = DevicePatch {
        trust_level: Some(TrustLevel::Trusted),
        ..DevicePatch::default()
    };
    let record = ctx
        .store
        .patch_device(device_id, &patch, now, vault.fence().as_ref())
        .await?;
    metrics::rate_limit_promotion();
    info!(device_id, "promoted to trusted");
    let mut data = Map::new();
    data.insert("status".into(), Value::from(record.status.as_str()));
    data.insert("reason".into(), Value::from("promoted"));
    data.insert("trust_level".into(), Value::from("trusted"));
    data.insert("previous_trust_level".into(), Value::from("newcomer"));
    data.insert("node".into(), Value::from(ctx.config.node_name.as_str()));
    ctx.emit(device_id, EventKind::Status, data).await;
    Ok(Some(TrustLevel::Trusted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wafleet_cluster_config::quota::DAY_MS;

    const DAY: i64 = DAY_MS;
    const WEEK: i64 = 7 * DAY_MS;

    #[test]
    fn promotion_needs_a_week_linked_ready_and_no_recent_ban() {
        let now = 100 * DAY;
        let linked_long_ago = TrustRecord {
            linked_at_ms: Some(now - WEEK),
            ..TrustRecord::default()
        };
        assert!(linked_long_ago.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
        assert!(
            !linked_long_ago.earns_promotion(TrustLevel::Newcomer, false, WEEK, now),
            "not READY"
        );
        assert!(
            !linked_long_ago.earns_promotion(TrustLevel::Verified, true, WEEK, now),
            "only newcomers"
        );
        let too_young = TrustRecord {
            linked_at_ms: Some(now - WEEK + 1),
            ..TrustRecord::default()
        };
        assert!(!too_young.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
        let unknown = TrustRecord::default();
        assert!(
            !unknown.earns_promotion(TrustLevel::Newcomer, true, WEEK, now),
            "link time unknown"
        );
        let banned_lately = TrustRecord {
            last_ban_ms: Some(now - DAY),
            ..linked_long_ago.clone()
        };
        assert!(!banned_lately.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
        let banned_long_ago = TrustRecord {
            last_ban_ms: Some(now - WEEK),
            ..linked_long_ago
        };
        assert!(banned_long_ago.earns_promotion(TrustLevel::Newcomer, true, WEEK, now));
    }

    #[test]
    fn a_pause_lasts_until_the_ban_ends() {
        let trust = TrustRecord {
            banned_until_ms: Some(5_000),
            ..TrustRecord::default()
        };
        assert_eq!(trust.paused_until(4_999), Some(5_000));
        assert_eq!(trust.paused_until(5_000), None);
        assert_eq!(TrustRecord::default().paused_until(0), None);
    }

    #[test]
    fn levels_survive_the_byte_cell() {
        for level in [
            TrustLevel::Newcomer,
            TrustLevel::Trusted,
            TrustLevel::Verified,
        ] {
            assert_eq!(level_from_u8(level_to_u8(level)), level);
        }
    }
}
