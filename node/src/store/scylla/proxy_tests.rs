//! The store over the real CQL wire protocol, against [`FakeNode`] (`scylla-proxy` in
//! dry mode): what it does when an LWT is not applied, when a request outlives its
//! timeout, when the connection is lost in the middle of a request, and when the server
//! answers an error. Every address is on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scylla::errors::DbError;
use scylla::statement::Consistency;
use scylla_proxy::{Condition, Reaction, RequestReaction, RequestRule};
use tokio::sync::mpsc;

use super::fake_node::{Answer, FakeNode, Handler, Value};
use super::schema::{KeyspaceOptions, MIGRATIONS, SCHEMA_VERSION};
use super::statements as st;
use super::{CAS_ATTEMPTS, ScyllaConfig, ScyllaStore};
use crate::store::{Acquired, Store, StoreError};

pub(super) const KEYSPACE: &str = "fake_ks";

fn config(node: &FakeNode, request_timeout: Duration) -> ScyllaConfig {
    ScyllaConfig {
        uris: vec![node.addr.to_string()],
        keyspace: KeyspaceOptions {
            name: KEYSPACE.to_owned(),
            replication_factor: 1,
            tablets: false,
        },
        local_dc: None,
        request_timeout,
        connect_timeout: Duration::from_secs(2),
        shards: 1024,
    }
}

pub(super) async fn connect(node: &FakeNode, request_timeout: Duration) -> ScyllaStore {
    ScyllaStore::connect(&config(node, request_timeout))
        .await
        .expect("the store connects to the fake node")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The `leases` table: shard → (holder, epoch, expires_at_ms), with the semantics of
/// the store's three lease statements. `before_insert` may change the table just
/// before an `INSERT ... IF NOT EXISTS` is judged (another node winning a race);
/// `before_update` the same for the `UPDATE ... IF`.
type Leases = Arc<Mutex<HashMap<i64, (String, i64, i64)>>>;

fn lease_table(
    leases: Leases,
    mut before_insert: impl FnMut(&mut HashMap<i64, (String, i64, i64)>, i64) + Send + 'static,
    mut before_update: impl FnMut(&mut HashMap<i64, (String, i64, i64)>, i64) + Send + 'static,
) -> Handler {
    Box::new(move |name, values| {
        let mut table = leases.lock().expect("leases");
        let big = |i: usize| values[i].as_big().expect("bigint");
        let text = |i: usize| values[i].as_text().expect("text").to_owned();
        match name {
            "select_lease_serial" => {
                let rows = table
                    .get(&big(0))
                    .map(|(holder, epoch, expires)| {
                        vec![
                            Value::text(holder),
                            Value::BigInt(*epoch),
                            Value::BigInt(*expires),
                        ]
                    })
                    .into_iter()
                    .collect();
                Some(Answer::Rows(rows))
            }
            "insert_lease" => {
                let shard = big(0);
                before_insert(&mut table, shard);
                if table.contains_key(&shard) {
                    return Some(Answer::Applied(false));
                }
                table.insert(shard, (text(1), big(2), big(3)));
                Some(Answer::Applied(true))
            }
            "update_lease" => {
                let shard = big(3);
                before_update(&mut table, shard);
                let expected = (text(4), big(5), big(6));
                if table.get(&shard) != Some(&expected) {
                    return Some(Answer::Applied(false));
                }
                table.insert(shard, (text(0), big(1), big(2)));
                Some(Answer::Applied(true))
            }
            _ => None,
        }
    })
}

fn no_race() -> impl FnMut(&mut HashMap<i64, (String, i64, i64)>, i64) + Send + 'static {
    |_, _| {}
}

fn lease_statements(node: &FakeNode) -> Vec<String> {
    node.executed()
        .into_iter()
        .filter(|name| name.contains("lease"))
        .collect()
}

#[track_caller]
fn unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, prefix: &str) -> String {
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                message.starts_with(prefix),
                "{message:?} should start {prefix:?}"
            );
            message
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A frame a fault rule acted on, and the shard it went to.
type Acted = (scylla_proxy::RequestFrame, Option<u16>);

/// Counts the frames a fault rule acted on.
fn feedback() -> (mpsc::UnboundedSender<Acted>, mpsc::UnboundedReceiver<Acted>) {
    mpsc::unbounded_channel()
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Acted>) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_runs_over_the_wire_against_the_fake_node() {
    let node = FakeNode::start(
        KEYSPACE,
        Box::new(|name, values| match name {
            "get_setting" if values == [Value::text("quota")] => Some(Answer::Rows(vec![vec![
                Value::text("{\"a\":1}"),
                Value::BigInt(42),
            ]])),
            _ => None,
        }),
    )
    .await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let setting = store
        .get_setting("quota")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (setting.value.as_str(), setting.updated_at_ms),
        ("{\"a\":1}", 42)
    );
    assert_eq!(store.get_setting("other").await.expect("get"), None);
    store.put_setting("k", "v", 7).await.expect("put");
    let executed = node.executed();
    assert_eq!(
        executed,
        [
            "get_schema_version",
            "get_setting_serial",
            "get_setting",
            "get_setting",
            "put_setting"
        ],
        "the schema is current, so connect reads its version and shard count and migrates \
         nothing"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lwt_not_applied_because_another_node_won_is_read_again_and_refused() {
    let leases = Leases::default();
    let now = now_ms();
    let mut raced = false;
    let node = FakeNode::start(
        KEYSPACE,
        lease_table(
            leases.clone(),
            // node-b takes the shard between node-a's read and node-a's insert.
            move |table, shard| {
                if !raced {
                    raced = true;
                    table.insert(shard, ("node-b".into(), 1, now + 60_000));
                }
            },
            no_race(),
        ),
    )
    .await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let outcome = store
        .acquire_lease("node-a", 7, now, 10_000)
        .await
        .expect("acquire");
    match outcome {
        Acquired::Refused(lease) => {
            assert_eq!((lease.holder.as_str(), lease.epoch), ("node-b", 1));
            assert_eq!(lease.expires_at_ms, now + 60_000);
        }
        other => panic!("node-b won the race, yet {other:?}"),
    }
    assert_eq!(
        lease_statements(&node),
        ["select_lease_serial", "insert_lease", "select_lease_serial"],
        "not applied: read again, and the rule refuses a live lease of another node"
    );
    // node-b's lease runs out; node-a takes the shard over with a compare-and-set on
    // the slot as read, under the next epoch.
    let later = now + 60_000;
    match store
        .acquire_lease("node-a", 7, later, 10_000)
        .await
        .expect("acquire")
    {
        Acquired::Granted(lease) => assert_eq!((lease.holder.as_str(), lease.epoch), ("node-a", 2)),
        other => panic!("an expired lease is taken over, yet {other:?}"),
    }
    assert_eq!(
        leases.lock().expect("leases")[&7],
        ("node-a".to_owned(), 2, later + 10_000)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_and_set_that_never_applies_gives_up_unavailable() {
    let leases = Leases::default();
    let now = now_ms();
    leases
        .lock()
        .expect("leases")
        .insert(3, ("node-b".into(), 5, now - 1));
    // Another writer changes the slot between every read and every write of node-a.
    let node = FakeNode::start(
        KEYSPACE,
        lease_table(leases.clone(), no_race(), |table, shard| {
            if let Some(slot) = table.get_mut(&shard) {
                slot.2 -= 1;
            }
        }),
    )
    .await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let started = Instant::now();
    let message = unavailable(
        store.acquire_lease("node-a", 3, now, 10_000).await,
        "lease of shard 3: gave up after",
    );
    assert!(message.contains(&CAS_ATTEMPTS.to_string()), "{message}");
    assert_eq!(node.count(&st::UPDATE_LEASE), CAS_ATTEMPTS);
    assert_eq!(node.count(&st::SELECT_LEASE_SERIAL), CAS_ATTEMPTS);
    println!(
        "{CAS_ATTEMPTS} lost compare-and-sets over the wire in {:?}",
        started.elapsed()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlives_its_timeout_is_unavailable_in_time_and_an_lwt_is_not_retried() {
    let leases = Leases::default();
    let mut node = FakeNode::start(KEYSPACE, lease_table(leases, no_race(), no_race())).await;
    let timeout = Duration::from_millis(300);
    let store = connect(&node, timeout).await;
    let late = Duration::from_secs(3);
    let (read_tx, mut read_rx) = feedback();
    let (lwt_tx, mut lwt_rx) = feedback();
    let faults = vec![
        RequestRule(
            FakeNode::executing(&st::GET_SETTING),
            node.answering_late(late)
                .with_feedback_when_performed(read_tx),
        ),
        RequestRule(
            FakeNode::executing(&st::INSERT_LEASE),
            node.answering_late(late)
                .with_feedback_when_performed(lwt_tx),
        ),
    ];
    node.prepend(faults);

    let started = Instant::now();
    let message = unavailable(store.get_setting("quota").await, "get_setting: ");
    let took = started.elapsed();
    assert!(message.to_lowercase().contains("timeout"), "{message}");
    assert!(
        took >= timeout && took < Duration::from_secs(2),
        "gave up after {took:?} with a {timeout:?} timeout"
    );

    let started = Instant::now();
    let message = unavailable(
        store.acquire_lease("node-a", 1, now_ms(), 10_000).await,
        "insert_lease: ",
    );
    let lwt_took = started.elapsed();
    assert!(message.to_lowercase().contains("timeout"), "{message}");
    assert!(lwt_took < Duration::from_secs(2), "{lwt_took:?}");
    // Wait past the late answers: the read and the LWT each reached the node once.
    tokio::time::sleep(late + Duration::from_millis(500)).await;
    assert_eq!(drain(&mut read_rx), 1, "the read was sent once");
    assert_eq!(
        drain(&mut lwt_rx),
        1,
        "an LWT whose outcome is unknown is never sent again"
    );
    println!("read gave up after {took:?}, LWT after {lwt_took:?} (timeout {timeout:?})");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_during_an_lwt_is_unavailable_and_the_store_recovers() {
    let leases = Leases::default();
    let mut node =
        FakeNode::start(KEYSPACE, lease_table(leases.clone(), no_race(), no_race())).await;
    let store = connect(&node, Duration::from_secs(2)).await;
    let (tx, mut rx) = feedback();
    node.prepend(vec![RequestRule(
        FakeNode::executing(&st::INSERT_LEASE).and(Condition::TrueForLimitedTimes(1)),
        RequestReaction::drop_connection().with_feedback_when_performed(tx),
    )]);
    let now = now_ms();
    let message = unavailable(
        store.acquire_lease("node-a", 9, now, 10_000).await,
        "insert_lease: ",
    );
    assert_eq!(drain(&mut rx), 1, "the connection dropped under the insert");
    assert_eq!(
        node.count(&st::INSERT_LEASE),
        0,
        "an LWT whose outcome is unknown is not sent again: {message}"
    );
    assert!(leases.lock().expect("leases").is_empty());

    // The driver reconnects by itself: the same store serves again, no reconnect call.
    let lost = Instant::now();
    loop {
        match store.get_setting("quota").await {
            Ok(_) => break,
            Err(StoreError::Unavailable(e)) if lost.elapsed() < Duration::from_secs(10) => {
                tracing::debug!(%e, "not yet reconnected");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!(
                "not serving {:?} after the connection was lost: {e}",
                lost.elapsed()
            ),
        }
    }
    let recovered = lost.elapsed();
    match store
        .acquire_lease("node-a", 9, now, 10_000)
        .await
        .expect("acquire after the reconnect")
    {
        Acquired::Granted(lease) => assert_eq!(lease.epoch, 1),
        other => panic!("{other:?}"),
    }
    println!("serving again {recovered:?} after the connection was lost");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_on_the_wire_are_unavailable_or_corrupt() {
    let mut node = FakeNode::start(
        KEYSPACE,
        Box::new(|name, _| {
            (name == "get_setting")
                .then(|| Answer::Error(DbError::Invalid, "unconfigured table".into()))
        }),
    )
    .await;
    let store = connect(&node, Duration::from_secs(2)).await;
    let (tx, mut rx) = feedback();
    node.prepend(vec![RequestRule(
        FakeNode::executing(&st::INSERT_LEASE),
        RequestReaction::forge_with_error(DbError::WriteTimeout {
            consistency: Consistency::LocalSerial,
            received: 0,
            required: 1,
            write_type: scylla::errors::WriteType::Cas,
        })
        .with_feedback_when_performed(tx),
    )]);
    unavailable(
        store.acquire_lease("node-a", 2, now_ms(), 10_000).await,
        "insert_lease: ",
    );
    assert_eq!(drain(&mut rx), 1, "a CAS write timeout is not retried");
    match store.get_setting("quota").await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.starts_with("get_setting: "), "{message}");
            assert!(message.contains("unconfigured table"), "{message}");
        }
        other => panic!("an Invalid answer is no transient failure: {other:?}"),
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_keyspace_gets_every_table_and_its_schema_version() {
    let versions = Arc::new(Mutex::new(Vec::new()));
    let recorded = versions.clone();
    let claims = Arc::new(Mutex::new(Vec::new()));
    let claimed = claims.clone();
    let node = FakeNode::start(
        KEYSPACE,
        Box::new(move |name, values| match name {
            // No row yet: a keyspace this build has never seen.
            "get_schema_version" => Some(Answer::Rows(Vec::new())),
            "get_setting_serial" => Some(Answer::Rows(Vec::new())),
            "claim_setting" => {
                claimed.lock().expect("claims").push(values[..2].to_vec());
                Some(Answer::Applied(true))
            }
            "put_schema_version" => {
                recorded.lock().expect("versions").push(values.to_vec());
                None
            }
            _ => None,
        }),
    )
    .await;
    connect(&node, Duration::from_secs(5)).await;
    let ddl = node.ddl();
    let steps: usize = MIGRATIONS.iter().map(|step| step.len()).sum();
    assert_eq!(ddl.len(), 2 + steps, "{ddl:#?}");
    assert!(
        ddl[0].starts_with(&format!("CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} ")),
        "{}",
        ddl[0]
    );
    assert!(
        ddl[0].ends_with("AND tablets = {'enabled': false}"),
        "{}",
        ddl[0]
    );
    assert!(ddl[1].contains(&format!("{KEYSPACE}.schema_version")));
    assert!(
        ddl.iter().all(|s| !s.contains("{ks}")),
        "every statement names the keyspace"
    );
    let versions = versions.lock().expect("versions").clone();
    assert_eq!(
        versions.len(),
        1,
        "the version is recorded once, after the steps"
    );
    assert_eq!(
        versions[0][..2],
        [Value::text("wafleet"), Value::Int(SCHEMA_VERSION)]
    );
    assert_eq!(
        node.executed().last().map(String::as_str),
        Some("put_schema_version")
    );
    let claims = claims.lock().expect("claims").clone();
    assert_eq!(
        claims,
        [vec![Value::text("shards"), Value::text("1024")]],
        "the shard count is recorded before the version"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_placed_with_another_shard_count_is_refused() {
    let node = FakeNode::start(
        KEYSPACE,
        Box::new(|name, values| {
            (name == "get_setting_serial" && values == [Value::text("shards")])
                .then(|| Answer::Rows(vec![vec![Value::text("64"), Value::BigInt(1)]]))
        }),
    )
    .await;
    match ScyllaStore::connect(&config(&node, Duration::from_secs(5))).await {
        Err(StoreError::Misconfigured(message)) => {
            assert!(
                message.contains("64") && message.contains("1024"),
                "{message}"
            );
        }
        Err(other) => panic!("expected Misconfigured, got {other:?}"),
        Ok(_) => panic!("another shard count must be refused"),
    }
    assert!(
        !node.executed().iter().any(|name| name.starts_with("put")),
        "nothing written: {:?}",
        node.executed()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_of_a_newer_build_is_refused_untouched() {
    let node = FakeNode::start(
        KEYSPACE,
        Box::new(|name, _| {
            (name == "get_schema_version")
                .then(|| Answer::Rows(vec![vec![Value::Int(SCHEMA_VERSION + 1)]]))
        }),
    )
    .await;
    match ScyllaStore::connect(&config(&node, Duration::from_secs(5))).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains("newer than this build"), "{message}");
        }
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
    // Only the keyspace and the version table (both IF NOT EXISTS) were sent.
    assert_eq!(node.ddl().len(), 2, "{:#?}", node.ddl());
    assert_eq!(node.executed(), ["get_schema_version"]);
    node.stop().await;
}

/// A `select_device` row (device columns, then `version` and `fence_epoch`).
pub(super) fn device_row(id: &str, desired_running: bool) -> Vec<Value> {
    vec![
        Value::text(id),
        Value::text(id),
        Value::text("default"),
        Value::text(crate::store::DeviceStatus::Ready.as_str()),
        Value::Null,
        Value::text(crate::store::TrustLevel::Newcomer.as_str()),
        Value::text("6281000000001"),
        Value::Null,
        Value::Boolean(desired_running),
        Value::BigInt(1),
        Value::BigInt(2),
        Value::Null,
        Value::BigInt(3),
        Value::BigInt(0),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_reads_the_asked_shards_and_trusts_the_device_rows_over_the_entries() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let node = FakeNode::start(
        KEYSPACE,
        Box::new(move |name, values| match name {
            "shard_entries" => {
                let shard = values[0].as_big().expect("shard");
                seen.lock().expect("asked").push(shard);
                let entry =
                    |id: &str, running: bool| vec![Value::text(id), Value::Boolean(running)];
                Some(Answer::Rows(match shard {
                    3 => vec![
                        entry("d1", true),
                        entry("d2", true),  // stale: the row says not running
                        entry("d3", true),  // stale: the device is gone
                        entry("d5", false), // not wanted
                    ],
                    5 => vec![entry("d4", true)],
                    _ => Vec::new(),
                }))
            }
            "select_device" => {
                let id = values[0].as_text().expect("id");
                Some(Answer::Rows(match id {
                    "d1" | "d4" => vec![device_row(id, true)],
                    "d2" | "d5" => vec![device_row(id, false)],
                    _ => Vec::new(),
                }))
            }
            _ => None,
        }),
    )
    .await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let wanted = store
        .wanted_devices_in_shards(&[5, 3, 5, 4096])
        .await
        .expect("wanted devices");
    assert_eq!(
        wanted,
        ["d1", "d4"],
        "only rows that say running, once each"
    );
    let mut asked = asked.lock().expect("asked").clone();
    asked.sort_unstable();
    assert_eq!(
        asked,
        [3, 5],
        "each asked shard once; none beyond the shard count"
    );
    assert_eq!(
        node.count(&st::SELECT_DEVICE),
        4,
        "one row read per candidate entry: {:?}",
        node.executed()
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_entry_never_says_stopped_while_the_row_says_running() {
    use crate::store::DevicePatch;
    // The device row as the fake holds it; `race` makes another writer set it running
    // again just after a patch to "stopped" lands.
    let running = Arc::new(Mutex::new(false));
    let race = Arc::new(Mutex::new(false));
    let entries = Arc::new(Mutex::new(Vec::new()));
    let (row, racing, written) = (running.clone(), race.clone(), entries.clone());
    let node = FakeNode::start(
        KEYSPACE,
        Box::new(move |name, values| match name {
            "select_device" | "select_device_serial" => {
                let id = values[0].as_text().expect("id");
                Some(Answer::Rows(vec![device_row(id, *row.lock().unwrap())]))
            }
            "patch_device" => {
                // desired_running is the 7th marker (unset when the patch leaves it).
                if let Value::Boolean(wanted) = values[6] {
                    *row.lock().unwrap() = wanted;
                    if !wanted && *racing.lock().unwrap() {
                        *row.lock().unwrap() = true;
                    }
                }
                Some(Answer::Applied(true))
            }
            "put_shard_entry" => {
                let Value::Boolean(wanted) = values[2] else {
                    panic!("desired_running bound: {values:?}");
                };
                written.lock().unwrap().push(wanted);
                Some(Answer::Void)
            }
            _ => None,
        }),
    )
    .await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let patch = |running: bool| DevicePatch {
        desired_running: Some(running),
        ..DevicePatch::default()
    };

    store
        .patch_device("d1", &patch(true), 10, None)
        .await
        .expect("start");
    let order: Vec<String> = node
        .executed()
        .into_iter()
        .filter(|n| n.contains("shard_entry") || n == "patch_device")
        .collect();
    assert_eq!(
        order,
        ["put_shard_entry", "patch_device", "put_shard_entry"],
        "running: the entry is written before and after the row"
    );
    assert_eq!(*entries.lock().unwrap(), [true, true]);

    entries.lock().unwrap().clear();
    store
        .patch_device("d1", &patch(false), 20, None)
        .await
        .expect("stop");
    assert_eq!(
        *entries.lock().unwrap(),
        [false],
        "stopped: after the row, checked"
    );

    // Another writer starts the device between our row write and our entry write.
    entries.lock().unwrap().clear();
    *race.lock().unwrap() = true;
    store
        .patch_device("d1", &patch(false), 30, None)
        .await
        .expect("stop");
    assert_eq!(
        *entries.lock().unwrap(),
        [false, true],
        "the entry is put back to running, as the row says"
    );
    assert!(*running.lock().unwrap());
    node.stop().await;
}
