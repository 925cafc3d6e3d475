//! The thread that owns the connection, and group commit.
//!
//! Every call of the store is queued to one thread that owns the connection. The thread
//! takes every call queued since it last looked (up to [`MAX_BATCH`]). The reads among
//! them run first, each on its own (SQLite's implicit read transaction: no write lock,
//! so other processes sharing the file are not held up by reads), and are answered at
//! once. The writes run in one `BEGIN IMMEDIATE` transaction, each inside a savepoint
//! of its own: a write that fails (or panics) rolls back its own savepoint and nothing
//! else, and the batch commits once. A writer is answered after the commit, so `Ok`
//! still means "written"; if the commit fails, every write of the batch gets
//! `Unavailable`.
//!
//! Running a batch's reads before its writes reorders only calls that were in flight
//! together (none of them had been answered), which no caller can tell apart from
//! their arriving in that order.
//!
//! Under load, N concurrent calls cost one commit (one WAL append and index update)
//! instead of N, and no call waits for a lock: before this, each call took a thread of
//! tokio's blocking pool and queued on a mutex for its own transaction. Alone, a call
//! costs what it did: one transaction.
//!
//! A batch holds SQLite's write lock while it runs, so another process sharing the file
//! waits (up to the busy timeout) for one batch, never for a queue of single calls.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

/// The most calls one transaction takes: bounds how long a batch holds the write lock
/// (a few milliseconds) and how much one failed commit can refuse.
pub(super) const MAX_BATCH: usize = 256;

/// What a call's caller gets: its result, or the panic it raised (re-raised in the
/// caller, as a panic on the blocking pool was).
type Outcome<T> = std::thread::Result<Result<T, StoreError>>;

/// A queued call, its result kept until the batch commits.
trait Call: Send {
    /// Whether it writes (else it runs outside the batch's transaction).
    fn writes(&self) -> bool;
    /// Runs the call inside its savepoint; whether its writes are to be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller with its result, or with `Unavailable(failed)` if the batch
    /// did not commit.
    fn answer(self: Box<Self>, failed: Option<&str>);
}

struct Pending<T, F> {
    writes: bool,
    work: Option<F>,
    outcome: Option<Outcome<T>>,
    reply: oneshot::Sender<Outcome<T>>,
}

impl<T, F> Call for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn writes(&self) -> bool {
        self.writes
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn)));
        let keep = matches!(outcome, Ok(Ok(_)));
        self.outcome = Some(outcome);
        keep
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        let outcome = match (failed, self.outcome) {
            (None, Some(outcome)) => outcome,
            (Some(why), _) => Ok(Err(StoreError::Unavailable(why.to_owned()))),
            (None, None) => Ok(Err(StoreError::Unavailable(
                "the store call did not run".to_owned(),
            ))),
        };
        // The caller may have gone (its future dropped): its write stands, as it did
        // on the blocking pool.
        let _ = self.reply.send(outcome);
    }
}

/// The handle of the connection's thread: queues calls to it. The thread ends when the
/// handle is dropped (after the calls already queued).
#[derive(Debug)]
pub(super) struct Worker {
    calls: mpsc::Sender<Box<dyn Call>>,
}

impl Worker {
    /// Starts the thread that owns `conn` from now on.
    pub(super) fn start(conn: Connection) -> Result<Worker, StoreError> {
        let (calls, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("wafleet-sqlite".to_owned())
            .spawn(move || serve(&conn, &queue))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's thread: {e}"))
            })?;
        Ok(Worker { calls })
    }

    /// Runs `work`, which writes, in the next batch's transaction, and answers once that
    /// batch has committed. Its writes are kept only if it returns `Ok`.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(true, work).await
    }

    /// Runs `work`, which only reads, with the next batch, outside its transaction.
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.call(false, work).await
    }

    async fn call<T, F>(&self, writes: bool, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            writes,
            work: Some(work),
            outcome: None,
            reply,
        };
        if self.calls.send(Box::new(pending)).is_err() {
            return Err(stopped());
        }
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(stopped()),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's connection thread has stopped".to_owned())
}

/// The thread: one batch at a time, as long as a handle exists.
fn serve(conn: &Connection, queue: &mpsc::Receiver<Box<dyn Call>>) {
    let mut batch: Vec<Box<dyn Call>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = queue.recv() {
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(mut call) = next.take() {
            taken += 1;
            if call.writes() {
                batch.push(call);
            } else {
                call.run(conn);
                call.answer(None);
            }
            if taken < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let failed = run_batch(conn, &mut batch).err();
        if let Some(why) = &failed {
            tracing::warn!(calls = batch.len(), error = %why, "store batch failed");
        }
        for call in batch.drain(..) {
            call.answer(failed.as_deref());
        }
    }
}

/// Runs the writes in one transaction, each in its savepoint.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Call>]) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| format!("cannot begin a transaction: {e}"))?;
    let done = batch
        .iter_mut()
        .try_for_each(|call| run_one(conn, call.as_mut()))
        .and_then(|()| conn.execute_batch("COMMIT"));
    if let Err(e) = done {
        // Nothing of the batch was written; SQLite may already have rolled back.
        let _ = conn.execute_batch("ROLLBACK");
        return Err(format!("store transaction failed: {e}"));
    }
    Ok(())
}

fn run_one(conn: &Connection, call: &mut dyn Call) -> rusqlite::Result<()> {
    conn.execute_batch("SAVEPOINT call")?;
    if call.run(conn) {
        conn.execute_batch("RELEASE call")
    } else {
        conn.execute_batch("ROLLBACK TO call; RELEASE call")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn worker() -> (tempfile::TempDir, Arc<Worker>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("w.db")).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .expect("schema");
        (dir, Arc::new(Worker::start(conn).expect("start")))
    }

    fn insert(k: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send {
        move |conn| {
            conn.execute("INSERT INTO t (k) VALUES (?1)", [k])
                .map(drop)
                .map_err(|e| StoreError::Conflict {
                    what: format!("{k}: {e}"),
                })
        }
    }

    async fn keys(worker: &Worker) -> Vec<i64> {
        worker
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k").expect("select");
                let rows = stmt.query_map([], |row| row.get(0)).expect("rows");
                Ok(rows.collect::<Result<Vec<i64>, _>>().expect("keys"))
            })
            .await
            .expect("keys")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_share_commits_and_a_failure_undoes_only_its_own_writes() {
        let (_dir, worker) = worker();
        let mut calls = Vec::new();
        for k in 0..500i64 {
            let worker = Arc::clone(&worker);
            calls.push(tokio::spawn(async move {
                worker
                    .write(move |conn| {
                        insert(k)(conn)?;
                        if k % 10 == 3 {
                            // Written, then refused: the savepoint undoes the insert.
                            return Err(StoreError::NotFound {
                                what: k.to_string(),
                            });
                        }
                        Ok(k)
                    })
                    .await
            }));
        }
        let mut refused = 0;
        for call in calls {
            match call.await.expect("join") {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(refused, 50);
        let kept = keys(&worker).await;
        assert_eq!(kept.len(), 450);
        assert!(kept.iter().all(|k| k % 10 != 3));
    }

    #[tokio::test]
    async fn a_panicking_call_panics_its_caller_and_no_other() {
        let (_dir, worker) = worker();
        let panicked = {
            let worker = Arc::clone(&worker);
            tokio::spawn(async move {
                worker
                    .write(|conn| -> Result<(), StoreError> {
                        insert(7)(conn)?;
                        panic!("a bug in a store call")
                    })
                    .await
            })
        };
        worker.write(insert(8)).await.expect("a call beside it");
        let error = panicked.await.expect_err("the caller panics");
        assert!(error.is_panic());
        assert_eq!(keys(&worker).await, [8]);
    }

    #[tokio::test]
    async fn a_read_does_not_wait_for_another_connections_write_lock() {
        let (dir, worker) = worker();
        worker.write(insert(5)).await.expect("insert");
        // Another process holds the write lock (and would for the busy timeout).
        let other = Connection::open(dir.path().join("w.db")).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), keys(&worker)).await;
        assert_eq!(read.expect("not held up by the lock"), [5]);
        other.execute_batch("ROLLBACK").expect("unlock");
    }

    #[tokio::test]
    async fn a_failed_batch_refuses_every_call_and_the_next_one_works() {
        let (_dir, worker) = worker();
        // Committing inside a call ends the batch's transaction: its RELEASE fails, so
        // the batch does, and its calls are refused as Unavailable.
        let broken = worker
            .write(|conn| {
                conn.execute_batch("COMMIT")
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .await;
        assert!(
            matches!(broken, Err(StoreError::Unavailable(_))),
            "{broken:?}"
        );
        worker.write(insert(1)).await.expect("the next batch");
        assert_eq!(keys(&worker).await, [1]);
    }
}
