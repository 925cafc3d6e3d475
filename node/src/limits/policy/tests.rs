//! The rules of [`SendPolicy`], with explicit times.

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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
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
    let mut limiter = SendPolicy::new();
    limiter.decide(&quota, T0, 0);
    let mut restored = restore(&limiter);
    assert_eq!(restored.in_flight(), 0);
    restored.set_in_flight(1);
    assert_eq!(restored, limiter);
}

/// What a new limiter rebuilds from the stored slots (in the store's order or not).
fn restore(limiter: &SendPolicy) -> SendPolicy {
    SendPolicy::from_slots(limiter.slots.iter().rev().copied().collect())
}

#[test]
fn slots_in_any_order_restore_a_sorted_log() {
    assert_eq!(SendPolicy::from_slots(vec![3, 1, 2]).slots, [1, 2, 3]);
    assert_eq!(SendPolicy::from_slots(Vec::new()), SendPolicy::new());
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
        let mut limiter = SendPolicy::new();
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
