//! The sending policy of one device: whether a send may go now, later, or not today.
//!
//! [`Limiter`] is pure and deterministic: it has no clock, no actor and no randomness of
//! its own. Every call takes the time (`now_ms`, Unix milliseconds from
//! [`crate::clock::now_ms`]) and [`Limiter::decide`] takes the jitter drawn by the caller,
//! so the rules are tested with explicit times and the owner (the device's rate-limit
//! actor, [`crate::limits::actor`]) decides where time and randomness come from. The [`Quota`] is passed
//! on every call too, so a changed quota table applies to the very next decision.
//!
//! # Windows
//!
//! Sliding windows over a log of send times, not fixed (calendar) windows. A fixed
//! minute lets a device send its whole quota at 12:00:59 and again at 12:01:00: twice
//! the quota within two seconds, the very burst that gets numbers banned. A sliding
//! window holds in *every* 60 s / 1 h / 24 h span. The log keeps one timestamp per send
//! of the last day, at most `per_day` (≤ [`MAX_PER_DAY`](wafleet_cluster_config::quota::MAX_PER_DAY))
//! entries, so its size is bounded and each decision costs O(1) plus pruning.
//!
//! Slots are handed out in order, each no earlier than the one before, so the log is
//! sorted. With `n` sends in the log and a window of length `W` and limit `L`, a new send
//! at `t` keeps the window iff the log's entry `n - L` (the `L`-th newest) is at or
//! before `t - W`; so the earliest time each window allows is that entry plus `W`.
//!
//! # Decisions
//!
//! - [`Decision::SendNow`] and [`Decision::Later`] reserve the slot at once (in the log
//!   and in flight), so concurrent asks get distinct slots, spaced by the minimum gap
//!   plus the jitter given with each ask.
//! - [`Decision::Refused`] reserves nothing: the day's quota is spent (the 24 h window
//!   is full for the whole day ahead) or too many sends are outstanding.

use std::collections::VecDeque;

use serde::Serialize;
use wafleet_cluster_config::quota::{DAY_MS, HOUR_MS, MINUTE_MS};
use wafleet_cluster_config::{Quota, QuotaTable};

use crate::store::TrustLevel;

/// The quota of `level` in `table`.
pub fn quota_for(table: &QuotaTable, level: TrustLevel) -> &Quota {
    match level {
        TrustLevel::Newcomer => &table.newcomer,
        TrustLevel::Trusted => &table.trusted,
        TrustLevel::Verified => &table.verified,
    }
}

/// What to do with one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Send it now; the slot is reserved at `now_ms`.
    SendNow,
    /// Within the day's quota but ahead of the pace: send it at `not_before_ms`, the
    /// earliest time every window and the gap (plus jitter) allow. The slot is reserved.
    Later {
        /// Unix milliseconds.
        not_before_ms: i64,
    },
    /// Not accepted; nothing reserved. Maps to 429 with `Retry-After`.
    Refused {
        /// How long until asking again can succeed (exact for the day's quota, an
        /// estimate for the in-flight cap); always at least 1.
        retry_after_ms: i64,
        /// Why.
        reason: Refusal,
    },
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// `per_day` sends in the last 24 h, counting those already queued.
    DailyQuota,
    /// `max_in_flight` sends accepted and not yet settled.
    InFlight,
    /// Sending is paused after a ban or restriction signal from WhatsApp; decided by
    /// the device's rate-limit actor, never by [`Limiter`].
    Paused,
}

impl Refusal {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::DailyQuota => "daily_quota_exceeded",
            Refusal::InFlight => "too_many_in_flight",
            Refusal::Paused => "sending_paused",
        }
    }
}

/// Spent and remaining in one window, at the time of a [`Limiter::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowUsage {
    /// The quota's limit for the window.
    pub limit: u32,
    /// Sends whose slot is in the window ending now (slots after now are not in it:
    /// they are [`Usage::queued`]).
    pub spent: u32,
    /// `limit - spent - queued`, never below 0: sends reserved for later are promised,
    /// so they count against every window (a lowered quota can leave a window over).
    pub remaining: u32,
}

/// A device's quota use, for `GET /v1/devices/{id}/limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The last 60 s.
    pub minute: WindowUsage,
    /// The last hour.
    pub hour: WindowUsage,
    /// The last 24 h.
    pub day: WindowUsage,
    /// Sends reserved for a time after now.
    pub queued: u32,
    /// Sends accepted and not yet settled.
    pub in_flight: u32,
    /// The quota's `max_in_flight`.
    pub max_in_flight: u32,
    /// When a send asked now would go, without jitter (Unix ms): now if it could go at
    /// once, its slot if it would be queued, and now plus the retry delay if refused.
    pub next_send_ms: i64,
}

/// The spent quota of one device: the log of its send slots over the last day, and its
/// sends in flight. See the module doc for the rules.
///
/// Nothing of it is persisted: its log is the slots of the device's stored messages, and
/// a limiter that starts (after a crash, on another node) is rebuilt from them with
/// [`Limiter::from_slots`]; the owner then counts the sends still outstanding and sets
/// them with [`Limiter::set_in_flight`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limiter {
    /// Slot of every send reserved in the last day (Unix ms), oldest first, including
    /// those reserved for the future. Sorted: each slot is at or after the previous one.
    slots: VecDeque<i64>,
    /// Sends accepted ([`Decision::SendNow`] or [`Decision::Later`]) and not yet
    /// [settled](Limiter::settled) or [released](Limiter::release).
    in_flight: u32,
}

impl Limiter {
    /// A device that has sent nothing.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// Decides one send asked at `now_ms`, and reserves its slot unless refused.
    /// `jitter` (drawn by the caller from `0..=quota.jitter_ms`, and clamped to it) is
    /// added to the minimum gap after the previous send.
    pub fn decide(&mut self, quota: &Quota, now_ms: i64, jitter: u64) -> Decision {
        self.prune(now_ms);
        let decision = self.peek(quota, now_ms, jitter);
        match decision {
            Decision::SendNow => self.reserve(now_ms),
            Decision::Later { not_before_ms } => self.reserve(not_before_ms),
            Decision::Refused { .. } => {}
        }
        decision
    }

    /// What [`decide`](Limiter::decide) would answer, reserving nothing.
    pub fn peek(&self, quota: &Quota, now_ms: i64, jitter: u64) -> Decision {
        if let Some(day_free) = self.window_free_at(quota.per_day, DAY_MS)
            && day_free > now_ms
        {
            return Decision::Refused {
                retry_after_ms: day_free - now_ms,
                reason: Refusal::DailyQuota,
            };
        }
        if self.in_flight >= quota.max_in_flight {
            return Decision::Refused {
                retry_after_ms: self.in_flight_retry(quota, now_ms),
                reason: Refusal::InFlight,
            };
        }
        let jitter = jitter.min(quota.jitter_ms);
        let gap = millis(quota.min_gap_ms).saturating_add(millis(jitter));
        let mut at = now_ms;
        if let Some(&last) = self.slots.back() {
            at = at.max(last.saturating_add(gap));
        }
        for (limit, window) in [
            (quota.per_minute, MINUTE_MS),
            (quota.per_hour, HOUR_MS),
            (quota.per_day, DAY_MS),
        ] {
            if let Some(free) = self.window_free_at(limit, window) {
                at = at.max(free);
            }
        }
        if at <= now_ms {
            Decision::SendNow
        } else {
            Decision::Later { not_before_ms: at }
        }
    }

    /// A send accepted earlier has gone out (or failed for good): it no longer counts in
    /// flight. Its slot stays spent.
    pub fn settled(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Gives back the slot `slot_ms` of a send that never went out (cancelled, or the
    /// device paused before its slot), and its place in flight. Returns whether such a
    /// slot was reserved. The caller must not release a send that may have reached
    /// WhatsApp: that one is spent.
    pub fn release(&mut self, slot_ms: i64) -> bool {
        let Some(index) = self.slots.iter().rposition(|&slot| slot == slot_ms) else {
            return false;
        };
        self.slots.remove(index);
        self.in_flight = self.in_flight.saturating_sub(1);
        true
    }

    /// A limiter restored from the slots of a device's stored sends (in any order;
    /// they are sorted here), with nothing in flight.
    pub fn from_slots(mut slots: Vec<i64>) -> Limiter {
        slots.sort_unstable();
        Limiter {
            slots: slots.into(),
            in_flight: 0,
        }
    }

    /// Sets the sends in flight, after a restore: the owner's count of accepted sends
    /// that have not settled (the in-flight count is not persisted).
    pub fn set_in_flight(&mut self, in_flight: u32) {
        self.in_flight = in_flight;
    }

    /// Sends accepted and not yet settled.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Spent and remaining per window at `now_ms`, and when a send could go next.
    pub fn snapshot(&self, quota: &Quota, now_ms: i64) -> Usage {
        let next_send_ms = match self.peek(quota, now_ms, 0) {
            Decision::SendNow => now_ms,
            Decision::Later { not_before_ms } => not_before_ms,
            Decision::Refused { retry_after_ms, .. } => now_ms.saturating_add(retry_after_ms),
        };
        Usage {
            minute: self.window_usage(quota.per_minute, MINUTE_MS, now_ms),
            hour: self.window_usage(quota.per_hour, HOUR_MS, now_ms),
            day: self.window_usage(quota.per_day, DAY_MS, now_ms),
            queued: count(self.slots.len() - self.slots.partition_point(|&s| s <= now_ms)),
            in_flight: self.in_flight,
            max_in_flight: quota.max_in_flight,
            next_send_ms,
        }
    }

    /// The earliest time a send keeps the window of `window` ms to `limit` sends, or
    /// `None` when the log holds fewer than `limit` sends (any time will do). Slots older
    /// than a day may still be in the log; they never decide this, as they are at least
    /// `window` old.
    fn window_free_at(&self, limit: u32, window: i64) -> Option<i64> {
        let limit = limit as usize;
        if limit == 0 {
            // An unchecked quota that allows nothing: never.
            return Some(i64::MAX);
        }
        let n = self.slots.len();
        (n >= limit).then(|| self.slots[n - limit].saturating_add(window))
    }

    /// An estimate of when a place in flight frees: the in-flight sends are the newest
    /// slots, so the oldest of them should settle soon after its slot comes.
    fn in_flight_retry(&self, quota: &Quota, now_ms: i64) -> i64 {
        let settle_margin = millis(quota.min_gap_ms).max(1_000);
        let oldest = self
            .slots
            .len()
            .checked_sub(self.in_flight as usize)
            .and_then(|i| self.slots.get(i).copied())
            .unwrap_or(now_ms);
        oldest
            .saturating_sub(now_ms)
            .max(0)
            .saturating_add(settle_margin)
    }

    fn window_usage(&self, limit: u32, window: i64, now_ms: i64) -> WindowUsage {
        let start = now_ms.saturating_sub(window);
        let from = self.slots.partition_point(|&s| s <= start);
        let upto = self.slots.partition_point(|&s| s <= now_ms).max(from);
        let spent = count(upto - from);
        let ahead = count(self.slots.len() - upto);
        WindowUsage {
            limit,
            spent,
            remaining: limit.saturating_sub(spent.saturating_add(ahead)),
        }
    }

    fn reserve(&mut self, slot_ms: i64) {
        self.slots.push_back(slot_ms);
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// Forgets slots a day old or older: they are in no window any more.
    fn prune(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(DAY_MS);
        while self.slots.front().is_some_and(|&slot| slot <= horizon) {
            self.slots.pop_front();
        }
    }
}

fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    /// The acceptance quota: 5 a minute, at least 2 s apart.
    fn five_a_minute() -> Quota {
        Quota {
            per_minute: 5,
            per_hour: 60,
            per_day: 100,
            min_gap_ms: 2_000,
            jitter_ms: 500,
            max_in_flight: 200,
        }
    }

    /// Sends in the busiest `window` of `slots` (sorted): the most in any `(t - window, t]`.
    fn busiest(slots: &[i64], window: i64) -> usize {
        let mut most = 0;
        for (end, &t) in slots.iter().enumerate() {
            let start = slots.partition_point(|&s| s <= t - window);
            let end = end + slots[end..].iter().take_while(|&&s| s == t).count();
            most = most.max(end - start);
        }
        most
    }

    fn slot_of(decision: Decision, now_ms: i64) -> Option<i64> {
        match decision {
            Decision::SendNow => Some(now_ms),
            Decision::Later { not_before_ms } => Some(not_before_ms),
            Decision::Refused { .. } => None,
        }
    }

    #[test]
    fn fifty_asks_at_once_get_five_spaced_slots_in_the_first_minute() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        let mut slots = Vec::new();
        let mut jitters = Vec::new();
        for i in 0..50u64 {
            let jitter = (i * 137) % 501;
            let decision = limiter.decide(&quota, T0, jitter);
            if i == 0 {
                assert_eq!(decision, Decision::SendNow);
            } else {
                assert!(matches!(decision, Decision::Later { .. }), "{decision:?}");
            }
            slots.push(slot_of(decision, T0).unwrap());
            jitters.push(jitter);
        }
        let first_minute = slots.iter().filter(|&&s| s < T0 + MINUTE_MS).count();
        assert_eq!(first_minute, 5);
        for (i, pair) in slots.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= 2_000 + jitters[i + 1] as i64,
                "slots {i} and {} are {gap} ms apart",
                i + 1
            );
        }
        assert_eq!(busiest(&slots, MINUTE_MS), 5);
        assert_eq!(limiter.in_flight(), 50);

        // 50 more fill the day's 100; the 101st is refused until the first slot is a day old.
        for _ in 0..50 {
            assert!(slot_of(limiter.decide(&quota, T0 + 1, 0), T0 + 1).is_some());
        }
        let before = limiter.clone();
        let refused = limiter.decide(&quota, T0 + 1_000, 0);
        assert_eq!(
            refused,
            Decision::Refused {
                retry_after_ms: DAY_MS - 1_000,
                reason: Refusal::DailyQuota
            }
        );
        assert_eq!(limiter, before, "a refusal reserves nothing");
        assert_eq!(Refusal::DailyQuota.code(), "daily_quota_exceeded");

        // At the retry time the first slot has left the day: accepted, after the last slot.
        let retry_at = T0 + DAY_MS;
        let last = *limiter.slots.back().unwrap();
        let decision = limiter.decide(&quota, retry_at, 0);
        let expected = retry_at.max(last + 2_000);
        assert_eq!(slot_of(decision, retry_at), Some(expected));
    }

    /// Fills `limit` sends at T0 under `quota` (gap 0), then checks the window of
    /// `window` ms holds them until T0 + window and frees exactly `limit` then.
    fn rolls_over(quota: Quota, limit: u32, window: i64) {
        let mut limiter = Limiter::new();
        for _ in 0..limit {
            assert_eq!(limiter.decide(&quota, T0, 0), Decision::SendNow);
            limiter.settled();
        }
        let just_before = limiter.clone().decide(&quota, T0 + window - 1, 0);
        if window == DAY_MS {
            assert_eq!(
                just_before,
                Decision::Refused {
                    retry_after_ms: 1,
                    reason: Refusal::DailyQuota
                }
            );
        } else {
            assert_eq!(
                just_before,
                Decision::Later {
                    not_before_ms: T0 + window
                }
            );
        }
        let usage = limiter.snapshot(&quota, T0 + window - 1);
        assert_eq!(usage.next_send_ms, T0 + window);
        for _ in 0..limit {
            assert_eq!(limiter.decide(&quota, T0 + window, 0), Decision::SendNow);
        }
        assert_ne!(limiter.decide(&quota, T0 + window, 0), Decision::SendNow);
    }

    #[test]
    fn each_window_rolls_over_when_its_oldest_send_leaves_it() {
        let base = Quota {
            per_minute: 3,
            per_hour: 100,
            per_day: 1_000,
            min_gap_ms: 0,
            jitter_ms: 0,
            max_in_flight: 1_000,
        };
        rolls_over(base, 3, MINUTE_MS);
        rolls_over(
            Quota {
                per_minute: 4,
                per_hour: 4,
                ..base
            },
            4,
            HOUR_MS,
        );
        rolls_over(
            Quota {
                per_minute: 5,
                per_hour: 5,
                per_day: 5,
                ..base
            },
            5,
            DAY_MS,
        );
    }

    #[test]
    fn a_day_old_send_is_forgotten() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        limiter.decide(&quota, T0, 0);
        limiter.settled();
        assert_eq!(limiter.snapshot(&quota, T0 + DAY_MS - 1).day.spent, 1);
        assert_eq!(limiter.snapshot(&quota, T0 + DAY_MS).day.spent, 0);
        assert_eq!(limiter.decide(&quota, T0 + DAY_MS, 0), Decision::SendNow);
        assert_eq!(limiter.slots.len(), 1, "pruned");
    }

    #[test]
    fn the_in_flight_cap_refuses_until_a_send_settles() {
        let quota = Quota {
            max_in_flight: 2,
            ..five_a_minute()
        };
        let mut limiter = Limiter::new();
        assert_eq!(limiter.decide(&quota, T0, 0), Decision::SendNow);
        assert_eq!(
            limiter.decide(&quota, T0, 0),
            Decision::Later {
                not_before_ms: T0 + 2_000
            }
        );
        let refused = limiter.decide(&quota, T0, 0);
        let Decision::Refused {
            retry_after_ms,
            reason: Refusal::InFlight,
        } = refused
        else {
            panic!("{refused:?}");
        };
        assert!(retry_after_ms >= 1, "{retry_after_ms}");
        assert_eq!(Refusal::InFlight.code(), "too_many_in_flight");
        limiter.settled();
        assert_eq!(
            limiter.decide(&quota, T0 + 100, 0),
            Decision::Later {
                not_before_ms: T0 + 4_000
            }
        );
    }

    #[test]
    fn a_released_slot_is_given_back() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        limiter.decide(&quota, T0, 0);
        let second = limiter.decide(&quota, T0, 0);
        assert_eq!(
            second,
            Decision::Later {
                not_before_ms: T0 + 2_000
            }
        );
        assert!(limiter.release(T0 + 2_000));
        assert!(!limiter.release(T0 + 2_000));
        assert_eq!(limiter.in_flight(), 1);
        assert_eq!(limiter.snapshot(&quota, T0).minute.spent, 1);
    }

    #[test]
    fn jitter_is_clamped_to_the_quota() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        limiter.decide(&quota, T0, 0);
        assert_eq!(
            limiter.decide(&quota, T0, u64::MAX),
            Decision::Later {
                not_before_ms: T0 + 2_500
            }
        );
    }

    #[test]
    fn a_changed_table_applies_to_the_next_decision() {
        let mut table = QuotaTable {
            newcomer: Quota {
                min_gap_ms: 0,
                jitter_ms: 0,
                ..five_a_minute()
            },
            ..QuotaTable::default()
        };
        let mut limiter = Limiter::new();
        for _ in 0..3 {
            let quota = quota_for(&table, TrustLevel::Newcomer);
            assert_eq!(limiter.decide(quota, T0, 0), Decision::SendNow);
        }
        // Lowered live to 3 a minute: the next send waits for the minute to roll.
        table.newcomer.per_minute = 3;
        assert_eq!(
            limiter
                .clone()
                .decide(quota_for(&table, TrustLevel::Newcomer), T0 + 10, 0),
            Decision::Later {
                not_before_ms: T0 + MINUTE_MS
            }
        );
        let usage = limiter.snapshot(quota_for(&table, TrustLevel::Newcomer), T0 + 10);
        assert_eq!((usage.minute.spent, usage.minute.remaining), (3, 0));
        // Promoted (another row of the table): verified's 6 s gap applies.
        let verified = *quota_for(&table, TrustLevel::Verified);
        assert_eq!(
            limiter.decide(&verified, T0 + 10, 0),
            Decision::Later {
                not_before_ms: T0 + verified.min_gap_ms as i64
            }
        );
        // A raised gap applies as well.
        table.newcomer.min_gap_ms = 10_000;
        table.newcomer.per_minute = 5;
        let newcomer = quota_for(&table, TrustLevel::Newcomer);
        assert_eq!(
            limiter.decide(newcomer, T0 + 10, 0),
            Decision::Later {
                not_before_ms: T0 + verified.min_gap_ms as i64 + 10_000
            }
        );
    }

    #[test]
    fn a_backlog_is_queued_not_spent_in_the_current_minute() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        for _ in 0..19 {
            limiter.decide(&quota, T0, 0);
        }
        let usage = limiter.snapshot(&quota, T0 + 10_000);
        // Slots T0, +2 s, +4 s, ... (the minute cap pushes the rest to later minutes).
        assert!(usage.minute.spent <= usage.minute.limit, "{usage:?}");
        assert_eq!(usage.minute.spent + usage.queued, 19, "{usage:?}");
        assert_eq!(usage.minute.remaining, 0);
        assert_eq!(usage.day.spent + usage.queued, 19);
        assert_eq!(usage.day.remaining, 100 - 19);
        // An hour on, all of them went: spent in the hour and the day, none queued.
        let later = limiter.snapshot(&quota, T0 + 3_600_000 - 1);
        assert_eq!((later.queued, later.minute.spent), (0, 0));
        assert_eq!((later.hour.spent, later.day.spent), (19, 19));
        assert_eq!(later.minute.remaining, 5);
    }

    #[test]
    fn snapshot_reports_spent_remaining_and_the_next_send() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        for _ in 0..3 {
            limiter.decide(&quota, T0, 0);
        }
        limiter.settled();
        let usage = limiter.snapshot(&quota, T0);
        // One went at T0; two wait for their slots: not spent yet, but promised.
        assert_eq!(
            usage.minute,
            WindowUsage {
                limit: 5,
                spent: 1,
                remaining: 2
            }
        );
        assert_eq!(usage.hour.remaining, 57);
        assert_eq!(usage.day.remaining, 97);
        assert_eq!(usage.queued, 2);
        assert_eq!(usage.in_flight, 2);
        assert_eq!(usage.next_send_ms, T0 + 6_000);
        let json = serde_json::to_value(usage).unwrap();
        assert_eq!(json["minute"]["remaining"], 2);
    }

    #[test]
    fn a_restored_limiter_decides_the_same() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        let mut now = T0;
        for i in 0..40 {
            limiter.decide(&quota, now, i * 11 % 500);
            limiter.settled();
            now += 7_000;
        }
        let mut restored = restore(&limiter);
        restored.set_in_flight(limiter.in_flight());
        assert_eq!(restored, limiter);
        for i in 0..200 {
            now += (i * 997) % 20_000;
            let jitter = (i as u64 * 31) % 600;
            assert_eq!(
                restored.decide(&quota, now, jitter),
                limiter.decide(&quota, now, jitter)
            );
        }
        assert_eq!(restored, limiter);
    }

    #[test]
    fn the_in_flight_count_is_not_persisted_but_can_be_set() {
        let quota = five_a_minute();
        let mut limiter = Limiter::new();
        limiter.decide(&quota, T0, 0);
        let mut restored = restore(&limiter);
        assert_eq!(restored.in_flight(), 0);
        restored.set_in_flight(1);
        assert_eq!(restored, limiter);
    }

    /// What a new limiter rebuilds from the stored slots (in the store's order or not).
    fn restore(limiter: &Limiter) -> Limiter {
        Limiter::from_slots(limiter.slots.iter().rev().copied().collect())
    }

    #[test]
    fn slots_in_any_order_restore_a_sorted_log() {
        assert_eq!(Limiter::from_slots(vec![3, 1, 2]).slots, [1, 2, 3]);
        assert_eq!(Limiter::from_slots(Vec::new()), Limiter::new());
    }

    fn random_quota(rng: &mut fastrand::Rng) -> Quota {
        let per_minute = rng.u32(1..=10);
        let per_hour = rng.u32(per_minute..=(60 * per_minute).min(120));
        let per_day = rng.u32(per_hour..=(24 * per_hour).min(300));
        let quota = Quota {
            per_minute,
            per_hour,
            per_day,
            min_gap_ms: rng.u64(0..=MINUTE_MS as u64 / u64::from(per_minute)),
            jitter_ms: rng.u64(0..=5_000),
            max_in_flight: rng.u32(1..=60),
        };
        quota.check().expect("generated quotas are valid");
        quota
    }

    /// Many random asks, settles and pauses under random valid quotas: every accepted
    /// slot is at or after its ask, spaced by the gap plus its jitter, the earliest such
    /// time, and no window is ever exceeded; refusals happen only when the rule says so.
    #[test]
    fn random_asks_never_break_a_window_or_a_gap() {
        // SendNow, Later, refused for the day, refused in flight: each must be exercised.
        let mut seen = [0usize; 4];
        for seed in 0..150 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let quota = random_quota(&mut rng);
            let mut limiter = Limiter::new();
            let mut accepted: Vec<i64> = Vec::new();
            let mut now = T0;
            for _ in 0..400 {
                now += match rng.u8(0..10) {
                    0 => rng.i64(0..=3 * HOUR_MS),
                    1..=3 => 0,
                    _ => rng.i64(0..=5_000),
                };
                if limiter.in_flight() > 0 && rng.bool() {
                    limiter.settled();
                }
                let jitter = rng.u64(0..=quota.jitter_ms);
                let in_flight = limiter.in_flight();
                let day_spent = accepted.iter().filter(|&&s| s > now - DAY_MS).count();
                let decision = limiter.decide(&quota, now, jitter);
                let Some(slot) = slot_of(decision, now) else {
                    let Decision::Refused {
                        retry_after_ms,
                        reason,
                    } = decision
                    else {
                        unreachable!()
                    };
                    assert!(retry_after_ms >= 1, "seed {seed}");
                    match reason {
                        Refusal::DailyQuota => {
                            seen[2] += 1;
                            assert!(day_spent >= quota.per_day as usize);
                        }
                        Refusal::InFlight => {
                            seen[3] += 1;
                            assert!(in_flight >= quota.max_in_flight);
                        }
                        Refusal::Paused => panic!("the pure limiter never pauses"),
                    }
                    continue;
                };
                seen[usize::from(slot > now)] += 1;
                assert!(day_spent < quota.per_day as usize, "seed {seed}");
                assert!(slot >= now, "seed {seed}");
                if let Some(&last) = accepted.last() {
                    let need = quota.min_gap_ms as i64 + jitter as i64;
                    assert!(slot - last >= need, "seed {seed}: gap {}", slot - last);
                }
                if slot > now {
                    // The earliest: one ms sooner breaks the gap or a window.
                    let t = slot - 1;
                    let gap_broken = accepted
                        .last()
                        .is_some_and(|&last| t < last + quota.min_gap_ms as i64 + jitter as i64);
                    let window_full = [
                        (quota.per_minute, MINUTE_MS),
                        (quota.per_hour, HOUR_MS),
                        (quota.per_day, DAY_MS),
                    ]
                    .into_iter()
                    .any(|(limit, w)| {
                        accepted.iter().filter(|&&s| s > t - w).count() >= limit as usize
                    });
                    assert!(gap_broken || window_full, "seed {seed}: slot not earliest");
                }
                accepted.push(slot);
            }
            assert!(accepted.windows(2).all(|p| p[0] <= p[1]));
            for (limit, window) in [
                (quota.per_minute, MINUTE_MS),
                (quota.per_hour, HOUR_MS),
                (quota.per_day, DAY_MS),
            ] {
                assert!(
                    busiest(&accepted, window) <= limit as usize,
                    "seed {seed}: window {window} over {limit} under {quota:?}"
                );
            }
            let restored = restore(&limiter);
            assert_eq!(restored.slots, limiter.slots, "seed {seed}");
        }
        assert!(seen.iter().all(|&n| n > 0), "outcomes seen: {seen:?}");
    }
}
