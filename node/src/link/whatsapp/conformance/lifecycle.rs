//! Checks of the backend as a whole: a restored client keeps its identity, a stale
//! owner's writes are fenced, nothing readable reaches the store, a wipe forgets
//! everything, and the map of sent message ids is kept two weeks.

use std::sync::Arc;

use uuid::Uuid;
use wafleet_cluster_config::WhatsAppVersion;
use whatsapp_rust::store::traits::{AppSyncStore, DeviceStore, ProtocolStore, SignalStore};

use super::{backend, device, mac, ok, vault};
use crate::link::whatsapp::client::{Connectors, Probe, WhatsAppConfig};
use crate::link::whatsapp::store::VaultBackend;
use crate::store::{Fence, Store};
use crate::vault::DeviceVault;

/// A client on `backend` that is built (loading or creating the device) but never
/// dialled.
async fn undialled_client(backend: VaultBackend) -> Arc<whatsapp_rust::Client> {
    let connectors = Connectors::new(WhatsAppConfig {
        ws_url: Some("ws://127.0.0.1:9/never-dialled".into()),
        version: Some(WhatsAppVersion {
            parts: (2, 3000, 1),
        }),
    })
    .expect("connectors of a test URL");
    ok(
        connectors
            .client(
                Arc::new(backend),
                Probe::new("ws://127.0.0.1:9/never-dialled"),
                None,
            )
            .await,
        "build client",
    )
}

/// A client (not connected, never dialled) for a fresh device of `store`.
#[cfg(test)]
pub(crate) async fn unconnected_client(store: Arc<dyn Store>) -> Arc<whatsapp_rust::Client> {
    undialled_client(backend(device(&store).await).await).await
}

/// A device's identity as a freshly built client (not connected) loads it from
/// `vault`, creating it on first use: (identity key, noise key, registration id).
pub async fn identity(vault: DeviceVault) -> (Vec<u8>, Vec<u8>, u32) {
    let client = undialled_client(backend(vault).await).await;
    let device = client.persistence_manager().get_device_snapshot();
    let id = (
        device.identity_key.public_key.public_key_bytes().to_vec(),
        device.noise_key.public_key.public_key_bytes().to_vec(),
        device.registration_id,
    );
    client.disconnect().await;
    id
}

pub async fn check_restart_keeps_identity(store: Arc<dyn Store>) {
    let first = device(&store).await;
    let id = first.device_id().to_owned();
    let saved = identity(first).await;
    // Another process (a fresh vault over the same store, as on another node) restores
    // the same device.
    let restored = identity(vault(&store).device(&id, None)).await;
    assert_eq!(saved, restored, "a restored client has another identity");
    // A different device has a different identity.
    let other = identity(device(&store).await).await;
    assert_ne!(saved.0, other.0);
}

pub async fn check_writes_are_fenced(store: Arc<dyn Store>) {
    let shard = 900_000 + (Uuid::new_v4().as_u128() % 90_000) as u32;
    let a = ok(
        store.acquire_lease("node-a", shard, 0, 1_000).await,
        "acquire",
    );
    let stale = a.granted().expect("granted").fence();
    let owner = device(&store).await;
    let id = owner.device_id().to_owned();
    let live = backend(vault(&store).device(&id, Some(stale))).await;
    ok(
        live.put_session("peer@s.whatsapp.net", b"s1").await,
        "fenced put",
    );

    let b = ok(
        store.acquire_lease("node-b", shard, 2_000, 1_000).await,
        "takeover",
    );
    let current = b.granted().expect("granted").fence();
    assert!(current.epoch > stale.epoch);

    let mut fenced = live.fenced();
    let err = live
        .put_session("peer@s.whatsapp.net", b"stale")
        .await
        .expect_err("a stale owner's write");
    assert!(err.to_string().contains("database"), "{err}");
    assert!(fenced.has_changed().unwrap_or(false) || fenced.borrow().is_some());
    assert!(
        fenced
            .borrow_and_update()
            .as_deref()
            .unwrap_or("")
            .contains("fenced"),
        "the session learns why"
    );
    // Later writes are refused without reaching the store.
    assert!(live.put_identity("peer", [1; 32]).await.is_err());

    let new_owner = backend(vault(&store).device(
        &id,
        Some(Fence {
            shard,
            epoch: current.epoch,
        }),
    ))
    .await;
    assert_eq!(
        ok(new_owner.get_session("peer@s.whatsapp.net").await, "get").as_deref(),
        Some(&b"s1"[..]),
        "the stale write changed nothing"
    );
    assert_eq!(ok(new_owner.load_identity("peer").await, "get"), None);
}

pub async fn check_nothing_in_clear(store: Arc<dyn Store>) {
    let vault = device(&store).await;
    let id = vault.device_id().to_owned();
    let b = backend(vault).await;
    let address = "4915112345678@s.whatsapp.net";
    let secret = b"SIGNAL-SESSION-PLAINTEXT";
    ok(b.put_session(address, secret).await, "put_session");
    ok(b.create().await, "create");
    let records = ok(store.list_link_state(&id, "wa.session").await, "list");
    assert_eq!(records.len(), 1);
    let (key, blob) = &records[0];
    assert!(
        !key.contains("4915112345678"),
        "the address is the key: {key}"
    );
    let in_clear = |needle: &[u8]| blob.bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!in_clear(secret), "the session is stored in clear");
    assert!(
        !in_clear(address.as_bytes()),
        "the address is stored in clear"
    );
}

pub async fn check_wipe_forgets_everything(store: Arc<dyn Store>) {
    let vault = device(&store).await;
    let id = vault.device_id().to_owned();
    let b = backend(vault).await;
    ok(b.create().await, "create");
    ok(b.put_session("a@s.whatsapp.net", b"s").await, "put_session");
    ok(
        b.put_mutation_macs("regular", 1, &[mac(1, 1)]).await,
        "put_mutation_macs",
    );
    ok(b.wipe().await, "wipe");
    for namespace in [
        "wa.device",
        "wa.session",
        "wa.meta",
        "wa.mutation_mac.regular",
    ] {
        assert!(
            ok(store.list_link_state(&id, namespace).await, "list").is_empty(),
            "{namespace} survived the wipe"
        );
    }
    // A straggling write of the closed session does not bring anything back.
    assert!(b.put_session("a@s.whatsapp.net", b"s").await.is_err());
    assert!(ok(store.list_link_state(&id, "wa.session").await, "list").is_empty());
}

/// The map from WhatsApp message ids to wafleet's: read back, and pruned at the
/// retention sweep after two weeks, at most once a day per session.
pub async fn check_outbound_ids_are_kept_two_weeks(store: Arc<dyn Store>) {
    use crate::link::whatsapp::store::OUTBOUND_KEEP_SECS;
    let b = backend(device(&store).await).await;
    let now = crate::clock::now_ms() / 1000;
    ok(b.put_outbound("WA-NEW", "msg_new").await, "put_outbound");
    ok(
        b.put_outbound_at("WA-OLD", "msg_old", now - OUTBOUND_KEEP_SECS - 60)
            .await,
        "put_outbound_at",
    );
    assert_eq!(
        ok(b.outbound("WA-NEW").await, "outbound").as_deref(),
        Some("msg_new")
    );
    assert_eq!(
        ok(b.outbound("WA-OLD").await, "outbound").as_deref(),
        Some("msg_old")
    );
    assert_eq!(ok(b.outbound("WA-NONE").await, "outbound"), None);
    // The first sweep of the session prunes: the old id goes, the new one stays.
    ok(b.delete_expired_sent_messages(0).await, "sweep");
    assert_eq!(ok(b.outbound("WA-OLD").await, "outbound"), None);
    assert_eq!(
        ok(b.outbound("WA-NEW").await, "outbound").as_deref(),
        Some("msg_new")
    );
    // Later sweeps the same day do not read the map again.
    ok(
        b.put_outbound_at("WA-OLD2", "msg_old2", now - OUTBOUND_KEEP_SECS - 60)
            .await,
        "put_outbound_at",
    );
    ok(b.delete_expired_sent_messages(0).await, "sweep");
    assert!(ok(b.outbound("WA-OLD2").await, "outbound").is_some());
    // An explicit cutoff forgets what was sent before it.
    assert_eq!(ok(b.forget_outbound_before(now + 1).await, "forget"), 2);
    assert_eq!(ok(b.outbound("WA-NEW").await, "outbound"), None);
}
