//! Campaigns over the CQL wire, against [`FakeNode`] with [`FakeTables`] as its handler:
//! the conformance checks of jobs run the store's own CQL on tables shaped by the
//! schema's DDL (a wrong bound, a batch that forgets a mark or a count fails them), and
//! what claims, counts and bulk writes cost is counted. A real ScyllaDB is still the
//! conformance suite with `SCYLLA_URI`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake_node::{FakeNode, Value};
use super::fake_tables::FakeTables;
use super::job_recipients::{MOVE_PAGE, PUT_BATCH, pending_floor};
use super::proxy_tests::{KEYSPACE, connect};
use super::statements as st;
use crate::store::{
    JobQuery, JobRecord, JobStatus, RecipientQuery, RecipientRecord, RecipientStatus, Store,
    StoreError, conformance,
};

async fn start() -> (FakeNode, Arc<Mutex<FakeTables>>) {
    FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await
}

fn recipient(job_id: &str, seq: u64) -> RecipientRecord {
    RecipientRecord {
        job_id: job_id.to_owned(),
        seq,
        to: format!("62815{seq:08}"),
        text: String::new(),
        status: RecipientStatus::Pending,
        device_id: None,
        message_id: None,
        attempts: 0,
        error: None,
        next_at_ms: 0,
        updated_at_ms: 1,
    }
}

fn job(id: &str, tenant: &str, status: JobStatus) -> JobRecord {
    JobRecord {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        name: id.to_owned(),
        status,
        devices: vec!["d".to_owned()],
        spec: "{}".to_owned(),
        total: 0,
        start_at_ms: None,
        created_at_ms: 1,
        started_at_ms: None,
        finished_at_ms: None,
        updated_at_ms: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pass_the_conformance_checks_over_the_wire() {
    let (node, _tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    for statement in [
        st::SELECT_JOB,
        st::INSERT_JOB,
        st::UPDATE_JOB,
        st::LIST_JOB_ENTRIES,
        st::SELECT_JOB_TALLY_SERIAL,
        st::LIST_JOB_MARKS,
        st::SET_JOB_TALLY,
        st::PUT_JOB_RECIPIENT,
    ] {
        assert!(
            store.prepared.contains_key(statement.name),
            "{}",
            statement.name
        );
    }
    conformance::check_jobs(&store).await;
    conformance::check_job_recipients(&store).await;
    conformance::check_concurrent_claims(&store).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_start_at_the_floor_and_counts_read_no_recipient() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let n = PUT_BATCH * 3 + 5;
    let all: Vec<RecipientRecord> = (0..n as u64).map(|seq| recipient("job_a", seq)).collect();
    store.put_job_recipients(&all).await.expect("put");
    assert_eq!(
        node.count(&st::SET_JOB_TALLY),
        4,
        "one conditional batch per {PUT_BATCH} recipients"
    );
    assert_eq!(
        tables.lock().expect("tables").rows("job_recipients"),
        n * 2,
        "a row and a pending mark per recipient"
    );

    for seq in 0..10 {
        let marks = node.count(&st::LIST_JOB_MARKS);
        let claimed = store
            .claim_job_recipient("job_a", "dev", 1_000)
            .await
            .expect("claim")
            .expect("pending");
        assert_eq!(claimed.seq, seq);
        assert_eq!(
            node.count(&st::LIST_JOB_MARKS),
            marks + 1,
            "one read of marks"
        );
    }
    assert_eq!(
        pending_floor(&store, "job_a").await.expect("floor"),
        10,
        "a claim of the lowest mark moves the floor past it"
    );
    assert_eq!(
        tables.lock().expect("tables").rows("job_recipients"),
        n * 2 - 10,
        "claimed marks are gone"
    );

    // A retry waits at the front; it lowers the floor, and claims step over it.
    let mut retry = recipient("job_a", 3);
    retry.attempts = 1;
    retry.next_at_ms = 9_000;
    retry.device_id = Some("dev".to_owned());
    assert!(
        store
            .update_job_recipient(&retry, RecipientStatus::Queued)
            .await
            .expect("retry")
    );
    assert_eq!(pending_floor(&store, "job_a").await.expect("floor"), 3);
    let next = store
        .claim_job_recipient("job_a", "dev", 1_000)
        .await
        .expect("claim")
        .expect("pending");
    assert_eq!(next.seq, 10, "seq 3 waits until 9000");
    assert_eq!(
        pending_floor(&store, "job_a").await.expect("floor"),
        3,
        "the floor stays at the waiting mark"
    );
    let due = store
        .claim_job_recipient("job_a", "dev", 9_000)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!((due.seq, due.attempts), (3, 2));

    let scans = node.count(&st::LIST_JOB_RECIPIENTS);
    let counts = store.count_job_recipients("job_a").await.expect("count");
    assert_eq!(
        counts,
        [
            (RecipientStatus::Pending, n as u64 - 11),
            (RecipientStatus::Queued, 11)
        ]
    );
    assert_eq!(
        node.count(&st::LIST_JOB_RECIPIENTS),
        scans,
        "a count reads the tally, not the recipients"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_goes_page_by_page_and_a_put_replaces_with_its_counts() {
    let (node, _tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let n = MOVE_PAGE as u64 * 2 + 7;
    let all: Vec<RecipientRecord> = (0..n).map(|seq| recipient("job_m", seq)).collect();
    store.put_job_recipients(&all).await.expect("put");
    let batches = node.count(&st::SET_JOB_TALLY);
    let moved = store
        .move_job_recipients(
            "job_m",
            RecipientStatus::Pending,
            RecipientStatus::Cancelled,
            5,
        )
        .await
        .expect("move");
    assert_eq!(moved, n);
    assert_eq!(
        node.count(&st::SET_JOB_TALLY),
        batches + 3,
        "one batch per page of {MOVE_PAGE}"
    );
    assert_eq!(
        store.count_job_recipients("job_m").await.expect("count"),
        [(RecipientStatus::Cancelled, n)]
    );
    assert_eq!(
        store
            .claim_job_recipient("job_m", "dev", 10)
            .await
            .expect("claim"),
        None
    );

    // Replacing a stored recipient counts it once, in its new status, and marks it.
    let mut again = recipient("job_m", 4);
    again.text = "own".to_owned();
    store
        .put_job_recipients(&[again.clone()])
        .await
        .expect("put");
    assert_eq!(
        store.count_job_recipients("job_m").await.expect("count"),
        [
            (RecipientStatus::Pending, 1),
            (RecipientStatus::Cancelled, n - 1)
        ]
    );
    let claimed = store
        .claim_job_recipient("job_m", "dev", 10)
        .await
        .expect("claim")
        .expect("the replaced one");
    assert_eq!((claimed.seq, claimed.text.as_str()), (4, "own"));
    let listed = store
        .list_job_recipients(&RecipientQuery {
            job_id: "job_m".to_owned(),
            status: Some(RecipientStatus::Queued),
            device_id: None,
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(listed, [claimed]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_read_their_scope_and_finished_jobs_leave_the_active_one() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    for (id, tenant) in [("job_1", "t1"), ("job_2", "t2"), ("job_3", "t1")] {
        store
            .create_job(&job(id, tenant, JobStatus::Running))
            .await
            .expect("create");
    }
    assert_eq!(
        tables.lock().expect("tables").rows("job_index"),
        12,
        "all, active, the tenant's and its active ones, per job"
    );
    let mut done = job("job_1", "t1", JobStatus::Completed);
    done.finished_at_ms = Some(2);
    assert!(
        store
            .update_job(&done, JobStatus::Running)
            .await
            .expect("complete")
    );
    assert_eq!(
        tables.lock().expect("tables").rows("job_index"),
        10,
        "out of the two active scopes"
    );
    let reads = node.count(&st::SELECT_JOB);
    let active = store
        .list_jobs(&JobQuery {
            tenant: None,
            active_only: true,
            after: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(
        active.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["job_2", "job_3"]
    );
    assert_eq!(
        node.count(&st::SELECT_JOB),
        reads + 2,
        "only the active jobs are read"
    );
    assert!(store.delete_job("job_3").await.expect("delete"));
    assert_eq!(
        tables.lock().expect("tables").rows("job_index"),
        6,
        "a deleted job leaves every scope"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_without_a_pending_recipient_is_corrupt_not_contention() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let all: Vec<RecipientRecord> = (0..3).map(|seq| recipient("job_c", seq)).collect();
    store.put_job_recipients(&all).await.expect("put");
    // Seq 1 sent behind the store's back: its mark stays, the version does not move.
    tables.lock().expect("tables").handle(
        st::SET_JOB_RECIPIENT.name,
        &[
            Value::text("sent"),
            Value::Null,
            Value::Null,
            Value::BigInt(1),
            Value::Null,
            Value::BigInt(0),
            Value::BigInt(2),
            Value::text("job_c"),
            Value::BigInt(1),
        ],
    );
    let first = store
        .claim_job_recipient("job_c", "dev", 10)
        .await
        .expect("claim")
        .expect("seq 0");
    assert_eq!(first.seq, 0);
    let batches = node.count(&st::SET_JOB_TALLY);
    match store.claim_job_recipient("job_c", "dev", 10).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("seq 1"), "{message}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        node.count(&st::SET_JOB_TALLY),
        batches,
        "nothing written, no retries"
    );
    node.stop().await;
}
