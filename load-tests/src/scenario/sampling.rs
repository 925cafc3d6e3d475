//! The time series every scenario collects while it runs: [`Gauge`]s that the scenario's
//! tasks bump or set (devices READY, messages accepted, receipts seen), read together by
//! a [`Sampler`] every [`SAMPLE_PERIOD`] into a [`Timeline`], which the plot
//! ([`super::plot`]) draws and the progress bars ([`super::progress`]) follow.
//!
//! A gauge is a plain atomic: bumping one costs what an `AtomicU64::fetch_add` costs,
//! so the hot paths (one bump per message) pay nothing for the sampling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// How often a [`Sampler`] reads its gauges.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(100);

/// A named count or level that tasks update and a [`Sampler`] reads. Clones share it.
#[derive(Debug, Clone)]
pub struct Gauge {
    name: Arc<str>,
    value: Arc<AtomicU64>,
}

impl Gauge {
    /// A gauge at 0, called `name` in the timeline and on the plot.
    pub fn new(name: &str) -> Gauge {
        Gauge {
            name: name.into(),
            value: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds `n` (a counter).
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets it (a level).
    pub fn set(&self, value: u64) {
        self.value.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// What a run's gauges read over time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Seconds from the sampler's start of each sample, increasing.
    pub times: Vec<f64>,
    /// Each gauge's name and its value at each of `times`.
    pub series: Vec<(String, Vec<u64>)>,
    /// Moments worth a vertical line on a plot (a kill, a restart): seconds, label.
    pub marks: Vec<(f64, String)>,
}

impl Timeline {
    /// A timeline of these gauges, without samples yet.
    fn of(gauges: &[Gauge]) -> Timeline {
        Timeline {
            times: Vec::new(),
            series: gauges
                .iter()
                .map(|g| (g.name().to_owned(), Vec::new()))
                .collect(),
            marks: Vec::new(),
        }
    }

    fn sample(&mut self, at: f64, gauges: &[Gauge]) {
        self.times.push(at);
        for ((_, values), gauge) in self.series.iter_mut().zip(gauges) {
            values.push(gauge.get());
        }
    }

    fn values(&self, name: &str) -> Option<&[u64]> {
        self.series
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Gauge `name` as (seconds, value) points; none if there is no such gauge.
    pub fn level(&self, name: &str) -> Vec<(f64, f64)> {
        self.values(name)
            .map(|values| {
                self.times
                    .iter()
                    .zip(values)
                    .map(|(t, v)| (*t, *v as f64))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How fast counter `name` grew, per second, over the `window` before each sample
    /// (over what there is at the start).
    pub fn per_second(&self, name: &str, window: Duration) -> Vec<(f64, f64)> {
        let Some(values) = self.values(name) else {
            return Vec::new();
        };
        let window = window.as_secs_f64();
        let mut from = 0;
        let mut points = Vec::with_capacity(values.len());
        for (i, (&t, &v)) in self.times.iter().zip(values).enumerate() {
            while self.times[from] < t - window {
                from += 1;
            }
            let span = t - self.times[from];
            let rate = if span > 0.0 {
                v.saturating_sub(values[from]) as f64 / span
            } else {
                0.0
            };
            if i > 0 {
                points.push((t, rate));
            }
        }
        points
    }

    /// Adds a counter `name` of events known only afterwards (arrivals read from the
    /// phones' inboxes), from the seconds at which each happened: its value at each
    /// sample is how many had happened by then.
    pub fn add_events(&mut self, name: &str, mut times: Vec<f64>) {
        times.sort_by(f64::total_cmp);
        let mut happened = 0;
        let values = self
            .times
            .iter()
            .map(|t| {
                while happened < times.len() && times[happened] <= *t {
                    happened += 1;
                }
                happened as u64
            })
            .collect();
        self.series.push((name.to_owned(), values));
    }

    /// The last value of gauge `name`.
    pub fn last(&self, name: &str) -> Option<u64> {
        self.values(name).and_then(|v| v.last().copied())
    }
}

/// Reads a set of gauges every [`SAMPLE_PERIOD`] from its start until [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    started: Instant,
    gauges: Vec<Gauge>,
    timeline: Arc<Mutex<Timeline>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `gauges` now (a first sample at 0 s).
    pub fn start(gauges: &[&Gauge]) -> Sampler {
        let gauges: Vec<Gauge> = gauges.iter().map(|g| (*g).clone()).collect();
        let started = Instant::now();
        let timeline = Arc::new(Mutex::new(Timeline::of(&gauges)));
        let task = {
            let (gauges, timeline) = (gauges.clone(), timeline.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_PERIOD);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let at = started.elapsed().as_secs_f64();
                    lock(&timeline).sample(at, &gauges);
                }
            })
        };
        Sampler {
            started,
            gauges,
            timeline,
            task,
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Notes that `label` happens now (drawn as a vertical line).
    pub fn mark(&self, label: &str) {
        let at = self.elapsed();
        lock(&self.timeline).marks.push((at, label.to_owned()));
    }

    /// Stops, with a last sample now.
    pub fn finish(self) -> Timeline {
        self.task.abort();
        let mut timeline = lock(&self.timeline).clone();
        timeline.sample(self.started.elapsed().as_secs_f64(), &self.gauges);
        timeline
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The timeline, even if a sampling task panicked while holding it (it cannot leave
/// it half written: a sample is pushed whole or not at all, as far as readers care).
fn lock(timeline: &Mutex<Timeline>) -> std::sync::MutexGuard<'_, Timeline> {
    timeline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(times: &[f64], values: &[u64]) -> Timeline {
        Timeline {
            times: times.to_vec(),
            series: vec![("n".to_owned(), values.to_vec())],
            marks: Vec::new(),
        }
    }

    #[test]
    fn per_second_is_the_growth_over_the_window_before_each_sample() {
        let t = timeline(
            &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
            &[0, 50, 100, 100, 100, 400],
        );
        let rates = t.per_second("n", Duration::from_secs(1));
        assert_eq!(
            rates,
            vec![
                (0.5, 100.0),
                (1.0, 100.0),
                (1.5, 50.0),
                (2.0, 0.0),
                (2.5, 300.0)
            ]
        );
        assert!(t.per_second("other", Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn events_known_afterwards_count_up_at_the_samples() {
        let mut t = timeline(&[0.0, 1.0, 2.0], &[0, 0, 0]);
        t.add_events("arrived", vec![1.5, 0.2, 1.0, 9.0]);
        assert_eq!(t.level("arrived"), vec![(0.0, 0.0), (1.0, 2.0), (2.0, 3.0)]);
    }

    #[test]
    fn level_pairs_times_and_values() {
        let t = timeline(&[0.0, 0.1], &[3, 4]);
        assert_eq!(t.level("n"), vec![(0.0, 3.0), (0.1, 4.0)]);
        assert_eq!(t.last("n"), Some(4));
        assert!(t.level("other").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sampler_reads_every_gauge_every_period_and_keeps_marks() {
        let (ready, sent) = (Gauge::new("ready"), Gauge::new("sent"));
        let sampler = Sampler::start(&[&ready, &sent]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        ready.set(5);
        sent.add(2);
        sent.add(1);
        sampler.mark("kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let timeline = sampler.finish();
        // Samples at 0, 100, 200, 300 ms, and the last one at finish.
        assert_eq!(timeline.times.len(), 5, "{timeline:?}");
        assert_eq!(timeline.level("ready").first(), Some(&(0.0, 0.0)));
        assert_eq!(timeline.last("ready"), Some(5));
        assert_eq!(timeline.last("sent"), Some(3));
        assert_eq!(timeline.marks.len(), 1);
        assert_eq!(timeline.marks[0].1, "kill");
    }
}
