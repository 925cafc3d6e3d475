//! `wafleet-load routing`: the cost of the cluster's routing, measured side by side in
//! one run. The same calls go, interleaved one by one, to a standalone process and to a
//! gateway in front of three nodes (all on 127.0.0.1):
//! - `GET /v1/devices/{id}`: a gateway serves it from the store, like standalone;
//! - `POST /v1/devices/{id}/stop` on a stopped device (idempotent): a gateway routes it
//!   to the owning node's host over ractor_cluster and back.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use super::Report;
use super::cluster::LocalCluster;
use super::process::{ADMIN_KEY, Standalone};

/// Options of the routing scenario.
#[derive(Debug, Clone)]
pub struct RoutingOptions {
    pub devices: usize,
    pub requests: usize,
    pub wafleet: PathBuf,
}

pub async fn run(options: RoutingOptions) -> anyhow::Result<Report> {
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

    let mut report = Report::default();
    report.field("scenario", "routing");
    report.field("requests", options.requests);
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
    }
    drop(cluster);
    Ok(report)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
