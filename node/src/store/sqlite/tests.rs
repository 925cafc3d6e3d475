use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::contacts::{LIST_CONTACTS, LIST_CONTACTS_WITH_TAG, TAG_COUNTS};
use super::devices::{WANTED_IN_SHARD, device_columns, list_devices_statement};
use super::messages::{COUNT_QUEUED, QUEUED_MESSAGES, QUEUED_MESSAGES_AFTER, advance_statement};
use super::schema::MIGRATIONS;
use super::*;
use crate::store::{SHARDS_SETTING, TrustLevel};

fn open_temp() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("wafleet.db")).expect("open");
    (dir, store)
}

/// A connection of its own to the store's file (the store's connection belongs to its
/// thread): what the store committed, it sees.
fn raw(store: &SqliteStore) -> Connection {
    let conn = Connection::open(store.path()).expect("raw open");
    conn.busy_timeout(BUSY_TIMEOUT).expect("busy timeout");
    conn
}

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.to_owned(),
        name: "n".to_owned(),
        tenant: "default".to_owned(),
        status: DeviceStatus::Stopped,
        status_reason: None,
        trust_level: TrustLevel::Newcomer,
        phone: None,
        webhook: None,
        desired_running: false,
        created_at_ms: 1,
        updated_at_ms: 1,
        last_connected_at_ms: None,
    }
}

fn query_plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let nulls = std::iter::repeat_n(Value::Null, stmt.parameter_count());
    let details: Vec<String> = stmt
        .query_map(params_from_iter(nulls), |row| row.get::<_, String>(3))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    details.join("; ")
}

#[tokio::test]
async fn connection_is_configured_for_sharing() {
    let (_dir, store) = open_temp();
    // The store's own connection, on its thread: these settings are per connection.
    let values = store
        .read(|conn| {
            let get = |name: &str| -> String {
                conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                    .map(|v| format!("{v:?}"))
                    .expect(name)
            };
            Ok([
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "user_version",
                "temp_store",
            ]
            .map(get))
        })
        .await
        .expect("pragmas");
    assert_eq!(values[0], "Text(\"wal\")");
    assert_eq!(values[1], "Integer(1)"); // NORMAL
    assert_eq!(values[2], "Integer(1)");
    assert_eq!(values[3], "Integer(5000)");
    assert_eq!(values[4], format!("Integer({SCHEMA_VERSION})"));
    assert_eq!(values[5], "Integer(2)"); // MEMORY
}

#[tokio::test]
async fn unknown_enum_text_is_corrupt() {
    let (_dir, store) = open_temp();
    store.create_device(&device("d1")).await.expect("create");
    raw(&store)
        .execute("UPDATE devices SET status = 'EXPLODED' WHERE id = 'd1'", [])
        .expect("update");
    let err = store.get_device("d1").await.expect_err("bad status");
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("EXPLODED")),
        "{err}"
    );
    let err = store
        .count_devices_by_status()
        .await
        .expect_err("bad status");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[tokio::test]
async fn wrong_column_type_is_corrupt() {
    let (_dir, store) = open_temp();
    store.create_device(&device("d1")).await.expect("create");
    store
        .put_link_state(
            "d1",
            "ns",
            "k",
            &SealedBlob {
                key_version: 1,
                bytes: vec![1],
            },
            None,
        )
        .await
        .expect("put");
    raw(&store)
        .execute("UPDATE link_state SET key_version = -1", [])
        .expect("update");
    let err = store
        .get_link_state("d1", "ns", "k")
        .await
        .expect_err("bad version");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wafleet.db");
    drop(SqliteStore::open(&path).expect("open"));
    Connection::open(&path)
        .expect("raw open")
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");
    let err = SqliteStore::open(&path).expect_err("newer schema");
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("newer")),
        "{err}"
    );
}

#[tokio::test]
async fn a_version_1_file_gains_leases_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wafleet.db");
    {
        let conn = Connection::open(&path).expect("raw open");
        conn.execute_batch(MIGRATIONS[0]).expect("step 1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version 1");
        conn.execute(
            concat!(
                "INSERT INTO devices (",
                device_columns!(),
                ")
             VALUES ('d1', 'n', 'default', 'READY', NULL, 'newcomer', NULL, NULL, 1, 1, 1, NULL)"
            ),
            [],
        )
        .expect("a version 1 row");
    }
    let store = SqliteStore::open(&path).expect("open migrates");
    assert_eq!(
        store.get_device("d1").await.expect("get").map(|d| d.status),
        Some(DeviceStatus::Ready)
    );
    let granted = store.acquire_lease("n1", 3, 0, 10).await.expect("acquire");
    assert_eq!(granted.granted().map(|l| l.epoch), Some(1));
    let version: u32 = raw(&store)
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 10);
    let shard = shard_of("d1", ClusterSettings::DEFAULT_SHARDS);
    assert_eq!(
        store
            .wanted_devices_in_shards(&[shard])
            .await
            .expect("wanted"),
        ["d1"]
    );
}

#[test]
fn a_device_row_without_a_shard_is_refused() {
    // What an INSERT of a build before schema step 4 looks like.
    let (_dir, store) = open_temp();
    let err = raw(&store)
        .execute(
            concat!(
                "INSERT INTO devices (",
                device_columns!(),
                ")
             VALUES ('d1', 'n', 'default', 'READY', NULL, 'newcomer', NULL, NULL, 1, 1, 1, NULL)"
            ),
            [],
        )
        .expect_err("no shard");
    assert!(
        err.to_string().contains("devices.shard is required"),
        "{err}"
    );
}

#[test]
fn a_file_at_version_4_without_a_recorded_shard_count_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wafleet.db");
    drop(SqliteStore::open(&path).expect("open"));
    Connection::open(&path)
        .expect("raw open")
        .execute("DELETE FROM settings WHERE key = ?1", [SHARDS_SETTING])
        .expect("forget");
    let err = SqliteStore::open(&path).expect_err("no shard count");
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("no shard count")),
        "{err}"
    );
}

#[test]
fn the_wanted_devices_of_a_shard_come_from_its_index() {
    let (_dir, store) = open_temp();
    let plan = query_plan(&raw(&store), WANTED_IN_SHARD);
    assert!(
        plan.contains("USING COVERING INDEX devices_by_shard"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

#[tokio::test]
async fn a_negative_epoch_is_corrupt() {
    let (_dir, store) = open_temp();
    store.acquire_lease("n1", 1, 0, 10).await.expect("acquire");
    raw(&store)
        .execute("UPDATE leases SET epoch = -1", [])
        .expect("update");
    let err = store.get_lease(1).await.expect_err("bad epoch");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let err = store
        .put_link_state(
            "d",
            "ns",
            "k",
            &SealedBlob {
                key_version: 1,
                bytes: vec![],
            },
            Some(&Fence { shard: 1, epoch: 1 }),
        )
        .await
        .expect_err("bad epoch under a fence");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wafleet.db");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write");
    let err = SqliteStore::open(&path).expect_err("not a database");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn open_creates_missing_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a").join("b").join("wafleet.db");
    SqliteStore::open(&path).expect("open");
    assert!(path.exists());
}

#[test]
fn list_statements_walk_an_index() {
    let (_dir, store) = open_temp();
    let conn = raw(&store);
    let query = |status, desired_running| DeviceQuery {
        tenant: None,
        status,
        desired_running,
        after: Some("x".to_owned()),
        limit: 10,
    };
    let cases = [
        (query(None, None), "USING INDEX sqlite_autoindex_devices_1"),
        (
            query(Some(DeviceStatus::Ready), None),
            "USING INDEX devices_by_status",
        ),
        (
            query(None, Some(true)),
            "USING INDEX devices_by_desired_running",
        ),
    ];
    for (query, index) in cases {
        let (sql, _) = list_devices_statement(&query);
        let plan = query_plan(&conn, &sql);
        assert!(plan.contains(index), "{sql}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
    }
}

#[test]
fn queued_scan_uses_its_partial_index() {
    let (_dir, store) = open_temp();
    let plan = query_plan(&raw(&store), QUEUED_MESSAGES);
    assert!(plan.contains("USING INDEX messages_queued"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    let plan = query_plan(&raw(&store), QUEUED_MESSAGES_AFTER);
    assert!(plan.contains("USING INDEX messages_queued"), "{plan}");
    // A seek on the place's time, not a scan of the device's queue.
    assert!(
        plan.contains("(device_id=? AND <expr>>?)"),
        "no seek: {plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    let plan = query_plan(&raw(&store), COUNT_QUEUED);
    assert!(
        plan.contains("USING COVERING INDEX messages_queued"),
        "{plan}"
    );
}

#[test]
fn the_message_log_walks_its_index_without_sorting() {
    let (_dir, store) = open_temp();
    let conn = raw(&store);
    let full = crate::store::MessageQuery {
        direction: Some(crate::store::Direction::Inbound),
        status: Some(MessageStatus::Delivered),
        peer: Some("+1".into()),
        since_ms: Some(1),
        until_ms: Some(2),
        before: Some(crate::store::LogKey {
            created_at_ms: 2,
            id: "m".into(),
        }),
        limit: 10,
    };
    for query in [
        crate::store::MessageQuery {
            limit: 10,
            ..Default::default()
        },
        full,
    ] {
        let (sql, _) = super::messages::list_statement("d", &query);
        let plan = query_plan(&conn, &sql);
        assert!(
            plan.contains("USING INDEX messages_by_time"),
            "{sql}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
    }
}

#[test]
fn each_advance_sets_its_own_timestamp() {
    for (status, column) in [
        (MessageStatus::Sent, "sent_at_ms"),
        (MessageStatus::Delivered, "delivered_at_ms"),
        (MessageStatus::Read, "read_at_ms"),
        (MessageStatus::Failed, "failed_at_ms"),
    ] {
        let sql = advance_statement(status).expect("statement");
        assert!(sql.contains(&format!("{column} = ?4")), "{sql}");
    }
    assert_eq!(advance_statement(MessageStatus::Queued), None);
}

/// The log is copied back into the database by the checkpoint thread, long before the
/// writer's own (much larger) threshold: the database file grows while nobody else
/// checkpoints.
#[tokio::test]
async fn the_checkpoint_thread_copies_the_log_into_the_database() {
    let (_dir, store) = open_temp();
    let file_len = || std::fs::metadata(store.path()).expect("db file").len();
    let before = file_len();
    for i in 0..300 {
        let mut d = device(&format!("dev_{i:04}"));
        d.name = "x".repeat(500);
        store.create_device(&d).await.expect("create");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while file_len() <= before + 100 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {} bytes (was {before}): nothing checkpointed the log",
            file_len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let wal_pages: i64 = store
        .read(|conn| {
            conn.pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0))
                .map_err(super::sql::db_error)
        })
        .await
        .expect("pragma");
    assert_eq!(
        wal_pages,
        i64::from(super::checkpoint::WRITER_CHECKPOINT_PAGES)
    );
}

#[tokio::test]
async fn contact_pages_seek_their_primary_keys_and_sort_nothing() {
    let (_dir, store) = open_temp();
    let conn = raw(&store);
    let plan = query_plan(&conn, LIST_CONTACTS);
    assert!(
        plan.contains("SEARCH contacts USING PRIMARY KEY (tenant=? AND phone>?)"),
        "{plan}"
    );
    let plan = query_plan(&conn, LIST_CONTACTS_WITH_TAG);
    assert!(
        plan.contains("SEARCH t USING PRIMARY KEY (tenant=? AND tag=? AND phone>?)"),
        "{plan}"
    );
    assert!(
        plan.contains("SEARCH c USING PRIMARY KEY (tenant=? AND phone=?)"),
        "{plan}"
    );
    let plan = query_plan(&conn, TAG_COUNTS);
    assert!(
        plan.contains("SEARCH contact_tags USING PRIMARY KEY (tenant=? AND tag>?)"),
        "{plan}"
    );
    for sql in [LIST_CONTACTS, LIST_CONTACTS_WITH_TAG, TAG_COUNTS] {
        let plan = query_plan(&conn, sql);
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
