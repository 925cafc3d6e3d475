//! The one retry schedule (seed 004): the n-th retry waits `base × fib(n)`, with
//! fib = 1, 1, 2, 3, 5, 8 …, capped. Webhook deliveries and failed sends both use it.

use std::time::Duration;

/// The wait after the `failed`-th failed attempt (1 for the first): `base_ms × fib(failed)`,
/// at most `cap_ms`. Saturates instead of overflowing however far out.
pub fn fibonacci_delay(base_ms: u64, failed: u32, cap_ms: u64) -> Duration {
    let (mut a, mut b) = (1u64, 1u64);
    for _ in 1..failed.min(200) {
        (a, b) = (b, a.saturating_add(b));
    }
    Duration::from_millis(base_ms.saturating_mul(a).min(cap_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_base_times_fibonacci_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8)
            .map(|n| fibonacci_delay(1_000, n, u64::MAX).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [1_000, 1_000, 2_000, 3_000, 5_000, 8_000, 13_000, 21_000]
        );
        assert_eq!(fibonacci_delay(1_000, 0, u64::MAX).as_millis(), 1_000);
        assert_eq!(fibonacci_delay(1_000, 10_000, 60_000).as_millis(), 60_000);
        assert_eq!(
            fibonacci_delay(u64::MAX, 10_000, u64::MAX).as_millis(),
            u128::from(u64::MAX)
        );
    }
}
