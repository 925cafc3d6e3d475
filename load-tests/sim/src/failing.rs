//! Sends to a number made to fail for a while (`POST /sim/phones/{phone}/fail`): the
//! next N sends from linked devices to it are refused with a transient error (by default
//! `unavailable`, as when WhatsApp's servers cannot take a message now), and the network
//! remembers when it refused each (`GET` of the same path), so that a test can check when
//! a sender tried again.
//!
//! Kept in memory only: a simulator started again on its state file has forgotten it.

use serde::Serialize;

use super::clock;

/// The error of a refused send unless another is asked for.
pub(crate) const DEFAULT_ERROR: &str = "unavailable";

/// The refusals asked for one number, and those made.
#[derive(Debug, Default)]
pub(crate) struct Failing {
    /// Sends still to refuse.
    left: u32,
    /// The error their receipts carry.
    error: String,
    /// When each refusal was made (Unix ms), oldest first.
    refused_at_ms: Vec<i64>,
}

/// What `GET /sim/phones/{phone}/fail` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailingView {
    pub phone: String,
    /// Sends still to refuse.
    pub left: u32,
    /// The error of the refusals (`unavailable` by default).
    pub error: String,
    /// When each send was refused (RFC 3339, milliseconds), oldest first.
    pub failed_at: Vec<String>,
}

impl Failing {
    /// Refuses the next `times` sends with `error` (not empty) from now on (0 stops
    /// refusing); the refusals made so far are kept.
    pub(crate) fn set(&mut self, times: u32, error: &str) {
        self.left = times;
        error.clone_into(&mut self.error);
    }

    /// The error to refuse a send arriving at `now_ms` with, if it is refused (and
    /// then counted).
    pub(crate) fn refuse(&mut self, now_ms: i64) -> Option<&str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.refused_at_ms.push(now_ms);
        Some(&self.error)
    }

    pub(crate) fn view(&self, phone: &str) -> FailingView {
        let error = if self.error.is_empty() {
            DEFAULT_ERROR
        } else {
            &self.error
        };
        FailingView {
            phone: phone.to_owned(),
            left: self.left,
            error: error.to_owned(),
            failed_at: self
                .refused_at_ms
                .iter()
                .map(|&at| clock::rfc3339(at))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_as_many_sends_as_asked_and_remembers_when() {
        let mut failing = Failing::default();
        assert_eq!(failing.refuse(1), None, "nothing asked: nothing refused");
        failing.set(2, DEFAULT_ERROR);
        assert_eq!(failing.refuse(10), Some("unavailable"));
        assert_eq!(failing.refuse(20), Some("unavailable"));
        assert_eq!(failing.refuse(30), None);
        let view = failing.view("62811111111");
        assert_eq!((view.left, view.failed_at.len()), (0, 2));
        assert_eq!(view.failed_at[0], "1970-01-01T00:00:00.010Z");
        failing.set(1, "timeout");
        assert_eq!(failing.refuse(40), Some("timeout"));
        assert_eq!(failing.view("62811111111").failed_at.len(), 3);
    }
}
