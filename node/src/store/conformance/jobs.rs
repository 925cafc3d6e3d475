//! Conformance of campaigns: jobs (create, read, list, compare-and-set, delete) and their
//! recipients (claims in order and once, waits, counts, compare-and-set, listings,
//! moves in bulk), and claims racing each other.

use std::collections::BTreeSet;

use futures_util::future::join_all;

use super::{expect_conflict, fresh_prefix, ok};
use crate::store::{
    JobQuery, JobRecord, JobStatus, RecipientQuery, RecipientRecord, RecipientStatus, Store,
};

fn job(id: &str, tenant: &str) -> JobRecord {
    JobRecord {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        name: format!("job {id}"),
        status: JobStatus::Running,
        devices: vec!["dev-a".to_owned(), "dev-b".to_owned()],
        spec: "{\"text\":\"sealed\"}".to_owned(),
        total: 3,
        start_at_ms: Some(1_000),
        created_at_ms: 900,
        started_at_ms: None,
        finished_at_ms: None,
        updated_at_ms: 900,
    }
}

fn recipient(job_id: &str, seq: u64) -> RecipientRecord {
    RecipientRecord {
        job_id: job_id.to_owned(),
        seq,
        to: format!("62812000{seq:05}"),
        text: if seq.is_multiple_of(2) {
            String::new()
        } else {
            format!("own {seq}")
        },
        status: RecipientStatus::Pending,
        device_id: None,
        message_id: None,
        attempts: 0,
        error: None,
        next_at_ms: 0,
        updated_at_ms: 900,
    }
}

async fn recipients(store: &dyn Store, query: RecipientQuery) -> Vec<RecipientRecord> {
    ok(store.list_job_recipients(&query).await, "list recipients")
}

fn query(job_id: &str) -> RecipientQuery {
    RecipientQuery {
        job_id: job_id.to_owned(),
        status: None,
        device_id: None,
        after: None,
        limit: 100,
    }
}

async fn count(store: &dyn Store, job_id: &str) -> Vec<(RecipientStatus, u64)> {
    let mut counts = ok(store.count_job_recipients(job_id).await, "count recipients");
    counts.sort();
    counts
}

/// Jobs: stored and read back whole, listed by tenant and activity in id order,
/// changed only over the status read, deleted with their recipients.
pub async fn check_jobs(store: &dyn Store) {
    let prefix = fresh_prefix();
    let tenant = format!("t-{prefix}");
    let (a, b, c) = (
        format!("job_{prefix}a"),
        format!("job_{prefix}b"),
        format!("job_{prefix}c"),
    );
    ok(
        store
            .put_job_recipients(&[recipient(&a, 0), recipient(&a, 1)])
            .await,
        "put recipients",
    );
    let first = job(&a, &tenant);
    ok(store.create_job(&first).await, "create job");
    expect_conflict(store.create_job(&first).await, "a job id twice");
    assert_eq!(ok(store.get_job(&a).await, "get job"), Some(first.clone()));
    assert_eq!(ok(store.get_job(&format!("{a}x")).await, "get"), None);
    let mut done = job(&b, &tenant);
    done.status = JobStatus::Completed;
    ok(store.create_job(&done).await, "create job");
    ok(
        store.create_job(&job(&c, &format!("{tenant}-other"))).await,
        "create job",
    );

    let ids = |jobs: Vec<JobRecord>| -> Vec<String> {
        jobs.into_iter()
            .map(|j| j.id)
            .filter(|id| id.contains(&prefix))
            .collect()
    };
    let mine = JobQuery {
        tenant: Some(tenant.clone()),
        active_only: false,
        after: None,
        limit: 10,
    };
    assert_eq!(
        ids(ok(store.list_jobs(&mine).await, "list")),
        [a.clone(), b.clone()]
    );
    let page = JobQuery {
        after: Some(a.clone()),
        ..mine.clone()
    };
    assert_eq!(
        ids(ok(store.list_jobs(&page).await, "list")),
        std::slice::from_ref(&b)
    );
    let active = JobQuery {
        active_only: true,
        ..mine.clone()
    };
    assert_eq!(
        ids(ok(store.list_jobs(&active).await, "list")),
        std::slice::from_ref(&a)
    );
    let everyone = JobQuery {
        tenant: None,
        active_only: true,
        after: Some(format!("job_{prefix}")),
        limit: 500,
    };
    assert_eq!(
        ids(ok(store.list_jobs(&everyone).await, "list")),
        [a.clone(), c.clone()],
        "every tenant's active jobs"
    );

    let mut paused = first.clone();
    paused.status = JobStatus::Paused;
    paused.started_at_ms = Some(1_100);
    paused.updated_at_ms = 1_200;
    assert!(ok(
        store.update_job(&paused, JobStatus::Running).await,
        "pause"
    ));
    assert_eq!(ok(store.get_job(&a).await, "get"), Some(paused.clone()));
    let mut late = paused.clone();
    late.status = JobStatus::Cancelled;
    assert!(
        !ok(store.update_job(&late, JobStatus::Running).await, "stale"),
        "a write over a status that changed does nothing"
    );
    assert_eq!(ok(store.get_job(&a).await, "get"), Some(paused));
    let mut ghost = job(&format!("{a}x"), &tenant);
    ghost.status = JobStatus::Paused;
    assert!(!ok(
        store.update_job(&ghost, JobStatus::Running).await,
        "no job"
    ));

    assert!(ok(store.delete_job(&a).await, "delete"));
    assert!(!ok(store.delete_job(&a).await, "delete again"));
    assert_eq!(ok(store.get_job(&a).await, "get"), None);
    assert_eq!(
        recipients(store, query(&a)).await,
        [],
        "recipients go with it"
    );
}

/// Recipients: claimed in `seq` order, once, only when due; counted by status;
/// changed only over the status read; listed by status and device; moved in bulk.
pub async fn check_job_recipients(store: &dyn Store) {
    let job_id = format!("job_{}", fresh_prefix());
    let mut all: Vec<RecipientRecord> = (0..5).map(|seq| recipient(&job_id, seq)).collect();
    all[1].next_at_ms = 5_000; // a retry waiting
    ok(store.put_job_recipients(&all).await, "put recipients");
    assert_eq!(
        recipients(store, query(&job_id)).await,
        all,
        "stored whole, in order"
    );
    assert_eq!(count(store, &job_id).await, [(RecipientStatus::Pending, 5)]);
    // Stored again (a batch repeated after a crash): replaced, counted once.
    ok(
        store.put_job_recipients(&all[..2]).await,
        "put recipients again",
    );
    assert_eq!(count(store, &job_id).await, [(RecipientStatus::Pending, 5)]);

    let claimed = ok(
        store.claim_job_recipient(&job_id, "dev-a", 1_000).await,
        "claim",
    )
    .expect("a pending recipient");
    assert_eq!(claimed.seq, 0);
    assert_eq!(claimed.status, RecipientStatus::Queued);
    assert_eq!(claimed.device_id.as_deref(), Some("dev-a"));
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.updated_at_ms, 1_000);
    assert_eq!(claimed.text, all[0].text);
    let next = ok(
        store.claim_job_recipient(&job_id, "dev-b", 1_000).await,
        "claim",
    )
    .expect("a pending recipient");
    assert_eq!(next.seq, 2, "seq 1 waits until 5000");
    let due = ok(
        store.claim_job_recipient(&job_id, "dev-b", 5_000).await,
        "claim",
    )
    .expect("seq 1 is due");
    assert_eq!(due.seq, 1);

    // Compare-and-set.
    let mut sent = claimed.clone();
    sent.status = RecipientStatus::Sent;
    sent.message_id = Some("msg-0".to_owned());
    sent.updated_at_ms = 1_100;
    assert!(ok(
        store
            .update_job_recipient(&sent, RecipientStatus::Queued)
            .await,
        "sent"
    ));
    let mut stale = claimed.clone();
    stale.status = RecipientStatus::Failed;
    assert!(
        !ok(
            store
                .update_job_recipient(&stale, RecipientStatus::Queued)
                .await,
            "stale"
        ),
        "a write over a status that changed does nothing"
    );
    let mut failed = next.clone();
    failed.status = RecipientStatus::Failed;
    failed.error = Some("number_not_on_whatsapp".to_owned());
    assert!(ok(
        store
            .update_job_recipient(&failed, RecipientStatus::Queued)
            .await,
        "failed"
    ));

    assert_eq!(
        count(store, &job_id).await,
        [
            (RecipientStatus::Pending, 2),
            (RecipientStatus::Queued, 1),
            (RecipientStatus::Sent, 1),
            (RecipientStatus::Failed, 1),
        ]
    );
    let by_b = recipients(
        store,
        RecipientQuery {
            device_id: Some("dev-b".to_owned()),
            ..query(&job_id)
        },
    )
    .await;
    assert_eq!(by_b.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    let queued_b = recipients(
        store,
        RecipientQuery {
            device_id: Some("dev-b".to_owned()),
            status: Some(RecipientStatus::Queued),
            ..query(&job_id)
        },
    )
    .await;
    assert_eq!(queued_b, std::slice::from_ref(&due));
    let after = recipients(
        store,
        RecipientQuery {
            after: Some(1),
            limit: 2,
            ..query(&job_id)
        },
    )
    .await;
    assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(
        recipients(store, query(&job_id)).await[0],
        sent,
        "a recipient reads as written"
    );

    // Retry the failed: pending afresh. Cancel the pending.
    let retried = ok(
        store
            .move_job_recipients(
                &job_id,
                RecipientStatus::Failed,
                RecipientStatus::Pending,
                7_000,
            )
            .await,
        "retry",
    );
    assert_eq!(retried, 1);
    let again = &recipients(store, query(&job_id)).await[2];
    assert_eq!(again.status, RecipientStatus::Pending);
    assert_eq!(
        (
            again.device_id.as_deref(),
            again.attempts,
            again.error.as_deref(),
            again.next_at_ms
        ),
        (None, 0, None, 7_000)
    );
    let cancelled = ok(
        store
            .move_job_recipients(
                &job_id,
                RecipientStatus::Pending,
                RecipientStatus::Cancelled,
                8_000,
            )
            .await,
        "cancel",
    );
    assert_eq!(cancelled, 3);
    assert_eq!(
        ok(
            store.claim_job_recipient(&job_id, "dev-a", 9_000).await,
            "claim"
        ),
        None,
        "nothing pending"
    );
    assert_eq!(
        count(store, &job_id).await,
        [
            (RecipientStatus::Queued, 1),
            (RecipientStatus::Sent, 1),
            (RecipientStatus::Cancelled, 3),
        ]
    );
    assert_eq!(
        recipients(store, query(&job_id)).await[4].updated_at_ms,
        8_000
    );
    assert_eq!(count(store, &format!("{job_id}x")).await, []);
}

/// Many claims at once over fewer recipients: every recipient is claimed exactly once,
/// and the claims that found none say so.
pub async fn check_concurrent_claims(store: &dyn Store) {
    let job_id = format!("job_{}", fresh_prefix());
    let all: Vec<RecipientRecord> = (0..12).map(|seq| recipient(&job_id, seq)).collect();
    ok(store.put_job_recipients(&all).await, "put recipients");
    let claims = join_all((0..20).map(|n| {
        let job_id = job_id.clone();
        async move {
            store
                .claim_job_recipient(&job_id, &format!("dev-{}", n % 3), 1_000)
                .await
        }
    }))
    .await;
    let mut seqs = Vec::new();
    for claim in claims {
        if let Some(r) = ok(claim, "concurrent claim") {
            seqs.push(r.seq);
        }
    }
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(seqs.len(), 12, "claims: {seqs:?}");
    assert_eq!(unique.len(), 12, "a recipient claimed twice: {seqs:?}");
    assert_eq!(count(store, &job_id).await, [(RecipientStatus::Queued, 12)]);
}
