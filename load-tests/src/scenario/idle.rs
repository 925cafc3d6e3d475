//! `wafleet-load idle --devices N`: creates N devices in one standalone process,
//! pairs them all, and measures resident memory per idle READY device (on top of the
//! empty process) and the time to start and pair them. With `--restart`, it then kills
//! the process and times until every device is READY again; the plot shows devices
//! READY over the whole run, across the restart.
//!
//! The devices are linked to the simulator inside the process (`--link sim`, the
//! default), or with `--link whatsapp` to a `wafleet-waserver` child through the real
//! link (whatsapp-rust; the process must be a test-chain build). `--compare-sim` runs
//! the same N on the simulator first, then on the real link, and reports both and
//! their ratio: the machine is noisy, so the two figures come from one run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::Report;
use super::pairing::{PairingSite, scan_patiently};
use super::plot::{self, Chart, Shape};
use super::process::{Standalone, await_quiet, cpu_seconds_of, unthrottle};
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};
use super::waserver::{Waserver, WaserverStats};

/// What a test build reports when a production build dialled the test server.
const REFUSED_CHAIN: &str = "certificate chain is not signed by WhatsApp";

/// Options of the idle scenario.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub devices: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The `wafleet` binary to run.
    pub wafleet: PathBuf,
    /// What the devices are linked to.
    pub link: IdleLink,
    /// With the real link: the same run on the simulator first, both reported.
    pub compare_sim: bool,
    /// Give up after this long (each link's run).
    pub timeout: Duration,
    /// How long the devices idle after the last READY before the process's memory is
    /// read (after pairing, and after the restart).
    pub settle: Duration,
    /// Then `kill -9` the process, start it again on the same data folder, and measure
    /// until every device is READY again.
    pub restart: bool,
    /// Where to write the plot of the run (SVG); `None`: no plot.
    pub plot: Option<PathBuf>,
}

/// What the devices of an idle run are linked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleLink {
    /// The simulator inside the standalone process (`--link sim`).
    Sim,
    /// The real link (whatsapp-rust) to a `wafleet-waserver` child.
    WhatsApp {
        /// The `wafleet-waserver` binary.
        waserver: PathBuf,
        /// The WhatsApp Web version the process pins (`WAFLEET_WHATSAPP_VERSION`).
        version: String,
    },
}

impl IdleLink {
    /// Its name in the report: `sim` or `whatsapp`.
    pub fn name(&self) -> &'static str {
        match self {
            IdleLink::Sim => "sim",
            IdleLink::WhatsApp { .. } => "whatsapp",
        }
    }

    /// How long the pairing may go without an event before the run gives up: after its
    /// scan, a real-link device waits up to 10 s for an app-state key before READY
    /// (whatsapp-rust's `KEY_SHARE_GRACE`), and uploads its pre-keys.
    fn quiet_limit(&self) -> Duration {
        match self {
            IdleLink::Sim => Duration::from_secs(10),
            IdleLink::WhatsApp { .. } => Duration::from_secs(60),
        }
    }
}

pub async fn run(options: IdleOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    let ready_count = Gauge::new("ready");
    let sampler = Sampler::start(&[&ready_count]);
    let run = Run {
        options: &options,
        progress: &progress,
        sampler: &sampler,
        ready_count: &ready_count,
    };
    let mut measured = Vec::new();
    if options.compare_sim && options.link != IdleLink::Sim {
        sampler.mark("simulated link");
        measured.push(run.measure(&IdleLink::Sim).await?);
        sampler.mark("real link");
        ready_count.set(0);
    }
    measured.push(run.measure(&options.link).await?);
    let mut report = report_of(options.devices, options.settle, &measured);
    let timeline = sampler.finish();
    if let Some(path) = &options.plot {
        let chart = Chart::of_timeline(
            "devices READY",
            "devices",
            &timeline,
            &[("ready", "devices READY", Shape::Level)],
        );
        let links: Vec<&str> = measured.iter().map(|m| m.link).collect();
        let title = format!(
            "wafleet-load idle: {} devices, standalone, link {}",
            options.devices,
            links.join(" then ")
        );
        plot::attach(&mut report, path, &title, &[chart])?;
    }
    Ok(report)
}

/// What one link's run measured.
#[derive(Debug, Clone, Default)]
struct Measured {
    link: &'static str,
    /// Devices READY by the process's own count at the end.
    ready: Value,
    created: Duration,
    paired: Duration,
    rescans: u32,
    rss_empty_kib: u64,
    rss_ready_kib: u64,
    /// From the last READY until the process was idle (memory is read after that).
    busy_after_ready: Duration,
    /// Where the pairing's time went.
    phases: Phases,
    /// CPU seconds the wafleet process spent from the first creation to the last READY.
    cpu_pairing_s: f64,
    /// The test server, on the real link.
    waserver: Option<WaserverFigures>,
    restart: Option<Restarted>,
}

impl Measured {
    fn bytes_per_device(&self, devices: usize) -> f64 {
        per_device(self.rss_empty_kib, self.rss_ready_kib, devices)
    }
}

/// The test server's side of a real-link run.
#[derive(Debug, Clone, Default)]
struct WaserverFigures {
    /// From the first creation until every device had uploaded its pre-keys.
    uploaded: Duration,
    rss_kib: u64,
    cpu_pairing_s: f64,
    stats: WaserverStats,
}

/// What the restart measured.
#[derive(Debug, Clone, Default)]
struct Restarted {
    all_ready: Duration,
    /// From the last READY until the process was idle (memory is read after that).
    busy_after_ready: Duration,
    new_pairings: u64,
    /// CPU seconds of the new process until every device was READY again (from its
    /// start, loading included), and of the test server meanwhile.
    cpu_s: f64,
    waserver_cpu_s: Option<f64>,
    /// When each device was READY again, after the kill: waves here are the connect
    /// gate (`[recovery] concurrency` devices dial at once and hold their slot until
    /// READY).
    ready_after_kill: Quantiles,
    /// Resident memory once every device is READY again: logins only, no pairing burst.
    rss_empty_kib: u64,
    rss_ready_kib: u64,
    /// Real link: handshakes by pattern and logins during the restart.
    handshakes: Option<Map<String, Value>>,
    logins: Option<u64>,
}

/// Per device, from its start: its first QR code, the scan answered (the phone's
/// pair-success signed by the device), READY. Quantiles over the devices.
#[derive(Debug, Clone, Default, PartialEq)]
struct Phases {
    /// Start requested → first QR code on the event stream.
    to_qr: Quantiles,
    /// Scan sent → answered (the device signed its identity).
    scan: Quantiles,
    /// Scan answered → READY.
    scanned_to_ready: Quantiles,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Quantiles {
    p50_s: f64,
    p90_s: f64,
    max_s: f64,
}

impl Quantiles {
    fn of(mut samples: Vec<Duration>) -> Quantiles {
        if samples.is_empty() {
            return Quantiles::default();
        }
        samples.sort();
        let at = |q: f64| {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            round(samples[index].as_secs_f64())
        };
        Quantiles {
            p50_s: at(0.5),
            p90_s: at(0.9),
            max_s: at(1.0),
        }
    }

    fn json(&self) -> Value {
        json!({"p50_s": self.p50_s, "p90_s": self.p90_s, "max_s": self.max_s})
    }
}

/// When each step of one device's pairing happened.
#[derive(Debug, Clone, Copy, Default)]
struct Timestamps {
    started: Option<Instant>,
    qr: Option<Instant>,
    scan_sent: Option<Instant>,
    scanned: Option<Instant>,
    ready: Option<Instant>,
}

impl Phases {
    fn of<'a>(devices: impl Iterator<Item = &'a Timestamps>) -> Phases {
        let (mut to_qr, mut scan, mut to_ready) = (Vec::new(), Vec::new(), Vec::new());
        let between =
            |a: Option<Instant>, b: Option<Instant>| Some(b?.saturating_duration_since(a?));
        for t in devices {
            to_qr.extend(between(t.started, t.qr));
            scan.extend(between(t.scan_sent, t.scanned));
            to_ready.extend(between(t.scanned, t.ready));
        }
        Phases {
            to_qr: Quantiles::of(to_qr),
            scan: Quantiles::of(scan),
            scanned_to_ready: Quantiles::of(to_ready),
        }
    }
}

/// What every link's run needs of the whole run.
struct Run<'a> {
    options: &'a IdleOptions,
    progress: &'a Progress,
    sampler: &'a Sampler,
    ready_count: &'a Gauge,
}

/// The process under measure and, on the real link, the test server it is linked to.
struct Target {
    app: Arc<Standalone>,
    waserver: Option<Waserver>,
}

impl Target {
    /// The control API that scans QR codes and counts pairings.
    fn sim_base(&self) -> &str {
        match &self.waserver {
            Some(server) => &server.base,
            // The simulator runs in the standalone process: one address for both.
            None => &self.app.base,
        }
    }

    async fn stats(&self) -> anyhow::Result<WaserverStats> {
        match &self.waserver {
            Some(server) => server.stats(&self.app.http).await,
            None => {
                let stats: Value = self
                    .app
                    .http
                    .get(self.app.url("/sim/stats"))
                    .send()
                    .await?
                    .json()
                    .await?;
                let pairings = stats["pairings"]
                    .as_u64()
                    .context("no pairings in /sim/stats")?;
                Ok(WaserverStats {
                    pairings,
                    ..WaserverStats::default()
                })
            }
        }
    }
}

/// Starts the standalone process on `data`, linked as `link` says (to `waserver` on the
/// real link), with the sending limits lifted.
async fn start_standalone(
    wafleet: &Path,
    data: &Path,
    link: &IdleLink,
    waserver: Option<&Waserver>,
) -> anyhow::Result<Standalone> {
    let app = match (link, waserver) {
        (IdleLink::WhatsApp { version, .. }, Some(server)) => {
            let link = format!("whatsapp={}", server.ws);
            let env = [("WAFLEET_WHATSAPP_VERSION", version.as_str())];
            Standalone::launch_with_env(wafleet, data, &link, &env).await?
        }
        _ => Standalone::launch(wafleet, data, "sim").await?,
    };
    unthrottle(&app.http, &app.base).await?;
    Ok(app)
}

/// The reason of a status event that says the process refused the test server's
/// certificate chain: it is not a test-chain build.
fn refused_chain(status: &Value) -> Option<String> {
    let text = status.to_string();
    text.contains(REFUSED_CHAIN).then(|| {
        status["reason"]
            .as_str()
            .map_or_else(|| REFUSED_CHAIN.to_owned(), str::to_owned)
    })
}

/// How to make a binary that accepts the test server.
fn not_a_test_build(wafleet: &Path, seen: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not a test-chain build: it refuses the test server ({seen}). Build one \
         with `cargo build --release --features test-chain --bin wafleet` (in its own \
         target folder, e.g. CARGO_TARGET_DIR=target/test-chain) and pass it with \
         --wafleet, or put it next to wafleet-load",
        wafleet.display()
    )
}

impl Run<'_> {
    async fn measure(&self, link: &IdleLink) -> anyhow::Result<Measured> {
        let options = self.options;
        let progress = self.progress;
        let waserver = match link {
            IdleLink::Sim => None,
            IdleLink::WhatsApp { waserver, .. } => Some(Waserver::start(waserver).await?),
        };
        let data = tempfile::tempdir()?;
        let app = start_standalone(&options.wafleet, data.path(), link, waserver.as_ref()).await?;
        let target = Target {
            app: Arc::new(app),
            waserver,
        };
        let app = &target.app;
        let deadline = Instant::now() + options.timeout;
        app.get_json("/v1/devices?limit=1").await?;
        let rss_empty = app.rss_kib()?;
        let pid = app.pid().context("wafleet has exited")?;
        let server_pid = target.waserver.as_ref().and_then(Waserver::pid);
        let cpu_before = cpu_seconds_of(pid)?;
        let server_cpu_before = server_pid.map(cpu_seconds_of).transpose()?;

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
                let start_sent = Instant::now();
                app.post(&format!("/v1/devices/{id}/start"), &json!({}), 202)
                    .await?;
                anyhow::Ok((id, start_sent))
            });
        }
        let mut times: HashMap<String, Timestamps> = HashMap::new();
        while let Some(result) = tasks.join_next().await {
            let (id, start_sent) = result??;
            times.entry(id).or_default().started = Some(start_sent);
        }
        let created = started.elapsed();
        progress.note(format!(
            "{} link: created and started {} devices in {:.1}s",
            link.name(),
            options.devices,
            created.as_secs_f64()
        ));
        let pairing = progress.bar("devices READY", self.ready_count, options.devices as u64);

        // Scan each device's first QR code (again with its current one if it expired
        // first); count READY devices.
        let mut scans = tokio::task::JoinSet::new();
        let mut rescans = 0u32;
        let mut ready = 0usize;
        let quiet = link.quiet_limit();
        while ready < options.devices {
            if Instant::now() > deadline {
                bail!(
                    "only {ready} of {} devices READY before the timeout",
                    options.devices
                );
            }
            let Ok(next) = tokio::time::timeout(quiet, events.next()).await else {
                if link != &IdleLink::Sim && times.values().all(|t| t.qr.is_none()) {
                    return Err(not_a_test_build(
                        &options.wafleet,
                        &format!("no QR code within {quiet:?}"),
                    ));
                }
                bail!(
                    "no event for {quiet:?} with {ready} of {} READY",
                    options.devices
                );
            };
            let (kind, data) = next.context("event stream ended")?;
            let device = data["device_id"].as_str().unwrap_or_default().to_owned();
            let now = Instant::now();
            match kind.as_str() {
                "qr" => {
                    let entry = times.entry(device.clone()).or_default();
                    if entry.qr.is_none() {
                        entry.qr = Some(now);
                        let index: usize = device.trim_start_matches("idle-").parse().unwrap_or(0);
                        let phone = format!("62850{index:08}");
                        let code = data["code"].as_str().unwrap_or_default().to_owned();
                        let (http, api, sim) = (
                            app.http.clone(),
                            app.base.clone(),
                            target.sim_base().to_owned(),
                        );
                        let gate = gate.clone();
                        scans.spawn(async move {
                            let _permit = gate.acquire_owned().await?;
                            let site = PairingSite {
                                api: &api,
                                sim: &sim,
                            };
                            let sent = Instant::now();
                            let rescans =
                                scan_patiently(&http, site, &device, &code, &phone).await?;
                            anyhow::Ok((device, rescans, sent, Instant::now()))
                        });
                    }
                }
                "status" if data["status"] == "READY" => {
                    let entry = times.entry(device).or_default();
                    if entry.ready.is_none() {
                        entry.ready = Some(now);
                        ready += 1;
                        self.ready_count.set(ready as u64);
                    }
                }
                "status" => {
                    if let Some(reason) = refused_chain(&data) {
                        return Err(not_a_test_build(&options.wafleet, &reason));
                    }
                }
                _ => {}
            }
            while let Some(result) = scans.try_join_next() {
                let (device, again, sent, answered) = result??;
                rescans += again;
                let entry = times.entry(device).or_default();
                entry.scan_sent = Some(sent);
                entry.scanned = Some(answered);
            }
        }
        while let Some(result) = scans.join_next().await {
            let (device, again, sent, answered) = result??;
            rescans += again;
            let entry = times.entry(device).or_default();
            entry.scan_sent = Some(sent);
            entry.scanned = Some(answered);
        }
        let paired = started.elapsed();
        let cpu_pairing_s = cpu_seconds_of(pid)? - cpu_before;
        let server_cpu = server_pid
            .zip(server_cpu_before)
            .map(|(pid, before)| Ok::<_, anyhow::Error>(cpu_seconds_of(pid)? - before))
            .transpose()?;
        progress.finish(pairing);
        progress.note(format!(
            "{} link: {} devices READY in {:.1}s",
            link.name(),
            options.devices,
            paired.as_secs_f64()
        ));
        drop(events);
        // On the real link a device uploads its pre-keys after it is READY (whatsapp-rust
        // runs that as a passive task, and 1,000 devices' 812 keys each queue on the
        // store for a while): the memory is read, and the process killed, once every
        // device has, in the state a linked device stays in.
        let uploaded = match &target.waserver {
            Some(server) => {
                server
                    .await_prekey_uploads(
                        progress,
                        &app.http,
                        options.devices as u64,
                        deadline.saturating_duration_since(Instant::now()),
                    )
                    .await?;
                Some(started.elapsed())
            }
            None => None,
        };
        await_quiet(pid, deadline.saturating_duration_since(Instant::now())).await?;
        let busy_after_ready = started.elapsed().saturating_sub(paired);
        // Let the process settle (buffers of the burst returned, idle state reached).
        tokio::time::sleep(options.settle).await;
        let rss_ready = app.rss_kib()?;
        let counts = app.get_json("/v1/devices?limit=1").await?;
        let waserver = match &target.waserver {
            Some(server) => Some(WaserverFigures {
                uploaded: uploaded.unwrap_or_default(),
                rss_kib: server.rss_kib()?,
                cpu_pairing_s: server_cpu.unwrap_or_default(),
                stats: target.stats().await?,
            }),
            None => None,
        };
        let mut measured = Measured {
            link: link.name(),
            busy_after_ready,
            ready: counts["counts"]["READY"].clone(),
            created,
            paired,
            rescans,
            rss_empty_kib: rss_empty,
            rss_ready_kib: rss_ready,
            phases: Phases::of(times.values()),
            cpu_pairing_s,
            waserver,
            restart: None,
        };
        progress.note(format!(
            "{} link: {:.1} KB per READY device",
            link.name(),
            measured.bytes_per_device(options.devices) / 1000.0
        ));
        drop(tasks);
        drop(scans);
        if options.restart {
            measured.restart = Some(self.restart(target, data.path(), link).await?);
        } else {
            let Target { app, waserver } = target;
            kill(app).await?;
            drop(waserver);
        }
        Ok(measured)
    }

    /// `kill -9`, start again on the same data, wait until every device is READY.
    async fn restart(
        &self,
        target: Target,
        data: &Path,
        link: &IdleLink,
    ) -> anyhow::Result<Restarted> {
        let options = self.options;
        let before = target.stats().await?;
        let Target { app, waserver } = target;
        kill(app).await?;
        let killed = Instant::now();
        let server_pid = waserver.as_ref().and_then(Waserver::pid);
        let server_cpu_before = server_pid.map(cpu_seconds_of).transpose()?;
        self.sampler.mark("kill -9, restart");
        self.ready_count.set(0);
        let bar = self
            .progress
            .bar("READY again", self.ready_count, options.devices as u64);
        let app = start_standalone(&options.wafleet, data, link, waserver.as_ref()).await?;
        let rss_empty = app.rss_kib()?;
        let target = Target {
            app: Arc::new(app),
            waserver,
        };
        let mut events = Box::pin(target.app.events(true).await?);
        let mut ready = HashMap::new();
        let deadline = killed + options.timeout;
        let quiet = link.quiet_limit().max(Duration::from_secs(30));
        while ready.len() < options.devices {
            let next = tokio::time::timeout(quiet, events.next()).await;
            let Ok(next) = next else {
                bail!(
                    "after restart no event for {quiet:?} with {} of {} READY",
                    ready.len(),
                    options.devices
                );
            };
            if Instant::now() > deadline {
                bail!(
                    "after restart only {} of {} READY before the timeout",
                    ready.len(),
                    options.devices
                );
            }
            let (kind, data) = next.context("event stream ended")?;
            if kind == "status" && data["status"] == "READY" {
                let device = data["device_id"].as_str().unwrap_or_default().to_owned();
                ready.entry(device).or_insert_with(|| killed.elapsed());
                self.ready_count.set(ready.len() as u64);
            }
        }
        let all_ready = killed.elapsed();
        let cpu_s = cpu_seconds_of(target.app.pid().context("wafleet has exited")?)?;
        let waserver_cpu_s = server_pid
            .zip(server_cpu_before)
            .map(|(pid, before)| Ok::<_, anyhow::Error>(cpu_seconds_of(pid)? - before))
            .transpose()?;
        self.progress.finish(bar);
        drop(events);
        await_quiet(
            target.app.pid().context("wafleet has exited")?,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
        let busy_after_ready = killed.elapsed().saturating_sub(all_ready);
        tokio::time::sleep(options.settle).await;
        let rss_ready = target.app.rss_kib()?;
        let after = target.stats().await?;
        let restarted = Restarted {
            all_ready,
            busy_after_ready,
            new_pairings: after.pairings.saturating_sub(before.pairings),
            cpu_s,
            waserver_cpu_s,
            ready_after_kill: Quantiles::of(ready.into_values().collect()),
            rss_empty_kib: rss_empty,
            rss_ready_kib: rss_ready,
            handshakes: target
                .waserver
                .is_some()
                .then(|| after.handshakes_since(&before)),
            logins: target
                .waserver
                .is_some()
                .then(|| after.logins.saturating_sub(before.logins)),
        };
        let Target { app, waserver } = target;
        kill(app).await?;
        drop(waserver);
        Ok(restarted)
    }
}

async fn kill(app: Arc<Standalone>) -> anyhow::Result<()> {
    let app = Arc::try_unwrap(app).map_err(|_| anyhow::anyhow!("process still shared"))?;
    app.kill().await;
    Ok(())
}

/// The summary and JSON of the runs, the last being the main one: its fields unprefixed
/// (as a run on one link has them), an earlier simulator run's with `sim_`, and the
/// ratios of the two.
fn report_of(devices: usize, settle: Duration, measured: &[Measured]) -> Report {
    let mut report = Report::default();
    report.field("scenario", "idle");
    report.field("devices", devices);
    report.field("settle_s", round(settle.as_secs_f64()));
    let Some((main, earlier)) = measured.split_last() else {
        return report;
    };
    for m in earlier {
        describe(&mut report, devices, settle, m, &format!("{}_", m.link));
    }
    describe(&mut report, devices, settle, main, "");
    report.field("link", main.link);
    if let Some(sim) = earlier.iter().find(|m| m.link == "sim") {
        let memory = ratio(
            main.bytes_per_device(devices),
            sim.bytes_per_device(devices),
        );
        let pairing = ratio(main.paired.as_secs_f64(), sim.paired.as_secs_f64());
        report.line(format!(
            "{} link against the simulated one: ×{memory} memory per device, ×{pairing} time to pair",
            main.link
        ));
        report.field("ratio_bytes_per_device", memory);
        report.field("ratio_create_start_pair", pairing);
        if let (Some(a), Some(b)) = (&main.restart, &sim.restart) {
            let restart = ratio(a.all_ready.as_secs_f64(), b.all_ready.as_secs_f64());
            report.line(format!("×{restart} time to READY again after kill -9"));
            report.field("ratio_restart_all_ready", restart);
        }
    }
    report
}

/// One link's lines and fields, the fields named `{prefix}name`.
fn describe(report: &mut Report, devices: usize, settle: Duration, m: &Measured, prefix: &str) {
    let field = |report: &mut Report, name: &str, value: Value| {
        report.field(&format!("{prefix}{name}"), value);
    };
    let bytes_per_device = m.bytes_per_device(devices);
    report.line(format!(
        "idle ({} link): {} devices READY, {:.1}s to create+start, {:.1}s to create+start+pair",
        m.link,
        devices,
        m.created.as_secs_f64(),
        m.paired.as_secs_f64()
    ));
    report.line(format!(
        "  resident memory of wafleet: empty {} KiB, with devices {} KiB, {:.1} KB per device (read {:.0}s after the process was idle, which it was {:.1}s after the last READY)",
        m.rss_empty_kib,
        m.rss_ready_kib,
        bytes_per_device / 1000.0,
        settle.as_secs_f64(),
        m.busy_after_ready.as_secs_f64()
    ));
    report.line(format!(
        "  per device: start -> QR p50 {:.2}s p90 {:.2}s; scan answered p50 {:.2}s; scan -> READY p50 {:.2}s p90 {:.2}s max {:.2}s; wafleet CPU {:.1}s",
        m.phases.to_qr.p50_s,
        m.phases.to_qr.p90_s,
        m.phases.scan.p50_s,
        m.phases.scanned_to_ready.p50_s,
        m.phases.scanned_to_ready.p90_s,
        m.phases.scanned_to_ready.max_s,
        m.cpu_pairing_s
    ));
    field(report, "ready", m.ready.clone());
    field(
        report,
        "create_start_s",
        round(m.created.as_secs_f64()).into(),
    );
    field(
        report,
        "create_start_pair_s",
        round(m.paired.as_secs_f64()).into(),
    );
    field(report, "qr_rescans", m.rescans.into());
    field(report, "rss_empty_kib", m.rss_empty_kib.into());
    field(report, "rss_ready_kib", m.rss_ready_kib.into());
    field(report, "bytes_per_device", bytes_per_device.round().into());
    field(
        report,
        "busy_after_ready_s",
        round(m.busy_after_ready.as_secs_f64()).into(),
    );
    field(report, "start_to_qr", m.phases.to_qr.json());
    field(report, "scan", m.phases.scan.json());
    field(report, "scan_to_ready", m.phases.scanned_to_ready.json());
    field(report, "cpu_pairing_s", round(m.cpu_pairing_s).into());
    if let Some(server) = &m.waserver {
        report.line(format!(
            "  every device's pre-keys uploaded {:.1}s after the first creation",
            server.uploaded.as_secs_f64()
        ));
        field(
            report,
            "prekeys_all_uploaded_s",
            round(server.uploaded.as_secs_f64()).into(),
        );
        report.line(format!(
            "  test server: {} KiB resident, CPU {:.1}s, {} pairings, {} logins, {} pre-keys uploaded, {} unanswered stanza kinds",
            server.rss_kib,
            server.cpu_pairing_s,
            server.stats.pairings,
            server.stats.logins,
            server.stats.prekeys_uploaded,
            server.stats.unknown.len()
        ));
        field(report, "waserver_rss_kib", server.rss_kib.into());
        field(
            report,
            "waserver_cpu_pairing_s",
            round(server.cpu_pairing_s).into(),
        );
        field(report, "waserver_pairings", server.stats.pairings.into());
        field(report, "waserver_logins", server.stats.logins.into());
        field(
            report,
            "waserver_prekeys_uploaded",
            server.stats.prekeys_uploaded.into(),
        );
        field(
            report,
            "waserver_unknown",
            Value::Object(server.stats.unknown.clone()),
        );
    }
    if let Some(r) = &m.restart {
        let after = per_device(r.rss_empty_kib, r.rss_ready_kib, devices);
        report.line(format!(
            "  kill -9 and restart: all {} devices READY again {:.2}s after the kill (p50 {:.2}s, p90 {:.2}s), {} new pairings; then {} KiB resident, {:.1} KB per device",
            devices,
            r.all_ready.as_secs_f64(),
            r.ready_after_kill.p50_s,
            r.ready_after_kill.p90_s,
            r.new_pairings,
            r.rss_ready_kib,
            after / 1000.0
        ));
        field(
            report,
            "restart_busy_after_ready_s",
            round(r.busy_after_ready.as_secs_f64()).into(),
        );
        field(
            report,
            "restart_all_ready_s",
            round(r.all_ready.as_secs_f64()).into(),
        );
        field(report, "restart_new_pairings", r.new_pairings.into());
        field(report, "restart_cpu_s", round(r.cpu_s).into());
        field(
            report,
            "restart_ready_after_kill",
            r.ready_after_kill.json(),
        );
        field(report, "restart_rss_ready_kib", r.rss_ready_kib.into());
        field(report, "restart_bytes_per_device", after.round().into());
        if let (Some(handshakes), Some(logins)) = (&r.handshakes, r.logins) {
            let server_cpu = r.waserver_cpu_s.unwrap_or_default();
            report.line(format!(
                "  restart on the test server: handshakes {}, {} logins; CPU wafleet {:.1}s, test server {:.1}s",
                Value::Object(handshakes.clone()),
                logins,
                r.cpu_s,
                server_cpu
            ));
            field(report, "restart_waserver_cpu_s", round(server_cpu).into());
            field(
                report,
                "restart_handshakes",
                Value::Object(handshakes.clone()),
            );
            field(report, "restart_logins", logins.into());
        }
    }
}

/// Resident memory added per device, in bytes.
fn per_device(empty_kib: u64, ready_kib: u64, devices: usize) -> f64 {
    ready_kib.saturating_sub(empty_kib) as f64 * 1024.0 / devices.max(1) as f64
}

/// `a / b` to two decimals (0 when `b` is 0).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        0.0
    }
}

fn device_id(i: usize) -> String {
    format!("idle-{i:06}")
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(link: &'static str, rss_ready_kib: u64, paired_s: u64) -> Measured {
        Measured {
            link,
            ready: json!(100),
            created: Duration::from_secs(1),
            paired: Duration::from_secs(paired_s),
            rss_empty_kib: 10_000,
            rss_ready_kib,
            ..Measured::default()
        }
    }

    #[test]
    fn one_link_reports_unprefixed_fields_as_before() {
        let report = report_of(100, Duration::from_secs(2), &[run_of("sim", 14_000, 2)]);
        let f = &report.fields;
        assert_eq!(f["scenario"], "idle");
        assert_eq!(f["link"], "sim");
        assert_eq!(f["bytes_per_device"], json!(40960.0));
        assert_eq!(f["create_start_pair_s"], json!(2.0));
        assert!(!f.contains_key("ratio_bytes_per_device"));
        assert!(!f.contains_key("sim_bytes_per_device"));
        assert!(!f.contains_key("waserver_rss_kib"));
    }

    #[test]
    fn a_comparison_reports_the_simulator_prefixed_and_the_ratios() {
        let sim = run_of("sim", 14_000, 2);
        let mut real = run_of("whatsapp", 30_000, 30);
        real.waserver = Some(WaserverFigures {
            rss_kib: 50_000,
            ..WaserverFigures::default()
        });
        let report = report_of(100, Duration::from_secs(2), &[sim, real]);
        let f = &report.fields;
        assert_eq!(f["link"], "whatsapp");
        assert_eq!(f["sim_bytes_per_device"], json!(40960.0));
        assert_eq!(f["bytes_per_device"], json!(204800.0));
        assert_eq!(f["ratio_bytes_per_device"], json!(5.0));
        assert_eq!(f["ratio_create_start_pair"], json!(15.0));
        assert_eq!(f["waserver_rss_kib"], json!(50_000));
        assert!(!f.contains_key("sim_waserver_rss_kib"));
    }

    #[test]
    fn restarts_are_compared_too() {
        let mut sim = run_of("sim", 14_000, 2);
        sim.restart = Some(Restarted {
            all_ready: Duration::from_secs(2),
            ..Restarted::default()
        });
        let mut real = run_of("whatsapp", 30_000, 30);
        real.restart = Some(Restarted {
            all_ready: Duration::from_secs(5),
            handshakes: Some(Map::from_iter([("ik".to_owned(), json!(100))])),
            logins: Some(100),
            ..Restarted::default()
        });
        let f = report_of(100, Duration::from_secs(2), &[sim, real]).fields;
        assert_eq!(f["ratio_restart_all_ready"], json!(2.5));
        assert_eq!(f["restart_handshakes"], json!({"ik": 100}));
        assert_eq!(f["sim_restart_new_pairings"], json!(0));
        assert!(!f.contains_key("sim_restart_handshakes"));
    }

    #[test]
    fn a_production_builds_refusal_is_recognised_by_its_reason() {
        let refused = json!({
            "device_id": "idle-000000",
            "status": "DISCONNECTED",
            "reason": "WhatsApp's handshake with ws://127.0.0.1:9/ws was refused: the server's certificate chain is not signed by WhatsApp (is this a test server? only a test-chain build accepts one)"
        });
        let reason = refused_chain(&refused).unwrap();
        assert!(reason.starts_with("WhatsApp's handshake with ws://127.0.0.1:9/ws"));
        let error = not_a_test_build(Path::new("/bin/wafleet"), &reason).to_string();
        assert!(error.contains("--features test-chain"), "{error}");
        let other = json!({"device_id": "idle-000000", "status": "DISCONNECTED", "reason": "connect timed out"});
        assert_eq!(refused_chain(&other), None);
        assert_eq!(refused_chain(&json!({"status": "READY"})), None);
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let q = Quantiles::of((1..=10).map(Duration::from_secs).collect());
        assert_eq!((q.p50_s, q.p90_s, q.max_s), (6.0, 9.0, 10.0));
        assert_eq!(Quantiles::of(Vec::new()), Quantiles::default());
    }

    #[test]
    fn phases_skip_the_steps_a_device_did_not_show() {
        let t0 = Instant::now();
        let at = |s: u64| Some(t0 + Duration::from_secs(s));
        let full = Timestamps {
            started: at(0),
            qr: at(1),
            scan_sent: at(2),
            scanned: at(3),
            ready: at(13),
        };
        let no_scan = Timestamps {
            started: at(0),
            qr: at(2),
            ..Timestamps::default()
        };
        let phases = Phases::of([full, no_scan].iter());
        assert_eq!(phases.to_qr.max_s, 2.0);
        assert_eq!(phases.scan.p50_s, 1.0);
        assert_eq!(phases.scanned_to_ready.p50_s, 10.0);
    }
}
