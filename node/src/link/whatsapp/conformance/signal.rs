//! Round trips of [`SignalStore`].

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::SignalStore;
use whatsapp_rust::wacore::types::jid::JidExt;
use whatsapp_rust::{Jid, Server};

use super::super::store::VaultBackend;
use super::{backend, device, ok};
use crate::store::Store;

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
    ok(b.delete_session(bob).await, "delete_session");
    assert_eq!(ok(b.get_session(bob).await, "get_session"), None);

    check_signal_state_for_user(&b).await;

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
    let asked = ok(
        b.load_prekeys_batch(&[1000, 9, 7, 8]).await,
        "load_prekeys_batch",
    );
    assert_eq!(
        asked.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1000, 7, 8],
        "the keys found, in the order asked"
    );
    ok(b.remove_prekey(8).await, "remove_prekey");
    assert_eq!(
        ok(b.get_max_prekey_id().await, "get_max_prekey_id"),
        1000,
        "removing another key keeps the highest"
    );
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
    ok(b.remove_prekey(1000).await, "remove_prekey");
    assert_eq!(
        ok(b.get_max_prekey_id().await, "get_max_prekey_id"),
        7,
        "removing the highest key: the next highest"
    );
    ok(b.store_prekey(5, b"pk5", false).await, "store_prekey");
    assert_eq!(
        ok(b.get_max_prekey_id().await, "get_max_prekey_id"),
        7,
        "a lower key"
    );
    ok(b.remove_prekey(7).await, "remove_prekey");
    ok(b.remove_prekey(5).await, "remove_prekey");
    assert_eq!(
        ok(b.get_max_prekey_id().await, "get_max_prekey_id"),
        0,
        "no key left"
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

/// `has_signal_state_for_user` finds a session or an identity under any address of
/// the user whatsapp-rust may look through (the addresses as it writes them), and
/// says no for a user without any: a wrong "no" would skip moving that contact's
/// sessions to its LID.
async fn check_signal_state_for_user(b: &VaultBackend) {
    let address = |user: &str, server: Server, device: u16| {
        Jid::new(user, server)
            .with_device(device)
            .to_protocol_address_string()
    };
    let has = |user: &'static str| async move {
        ok(
            b.has_signal_state_for_user(user).await,
            "has_signal_state_for_user",
        )
    };
    assert!(!has("15550000003").await, "no state for a new user");

    ok(
        b.put_session(&address("15550000003", Server::Pn, 0), b"s")
            .await,
        "put_session",
    );
    assert!(has("15550000003").await, "a session on the phone itself");
    assert!(!has("1555000000").await, "another user, a prefix of it");
    assert!(!has("155500000031").await, "another user it is a prefix of");

    ok(
        b.put_identity(&address("15550000004", Server::Hosted, 99), [4; 32])
            .await,
        "put_identity",
    );
    assert!(has("15550000004").await, "an identity of a hosted device");
    ok(
        b.delete_identity(&address("15550000004", Server::Hosted, 99))
            .await,
        "delete_identity",
    );
    assert!(!has("15550000004").await, "gone with its identity");

    ok(
        b.put_session(&address("98765", Server::Lid, 7), b"s").await,
        "put_session",
    );
    assert!(has("98765").await, "a linked device under a LID");
}
