//! Link state over the CQL wire, against [`FakeNode`] with [`FakeTables`] as its
//! handler: put, get, list, delete and clear, and the checks of many keys at once, run
//! as the conformance checks say; how many statements a batch of records takes. A real
//! ScyllaDB is still the conformance suite with `SCYLLA_URI`.

use std::time::Duration;

use super::fake_node::FakeNode;
use super::fake_tables::FakeTables;
use super::proxy_tests::{KEYSPACE, connect};
use crate::link::whatsapp::conformance::create_starting_device;
use crate::store::{Fence, SealedBlob, Store, StoreError, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_state_passes_the_conformance_checks_over_the_wire() {
    let (node, _tables) = FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await;
    let store = connect(&node, Duration::from_secs(5)).await;
    conformance::check_link_state_put_get_list(&store).await;
    conformance::check_link_state_isolation(&store).await;
    conformance::check_link_state_unknown_device(&store).await;
    conformance::check_link_state_any(&store).await;
    conformance::check_link_state_many(&store).await;
    node.stop().await;
}

/// Many records in conditional batches of [`super::link_state`]'s size: every record
/// written (and replaced), one compare-and-set per batch rather than per record, read
/// back in one read of the namespace, a fenced write writing nothing, an unknown device
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_records_are_written_a_batch_at_a_time_over_the_wire() {
    let (node, _tables) = FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await;
    let store = connect(&node, Duration::from_secs(5)).await;
    create_starting_device(&store, "dev").await;
    let blob = |i: u32| SealedBlob {
        key_version: 1,
        bytes: format!("v{i}").into_bytes(),
    };
    let records: Vec<(String, SealedBlob)> =
        (0..250).map(|i| (format!("key-{i:04}"), blob(i))).collect();
    let before = node.executed().len();
    store
        .put_link_state_many("dev", "prekeys", &records, None)
        .await
        .expect("put many");
    let executed = node.executed()[before..].to_vec();
    assert_eq!(
        executed
            .iter()
            .filter(|name| *name == "bump_device")
            .count(),
        3,
        "three batches for 250 records: {executed:?}"
    );
    assert!(!executed.iter().any(|name| name == "put_link_state"));
    assert_eq!(
        store.list_link_state("dev", "prekeys").await.expect("list"),
        records
    );

    // Many keys: one read of the namespace's rows; a few: a read each.
    let keys: Vec<String> = records.iter().map(|(key, _)| key.clone()).collect();
    let before = node.executed().len();
    let mut found = store
        .get_link_state_many("dev", "prekeys", &keys[..200])
        .await
        .expect("get many");
    found.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(found, records[..200]);
    let executed = node.executed()[before..].to_vec();
    assert_eq!(executed, ["list_link_state"], "one read for 200 keys");
    let before = node.executed().len();
    let few = store
        .get_link_state_many("dev", "prekeys", &keys[..3])
        .await
        .expect("get few");
    assert_eq!(few.len(), 3);
    let executed = node.executed()[before..].to_vec();
    assert_eq!(executed, ["select_link_state"; 3], "a read each for 3 keys");

    // Whether any of many keys holds a record: reads in parallel, ending at the first
    // found (a key with a record among 400 that have none).
    let mut candidates: Vec<String> = (0..400).map(|i| format!("none-{i}")).collect();
    candidates.insert(0, keys[0].clone());
    let before = node.executed().len();
    assert!(
        store
            .any_link_state("dev", "prekeys", &candidates)
            .await
            .expect("any")
    );
    let reads = node.executed()[before..].len();
    assert!((1..100).contains(&reads), "{reads} reads for a first hit");
    assert!(
        !store
            .any_link_state("dev", "prekeys", &candidates[1..])
            .await
            .expect("any")
    );

    let replaced = vec![(records[7].0.clone(), blob(9_999))];
    store
        .put_link_state_many("dev", "prekeys", &replaced, None)
        .await
        .expect("replace");
    assert_eq!(
        store
            .get_link_state("dev", "prekeys", &records[7].0)
            .await
            .expect("get"),
        Some(blob(9_999))
    );

    let unheld = Fence {
        shard: 1_000_003,
        epoch: 1,
    };
    let fenced = store
        .put_link_state_many("dev", "fenced", &records, Some(&unheld))
        .await;
    assert!(
        matches!(fenced, Err(StoreError::Fenced { .. })),
        "{fenced:?}"
    );
    assert!(
        store
            .list_link_state("dev", "fenced")
            .await
            .expect("list")
            .is_empty()
    );
    let ghost = store
        .put_link_state_many("ghost", "prekeys", &records, None)
        .await;
    assert!(
        matches!(ghost, Err(StoreError::NotFound { .. })),
        "{ghost:?}"
    );
    node.stop().await;
}
