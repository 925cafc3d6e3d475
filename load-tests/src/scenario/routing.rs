//! `wafleet-load routing`: the cost of the cluster's routing, measured side by side in
//! one run. The same calls go, interleaved one by one, to a standalone process and to a
//! gateway in front of three nodes (all on 127.0.0.1):
//! - `GET /v1/devices/{id}`: a gateway serves it from the store, like standalone;
//! - `POST /v1/devices/{id}/stop` on a stopped device (idempotent): a gateway routes it
//!   to the owning node's host over ractor_cluster and back.
//!
//! The plot shows each call's latency distribution on both, side by side.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use super::Report;
use super::cluster::LocalCluster;
use super::plot::{self, Chart, Line};
use super::process::{ADMIN_KEY, Standalone};
use super::progress::Progress;
use super::sampling::Gauge;

/// Options of the routing scenario.
#[derive(Debug, Clone)]
pub struct RoutingOptions {
    pub devices: usize,
    pub requests: usize,
    pub wafleet: PathBuf,
    /// Where to write the plot of the run (SVG); `None`: no plot.
    pub plot: Option<PathBuf>,
}

/// Points of a latency distribution drawn at most (a sorted sample is thinned to this).
const DISTRIBUTION_POINTS: usize = 400;

pub async fn run(options: RoutingOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    let standalone_dir = tempfile::tempdir()?;
    let cluster = LocalCluster::start(&options.wafleet, 3).await?;
    let gateway = &cluster.gateway;
    let standalone = Standalone::start(&options.wafleet, standalone_dir.path()).await?;
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..options.devices).map(|i| format!("rt-{i:04}")).collect();
    for base in [&gateway.base, &standalone.base] {
        for id in &ids {
            let response = http
                .post(format!("{base}/v1/devices"))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"id": id, "name": id}))
                .send()
                .await?;
            if response.status() != 201 {
                bail!("create {id} on {base}: {}", response.status());
            }
        }
    }

    progress.note(format!(
        "cluster (gateway {}) and standalone ({}) up, {} devices on each",
        gateway.base,
        standalone.base,
        ids.len()
    ));

    let mut report = Report::default();
    report.field("scenario", "routing");
    report.field("requests", options.requests);
    let done = Gauge::new("requests");
    let rounds = options.requests + options.requests / 10;
    let bar = progress.bar("requests", &done, 2 * 2 * rounds as u64);
    let mut charts = Vec::new();
    for (label, routed) in [("get_device", false), ("stop_routed", true)] {
        let mut times = [Vec::new(), Vec::new()];
        for n in 0..options.requests + options.requests / 10 {
            let id = &ids[n % ids.len()];
            // Alternate which process goes first, so neither always meets a warm cache.
            let order = if n % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let base = if which == 0 {
                    &gateway.base
                } else {
                    &standalone.base
                };
                let started = Instant::now();
                let response = if routed {
                    http.post(format!("{base}/v1/devices/{id}/stop"))
                        .bearer_auth(ADMIN_KEY)
                        .send()
                        .await?
                } else {
                    http.get(format!("{base}/v1/devices/{id}"))
                        .bearer_auth(ADMIN_KEY)
                        .send()
                        .await?
                };
                let status = response.status();
                response.bytes().await?;
                let took = started.elapsed();
                done.add(1);
                if !status.is_success() {
                    bail!("{label} on {base}: {status}");
                }
                // The first tenth warms connections and caches.
                if n >= options.requests / 10 {
                    times[which].push(took);
                }
            }
        }
        let [gateway_times, standalone_times] = times.map(|mut t| {
            t.sort();
            t
        });
        let pct = |t: &[Duration], p: f64| {
            t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1]
        };
        let (g50, g99) = (pct(&gateway_times, 0.5), pct(&gateway_times, 0.99));
        let (s50, s99) = (pct(&standalone_times, 0.5), pct(&standalone_times, 0.99));
        report.line(format!(
            "{label}: gateway p50 {:.3} ms p99 {:.3} ms; standalone p50 {:.3} ms p99 {:.3} ms; ratio p50 {:.2}, p99 {:.2}",
            ms(g50), ms(g99), ms(s50), ms(s99),
            ms(g50) / ms(s50), ms(g99) / ms(s99)
        ));
        report.field(&format!("{label}_gateway_p50_ms"), round(ms(g50)));
        report.field(&format!("{label}_gateway_p99_ms"), round(ms(g99)));
        report.field(&format!("{label}_standalone_p50_ms"), round(ms(s50)));
        report.field(&format!("{label}_standalone_p99_ms"), round(ms(s99)));
        report.field(&format!("{label}_ratio_p50"), round(ms(g50) / ms(s50)));
        report.field(&format!("{label}_ratio_p99"), round(ms(g99) / ms(s99)));
        // The tail past twice the slower p99 would squeeze the rest into a corner.
        let cut = 2.0 * ms(g99).max(ms(s99));
        charts.push(Chart {
            title: format!(
                "{label}: latency distribution (up to {cut:.1} ms, twice the slower p99)"
            ),
            x_label: "milliseconds".to_owned(),
            y_label: "% of requests at most".to_owned(),
            lines: vec![
                Line::new(
                    "gateway (3 nodes)",
                    cut_at(distribution(&gateway_times), cut),
                ),
                Line::new("standalone", cut_at(distribution(&standalone_times), cut)),
            ],
            marks: Vec::new(),
        });
    }
    progress.finish(bar);
    if let Some(path) = &options.plot {
        let title = format!(
            "wafleet-load routing: {} requests each, gateway vs standalone",
            options.requests
        );
        plot::attach(&mut report, path, &title, &charts)?;
    }
    drop(cluster);
    Ok(report)
}

/// The cumulative distribution of `sorted` latencies: (ms, % of requests at most that),
/// thinned to about [`DISTRIBUTION_POINTS`] points (the last one always kept).
fn distribution(sorted: &[Duration]) -> Vec<(f64, f64)> {
    let step = sorted.len().div_ceil(DISTRIBUTION_POINTS).max(1);
    let share = |i: usize| (i + 1) as f64 * 100.0 / sorted.len() as f64;
    let mut points: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, t)| (ms(*t), share(i)))
        .collect();
    if let Some(last) = sorted.last()
        && !(sorted.len() - 1).is_multiple_of(step)
    {
        points.push((ms(*last), 100.0));
    }
    points
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The points of a distribution up to `x`, ending at `x` with the share reached there.
fn cut_at(mut points: Vec<(f64, f64)>, x: f64) -> Vec<(f64, f64)> {
    if points.last().is_some_and(|last| last.0 > x) {
        points.retain(|point| point.0 <= x);
        let share = points.last().map_or(0.0, |last| last.1);
        points.push((x, share));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_rises_to_every_request_and_is_thinned() {
        let sorted: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let points = distribution(&sorted);
        assert!(points.len() <= DISTRIBUTION_POINTS + 1, "{}", points.len());
        let close =
            |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9;
        assert!(close(points[0], (0.001, 0.1)), "{:?}", points[0]);
        assert!(close(points[points.len() - 1], (1.0, 100.0)));
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1)
        );
        let one = distribution(&[Duration::from_millis(2)]);
        assert_eq!(one.len(), 1);
        assert!(close(one[0], (2.0, 100.0)));
        assert!(distribution(&[]).is_empty());
    }

    #[test]
    fn a_cut_distribution_ends_flat_at_the_cut() {
        let points = vec![(1.0, 50.0), (2.0, 90.0), (9.0, 100.0)];
        assert_eq!(
            cut_at(points.clone(), 3.0),
            vec![(1.0, 50.0), (2.0, 90.0), (3.0, 90.0)]
        );
        assert_eq!(cut_at(points.clone(), 9.0), points);
        assert_eq!(cut_at(points, 0.5), vec![(0.5, 0.0)]);
    }
}
