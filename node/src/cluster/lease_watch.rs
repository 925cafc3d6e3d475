//! Judging other nodes' leases expired by this node's own monotonic clock.
//!
//! A lease's `expires_at_ms` is written with its holder's wall clock. Comparing it with
//! ours would make a takeover depend on two wall clocks agreeing: with ours 2 s ahead we
//! would take a shard up to 2 s before its holder stops serving it, and its devices
//! would have two live links meanwhile. So the keeper reads every lease once per tick
//! and notes when it first saw each lease's current value; a shard leased by another
//! node is asked for only once that value has stayed the same for a whole TTL, by this
//! node's monotonic clock.
//!
//! Why that is safe: a holder rewrites its lease's expiry at every renewal, and stops
//! serving `TTL − renew/2` after the start of its last successful renewal, by its own
//! monotonic clock (a timer, not the next tick). A value first seen by a read that ended
//! at `done` was written before `done`, so counting it as seen from `done − renew/4` (or
//! from the read's start, if later) counts from at most a quarter renew interval before
//! that renewal started: by the time the value is a TTL old here, the holder stopped a
//! quarter renew interval ago. Wall clocks only delay a takeover (the store still refuses
//! a lease that has not expired by our wall clock), never hasten it. The keeper reads every
//! quarter renew interval (not only at its ticks) and looks again at the moment a value
//! turns a TTL old here ([`LeaseWatch::takeable_at`]), so a dead holder's shard is taken
//! within about half a renew interval of its lease's end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::store::Lease;

/// When this node first saw each held lease as it is now.
#[derive(Debug)]
pub(super) struct LeaseWatch {
    ttl: Duration,
    /// How much earlier than the end of a read a value counts as seen: a quarter renew
    /// interval (the holder stops half a renew interval before its lease's TTL ends).
    margin: Duration,
    seen: HashMap<u32, Seen>,
    /// Whether the last read succeeded: without it nothing is known about vacancy.
    fresh: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    holder: String,
    epoch: u64,
    expires_at_ms: i64,
    since: Instant,
}

impl LeaseWatch {
    pub(super) fn new(ttl: Duration, renew_interval: Duration) -> LeaseWatch {
        LeaseWatch {
            ttl,
            margin: renew_interval / 4,
            seen: HashMap::new(),
            fresh: false,
        }
    }

    /// Records every held lease, as read between `started` and `done`.
    pub(super) fn observe(&mut self, leases: Vec<Lease>, started: Instant, done: Instant) {
        let at = started.max(done.checked_sub(self.margin).unwrap_or(started));
        let mut seen = HashMap::with_capacity(leases.len());
        for lease in leases {
            let value = match self.seen.remove(&lease.shard) {
                Some(old)
                    if old.holder == lease.holder
                        && old.epoch == lease.epoch
                        && old.expires_at_ms == lease.expires_at_ms =>
                {
                    old
                }
                _ => Seen {
                    holder: lease.holder,
                    epoch: lease.epoch,
                    expires_at_ms: lease.expires_at_ms,
                    since: at,
                },
            };
            seen.insert(lease.shard, value);
        }
        self.seen = seen;
        self.fresh = true;
    }

    /// The last read failed: until one succeeds, no shard counts as vacant.
    pub(super) fn read_failed(&mut self) {
        self.fresh = false;
    }

    /// Whether `me` may ask for `shard` at `now`: nobody holds it, `me` does (a
    /// previous run of this node), or another node's lease has not changed for a TTL.
    pub(super) fn may_take(&self, shard: u32, me: &str, now: Instant) -> bool {
        match self.seen.get(&shard) {
            None => self.fresh,
            Some(seen) if seen.holder == me => true,
            Some(seen) => now.saturating_duration_since(seen.since) >= self.ttl,
        }
    }

    /// When `shard`, held by another node when last read, may be taken if its lease
    /// is still the same then; `None` if no other node held it.
    pub(super) fn takeable_at(&self, shard: u32, me: &str) -> Option<Instant> {
        self.seen
            .get(&shard)
            .filter(|seen| seen.holder != me)
            .map(|seen| seen.since + self.ttl)
    }

    /// Whether someone (this node's previous run included) held the shard when last
    /// read: granting it is then a takeover, as that holder never released it.
    pub(super) fn is_held(&self, shard: u32) -> bool {
        self.seen.contains_key(&shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);
    const RENEW: Duration = Duration::from_secs(1);

    #[test]
    fn a_lease_of_another_node_is_taken_only_after_a_ttl_unchanged() {
        let mut watch = LeaseWatch::new(TTL, RENEW);
        let t0 = Instant::now();
        assert!(!watch.may_take(1, "b", t0), "nothing read yet");
        // However far in the past its expiry is by any wall clock.
        watch.observe(vec![Lease::held(1, "a", 0)], t0, t0);
        assert!(!watch.may_take(1, "b", t0 + TTL - Duration::from_millis(1)));
        assert!(watch.may_take(1, "b", t0 + TTL));
        assert!(watch.may_take(2, "b", t0), "a shard nobody holds");
        assert!(watch.may_take(1, "a", t0), "its own lease");
        assert!(watch.is_held(1) && !watch.is_held(2));
    }

    #[test]
    fn a_renewal_starts_the_wait_again() {
        let mut watch = LeaseWatch::new(TTL, RENEW);
        let t0 = Instant::now();
        watch.observe(vec![Lease::held(1, "a", 5_000)], t0, t0);
        let t1 = t0 + Duration::from_secs(2);
        watch.observe(vec![Lease::held(1, "a", 5_000)], t1, t1);
        assert!(
            watch.may_take(1, "b", t0 + TTL),
            "unchanged: counted from t0"
        );
        watch.observe(vec![Lease::held(1, "a", 7_000)], t1, t1);
        assert!(!watch.may_take(1, "b", t0 + TTL), "renewed at t1");
        assert!(watch.may_take(1, "b", t1 + TTL));
    }

    #[test]
    fn the_moment_to_look_again_is_when_may_take_turns_true() {
        let mut watch = LeaseWatch::new(TTL, RENEW);
        let t0 = Instant::now();
        watch.observe(
            vec![Lease::held(1, "a", 5_000), Lease::held(2, "b", 5_000)],
            t0,
            t0,
        );
        let at = watch.takeable_at(1, "b").expect("held by another node");
        assert!(!watch.may_take(1, "b", at - Duration::from_millis(1)));
        assert!(watch.may_take(1, "b", at));
        assert_eq!(watch.takeable_at(2, "b"), None, "its own lease");
        assert_eq!(watch.takeable_at(3, "b"), None, "nobody holds it");
        let t1 = t0 + Duration::from_secs(1);
        watch.observe(vec![Lease::held(1, "a", 6_000)], t1, t1);
        assert_eq!(watch.takeable_at(1, "b"), Some(t1 + TTL), "renewed at t1");
    }

    #[test]
    fn a_slow_read_counts_from_a_quarter_renewal_before_it_ended() {
        let mut watch = LeaseWatch::new(TTL, RENEW);
        let started = Instant::now();
        let done = started + Duration::from_secs(2);
        watch.observe(vec![Lease::held(1, "a", 5_000)], started, done);
        let from = done - RENEW / 4;
        assert!(!watch.may_take(1, "b", from + TTL - Duration::from_millis(1)));
        assert!(watch.may_take(1, "b", from + TTL));
    }

    #[test]
    fn after_a_failed_read_no_shard_counts_as_vacant() {
        let mut watch = LeaseWatch::new(TTL, RENEW);
        let t0 = Instant::now();
        watch.observe(Vec::new(), t0, t0);
        assert!(watch.may_take(3, "b", t0));
        watch.read_failed();
        assert!(!watch.may_take(3, "b", t0));
    }
}
