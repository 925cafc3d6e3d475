//! The cap on one listener's open connections.
//!
//! At the cap a new connection is accepted and closed at once, rather than left in the
//! kernel's backlog: a client learns right away that it must retry (the backlog would
//! hold it, unanswered, until a slot frees, which an SSE stream may not do for hours),
//! and the accept loop never stalls. Each refusal is counted; the first of an episode is
//! logged, and its end (the next connection accepted) too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::metrics;

/// One listener's connection slots.
#[derive(Debug)]
pub(crate) struct Slots {
    listener: &'static str,
    max: usize,
    free: Arc<Semaphore>,
    /// Connections refused in the current episode (0: not at the cap).
    refused: AtomicU64,
}

impl Slots {
    pub(crate) fn new(listener: &'static str, max: usize) -> Slots {
        Slots {
            listener,
            max,
            free: Arc::new(Semaphore::new(max)),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot for a connection just accepted, or `None` (counted) at the cap.
    pub(crate) fn take(&self) -> Option<Slot> {
        match self.free.clone().try_acquire_owned() {
            Ok(permit) => {
                let refused = self.refused.swap(0, Ordering::Relaxed);
                if refused > 0 {
                    info!(
                        listener = self.listener,
                        refused, "accepting connections again"
                    );
                }
                metrics::opened(self.listener);
                Some(Slot {
                    listener: self.listener,
                    _permit: permit,
                })
            }
            Err(_) => {
                metrics::refused(self.listener);
                if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    warn!(
                        listener = self.listener,
                        max = self.max,
                        "open connections at http.max_connections: new ones are closed at \
                         once until some close (counted in {})",
                        metrics::CONNECTIONS_REFUSED
                    );
                }
                None
            }
        }
    }
}

/// One open connection's place; freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    listener: &'static str,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::closed(self.listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_a_connection_gets_no_slot_until_one_frees() {
        let slots = Slots::new("test", 2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        assert!(slots.take().is_none());
        assert_eq!(slots.refused.load(Ordering::Relaxed), 2);
        drop(a);
        assert!(slots.take().is_some());
        assert_eq!(slots.refused.load(Ordering::Relaxed), 0);
    }
}
