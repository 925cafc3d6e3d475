//! The SQLite store: the conformance suite, plus what only a file-backed store promises
//! (data outlives the process, several processes share one file, the schema version).

use std::collections::BTreeMap;
use std::sync::Arc;

use wafleet_cluster_config::shard_of;
use wafleet_node::store::sqlite::{self, SCHEMA_VERSION};
use wafleet_node::store::{
    Acquired, DevicePatch, DeviceRecord, DeviceStatus, Direction, Fence, InsertOutcome, Lease,
    MessageRecord, MessageStatus, SHARDS_SETTING, SealedBlob, SqliteStore, Store, StoreError,
    TrustLevel, conformance,
};

fn fresh_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data").join("wafleet.db");
    (dir, path)
}

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.to_owned(),
        name: format!("device {id}"),
        tenant: "default".to_owned(),
        status: DeviceStatus::Ready,
        status_reason: None,
        trust_level: TrustLevel::Trusted,
        phone: Some("+4915100000001".to_owned()),
        webhook: None,
        desired_running: true,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        last_connected_at_ms: Some(2_000),
    }
}

fn message(device_id: &str, id: &str, key: Option<&str>) -> MessageRecord {
    MessageRecord {
        id: id.to_owned(),
        device_id: device_id.to_owned(),
        direction: Direction::Outbound,
        peer_phone: "+4915100000002".to_owned(),
        text: "hello".to_owned(),
        status: MessageStatus::Queued,
        error: None,
        idempotency_key: key.map(str::to_owned),
        created_at_ms: 3_000,
        not_before_ms: None,
        sent_at_ms: None,
        delivered_at_ms: None,
        read_at_ms: None,
        failed_at_ms: None,
        send_at_ms: None,
        queued_at_ms: None,
    }
}

fn user_version(path: &std::path::Path) -> u32 {
    rusqlite::Connection::open(path)
        .expect("raw open")
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version")
}

#[tokio::test]
async fn sqlite_passes_the_conformance_suite() {
    let (_dir, path) = fresh_db();
    let store = SqliteStore::open(&path).expect("open");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_can_run_again_on_the_same_file() {
    let (_dir, path) = fresh_db();
    conformance::run_all(&SqliteStore::open(&path).expect("open")).await;
    // A second process on a file that already holds the first run's rows.
    conformance::run_all(&SqliteStore::open(&path).expect("reopen")).await;
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let (_dir, path) = fresh_db();
    let blob = SealedBlob {
        key_version: 3,
        bytes: vec![9; 100],
    };
    {
        let store = SqliteStore::open(&path).expect("open");
        store.create_device(&device("d1")).await.expect("create");
        store
            .put_link_state("d1", "creds", "noise", &blob, None)
            .await
            .expect("put");
        store
            .insert_message(&message("d1", "m1", Some("k1")))
            .await
            .expect("insert");
        store
            .advance_message("d1", "m1", MessageStatus::Sent, 4_000, None)
            .await
            .expect("advance");
    }

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(
        store.get_device("d1").await.expect("get"),
        Some(device("d1"))
    );
    assert_eq!(
        store
            .get_link_state("d1", "creds", "noise")
            .await
            .expect("get"),
        Some(blob)
    );
    let stored = store.get_message("d1", "m1").await.expect("get");
    let expected = MessageRecord {
        status: MessageStatus::Sent,
        sent_at_ms: Some(4_000),
        ..message("d1", "m1", Some("k1"))
    };
    assert_eq!(stored, Some(expected.clone()));
    // The idempotency key is durable too.
    let outcome = store
        .insert_message(&message("d1", "m2", Some("k1")))
        .await
        .expect("insert");
    assert_eq!(outcome, InsertOutcome::Existing(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_others_writes() {
    let (_dir, path) = fresh_db();
    let a = SqliteStore::open(&path).expect("open a");
    let b = SqliteStore::open(&path).expect("open b");

    a.create_device(&device("d1")).await.expect("create on a");
    assert_eq!(
        b.get_device("d1").await.expect("get on b"),
        Some(device("d1"))
    );

    let patch = DevicePatch {
        status: Some(DeviceStatus::Disconnected),
        ..DevicePatch::default()
    };
    b.patch_device("d1", &patch, 5_000, None)
        .await
        .expect("patch on b");
    let seen = a.get_device("d1").await.expect("get on a").expect("exists");
    assert_eq!(seen.status, DeviceStatus::Disconnected);
    assert_eq!(seen.updated_at_ms, 5_000);

    let err = b.create_device(&device("d1")).await.expect_err("duplicate");
    assert!(
        matches!(err, wafleet_node::store::StoreError::Conflict { .. }),
        "{err}"
    );

    // Both "processes" race to insert under one idempotency key: one wins.
    let tries: Vec<MessageRecord> = (0..20)
        .map(|i| message("d1", &format!("m{i}"), Some("shared")))
        .collect();
    let (from_a, from_b) = tokio::join!(
        futures_util::future::join_all(tries.iter().step_by(2).map(|m| a.insert_message(m))),
        futures_util::future::join_all(
            tries.iter().skip(1).step_by(2).map(|m| b.insert_message(m))
        ),
    );
    let inserted = from_a
        .into_iter()
        .chain(from_b)
        .map(|r| r.expect("insert"))
        .filter(|o| *o == InsertOutcome::Inserted)
        .count();
    assert_eq!(inserted, 1, "inserts across two connections");

    assert!(a.delete_device("d1", None).await.expect("delete on a"));
    assert_eq!(b.get_device("d1").await.expect("get on b"), None);
    assert!(
        b.queued_messages("d1", 10)
            .await
            .expect("queued")
            .is_empty()
    );
}

/// A version 3 file (no shards) with `devices` devices, every third not wanted running,
/// one link-state record and one message each.
fn version_3_file(path: &std::path::Path, devices: usize) -> Vec<(String, bool)> {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.execute_batch(&sqlite::schema_at_version(3))
        .expect("version 3 schema");
    let mut rows = Vec::new();
    for i in 0..devices {
        let id = format!("device-{i:03}");
        let desired_running = i % 3 != 0;
        conn.execute(
            "INSERT INTO devices (id, name, tenant, status, status_reason, trust_level, phone,
                webhook, desired_running, created_at_ms, updated_at_ms, last_connected_at_ms)
             VALUES (?1, 'n', 'default', 'READY', NULL, 'trusted', NULL, NULL, ?2, 1, 1, NULL)",
            rusqlite::params![id, desired_running],
        )
        .expect("a version 3 device");
        conn.execute(
            "INSERT INTO link_state (device_id, namespace, key, key_version, value)
             VALUES (?1, 'creds', 'noise', 1, x'0102')",
            [&id],
        )
        .expect("a version 3 link state");
        conn.execute(
            "INSERT INTO messages (device_id, id, direction, peer_phone, text, status,
                created_at_ms)
             VALUES (?1, 'm1', 'outbound', '+1', 'hi', 'queued', 5)",
            [&id],
        )
        .expect("a version 3 message");
        rows.push((id, desired_running));
    }
    rows
}

/// Opening a version 3 file places its existing devices in shards (computed in Rust: the
/// hash is not SQL), records the shard count, and keeps every row.
#[tokio::test]
async fn a_version_3_file_gains_device_shards_and_keeps_its_data() {
    const SHARDS: u32 = 16;
    let (_dir, path) = fresh_db();
    let rows = version_3_file(&path, 60);
    assert_eq!(user_version(&path), 3);

    let store = SqliteStore::open_with_shards(&path, SHARDS).expect("open migrates");
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    assert_eq!(store.shards(), SHARDS);
    let recorded = store.get_setting(SHARDS_SETTING).await.expect("setting");
    assert_eq!(recorded.map(|s| s.value), Some(SHARDS.to_string()));

    let raw = rusqlite::Connection::open(&path).expect("raw open");
    for (id, _) in &rows {
        let shard: u32 = raw
            .query_row("SELECT shard FROM devices WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .expect("shard");
        assert_eq!(shard, shard_of(id, SHARDS), "{id}");
    }
    for shard in 0..SHARDS {
        let expected: Vec<&String> = rows
            .iter()
            .filter(|(id, wanted)| *wanted && shard_of(id, SHARDS) == shard)
            .map(|(id, _)| id)
            .collect();
        let listed = store
            .wanted_devices_in_shards(&[shard])
            .await
            .expect("wanted");
        assert_eq!(listed.iter().collect::<Vec<_>>(), expected, "shard {shard}");
    }
    let all: Vec<u32> = (0..SHARDS).collect();
    let wanted = rows.iter().filter(|(_, wanted)| *wanted).count();
    assert_eq!(
        store
            .wanted_devices_in_shards(&all)
            .await
            .expect("all")
            .len(),
        wanted
    );

    // The old rows are all still there, and new devices get their shard too.
    let (id, _) = &rows[0];
    assert!(store.get_device(id).await.expect("get").is_some());
    assert!(
        store
            .get_link_state(id, "creds", "noise")
            .await
            .expect("link state")
            .is_some()
    );
    assert_eq!(
        store.queued_messages(id, 10).await.expect("queued").len(),
        1
    );
    store.create_device(&device("new")).await.expect("create");
    assert!(
        store
            .wanted_devices_in_shards(&[shard_of("new", SHARDS)])
            .await
            .expect("wanted")
            .contains(&"new".to_owned())
    );

    // Reopening finds nothing to migrate and the same count; the contract holds with a
    // small shard count too.
    drop(store);
    let store = SqliteStore::open_with_shards(&path, SHARDS).expect("reopen");
    assert_eq!(
        store
            .wanted_devices_in_shards(&all)
            .await
            .expect("all")
            .len(),
        wanted + 1
    );
    conformance::check_wanted_devices_in_shards(&store).await;
}

/// A store placed with one shard count refuses to open with another, whether it was
/// created so or migrated so, and says why; the file is left as it was.
#[test]
fn another_shard_count_is_refused() {
    let (_dir, path) = fresh_db();
    drop(SqliteStore::open_with_shards(&path, 64).expect("create with 64"));
    let (_dir3, path3) = fresh_db();
    version_3_file(&path3, 3);
    drop(SqliteStore::open_with_shards(&path3, 64).expect("migrate with 64"));
    for path in [&path, &path3] {
        match SqliteStore::open(path) {
            Err(StoreError::Misconfigured(message)) => {
                for needle in ["64 shards", "cluster.shards = 1024", "both own"] {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                }
            }
            other => panic!("expected Misconfigured, got {other:?}"),
        }
        let store = SqliteStore::open_with_shards(path, 64).expect("the right count");
        assert_eq!(store.shards(), 64);
    }
}

#[tokio::test]
async fn schema_version_is_the_latest_and_reopen_keeps_it() {
    let (_dir, path) = fresh_db();
    drop(SqliteStore::open(&path).expect("open"));
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    drop(SqliteStore::open(&path).expect("reopen"));
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

/// Two stores on one file (two connections, as two node processes have) race for the
/// same free shards from many tasks each, released at once, in random orders, shard by
/// shard or in bulk calls: every shard has exactly one winner, both stores read its lease, and
/// every refusal names it. Then they race to take over the expired leases: again one
/// winner per shard, at epoch 2, and the first round's winners are fenced off through
/// either store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_both_win_a_shard() {
    const TTL: u64 = 5_000;
    let (_dir, path) = fresh_db();
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(SqliteStore::open(&path).expect("open a")),
        Arc::new(SqliteStore::open(&path).expect("open b")),
    ];
    stores[0]
        .create_device(&device("d1"))
        .await
        .expect("create");
    let shards: Vec<u32> = (0..48).collect();
    let mut first_round: BTreeMap<u32, Lease> = BTreeMap::new();

    for (round, now, epoch) in [(0, 1_000i64, 1u64), (1, 1_000 + TTL as i64, 2)] {
        let racers = stores.len() * 4;
        let start = Arc::new(tokio::sync::Barrier::new(racers));
        let mut tasks = Vec::new();
        for (s, store) in stores.iter().enumerate() {
            for racer in 0..4 {
                let (store, start) = (Arc::clone(store), Arc::clone(&start));
                let holder = format!("node-{s}-{racer}-round-{round}");
                let mut order = shards.clone();
                fastrand::shuffle(&mut order);
                // One racer per store takes its shards in bulk calls of 6.
                let batch = if racer == 0 { 6 } else { 1 };
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    let mut outcomes = Vec::new();
                    for chunk in order.chunks(batch) {
                        let got = store.acquire_leases(&holder, chunk, now, TTL).await;
                        outcomes.extend(got.expect("acquire"));
                    }
                    (holder, outcomes)
                }));
            }
        }
        let mut winners: BTreeMap<u32, Vec<Lease>> = BTreeMap::new();
        let mut refusals = Vec::new();
        for task in tasks {
            let (holder, outcomes) = task.await.expect("racer");
            assert_eq!(
                outcomes.len(),
                shards.len(),
                "{holder}: one outcome per shard"
            );
            for outcome in outcomes {
                match outcome {
                    Acquired::Granted(lease) => {
                        assert_eq!(lease.holder, holder);
                        winners.entry(lease.shard).or_default().push(lease);
                    }
                    Acquired::Refused(lease) => refusals.push(lease),
                }
            }
        }
        for &shard in &shards {
            let won = winners.get(&shard).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(
                won.len(),
                1,
                "round {round}, shard {shard}: winners {won:?}"
            );
            let winner = &won[0];
            assert_eq!(
                (winner.epoch, winner.expires_at_ms),
                (epoch, now + TTL as i64)
            );
            for store in &stores {
                assert_eq!(
                    store.get_lease(shard).await.expect("get").as_ref(),
                    Some(winner),
                    "round {round}, shard {shard}: stored lease"
                );
            }
        }
        for refusal in refusals {
            assert_eq!(
                Some(&refusal),
                winners[&refusal.shard].first(),
                "round {round}: a refusal names another lease than the winner's"
            );
        }
        if round == 0 {
            first_round = winners
                .into_iter()
                .map(|(s, mut w)| (s, w.remove(0)))
                .collect();
        }
    }

    for (shard, old) in first_round {
        for store in &stores {
            let err = store
                .put_link_state(
                    "d1",
                    "creds",
                    "k",
                    &SealedBlob {
                        key_version: 1,
                        bytes: vec![1],
                    },
                    Some(&old.fence()),
                )
                .await
                .expect_err("a first-round fence after the takeover");
            assert!(
                matches!(err, StoreError::Fenced { shard: s, epoch: 1, current: Some(2) } if s == shard),
                "{err}"
            );
        }
    }
    assert!(
        stores[1]
            .list_link_state("d1", "creds")
            .await
            .expect("list")
            .is_empty(),
        "a fenced write wrote"
    );
    let current = Fence { shard: 0, epoch: 2 };
    stores[1]
        .put_link_state(
            "d1",
            "creds",
            "k",
            &SealedBlob {
                key_version: 1,
                bytes: vec![2],
            },
            Some(&current),
        )
        .await
        .expect("write under the current fence");
}
