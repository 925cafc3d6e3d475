//! The audit log's writer: entries are queued without waiting and written to the store
//! in batches, at most [`FLUSH_EVERY`] after they were made, so that auditing a busy
//! API (every message sent is a change) costs one store write per batch, not one per
//! request.
//!
//! A store that refuses a batch is tried again with a growing pause for up to
//! [`GIVE_UP_AFTER`]; then the batch is dropped and counted
//! (`wafleet_audit_entries_total{outcome="dropped"}`), and so are entries beyond
//! [`QUEUE`] waiting. A crash loses what was queued and not yet written (at most about
//! [`FLUSH_EVERY`] of entries).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::metrics;
use crate::store::{AuditEntry, Store};

/// The longest an entry waits to be written when the store answers.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Most entries in one write.
const BATCH: usize = 500;
/// Most entries waiting; more are dropped (and counted).
const QUEUE: usize = 65_536;
/// How long a batch is retried before it is dropped.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Where the API records its audit entries.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<AuditEntry>,
}

impl AuditLog {
    /// Starts the writer over `store` (on the current tokio runtime).
    pub fn start(store: Arc<dyn Store>) -> AuditLog {
        let (queue, entries) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, entries));
        AuditLog { queue }
    }

    /// Queues `entry` to be written.
    pub fn record(&self, entry: AuditEntry) {
        if self.queue.try_send(entry).is_err() {
            metrics::audit_entries("dropped", 1);
            tracing::warn!("the audit queue is full: an entry was dropped");
        }
    }
}

/// A new entry's id: its time (13 digits of Unix ms, so ids sort by time) and 8 random
/// hex digits.
pub fn entry_id(at_ms: i64) -> String {
    format!("{at_ms:013}-{:08x}", fastrand::u32(..))
}

async fn write_batches(store: Arc<dyn Store>, mut entries: mpsc::Receiver<AuditEntry>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if entries.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // Gather what arrives within the flush interval into the same write.
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, entries.recv_many(&mut batch, BATCH)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        write(&*store, &batch).await;
        batch.clear();
    }
}

async fn write(store: &dyn Store, batch: &[AuditEntry]) {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match store.append_audit(batch).await {
            Ok(()) => {
                metrics::audit_entries("written", batch.len());
                return;
            }
            Err(error) if started.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!(%error, entries = batch.len(), "cannot write audit entries yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                metrics::audit_entries("dropped", batch.len());
                tracing::error!(%error, entries = batch.len(), "audit entries dropped: the store refused them for a minute");
                return;
            }
        }
    }
}
