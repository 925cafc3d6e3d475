//! Round trips of [`AppSyncStore`].

use std::sync::Arc;

use whatsapp_rust::store::traits::{AppStateSyncKey, AppSyncStore};
use whatsapp_rust::wacore::appstate::hash::HashState;

use super::{backend, device, mac, ok};
use crate::store::Store;

pub async fn check_app_sync_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;

    assert!(ok(b.get_sync_key(b"k1").await, "get_sync_key").is_none());
    assert_eq!(
        ok(b.get_latest_sync_key_id().await, "get_latest_sync_key_id"),
        None
    );
    let key = AppStateSyncKey {
        key_data: vec![1, 2, 3],
        fingerprint: vec![4, 5],
        timestamp: 99,
    };
    ok(b.set_sync_key(b"k1", key.clone()).await, "set_sync_key");
    ok(
        b.set_sync_key(b"k2", AppStateSyncKey::default()).await,
        "set_sync_key",
    );
    let got = ok(b.get_sync_key(b"k1").await, "get_sync_key").expect("stored key");
    assert_eq!(
        (got.key_data, got.fingerprint, got.timestamp),
        (key.key_data, key.fingerprint, key.timestamp)
    );
    assert_eq!(
        ok(b.get_latest_sync_key_id().await, "get_latest_sync_key_id"),
        Some(b"k2".to_vec())
    );

    assert_eq!(ok(b.get_version("regular").await, "get_version").version, 0);
    let mut state = HashState {
        version: 5,
        ..HashState::default()
    };
    state.hash[0] = 9;
    state.index_value_map.insert("idx".into(), vec![7]);
    ok(b.set_version("regular", state).await, "set_version");
    let got = ok(b.get_version("regular").await, "get_version");
    assert_eq!((got.version, got.hash[0]), (5, 9));
    assert_eq!(got.index_value_map.get("idx"), Some(&vec![7]));

    ok(
        b.put_mutation_macs("regular", 5, &[mac(1, 10), mac(2, 20)])
            .await,
        "put_mutation_macs",
    );
    ok(
        b.put_mutation_macs("critical_block", 1, &[mac(1, 30)])
            .await,
        "put_mutation_macs",
    );
    assert_eq!(
        ok(
            b.get_mutation_mac("regular", &[1; 32]).await,
            "get_mutation_mac"
        ),
        Some(vec![10; 32])
    );
    let batch = ok(
        b.get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]])
            .await,
        "get_mutation_macs",
    );
    assert_eq!(batch.len(), 2);
    assert_eq!(batch.get(&[2; 32]), Some(&vec![20; 32]));
    ok(
        b.delete_mutation_macs("regular", &[vec![1; 32]]).await,
        "delete_mutation_macs",
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular", &[1; 32]).await, "get"),
        None
    );
    ok(
        b.clear_mutation_macs("regular").await,
        "clear_mutation_macs",
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular", &[2; 32]).await, "get"),
        None
    );
    assert_eq!(
        ok(b.get_mutation_mac("critical_block", &[1; 32]).await, "get"),
        Some(vec![30; 32]),
        "clearing one collection kept another's"
    );
}
