//! Round trips of [`ProtocolStore`].

use std::sync::Arc;

use whatsapp_rust::store::traits::{
    DeviceInfo, DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow,
    ProtocolStore, TcTokenEntry,
};

use super::{backend, device, ok};
use crate::store::Store;

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
