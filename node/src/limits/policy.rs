//! The sending policy of one device: whether a send may go now, later, or not today.
//!
//! [`SendPolicy`] is pure and deterministic: it has no clock, no actor and no randomness
//! of its own. Every call takes the time (`now_ms`, Unix milliseconds from
//! [`crate::clock::now_ms`]) and [`SendPolicy::decide`] takes the jitter drawn by the
//! caller, so the rules are tested with explicit times and the owner (the device's
//! rate-limit actor, [`super::actor`]) decides where time and randomness come from. The
//! [`Quota`] is passed on every call too, so a changed quota table applies to the very
//! next decision.
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
    /// the device's rate-limit actor, never by [`SendPolicy`].
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

/// Spent and remaining in one window, at the time of a [`SendPolicy::snapshot`].
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
/// the policy of a limiter that starts (after a crash, on another node) is rebuilt from
/// them with [`SendPolicy::from_slots`]; the owner then counts the sends still
/// outstanding and sets them with [`SendPolicy::set_in_flight`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendPolicy {
    /// Slot of every send reserved in the last day (Unix ms), oldest first, including
    /// those reserved for the future. Sorted: each slot is at or after the previous one.
    slots: VecDeque<i64>,
    /// Sends accepted ([`Decision::SendNow`] or [`Decision::Later`]) and not yet
    /// [settled](SendPolicy::settled) or [released](SendPolicy::release).
    in_flight: u32,
}

impl SendPolicy {
    /// A device that has sent nothing.
    pub fn new() -> SendPolicy {
        SendPolicy::default()
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

    /// What [`decide`](SendPolicy::decide) would answer, reserving nothing.
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

    /// A policy restored from the slots of a device's stored sends (in any order;
    /// they are sorted here), with nothing in flight.
    pub fn from_slots(mut slots: Vec<i64>) -> SendPolicy {
        slots.sort_unstable();
        SendPolicy {
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
mod tests;
