//! Failed logins slow further attempts, per user name and per source address.
//!
//! Each name and each address counts its failures in a row. From [`FREE_FAILURES`]
//! on, every failure closes the door for a time that doubles (1 s, 2 s, 4 s, ... up to
//! [`MAX_PAUSE`]); an attempt while it is closed is refused without checking the
//! password (so guessing costs the guesser time, not the server argon2 work). A
//! success opens both again. Held per gateway process, in memory: a cluster of G
//! gateways lets a guesser spread over them, G times the rate of one (still bounded).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row allowed before attempts are slowed.
pub const FREE_FAILURES: u32 = 5;
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(300);
/// Most names and addresses remembered; past it, the oldest half is forgotten.
const REMEMBERED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    closed_until: Instant,
    last: Instant,
}

/// The failure counts of one gateway.
#[derive(Debug, Default)]
pub struct LoginLimits {
    by_key: Mutex<HashMap<String, Failures>>,
}

impl LoginLimits {
    pub fn new() -> LoginLimits {
        LoginLimits::default()
    }

    /// `Err(wait)` while `user` or `source` is closed: try again after `wait`.
    pub fn check(&self, user: &str, source: &str, now: Instant) -> Result<(), Duration> {
        let map = self.by_key.lock().expect("login limits lock");
        let wait = [user_key(user), source_key(source)]
            .iter()
            .filter_map(|key| map.get(key))
            .map(|f| f.closed_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed attempt for both.
    pub fn failed(&self, user: &str, source: &str, now: Instant) {
        let mut map = self.by_key.lock().expect("login limits lock");
        if map.len() >= REMEMBERED {
            forget_oldest_half(&mut map);
        }
        for key in [user_key(user), source_key(source)] {
            let entry = map.entry(key).or_insert(Failures {
                count: 0,
                closed_until: now,
                last: now,
            });
            entry.count += 1;
            entry.last = now;
            if entry.count >= FREE_FAILURES {
                entry.closed_until = now + pause(entry.count);
            }
        }
    }

    /// A success: both start again from nothing.
    pub fn succeeded(&self, user: &str, source: &str) {
        let mut map = self.by_key.lock().expect("login limits lock");
        map.remove(&user_key(user));
        map.remove(&source_key(source));
    }
}

/// The pause after the `count`th failure in a row (`count >= FREE_FAILURES`).
fn pause(count: u32) -> Duration {
    let doublings = (count - FREE_FAILURES).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_PAUSE)
}

fn user_key(user: &str) -> String {
    format!("u:{}", user.to_lowercase())
}

fn source_key(source: &str) -> String {
    format!("a:{source}")
}

fn forget_oldest_half(map: &mut HashMap<String, Failures>) {
    let mut lasts: Vec<Instant> = map.values().map(|f| f.last).collect();
    lasts.sort_unstable();
    let cut = lasts[lasts.len() / 2];
    map.retain(|_, f| f.last > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_close_the_door_for_longer_and_longer_and_a_success_opens_it() {
        let limits = LoginLimits::new();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            assert!(limits.check("ana", "10.0.0.1", t0).is_ok());
            limits.failed("ana", "10.0.0.1", t0);
        }
        assert!(limits.check("ana", "10.0.0.1", t0).is_ok());
        limits.failed("ana", "10.0.0.1", t0);
        assert_eq!(
            limits.check("ana", "10.0.0.9", t0),
            Err(Duration::from_secs(1))
        );
        assert_eq!(
            limits.check("bob", "10.0.0.1", t0),
            Err(Duration::from_secs(1)),
            "the address is closed for other names too"
        );
        assert!(limits.check("bob", "10.0.0.2", t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(
            limits.check("ANA", "10.0.0.9", t1).is_ok(),
            "names ignore case"
        );
        limits.failed("ana", "10.0.0.1", t1);
        assert_eq!(limits.check("ana", "x", t1), Err(Duration::from_secs(2)));
        for n in 0..20 {
            limits.failed("ana", "10.0.0.1", t1 + Duration::from_secs(n));
        }
        let wait = limits.check("ana", "x", t1).unwrap_err();
        assert!(wait <= MAX_PAUSE + Duration::from_secs(20), "{wait:?}");
        limits.succeeded("ana", "10.0.0.1");
        assert!(limits.check("ana", "10.0.0.1", t1).is_ok());
    }
}
