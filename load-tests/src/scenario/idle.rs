//! `wafleet-load idle --devices N`: creates N devices in one standalone process,
//! pairs them all through the simulator, and measures resident memory per idle READY
//! device (on top of the empty process) and the time to start and pair them. With
//! `--restart`, it then kills the process and times until every device is READY again;
//! the plot shows devices READY over the whole run, across the restart.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;

use super::Report;
use super::pairing::{PairingSite, scan_patiently};
use super::plot::{self, Chart, Shape};
use super::process::Standalone;
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};

/// Options of the idle scenario.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub devices: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The `wafleet` binary to run.
    pub wafleet: PathBuf,
    /// Give up after this long.
    pub timeout: Duration,
    /// Then `kill -9` the process, start it again on the same data folder, and measure
    /// until every device is READY again.
    pub restart: bool,
    /// Where to write the plot of the run (SVG); `None`: no plot.
    pub plot: Option<PathBuf>,
}

pub async fn run(options: IdleOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    let ready_count = Gauge::new("ready");
    let sampler = Sampler::start(&[&ready_count]);
    let data = tempfile::tempdir()?;
    let app = Arc::new(Standalone::start(&options.wafleet, data.path()).await?);
    let deadline = Instant::now() + options.timeout;
    app.get_json("/v1/devices?limit=1").await?;
    let rss_empty = app.rss_kib()?;

    let mut events = Box::pin(app.events(false).await?);
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.devices {
        let (app, gate) = (app.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let id = device_id(i);
            app.post("/v1/devices", &json!({"id": id, "name": id}), 201)
                .await?;
            app.post(&format!("/v1/devices/{id}/start"), &json!({}), 202)
                .await?;
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let created = started.elapsed();
    progress.note(format!(
        "created and started {} devices in {:.1}s",
        options.devices,
        created.as_secs_f64()
    ));
    let pairing = progress.bar("devices READY", &ready_count, options.devices as u64);

    // Scan each device's first QR code (again with its current one if it expired
    // first); count READY devices.
    let mut scans = tokio::task::JoinSet::new();
    let mut rescans = 0u32;
    let mut scanned = HashSet::new();
    let mut ready = HashSet::new();
    while ready.len() < options.devices {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} devices READY before the timeout",
                ready.len(),
                options.devices
            );
        }
        let Ok(next) = tokio::time::timeout(Duration::from_secs(10), events.next()).await else {
            bail!(
                "no event for 10 s with {} of {} READY",
                ready.len(),
                options.devices
            );
        };
        let (kind, data) = next.context("event stream ended")?;
        let device = data["device_id"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "qr" if scanned.insert(device.clone()) => {
                let index: usize = device.trim_start_matches("idle-").parse().unwrap_or(0);
                let phone = format!("62850{index:08}");
                let code = data["code"].as_str().unwrap_or_default().to_owned();
                let (app, gate) = (app.clone(), gate.clone());
                scans.spawn(async move {
                    let _permit = gate.acquire_owned().await?;
                    // The simulator runs in the standalone process: one address for both.
                    let site = PairingSite {
                        api: &app.base,
                        sim: &app.base,
                    };
                    scan_patiently(&app.http, site, &device, &code, &phone).await
                });
            }
            "status" if data["status"] == "READY" => {
                ready.insert(device);
                ready_count.set(ready.len() as u64);
            }
            _ => {}
        }
        while let Some(result) = scans.try_join_next() {
            rescans += result??;
        }
    }
    let paired = started.elapsed();
    progress.finish(pairing);
    progress.note(format!(
        "{} devices READY in {:.1}s",
        options.devices,
        paired.as_secs_f64()
    ));
    drop(events);
    // Let the process settle (buffers of the burst returned, idle state reached).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_ready = app.rss_kib()?;
    let counts = app.get_json("/v1/devices?limit=1").await?;
    let per_device = (rss_ready.saturating_sub(rss_empty)) as f64 * 1024.0 / options.devices as f64;

    let mut report = Report::default();
    report.line(format!(
        "idle: {} devices READY, {:.1}s to create+start, {:.1}s to create+start+pair",
        options.devices,
        created.as_secs_f64(),
        paired.as_secs_f64()
    ));
    report.line(format!(
        "resident memory: empty {} KiB, with devices {} KiB, {:.1} KB per device",
        rss_empty,
        rss_ready,
        per_device / 1000.0
    ));
    report.field("scenario", "idle");
    report.field("devices", options.devices);
    report.field("ready", counts["counts"]["READY"].clone());
    report.field("create_start_s", round(created.as_secs_f64()));
    report.field("create_start_pair_s", round(paired.as_secs_f64()));
    report.field("qr_rescans", rescans);
    report.field("rss_empty_kib", rss_empty);
    report.field("rss_ready_kib", rss_ready);
    report.field("bytes_per_device", per_device.round());
    drop(tasks);
    drop(scans);
    let app = Arc::try_unwrap(app).map_err(|_| anyhow::anyhow!("process still shared"))?;
    if options.restart {
        let run = Restart {
            options: &options,
            data: data.path(),
            progress: &progress,
            sampler: &sampler,
            ready_count: &ready_count,
        };
        run.measure(app, &mut report).await?;
    } else {
        app.kill().await;
    }
    let timeline = sampler.finish();
    if let Some(path) = &options.plot {
        let chart = Chart::of_timeline(
            "devices READY",
            "devices",
            &timeline,
            &[("ready", "devices READY", Shape::Level)],
        );
        let title = format!("wafleet-load idle: {} devices, standalone", options.devices);
        plot::attach(&mut report, path, &title, &[chart])?;
    }
    Ok(report)
}

/// What the restart needs of the run.
struct Restart<'a> {
    options: &'a IdleOptions,
    data: &'a std::path::Path,
    progress: &'a Progress,
    sampler: &'a Sampler,
    ready_count: &'a Gauge,
}

impl Restart<'_> {
    /// `kill -9`, start again on the same data, wait until every device is READY.
    async fn measure(&self, app: Standalone, report: &mut Report) -> anyhow::Result<()> {
        let options = self.options;
        let pairings_before = sim_pairings(&app).await?;
        app.kill().await;
        let killed = Instant::now();
        self.sampler.mark("kill -9, restart");
        self.ready_count.set(0);
        let bar = self
            .progress
            .bar("READY again", self.ready_count, options.devices as u64);
        let app = Standalone::start(&options.wafleet, self.data).await?;
        let mut events = Box::pin(app.events(true).await?);
        let mut ready = HashSet::new();
        while ready.len() < options.devices {
            let Ok(next) = tokio::time::timeout(Duration::from_secs(30), events.next()).await
            else {
                bail!(
                    "after restart only {} of {} READY",
                    ready.len(),
                    options.devices
                );
            };
            let (kind, data) = next.context("event stream ended")?;
            if kind == "status" && data["status"] == "READY" {
                ready.insert(data["device_id"].as_str().unwrap_or_default().to_owned());
                self.ready_count.set(ready.len() as u64);
            }
        }
        let recovered = killed.elapsed();
        self.progress.finish(bar);
        let new_pairings = sim_pairings(&app).await? - pairings_before;
        report.line(format!(
            "kill -9 and restart: all {} devices READY again {:.2}s after the kill, {} new pairings",
            options.devices,
            recovered.as_secs_f64(),
            new_pairings
        ));
        report.field("restart_all_ready_s", round(recovered.as_secs_f64()));
        report.field("restart_new_pairings", new_pairings);
        app.kill().await;
        Ok(())
    }
}

async fn sim_pairings(app: &Standalone) -> anyhow::Result<i64> {
    let stats: serde_json::Value = app
        .http
        .get(app.url("/sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    stats["pairings"]
        .as_i64()
        .context("no pairings in /sim/stats")
}

fn device_id(i: usize) -> String {
    format!("idle-{i:06}")
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
