//! Conformance of the message log and the chats built on it.

use super::{create, device, fresh_prefix, insert, message, ok};
use crate::store::{
    ChatKey, ChatQuery, Direction, LogKey, MessageQuery, MessageRecord, MessageStatus, Store,
};

fn ids(messages: &[MessageRecord]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

fn inbound(device_id: &str, id: &str, from: &str, at: i64) -> MessageRecord {
    MessageRecord {
        direction: Direction::Inbound,
        peer_phone: from.to_owned(),
        status: MessageStatus::Delivered,
        delivered_at_ms: Some(at),
        ..message(device_id, id, at)
    }
}

fn to(device_id: &str, id: &str, peer: &str, at: i64) -> MessageRecord {
    MessageRecord {
        peer_phone: peer.to_owned(),
        ..message(device_id, id, at)
    }
}

/// Both directions newest first by (created_at_ms, id); each filter; a page ends where
/// the next begins; other devices' messages never show.
pub async fn check_message_log(store: &dyn Store) {
    let p = fresh_prefix();
    let (d, other) = (format!("{p}-log"), format!("{p}-other"));
    create(store, &device(&d)).await;
    create(store, &device(&other)).await;
    let (a, b) = ("+4915100000001", "+4915100000002");
    // Two share a time: the id orders them.
    for m in [
        to(&d, "m1", a, 1_000),
        inbound(&d, "m2", a, 2_000),
        to(&d, "m3", b, 3_000),
        inbound(&d, "m4a", b, 4_000),
        inbound(&d, "m4b", a, 4_000),
        to(&other, "x1", a, 5_000),
    ] {
        insert(store, &m).await;
    }
    ok(
        store
            .advance_message(&d, "m3", MessageStatus::Delivered, 3_500, None)
            .await,
        "advance m3",
    );
    let dev = d.as_str();
    let list = |query: MessageQuery| async move {
        ok(store.list_messages(dev, &query).await, "list messages")
    };
    let all = MessageQuery {
        limit: 100,
        ..MessageQuery::default()
    };
    let every = list(all.clone()).await;
    assert_eq!(
        ids(&every),
        ["m4b", "m4a", "m3", "m2", "m1"],
        "newest first"
    );
    assert_eq!(every[2].status, MessageStatus::Delivered);
    assert_eq!(every[0].text, "text of m4b", "the record as stored");

    let by = |query: MessageQuery| MessageQuery {
        limit: 100,
        ..query
    };
    let cases: [(MessageQuery, &[&str]); 6] = [
        (
            by(MessageQuery {
                direction: Some(Direction::Inbound),
                ..MessageQuery::default()
            }),
            &["m4b", "m4a", "m2"],
        ),
        (
            by(MessageQuery {
                direction: Some(Direction::Outbound),
                ..MessageQuery::default()
            }),
            &["m3", "m1"],
        ),
        (
            by(MessageQuery {
                status: Some(MessageStatus::Queued),
                ..MessageQuery::default()
            }),
            &["m1"],
        ),
        (
            by(MessageQuery {
                peer: Some(a.to_owned()),
                ..MessageQuery::default()
            }),
            &["m4b", "m2", "m1"],
        ),
        (
            by(MessageQuery {
                since_ms: Some(2_000),
                until_ms: Some(4_000),
                ..MessageQuery::default()
            }),
            &["m3", "m2"],
        ),
        (
            by(MessageQuery {
                before: Some(LogKey {
                    created_at_ms: 4_000,
                    id: "m4b".into(),
                }),
                ..MessageQuery::default()
            }),
            &["m4a", "m3", "m2", "m1"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&list(query.clone()).await), expected, "{query:?}");
    }

    // Pages of two, each after the last of the one before, see everything once.
    let mut seen = Vec::new();
    let mut page = MessageQuery {
        limit: 2,
        ..MessageQuery::default()
    };
    loop {
        let rows = list(page.clone()).await;
        seen.extend(rows.iter().map(|m| m.id.clone()));
        if rows.len() < 2 {
            break;
        }
        page.before = rows.last().map(LogKey::of);
    }
    assert_eq!(seen, ["m4b", "m4a", "m3", "m2", "m1"]);

    let nothing = ok(
        store.list_messages(&format!("{p}-none"), &all).await,
        "none",
    );
    assert!(nothing.is_empty(), "a device without messages lists none");
}

/// One chat per peer with its newest message and its unread inbound count; newest chat
/// first, paged by (last time, peer); reading a message lowers the count.
pub async fn check_chats(store: &dyn Store) {
    let p = fresh_prefix();
    let d = format!("{p}-chats");
    create(store, &device(&d)).await;
    let (a, b, c) = ("+4915100000001", "+4915100000002", "+4915100000003");
    for m in [
        inbound(&d, "a1", a, 1_000),
        inbound(&d, "a2", a, 2_000),
        to(&d, "b1", b, 3_000),
        inbound(&d, "c1", c, 4_000),
        to(&d, "a3", a, 5_000),
    ] {
        insert(store, &m).await;
    }
    let chats = ok(
        store
            .list_chats(
                &d,
                &ChatQuery {
                    before: None,
                    limit: 10,
                },
            )
            .await,
        "chats",
    );
    let summary: Vec<(&str, &str, u32)> = chats
        .iter()
        .map(|c| (c.peer.as_str(), c.last.id.as_str(), c.unread))
        .collect();
    assert_eq!(summary, [(a, "a3", 2), (c, "c1", 1), (b, "b1", 0)]);

    ok(
        store
            .advance_message(&d, "a1", MessageStatus::Read, 6_000, None)
            .await,
        "read a1",
    );
    // What marking a chat read looks for: its inbound messages still delivered.
    let unread = MessageQuery {
        direction: Some(Direction::Inbound),
        status: Some(MessageStatus::Delivered),
        peer: Some(a.to_owned()),
        limit: 10,
        ..MessageQuery::default()
    };
    let still = ok(store.list_messages(&d, &unread).await, "unread of a");
    assert_eq!(ids(&still), ["a2"], "a1 is read, a2 is not");
    let a1 = ok(store.get_message(&d, "a1").await, "get a1").expect("a1 exists");
    assert_eq!(
        (a1.status, a1.read_at_ms),
        (MessageStatus::Read, Some(6_000))
    );
    let page = ok(
        store
            .list_chats(
                &d,
                &ChatQuery {
                    before: Some(ChatKey {
                        last_at_ms: 5_000,
                        peer: a.to_owned(),
                    }),
                    limit: 1,
                },
            )
            .await,
        "second page",
    );
    assert_eq!(page.len(), 1);
    assert_eq!((page[0].peer.as_str(), page[0].unread), (c, 1));
    let first = ok(
        store
            .list_chats(
                &d,
                &ChatQuery {
                    before: None,
                    limit: 1,
                },
            )
            .await,
        "first page",
    );
    assert_eq!(
        (first[0].peer.as_str(), first[0].unread),
        (a, 1),
        "a1 was read"
    );
}
