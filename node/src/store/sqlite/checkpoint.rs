//! Checkpoints off the writer's thread.
//!
//! In WAL mode a commit appends to the `-wal` file, and a checkpoint copies those pages
//! back into the database file and syncs both. Left to SQLite, the checkpoint runs on
//! the connection that committed, after its commit, every 1,000 pages: on the one thread
//! that runs every call of the store (`worker`), with an `fsync` or two inside, so
//! every call queued behind it waited for the disk (measured under the throughput load:
//! about 7 fsyncs a second, 8 ms each, on the store's only thread).
//!
//! Here a thread of its own, with its own connection, runs a `PASSIVE` checkpoint every
//! [`INTERVAL`]: it copies what no reader still needs and never blocks the writer or the
//! readers. The writer keeps SQLite's own checkpoint only as a bound on the log
//! ([`WRITER_CHECKPOINT_PAGES`]), for when this thread falls behind.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::sql::db_error;

/// How often the checkpoint thread copies the log back into the database.
const INTERVAL: Duration = Duration::from_millis(250);

/// The log size (pages) at which the writer checkpoints itself, as SQLite does by
/// default at 1,000: only reached if the checkpoint thread cannot keep up.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 20_000;

/// The checkpoint thread; it ends when this is dropped (with the store).
#[derive(Debug)]
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already opened in WAL mode).
    pub(super) fn start(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path).map_err(db_error)?;
        conn.busy_timeout(busy_timeout).map_err(db_error)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wafleet-checkpoint".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(error) = checkpoint(&conn) {
                        tracing::warn!(%error, "sqlite checkpoint failed; the writer will checkpoint itself");
                    }
                }
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer { _stop: stop })
    }
}

/// One passive checkpoint: copies the committed pages no reader needs; never waits.
pub(super) fn checkpoint(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
