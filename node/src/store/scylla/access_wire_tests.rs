//! The access directory, the audit log and tenant-scoped device reads over the CQL wire,
//! against [`FakeNode`] with [`FakeTables`] as its handler: every statement the store
//! sends (its own text, bound values typed by the schema) is run on tables shaped by the
//! schema's DDL, so the conformance checks exercise the store's CQL as well as its logic
//! (a wrong bound, a missing `IF EXISTS`, a LIMIT misused fails them). A real ScyllaDB
//! is still the conformance suite with `SCYLLA_URI`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::access::{AUDIT_BATCH, AUDIT_PAGE, HOUR_MS};
use super::fake_node::{Answer, FakeNode, Value};
use super::fake_tables::FakeTables;
use super::proxy_tests::{KEYSPACE, connect};
use super::statements as st;
use crate::store::{AccessKind, AccessQuery, AuditEntry, AuditQuery, Store, conformance};

async fn start() -> (FakeNode, Arc<Mutex<FakeTables>>) {
    FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_audit_and_tenant_devices_pass_the_conformance_checks_over_the_wire() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    // Connecting prepared each statement against the schema's columns (the fake node
    // types every marker from the DDL and refuses an unknown table or column).
    for statement in [
        st::GET_ACCESS,
        st::LIST_ACCESS,
        st::CREATE_ACCESS,
        st::UPDATE_ACCESS,
        st::DELETE_ACCESS,
        st::PUT_AUDIT_HOUR,
        st::AUDIT_HOURS,
        st::PUT_AUDIT,
        st::AUDIT_PAGE,
    ] {
        assert!(
            store.prepared.contains_key(statement.name),
            "{}",
            statement.name
        );
    }
    conformance::check_access_directory(&store).await;
    conformance::check_audit_log(&store).await;
    conformance::check_tenant_devices(&store).await;
    {
        let tables = tables.lock().expect("tables");
        assert_eq!(tables.rows("audit"), 6, "each entry once");
        assert_eq!(tables.rows("audit_hours"), 1, "one hour marked");
        // Four keys and a user created, one key deleted.
        assert_eq!(tables.rows("access"), 4);
    }
    node.stop().await;
}

fn entry(at_ms: i64, n: usize, actor: &str) -> AuditEntry {
    AuditEntry {
        id: format!("{at_ms:013}-{n:05}"),
        at_ms,
        actor: actor.to_owned(),
        tenant: Some("t1".to_owned()),
        action: "start_device".to_owned(),
        target: format!("/v1/devices/d{n}"),
        source: "127.0.0.1:1".to_owned(),
        status: 200,
        outcome: "ok".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_listings_walk_marked_hours_in_order_and_read_only_what_they_need() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let h = 470_000; // an hour in 2023
    let at = |hour: i64, ms: i64| hour * HOUR_MS + ms;
    // A busy hour (more entries than a page, and than a batch), then two quiet ones far
    // apart; appended newest first, and the busy hour twice.
    let busy = AUDIT_PAGE as usize + 100;
    let mut entries: Vec<AuditEntry> = (0..busy)
        .map(|n| {
            entry(
                at(h, n as i64 * 10),
                n,
                if n == busy - 1 { "eve" } else { "alice" },
            )
        })
        .collect();
    entries.push(entry(at(h + 5, 7), busy, "bob"));
    entries.push(entry(at(h + 50, 0), busy + 1, "eve"));
    let mut newest_first = entries.clone();
    newest_first.reverse();
    store.append_audit(&newest_first).await.expect("append");
    store.append_audit(&entries[..busy]).await.expect("again");
    assert_eq!(tables.lock().expect("tables").rows("audit"), entries.len());
    assert_eq!(
        node.count(&st::PUT_AUDIT_HOUR),
        4,
        "each hour marked once per append, and again only when the busy hour comes back \
         after the later ones"
    );
    assert_eq!(
        node.count(&st::PUT_AUDIT),
        entries.len() + busy,
        "every entry written, in batches of at most {AUDIT_BATCH}"
    );

    let list = |query: AuditQuery| {
        let store = &store;
        async move { store.list_audit(&query).await.expect("list") }
    };
    let all = list(AuditQuery {
        limit: 10_000,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(all, entries, "every hour, oldest first, each entry once");

    // Paging by `after` gives the same, a page at a time.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(AuditQuery {
            after: after.clone(),
            limit: 128,
            ..AuditQuery::default()
        })
        .await;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page);
    }
    assert_eq!(paged, entries);

    // A short listing reads one page of one hour.
    let (hours, pages) = (node.count(&st::AUDIT_HOURS), node.count(&st::AUDIT_PAGE));
    let first = list(AuditQuery {
        limit: 3,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(first, entries[..3]);
    assert_eq!(node.count(&st::AUDIT_HOURS) - hours, 1);
    assert_eq!(node.count(&st::AUDIT_PAGE) - pages, 1);

    // A filter reads the busy hour in pages until its match, then stops at the limit.
    let pages = node.count(&st::AUDIT_PAGE);
    let eve = list(AuditQuery {
        actor: Some("eve".into()),
        limit: 1,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(eve, [entries[busy - 1].clone()]);
    assert_eq!(
        node.count(&st::AUDIT_PAGE) - pages,
        2,
        "two pages of the busy hour, none of the later hours"
    );

    // `since_ms` and `until_ms` pick the hours and the ids read.
    let pages = node.count(&st::AUDIT_PAGE);
    let middle = list(AuditQuery {
        since_ms: Some(at(h, 1)),
        until_ms: Some(at(h + 50, 0)),
        limit: 1_000,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(middle, entries[1..=busy]);
    assert_eq!(
        node.count(&st::AUDIT_PAGE) - pages,
        3,
        "two pages of the busy hour, one of h + 5, none of h + 50"
    );
    let late = list(AuditQuery {
        since_ms: Some(at(h + 6, 0)),
        limit: 10,
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(late, entries[busy + 1..]);
    assert!(
        list(AuditQuery {
            until_ms: Some(at(h, 0)),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .is_empty(),
        "nothing before the first entry"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_listing_pages_through_its_kind_until_the_page_is_full() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    // 1,200 keys, every tenth of tenant t1 (written straight into the tables: the wire
    // adds nothing to what is tested here).
    {
        let mut tables = tables.lock().expect("tables");
        for n in 0..1_200 {
            let tenant = if n % 10 == 0 { "t1" } else { "t2" };
            let created = tables.handle(
                st::CREATE_ACCESS.name,
                &[
                    Value::text("key"),
                    Value::text(&format!("k{n:04}")),
                    Value::text(tenant),
                    Value::text("{}"),
                    Value::BigInt(1),
                ],
            );
            assert!(
                matches!(created, Some(Answer::Applied(true))),
                "{created:?}"
            );
        }
    }
    let of_t1 = |after: Option<&str>, limit| AccessQuery {
        kind: AccessKind::Key,
        tenant: Some("t1".into()),
        after: after.map(str::to_owned),
        limit,
    };
    let reads = node.count(&st::LIST_ACCESS);
    let all = store.list_access(&of_t1(None, 1_000)).await.expect("list");
    assert_eq!(all.len(), 120);
    assert!(all.iter().all(|r| r.tenant.as_deref() == Some("t1")));
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "in id order");
    assert_eq!(
        node.count(&st::LIST_ACCESS) - reads,
        3,
        "1,200 keys in pages of 500"
    );
    let reads = node.count(&st::LIST_ACCESS);
    let page = store
        .list_access(&of_t1(Some("k0005"), 2))
        .await
        .expect("list");
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["k0010", "k0020"]);
    assert_eq!(node.count(&st::LIST_ACCESS) - reads, 1, "stops when full");
    // Without a tenant, a page of `limit` rows is the answer.
    let reads = node.count(&st::LIST_ACCESS);
    let any = AccessQuery {
        tenant: None,
        ..of_t1(Some("k1197"), 10)
    };
    let ids: Vec<String> = store
        .list_access(&any)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["k1198", "k1199"]);
    assert_eq!(node.count(&st::LIST_ACCESS) - reads, 1);
    node.stop().await;
}

/// The message log and chats read the device's partition (`LIST_MESSAGES`) and filter,
/// order and group it in the store: the checks run over the wire against the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_log_and_chats_pass_the_conformance_checks_over_the_wire() {
    let (node, _tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    assert!(store.prepared.contains_key(st::LIST_MESSAGES.name));
    conformance::check_message_log(&store).await;
    conformance::check_chats(&store).await;
    node.stop().await;
}
