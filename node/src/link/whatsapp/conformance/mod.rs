//! The suite whatsapp-rust's storage traits must pass on [`VaultBackend`], over any
//! [`Store`]: every trait method round-trips, a fresh client restored from the store
//! has the identity of the one that saved it, writes carry the fence, and nothing
//! readable reaches the store. A store's tests call [`run_all`] on a store of their own.
//!
//! Each check works on a fresh device (a uuid v4 id), so checks can share one store.

use std::sync::Arc;

use uuid::Uuid;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceInfo, DeviceListRecord, DeviceStore, LidPnMappingEntry,
    MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
    SignalStore, TcTokenEntry,
};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;

use super::client::{Connectors, Probe, WhatsAppConfig};
use super::store::VaultBackend;
use crate::seal::{MasterKey, Sealer};
use crate::store::{DeviceRecord, DeviceStatus, Fence, Store, TrustLevel};
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

// ---- checks ----

pub async fn check_signal_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;
    let alice = "15550000001:1@s.whatsapp.net";
    let bob = "15550000002@s.whatsapp.net";

    // identities
    assert_eq!(ok(b.load_identity(alice).await, "load_identity"), None);
    ok(b.put_identity(alice, [1; 32]).await, "put_identity");
    ok(
        b.put_identities_batch(&[(Arc::from(bob), [2; 32])]).await,
        "put_identities_batch",
    );
    assert_eq!(ok(b.load_identity(alice).await, "load"), Some([1; 32]));
    assert_eq!(ok(b.load_identity(bob).await, "load"), Some([2; 32]));
    ok(b.delete_identity(alice).await, "delete_identity");
    assert_eq!(ok(b.load_identity(alice).await, "load"), None);

    // sessions
    assert!(!ok(b.has_session(alice).await, "has_session"));
    ok(b.put_session(alice, b"session-a").await, "put_session");
    ok(
        b.put_sessions_batch(&[
            (Arc::from(bob), Bytes::from_static(b"session-b")),
            (Arc::from(alice), Bytes::from_static(b"session-a2")),
        ])
        .await,
        "put_sessions_batch",
    );
    assert_eq!(
        ok(b.get_session(alice).await, "get_session").as_deref(),
        Some(&b"session-a2"[..])
    );
    assert!(ok(b.has_session(bob).await, "has_session"));
    assert!(ok(
        b.has_signal_state_for_user("15550000002").await,
        "has_signal_state_for_user"
    ));
    ok(b.delete_session(bob).await, "delete_session");
    assert_eq!(ok(b.get_session(bob).await, "get_session"), None);

    // pre-keys
    assert_eq!(ok(b.get_max_prekey_id().await, "get_max_prekey_id"), 0);
    ok(b.store_prekey(7, b"pk7", false).await, "store_prekey");
    ok(
        b.store_prekeys_batch(
            &[
                (8, Bytes::from_static(b"pk8")),
                (1000, Bytes::from_static(b"pk1000")),
            ],
            true,
        )
        .await,
        "store_prekeys_batch",
    );
    assert_eq!(
        ok(b.load_prekey(7).await, "load_prekey").as_deref(),
        Some(&b"pk7"[..])
    );
    let batch = ok(
        b.load_prekeys_batch(&[7, 9, 1000]).await,
        "load_prekeys_batch",
    );
    assert_eq!(
        batch
            .iter()
            .map(|(id, r)| (*id, r.to_vec()))
            .collect::<Vec<_>>(),
        vec![(7, b"pk7".to_vec()), (1000, b"pk1000".to_vec())]
    );
    assert_eq!(ok(b.get_max_prekey_id().await, "get_max_prekey_id"), 1000);
    ok(b.remove_prekey(8).await, "remove_prekey");
    // Marking a removed key uploaded must not bring it back.
    ok(
        b.mark_prekeys_uploaded(&[7, 8]).await,
        "mark_prekeys_uploaded",
    );
    assert_eq!(ok(b.load_prekey(8).await, "load_prekey"), None);
    assert_eq!(
        ok(b.load_prekey(7).await, "load_prekey").as_deref(),
        Some(&b"pk7"[..]),
        "marking uploaded keeps the record"
    );

    // signed pre-keys
    ok(
        b.store_signed_prekey(1, b"spk1").await,
        "store_signed_prekey",
    );
    ok(
        b.store_signed_prekey(2, b"spk2").await,
        "store_signed_prekey",
    );
    assert_eq!(
        ok(b.load_signed_prekey(2).await, "load_signed_prekey"),
        Some(b"spk2".to_vec())
    );
    let mut all = ok(b.load_all_signed_prekeys().await, "load_all_signed_prekeys");
    all.sort();
    assert_eq!(all, vec![(1, b"spk1".to_vec()), (2, b"spk2".to_vec())]);
    ok(b.remove_signed_prekey(1).await, "remove_signed_prekey");
    assert_eq!(ok(b.load_signed_prekey(1).await, "load"), None);

    // sender keys
    let group_sender = "120363000000000001@g.us::15550000001:1@s.whatsapp.net";
    ok(
        b.put_sender_key(group_sender, b"sk").await,
        "put_sender_key",
    );
    ok(
        b.put_sender_keys_batch(&[(Arc::from("other"), Bytes::from_static(b"sk2"))])
            .await,
        "put_sender_keys_batch",
    );
    assert_eq!(
        ok(b.get_sender_key(group_sender).await, "get_sender_key"),
        Some(b"sk".to_vec())
    );
    assert_eq!(
        ok(b.get_sender_key("other").await, "get"),
        Some(b"sk2".to_vec())
    );
    ok(b.delete_sender_key(group_sender).await, "delete_sender_key");
    assert_eq!(ok(b.get_sender_key(group_sender).await, "get"), None);
}

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

pub async fn check_protocol_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;
    let group = "120363000000000001@g.us";
    let other_group = "120363000000000002@g.us";

    // sender-key distribution
    assert!(
        ok(
            b.get_sender_key_devices(group).await,
            "get_sender_key_devices"
        )
        .is_empty()
    );
    ok(
        b.set_sender_key_status(group, &[("a:1@lid", true), ("b:2@lid", false)])
            .await,
        "set_sender_key_status",
    );
    ok(
        b.set_sender_key_status(group, &[("b:2@lid", true)]).await,
        "set_sender_key_status",
    );
    ok(
        b.set_sender_key_status(other_group, &[("a:1@lid", true), ("c:3@lid", true)])
            .await,
        "set_sender_key_status",
    );
    let mut devices = ok(b.get_sender_key_devices(group).await, "get");
    devices.sort();
    assert_eq!(
        devices,
        vec![("a:1@lid".to_owned(), true), ("b:2@lid".to_owned(), true)]
    );
    ok(
        b.delete_sender_key_device_rows(&["a:1@lid"]).await,
        "delete_sender_key_device_rows",
    );
    assert_eq!(
        ok(b.get_sender_key_devices(group).await, "get"),
        vec![("b:2@lid".to_owned(), true)]
    );
    assert_eq!(
        ok(b.get_sender_key_devices(other_group).await, "get"),
        vec![("c:3@lid".to_owned(), true)]
    );
    ok(
        b.clear_sender_key_devices(group).await,
        "clear_sender_key_devices",
    );
    assert!(ok(b.get_sender_key_devices(group).await, "get").is_empty());
    ok(
        b.clear_all_sender_key_devices().await,
        "clear_all_sender_key_devices",
    );
    assert!(ok(b.get_sender_key_devices(other_group).await, "get").is_empty());

    // LID <-> phone number
    let entry = |lid: &str, pn: &str, at: i64| LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: at,
        updated_at: at,
        learning_source: "usync".into(),
    };
    ok(
        b.put_lid_mapping(&entry("100001", "15550000001", 1)).await,
        "put_lid_mapping",
    );
    ok(
        b.put_lid_mappings(&[entry("100002", "15550000002", 2)])
            .await,
        "put_lid_mappings",
    );
    assert_eq!(
        ok(b.get_lid_mapping("100001").await, "get_lid_mapping").map(|e| e.phone_number),
        Some("15550000001".into())
    );
    assert_eq!(
        ok(b.get_pn_mapping("15550000002").await, "get_pn_mapping").map(|e| e.lid),
        Some("100002".into())
    );
    // A LID that moves to another number leaves no stale reverse mapping.
    ok(
        b.put_lid_mapping(&entry("100001", "15550000009", 3)).await,
        "put_lid_mapping",
    );
    assert!(ok(b.get_pn_mapping("15550000001").await, "get_pn_mapping").is_none());
    assert_eq!(
        ok(b.get_pn_mapping("15550000009").await, "get").map(|e| e.lid),
        Some("100001".into())
    );
    assert_eq!(
        ok(b.get_all_lid_mappings().await, "get_all_lid_mappings").len(),
        2
    );

    // base keys
    let addr = "15550000001:1@s.whatsapp.net";
    assert!(!ok(
        b.has_same_base_key(addr, "m1", b"bk").await,
        "has_same"
    ));
    ok(b.save_base_key(addr, "m1", b"bk").await, "save_base_key");
    assert!(ok(b.has_same_base_key(addr, "m1", b"bk").await, "has_same"));
    assert!(!ok(
        b.has_same_base_key(addr, "m1", b"other").await,
        "has_same"
    ));
    ok(b.delete_base_key(addr, "m1").await, "delete_base_key");
    assert!(!ok(
        b.has_same_base_key(addr, "m1", b"bk").await,
        "has_same"
    ));

    // device lists
    let record = |user: &str| DeviceListRecord {
        user: user.into(),
        devices: vec![DeviceInfo::new(0, None), DeviceInfo::new(3, Some(1))],
        timestamp: 77,
        phash: Some("2:abc".into()),
        raw_id: Some(5),
    };
    ok(
        b.update_device_list(record("15550000001")).await,
        "update_device_list",
    );
    ok(
        b.update_device_lists(vec![record("15550000002")]).await,
        "update_device_lists",
    );
    let got = ok(b.get_devices("15550000002").await, "get_devices").expect("record");
    assert_eq!((got.devices.len(), got.raw_id), (2, Some(5)));
    ok(b.delete_devices("15550000001").await, "delete_devices");
    assert!(ok(b.get_devices("15550000001").await, "get_devices").is_none());

    // group metadata
    ok(
        b.put_group_metadata(group, b"meta").await,
        "put_group_metadata",
    );
    assert_eq!(
        ok(b.get_group_metadata(group).await, "get_group_metadata"),
        Some(b"meta".to_vec())
    );
    ok(
        b.delete_group_metadata(group).await,
        "delete_group_metadata",
    );
    assert_eq!(ok(b.get_group_metadata(group).await, "get"), None);

    // trusted-contact tokens
    let jid = "100001@lid";
    ok(
        b.put_tc_token(
            jid,
            &TcTokenEntry {
                token: vec![1],
                token_timestamp: 100,
                sender_timestamp: None,
            },
        )
        .await,
        "put_tc_token",
    );
    ok(
        b.touch_tc_token_sender_timestamp(jid, 150).await,
        "touch_tc_token_sender_timestamp",
    );
    ok(
        b.touch_tc_token_sender_timestamp(jid, 120).await,
        "touch (older)",
    );
    // A stale token does not replace a fresher one; a newer one keeps the sender time.
    ok(
        b.store_received_tc_token(jid, &[2], 90).await,
        "store_received_tc_token",
    );
    let got = ok(b.get_tc_token(jid).await, "get_tc_token").expect("token");
    assert_eq!(
        (got.token, got.token_timestamp, got.sender_timestamp),
        (vec![1], 100, Some(150))
    );
    ok(
        b.store_received_tc_token(jid, &[3], 200).await,
        "store_received",
    );
    let got = ok(b.get_tc_token(jid).await, "get").expect("token");
    assert_eq!(
        (got.token, got.token_timestamp, got.sender_timestamp),
        (vec![3], 200, Some(150))
    );
    ok(
        b.touch_tc_token_sender_timestamp("200002@lid", 10).await,
        "touch",
    );
    let mut jids = ok(b.get_all_tc_token_jids().await, "get_all_tc_token_jids");
    jids.sort();
    assert_eq!(jids, vec!["100001@lid".to_owned(), "200002@lid".to_owned()]);
    assert_eq!(
        ok(
            b.delete_expired_tc_tokens(50, 50).await,
            "delete_expired_tc_tokens"
        ),
        1,
        "only the placeholder with an old sender time expires"
    );
    ok(b.delete_tc_token(jid).await, "delete_tc_token");
    assert!(ok(b.get_tc_token(jid).await, "get").is_none());

    // sent messages (for retry receipts)
    let chat = "15550000001@s.whatsapp.net";
    ok(
        b.store_sent_message(chat, "M1", b"payload").await,
        "store_sent_message",
    );
    ok(
        b.store_sent_message(chat, "M2", b"p2").await,
        "store_sent_message",
    );
    assert_eq!(
        ok(b.take_sent_message(chat, "M1").await, "take_sent_message"),
        Some(b"payload".to_vec())
    );
    assert_eq!(
        ok(b.take_sent_message(chat, "M1").await, "take again"),
        None
    );
    assert_eq!(
        ok(
            b.delete_expired_sent_messages(0).await,
            "delete_expired (none)"
        ),
        0
    );
    assert_eq!(
        ok(
            b.delete_expired_sent_messages(i64::MAX).await,
            "delete_expired_sent_messages"
        ),
        1
    );

    // pending inbound (durability buffer)
    ok(
        b.store_pending_inbound(chat, chat, "I1", b"msg").await,
        "store_pending_inbound",
    );
    ok(
        b.store_pending_inbound_batch(&[PendingInboundRow {
            chat,
            sender: chat,
            id: "I2",
            message: b"msg2",
        }])
        .await,
        "store_pending_inbound_batch",
    );
    assert_eq!(
        ok(
            b.get_pending_inbound(chat, chat, "I1").await,
            "get_pending_inbound"
        ),
        Some(b"msg".to_vec())
    );
    ok(
        b.delete_pending_inbound(chat, chat, "I1").await,
        "delete_pending_inbound",
    );
    assert_eq!(
        ok(b.get_pending_inbound(chat, chat, "I1").await, "get"),
        None
    );
    ok(
        b.delete_pending_inbound_batch(&[PendingInboundKey {
            chat,
            sender: chat,
            id: "I2",
        }])
        .await,
        "delete_pending_inbound_batch",
    );
    assert_eq!(
        ok(b.get_pending_inbound(chat, chat, "I2").await, "get"),
        None
    );
    ok(
        b.store_pending_inbound(chat, chat, "I3", b"m").await,
        "store",
    );
    assert_eq!(
        ok(
            b.delete_expired_pending_inbound(i64::MAX).await,
            "delete_expired_pending_inbound"
        ),
        1
    );
}

pub async fn check_msg_secret_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;
    let chat = "15550000001@s.whatsapp.net";
    let me = "15550000009@s.whatsapp.net";

    assert_eq!(
        ok(b.get_msg_secret(chat, me, "M1").await, "get_msg_secret"),
        None
    );
    ok(
        b.put_msg_secret(chat, me, "M1", &[1; 32]).await,
        "put_msg_secret",
    );
    let entry = |id: &str, secret: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
        chat: Arc::from(chat),
        sender: Arc::from(me),
        msg_id: Arc::from(id),
        secret: [secret; 32],
        expires_at,
        message_ts,
    };
    assert_eq!(
        ok(
            b.put_msg_secrets(vec![entry("M2", 2, 1_000, 500), entry("M3", 3, 2_000, 0)])
                .await,
            "put_msg_secrets"
        ),
        2
    );
    // On conflict the later deadline and the known parent time win.
    ok(
        b.put_msg_secrets(vec![entry("M2", 4, 900, 0)]).await,
        "put_msg_secrets (merge)",
    );
    assert_eq!(
        ok(
            b.get_msg_secret_with_ts(chat, me, "M2").await,
            "get_msg_secret_with_ts"
        ),
        Some((vec![4; 32], 500))
    );
    assert_eq!(
        ok(b.get_msg_secret(chat, me, "M1").await, "get_msg_secret"),
        Some(vec![1; 32])
    );
    assert_eq!(
        ok(
            b.delete_expired_msg_secrets(1_500).await,
            "delete_expired_msg_secrets"
        ),
        1,
        "M2 expired; M1 never expires; M3 is still valid"
    );
    assert_eq!(ok(b.get_msg_secret(chat, me, "M2").await, "get"), None);
    assert!(ok(b.get_msg_secret(chat, me, "M1").await, "get").is_some());
    assert!(ok(b.get_msg_secret(chat, me, "M3").await, "get").is_some());
}

pub async fn check_device_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;
    assert!(!ok(b.exists().await, "exists"));
    assert!(ok(b.load().await, "load").is_none());
    ok(b.create().await, "create");
    assert!(ok(b.exists().await, "exists"));
    let mut stored = ok(b.load().await, "load").expect("created device");
    let registration_id = stored.registration_id;
    // Creating again keeps the device (and its identity).
    ok(b.create().await, "create again");
    assert_eq!(
        ok(b.load().await, "load").map(|d| d.registration_id),
        Some(registration_id)
    );
    stored.push_name = "wafleet".into();
    stored.login_counter = 3;
    ok(b.save(&stored).await, "save");
    let loaded = ok(b.load().await, "load").expect("device");
    assert_eq!(
        (loaded.push_name.as_str(), loaded.login_counter),
        ("wafleet", 3)
    );
    assert_eq!(
        loaded.identity_key.public_key.public_key_bytes(),
        stored.identity_key.public_key.public_key_bytes()
    );
}

/// A client (not connected, never dialled) for a fresh device of `store`.
#[cfg(test)]
pub(crate) async fn unconnected_client(store: Arc<dyn Store>) -> Arc<whatsapp_rust::Client> {
    let backend = Arc::new(backend(device(&store).await).await);
    let connectors = Connectors::new(WhatsAppConfig {
        ws_url: Some("ws://127.0.0.1:9/never-dialled".into()),
        version: Some((2, 3000, 1)),
    });
    ok(
        connectors
            .client(backend, Probe::new("ws://127.0.0.1:9/never-dialled"), None)
            .await,
        "build client",
    )
}

/// A device's identity as a freshly built client (not connected) loads it from
/// `vault`, creating it on first use: (identity key, noise key, registration id).
pub async fn identity(vault: DeviceVault) -> (Vec<u8>, Vec<u8>, u32) {
    let backend = Arc::new(backend(vault).await);
    let connectors = Connectors::new(WhatsAppConfig {
        ws_url: Some("ws://127.0.0.1:9/never-dialled".into()),
        version: Some((2, 3000, 1)),
    });
    let client = ok(
        connectors
            .client(backend, Probe::new("ws://127.0.0.1:9/never-dialled"), None)
            .await,
        "build client",
    );
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
    use super::store::OUTBOUND_KEEP_SECS;
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
