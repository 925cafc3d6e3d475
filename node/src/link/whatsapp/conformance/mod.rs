//! The suite whatsapp-rust's storage traits must pass on [`VaultBackend`], over any
//! [`Store`]: every trait method round-trips, a fresh client restored from the store
//! has the identity of the one that saved it, writes carry the fence, and nothing
//! readable reaches the store. A store's tests call [`run_all`] on a store of their own.
//!
//! Each check works on a fresh device (a uuid v4 id), so checks can share one store.
//!
//! # Layout
//! - this file: [`run_all`] and the helpers every check uses.
//! - `signal`, `app_sync`, `protocol`, `msg_secret`, `device`: the round trips of one
//!   whatsapp-rust trait each (as the backend's own files in [`super::store`]).
//! - `lifecycle`: the backend as a whole: identity across restarts, fencing, nothing in
//!   clear, wipe, the map of sent message ids.

mod app_sync;
mod device;
mod lifecycle;
mod msg_secret;
mod protocol;
mod signal;

use std::sync::Arc;

use uuid::Uuid;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;

pub use self::app_sync::check_app_sync_store;
pub use self::device::check_device_store;
#[cfg(test)]
pub(crate) use self::lifecycle::unconnected_client;
pub use self::lifecycle::{
    check_nothing_in_clear, check_outbound_ids_are_kept_two_weeks, check_restart_keeps_identity,
    check_wipe_forgets_everything, check_writes_are_fenced, identity,
};
pub use self::msg_secret::check_msg_secret_store;
pub use self::protocol::check_protocol_store;
pub use self::signal::check_signal_store;
use super::store::VaultBackend;
use crate::seal::{MasterKey, Sealer};
use crate::store::{DeviceRecord, DeviceStatus, Store, TrustLevel};
use crate::vault::{DeviceVault, Vault};

/// Runs every check, one after the other.
pub async fn run_all(store: Arc<dyn Store>) {
    check_signal_store(store.clone()).await;
    check_app_sync_store(store.clone()).await;
    check_protocol_store(store.clone()).await;
    check_msg_secret_store(store.clone()).await;
    check_device_store(store.clone()).await;
    check_restart_keeps_identity(store.clone()).await;
    check_writes_are_fenced(store.clone()).await;
    check_nothing_in_clear(store.clone()).await;
    check_wipe_forgets_everything(store.clone()).await;
    check_outbound_ids_are_kept_two_weeks(store).await;
}

// ---- helpers ----

fn vault(store: &Arc<dyn Store>) -> Vault {
    Vault::new(
        store.clone(),
        Arc::new(Sealer::new(MasterKey::new(1, [42u8; 32]))),
    )
}

/// Stores a device `id` that is starting (wanted running, not linked yet): a row for a
/// link's vault to hang on.
pub async fn create_starting_device(store: &dyn Store, id: &str) {
    store
        .create_device(&DeviceRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            tenant: "default".into(),
            status: DeviceStatus::Starting,
            status_reason: None,
            trust_level: TrustLevel::Newcomer,
            phone: None,
            webhook: None,
            desired_running: true,
            created_at_ms: 0,
            updated_at_ms: 0,
            last_connected_at_ms: None,
        })
        .await
        .expect("create device");
}

/// A fresh device row, and its unfenced vault.
async fn device(store: &Arc<dyn Store>) -> DeviceVault {
    let id = format!("wa-{}", Uuid::new_v4().simple());
    create_starting_device(store.as_ref(), &id).await;
    vault(store).device(&id, None)
}

async fn backend(vault: DeviceVault) -> VaultBackend {
    VaultBackend::open(vault).await.expect("open backend")
}

fn ok<T, E: std::fmt::Display>(result: Result<T, E>, call: &str) -> T {
    result.unwrap_or_else(|e| panic!("{call} failed: {e}"))
}

fn mac(index: u8, value: u8) -> AppStateMutationMAC {
    AppStateMutationMAC {
        index_mac: vec![index; 32],
        value_mac: vec![value; 32],
    }
}
