//! What one connection is doing, and when it has waited too long at it.
//!
//! A connection is in one of three phases: reading a request's head, busy with requests
//! (a handler runs or a response body is still being written, which for an SSE stream
//! lasts hours), or idle between requests. Only the first and the last can time out,
//! each with its own limit: a short one for a head (a slowloris client sends half a head
//! and stops) and a long one for a kept-alive connection that waits for its next request.
//!
//! Why not hyper's `header_read_timeout` alone: in the hyper this builds with (1.12),
//! its one timer starts when the connection opens or goes idle and stops when the next
//! head is complete (hyper pull request 3828), so it cannot give a 10 s limit to a head and a 75 s one to an idle
//! connection: a load balancer's pooled connections would be closed under it after
//! 10 s idle. Here the idle phase ends at the first byte of the next request (seen by
//! [`crate::watched_io`]), and the head phase starts there.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The two limits of [`Activity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) head: Duration,
    pub(crate) idle: Duration,
}

/// Why a connection was closed by its [`Activity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// A request's head was not complete in time.
    HeaderTimeout,
    /// No next request came in time.
    IdleTimeout,
}

impl Expiry {
    /// The `reason` label of the metric that counts it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Expiry::HeaderTimeout => "header_timeout",
            Expiry::IdleTimeout => "idle_timeout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request's head is being read: its first byte came at `since`, or, for the
    /// connection's first request, the connection opened then (a client that connects
    /// and sends nothing is as slow as one that sends half a head).
    Head { since: Instant },
    /// This many requests are in flight: until the handler answered and the response
    /// body was written to its end (or dropped).
    Busy(usize),
    /// No request in flight and no byte of a next one since `since`.
    Idle { since: Instant },
}

/// One connection's phase, shared by its reads ([`Activity::read`]), its requests
/// ([`Activity::request`]) and its watchdog ([`Activity::expired`]).
#[derive(Debug)]
pub(crate) struct Activity {
    phase: Mutex<Phase>,
    /// Wakes the watchdog when a deadline appears or moves earlier.
    changed: Notify,
}

impl Activity {
    /// A connection opened at `opened`, waiting for its first request.
    pub(crate) fn new(opened: Instant) -> Activity {
        Activity {
            phase: Mutex::new(Phase::Head { since: opened }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived at `now`: an idle connection starts reading a head.
    pub(crate) fn read(&self, now: Instant) {
        let mut phase = self.lock();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head { since: now };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's head is complete and its handler starts; the connection is busy until
    /// the returned guard is dropped (hyper drops the response body once written).
    pub(crate) fn request(self: &std::sync::Arc<Self>) -> InFlight {
        let mut phase = self.lock();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy(1),
        };
        InFlight(self.clone())
    }

    fn done(&self, now: Instant) {
        let mut phase = self.lock();
        if let Phase::Busy(n) = *phase {
            *phase = if n > 1 {
                Phase::Busy(n - 1)
            } else {
                Phase::Idle { since: now }
            };
            if n == 1 {
                drop(phase);
                self.changed.notify_one();
            }
        }
    }

    /// When the current phase runs out, and why; `None` while busy.
    fn deadline(&self, limits: Limits) -> Option<(Instant, Expiry)> {
        match *self.lock() {
            Phase::Head { since } => Some((since + limits.head, Expiry::HeaderTimeout)),
            Phase::Idle { since } => Some((since + limits.idle, Expiry::IdleTimeout)),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves when the connection has waited too long for a head or for a next
    /// request. While busy it holds no timer, only a wake-up.
    pub(crate) async fn expired(&self, limits: Limits) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline(limits) {
                None => changed.await,
                Some((at, why)) => {
                    if Instant::now() >= at {
                        return why;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection (see [`Activity::request`]).
#[derive(Debug)]
pub(crate) struct InFlight(std::sync::Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.done(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const LIMITS: Limits = Limits {
        head: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_no_complete_head_expires_after_the_head_limit() {
        let activity = Activity::new(Instant::now());
        activity.read(Instant::now());
        let started = Instant::now();
        assert_eq!(activity.expired(LIMITS).await, Expiry::HeaderTimeout);
        assert_eq!(started.elapsed(), LIMITS.head);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_never_expires_and_an_idle_one_after_the_idle_limit() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let request = activity.request();
        // An SSE stream: busy for far longer than either limit.
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move {
                let started = Instant::now();
                (activity.expired(LIMITS).await, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        assert!(!watchdog.is_finished());
        drop(request);
        let (why, after) = watchdog.await.unwrap();
        assert_eq!(why, Expiry::IdleTimeout);
        assert_eq!(after, Duration::from_secs(3_600) + LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_a_next_request_switches_to_the_head_limit() {
        let activity = Arc::new(Activity::new(Instant::now()));
        drop(activity.request());
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move {
                let started = Instant::now();
                (activity.expired(LIMITS).await, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.read(Instant::now());
        let (why, after) = watchdog.await.unwrap();
        assert_eq!(why, Expiry::HeaderTimeout);
        assert_eq!(after, Duration::from_secs(30) + LIMITS.head);
    }

    #[test]
    fn requests_nest_and_bytes_while_busy_change_nothing() {
        let t0 = Instant::now();
        let activity = Arc::new(Activity::new(t0));
        let a = activity.request();
        let b = activity.request();
        activity.read(t0);
        assert_eq!(activity.deadline(LIMITS), None);
        drop(a);
        assert_eq!(activity.deadline(LIMITS), None);
        drop(b);
        assert!(matches!(
            activity.deadline(LIMITS),
            Some((_, Expiry::IdleTimeout))
        ));
    }
}
