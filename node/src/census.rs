//! What the node's metrics know about the devices it hosts: the last status each device
//! recorded here, and the recoveries (devices started from a shard taken over after a
//! node loss) that have not ended yet.
//!
//! Status changes are noted as they are written ([`crate::context::NodeContext::record_status`]);
//! the gauges are computed from a [`Census::snapshot`] when metrics are scraped, against
//! the registry of running actors ([`crate::device::registry::Running`]), so a device
//! whose actor is gone stops counting whatever it last wrote.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::DeviceStatus;

/// Shared by the fleet, the supervisor and every device actor (in the node context).
#[derive(Debug, Default)]
pub(crate) struct Census {
    inner: Mutex<Books>,
}

#[derive(Debug, Default)]
struct Books {
    /// Last status written by (or for) each device; pruned to the running devices at
    /// each snapshot.
    statuses: HashMap<String, DeviceStatus>,
    /// Recoveries not ended yet: since when this node wanted the device's shard.
    recoveries: HashMap<String, Instant>,
}

/// How a recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecoveryEnd {
    /// One of [`crate::metrics::RECOVERY_OUTCOMES`].
    pub(crate) outcome: &'static str,
    /// How long it took, when it ended READY.
    pub(crate) took: Option<Duration>,
}

/// The hosted devices at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Running devices by status; a device that has written nothing yet counts as
    /// `STARTING`.
    pub(crate) by_status: Vec<(DeviceStatus, u64)>,
    /// Recoveries still under way, and the age of the oldest.
    pub(crate) pending: usize,
    pub(crate) oldest_pending: Duration,
    /// Recoveries whose device stopped running before it ended them.
    pub(crate) abandoned: usize,
}

impl Census {
    /// A recovery of `device_id` begins: this node has wanted its shard since `since`.
    pub(crate) fn recovery_started(&self, device_id: &str, since: Instant) {
        self.books().recoveries.insert(device_id.to_owned(), since);
    }

    /// `device_id` recorded `status`; returns how its recovery ended, if this ends one.
    pub(crate) fn status_recorded(
        &self,
        device_id: &str,
        status: DeviceStatus,
        now: Instant,
    ) -> Option<RecoveryEnd> {
        let mut books = self.books();
        books.statuses.insert(device_id.to_owned(), status);
        let outcome = match status {
            DeviceStatus::Ready => "ready",
            DeviceStatus::ScanQr => "scan_qr",
            DeviceStatus::LoggedOut => "logged_out",
            DeviceStatus::Failed => "failed",
            DeviceStatus::Stopped => "stopped",
            // Still on its way.
            DeviceStatus::Starting | DeviceStatus::Disconnected => return None,
        };
        let since = books.recoveries.remove(device_id)?;
        Some(RecoveryEnd {
            outcome,
            took: (status == DeviceStatus::Ready).then(|| now.saturating_duration_since(since)),
        })
    }

    /// Counts the `running` devices by status and forgets the devices not running;
    /// recoveries of devices no longer running end as abandoned (returned).
    pub(crate) fn snapshot(&self, running: &HashSet<String>, now: Instant) -> Snapshot {
        let mut books = self.books();
        books.statuses.retain(|id, _| running.contains(id));
        let before = books.recoveries.len();
        books.recoveries.retain(|id, _| running.contains(id));
        let abandoned = before - books.recoveries.len();
        let mut by_status: HashMap<DeviceStatus, u64> = HashMap::new();
        for id in running {
            let status = books
                .statuses
                .get(id)
                .copied()
                .unwrap_or(DeviceStatus::Starting);
            *by_status.entry(status).or_default() += 1;
        }
        let oldest_pending = books
            .recoveries
            .values()
            .map(|since| now.saturating_duration_since(*since))
            .max()
            .unwrap_or_default();
        let mut by_status: Vec<(DeviceStatus, u64)> = by_status.into_iter().collect();
        by_status.sort_by_key(|(status, _)| status.as_str());
        Snapshot {
            by_status,
            pending: books.recoveries.len(),
            oldest_pending,
            abandoned,
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn counts_running_devices_by_last_status_and_forgets_the_others() {
        let census = Census::default();
        let now = Instant::now();
        census.status_recorded("a", DeviceStatus::Starting, now);
        census.status_recorded("a", DeviceStatus::Ready, now);
        census.status_recorded("b", DeviceStatus::ScanQr, now);
        // Written by an operator for a device that does not run here.
        census.status_recorded("elsewhere", DeviceStatus::Stopped, now);
        let snapshot = census.snapshot(&running(&["a", "b", "c"]), now);
        assert_eq!(
            snapshot.by_status,
            vec![
                (DeviceStatus::Ready, 1),
                (DeviceStatus::ScanQr, 1),
                (DeviceStatus::Starting, 1),
            ]
        );
        // "elsewhere" was pruned: it does not come back when it is not running.
        assert_eq!(census.books().statuses.len(), 2);
    }

    #[test]
    fn a_recovery_ends_at_ready_with_its_duration() {
        let census = Census::default();
        let since = Instant::now();
        census.recovery_started("a", since);
        let later = since + Duration::from_millis(2_500);
        assert_eq!(
            census.status_recorded("a", DeviceStatus::Starting, later),
            None
        );
        let pending = census.snapshot(&running(&["a"]), later);
        assert_eq!(pending.pending, 1);
        assert_eq!(pending.oldest_pending, Duration::from_millis(2_500));
        let end = census
            .status_recorded("a", DeviceStatus::Ready, later + Duration::from_secs(1))
            .unwrap();
        assert_eq!(end.outcome, "ready");
        assert_eq!(end.took, Some(Duration::from_millis(3_500)));
        // Ended once: the next READY (a reconnect) is not a recovery.
        assert_eq!(
            census.status_recorded("a", DeviceStatus::Ready, later),
            None
        );
        assert_eq!(census.snapshot(&running(&["a"]), later).pending, 0);
    }

    #[test]
    fn a_recovery_that_needs_a_scan_or_whose_device_left_is_not_timed() {
        let census = Census::default();
        let since = Instant::now();
        census.recovery_started("lost-creds", since);
        census.recovery_started("moved", since);
        let end = census
            .status_recorded("lost-creds", DeviceStatus::ScanQr, since)
            .unwrap();
        assert_eq!((end.outcome, end.took), ("scan_qr", None));
        let snapshot = census.snapshot(&running(&[]), since + Duration::from_secs(1));
        assert_eq!(snapshot.abandoned, 1);
        assert_eq!(
            (snapshot.pending, snapshot.oldest_pending),
            (0, Duration::ZERO)
        );
    }
}
