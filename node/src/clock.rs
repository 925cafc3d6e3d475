//! Wall-clock time as Unix milliseconds, the unit every stored timestamp uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 with milliseconds, UTC (how the API and webhooks
/// write times).
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// An RFC 3339 time (`2026-12-07T10:00:00Z`, any offset accepted by humantime: UTC
/// `Z`) as Unix milliseconds; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    time.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// Where a component reads the time: the wall clock, or a manual clock that tests move
/// by hand, so that time rules are tested deterministically, without sleeping.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
    /// Added to the wall clock (not to a manual one).
    offset_ms: i64,
}

impl Clock {
    /// The wall clock ([`now_ms`]).
    pub fn system() -> Clock {
        Clock::offset(0)
    }

    /// The wall clock moved by `offset_ms` (a node whose clock is off, in tests).
    pub fn offset(offset_ms: i64) -> Clock {
        Clock {
            manual: None,
            offset_ms,
        }
    }

    /// A clock that reads `start_ms` until moved with [`Clock::advance`].
    pub fn manual(start_ms: i64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
            offset_ms: 0,
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(at) => at.load(Ordering::SeqCst),
            None => now_ms() + self.offset_ms,
        }
    }

    /// Moves a manual clock forward by `ms` (a wall clock ignores it).
    pub fn advance(&self, ms: i64) {
        if let Some(at) = &self.manual {
            at.fetch_add(ms, Ordering::SeqCst);
        }
    }
}
