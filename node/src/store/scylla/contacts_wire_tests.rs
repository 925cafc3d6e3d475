//! The contact books over the CQL wire, against [`FakeNode`] with [`FakeTables`] as its
//! handler: the conformance checks run the store's own CQL on tables shaped by the
//! schema's DDL (a wrong bound, a batch that forgets a copy or a count fails them), and
//! what a write costs is counted. A real ScyllaDB is still the conformance suite with
//! `SCYLLA_URI`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::contacts::{CONTACT_BATCH, SEARCH_PAGE};
use super::fake_node::FakeNode;
use super::fake_tables::FakeTables;
use super::proxy_tests::{KEYSPACE, connect};
use super::statements as st;
use crate::store::{ContactQuery, ContactUpsert, Store, conformance};

async fn start() -> (FakeNode, Arc<Mutex<FakeTables>>) {
    FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_books_pass_the_conformance_checks_over_the_wire() {
    let (node, _tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    for statement in [
        st::CONTACTS_VERSION_SERIAL,
        st::SELECT_CONTACT_ROW,
        st::LIST_CONTACT_ROWS,
        st::LIST_TAG_COUNTS,
        st::SET_CONTACTS_VERSION,
        st::PUT_CONTACT_ROW,
        st::PUT_TAG_COUNT,
        st::DELETE_CONTACT_ROW,
    ] {
        assert!(
            store.prepared.contains_key(statement.name),
            "{}",
            statement.name
        );
    }
    conformance::check_contact_book(&store).await;
    conformance::check_contact_bulk(&store).await;
    node.stop().await;
}

fn tagged(phone: String, tags: &[&str]) -> ContactUpsert {
    ContactUpsert {
        name: format!("contact {phone}"),
        phone,
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_upsert_is_one_batch_per_chunk_and_a_page_by_tag_one_read() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let n = CONTACT_BATCH * 3 + 1;
    let contacts: Vec<ContactUpsert> = (0..n)
        .map(|i| tagged(format!("62813{i:08}"), &["a", "b"]))
        .collect();
    store
        .upsert_contacts("t", &contacts, 1)
        .await
        .expect("bulk");
    assert_eq!(
        node.count(&st::SET_CONTACTS_VERSION),
        4,
        "one conditional batch per {CONTACT_BATCH} contacts"
    );
    assert_eq!(
        tables.lock().expect("tables").rows("contacts"),
        n * 3 + 2,
        "a row and two copies per contact, a count per tag"
    );

    let reads = node.count(&st::LIST_CONTACT_ROWS);
    let page = store
        .list_contacts(&ContactQuery {
            tenant: "t".into(),
            tag: Some("b".into()),
            search: None,
            after: Some(contacts[9].phone.clone()),
            limit: 20,
        })
        .await
        .expect("page");
    assert_eq!(page.len(), 20);
    assert_eq!(page[0].phone, contacts[10].phone, "from after the cursor");
    assert_eq!(
        node.count(&st::LIST_CONTACT_ROWS),
        reads + 1,
        "one read a page"
    );

    // Retagging one contact moves one copy and two counts, in one batch.
    let before = node.count(&st::SET_CONTACTS_VERSION);
    let tags = ["c".to_owned()];
    store
        .set_contact_tags("t", &contacts[0].phone, &tags, 2)
        .await
        .expect("retag")
        .expect("exists");
    assert_eq!(node.count(&st::SET_CONTACTS_VERSION), before + 1);
    assert_eq!(
        tables.lock().expect("tables").rows("contacts"),
        n * 3 + 2 - 2 + 1 + 1,
        "two copies gone, one added, a count for c"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_reads_on_past_a_page_of_rows_that_do_not_match() {
    let (node, _tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let n = SEARCH_PAGE as usize + 10;
    let mut contacts: Vec<ContactUpsert> = (0..n)
        .map(|i| tagged(format!("62814{i:08}"), &[]))
        .collect();
    contacts[n - 1].name = "Zahra".into();
    store
        .upsert_contacts("t", &contacts, 1)
        .await
        .expect("bulk");
    let reads = node.count(&st::LIST_CONTACT_ROWS);
    let found = store
        .list_contacts(&ContactQuery {
            tenant: "t".into(),
            tag: None,
            search: Some("zah".into()),
            after: None,
            limit: 10,
        })
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].phone, contacts[n - 1].phone);
    assert_eq!(
        node.count(&st::LIST_CONTACT_ROWS),
        reads + 2,
        "a full page without a match, then the rest"
    );
    node.stop().await;
}
