//! What a scenario shows on stderr while it runs: progress bars (devices paired, devices
//! READY again after a kill, messages sent) that follow the run's [`Gauge`]s, and notes
//! (one line each) above them.
//!
//! The bars are drawn with `indicatif` only when stderr is a terminal; otherwise (CI, a
//! test, `2> file`) they are hidden and the notes are plain stderr lines, so a log keeps
//! the story of the run. Nothing is ever written to stdout: its last line is the JSON
//! report.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio::task::JoinHandle;

use super::sampling::Gauge;

/// How often bars catch up with their gauges.
const REFRESH: Duration = Duration::from_millis(100);

/// A bar with a total: label, bar, count of total, elapsed.
const BAR: &str = "{prefix:>22} [{bar:32}] {pos}/{len} {elapsed}";
/// A bar without a total: label, count, rate (whole per second), elapsed.
const COUNTER: &str = "{prefix:>22} {pos} ({rate}) {elapsed}";

/// The progress display of one run.
#[derive(Debug)]
pub struct Progress {
    multi: MultiProgress,
    /// Whether notes are written (not by [`Progress::hidden`]).
    notes: bool,
    /// The bars being drawn, each with the gauge it follows.
    following: Arc<Mutex<Vec<Followed>>>,
    /// Bars finished: kept until the end so that they stay drawn (a bar dropped
    /// leaves the display).
    finished: Mutex<Vec<ProgressBar>>,
    refresher: JoinHandle<()>,
}

/// A bar and the gauge it follows.
#[derive(Debug)]
struct Followed {
    id: usize,
    gauge: Gauge,
    bar: ProgressBar,
}

/// A bar of a [`Progress`], to finish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar(usize);

impl Progress {
    /// On stderr (bars hidden when stderr is not a terminal, notes written anyway).
    pub fn new() -> Progress {
        Progress::to(ProgressDrawTarget::stderr(), true)
    }

    /// Drawn nowhere, notes included (unit tests).
    pub fn hidden() -> Progress {
        Progress::to(ProgressDrawTarget::hidden(), false)
    }

    fn to(target: ProgressDrawTarget, notes: bool) -> Progress {
        let following: Arc<Mutex<Vec<Followed>>> = Arc::default();
        let refresher = {
            let following = following.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REFRESH);
                loop {
                    tick.tick().await;
                    for followed in lock(&following).iter() {
                        followed.bar.set_position(followed.gauge.get());
                    }
                }
            })
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            notes,
            following,
            finished: Mutex::default(),
            refresher,
        }
    }

    /// One line above the bars (a plain stderr line when they are hidden).
    pub fn note(&self, line: impl AsRef<str>) {
        if self.notes {
            self.multi.suspend(|| eprintln!("{}", line.as_ref()));
        }
    }

    /// A bar that follows `gauge` up to `total`.
    pub fn bar(&self, label: &str, gauge: &Gauge, total: u64) -> Bar {
        self.follow(label, gauge, ProgressBar::new(total), BAR)
    }

    /// A count without a total (messages sent) with its rate.
    pub fn counter(&self, label: &str, gauge: &Gauge) -> Bar {
        self.follow(label, gauge, ProgressBar::no_length(), COUNTER)
    }

    fn follow(&self, label: &str, gauge: &Gauge, bar: ProgressBar, template: &str) -> Bar {
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
                let _ = write!(out, "{:.0}/s", state.per_sec());
            })
            .progress_chars("=> ");
        let bar = self
            .multi
            .add(bar.with_style(style).with_prefix(label.to_owned()));
        bar.set_position(gauge.get());
        let mut following = lock(&self.following);
        let id = following.iter().map(|f| f.id + 1).max().unwrap_or(0);
        following.push(Followed {
            id,
            gauge: gauge.clone(),
            bar,
        });
        Bar(id)
    }

    /// Stops `bar` at its gauge's value and leaves it drawn.
    pub fn finish(&self, bar: Bar) {
        let mut following = lock(&self.following);
        if let Some(at) = following.iter().position(|f| f.id == bar.0) {
            let bar = following.remove(at).finish();
            lock(&self.finished).push(bar);
        }
    }
}

impl Followed {
    fn finish(self) -> ProgressBar {
        self.bar.set_position(self.gauge.get());
        self.bar.finish();
        self.bar
    }
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.refresher.abort();
        for followed in lock(&self.following).drain(..) {
            followed.finish();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bars_follow_their_gauges_and_finish_at_their_value() {
        let progress = Progress::hidden();
        let (paired, sent) = (Gauge::new("paired"), Gauge::new("sent"));
        let first = progress.bar("devices paired", &paired, 10);
        let second = progress.counter("messages sent", &sent);
        assert_ne!(first, second);
        paired.set(10);
        sent.add(7);
        progress.finish(first);
        let bars: Vec<u64> = lock(&progress.following)
            .iter()
            .map(|f| f.bar.position())
            .collect();
        assert_eq!(bars.len(), 1, "the finished bar is no longer followed");
        progress.note("a note nobody sees");
    }
}
