//! `wafleet-load campaign --devices N --recipients M [--nodes K] [--per-minute P]`: one
//! job of M recipients over N devices, through a local cluster of K nodes (or one
//! standalone process with `--nodes 0`), with every trust level throttled to P sends a
//! minute, and (in a cluster) a rolling restart at 30 % of the job and a `kill -9` of
//! the node running the most job devices at 60 % (the killed node is started again).
//!
//! While the job runs, the driver reads `GET /v1/jobs/{id}` every 250 ms (its latency is
//! reported) and the resident memory of every wafleet process. At the end it reads every
//! recipient's simulated inbox:
//! - duration: from the job's creation to `completed`;
//! - lost: recipients whose inbox holds no message of the job; duplicated: messages
//!   beyond the first to a recipient;
//! - progress vs inboxes: the job's `sent` against the recipients reached;
//! - pace: per device, the most of its messages any phone got within a sliding 60 s
//!   (must not exceed P) and the shortest gap between two of them;
//! - create: how long `POST /v1/jobs` took (from sending the body, made beforehand, to
//!   the answer).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use wafleet_cluster_config::quota::MAX_PER_DAY;
use wafleet_cluster_config::{Quota, QuotaTable};

use super::Report;
use super::cluster::{COOKIE, LocalCluster, NodeProcess};
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Shape};
use super::process::{ADMIN_KEY, Standalone, rss_kib_of, sse_events};
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};
use super::sims::Network;
use super::throughput::{percentile, round};

/// Options of the campaign scenario.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    pub devices: usize,
    pub recipients: usize,
    /// Cluster nodes behind a gateway; 0: one standalone process.
    pub nodes: usize,
    /// Sends per device per minute, on every trust level.
    pub per_minute: u32,
    /// A rolling restart at 30 % and a `kill -9` at 60 % (clusters only).
    pub disrupt: bool,
    /// Stop after this long (the job is cancelled, the inboxes are not read): for jobs
    /// too large to wait for, to measure making them and running them a while.
    pub seconds: Option<u64>,
    pub wafleet: PathBuf,
    pub plot: Option<PathBuf>,
}

const DEVICE_PHONES: &str = "62856";
const RECIPIENT_PHONES: &str = "62857";

fn recipient_phone(n: usize) -> String {
    format!("{RECIPIENT_PHONES}{n:08}")
}

/// What the run is against: kept whole so nodes can be stopped and started again.
enum Running {
    Standalone {
        app: Box<Standalone>,
        _data: tempfile::TempDir,
    },
    Cluster(Box<Cluster>),
}

/// A [`LocalCluster`] with its simulators shared with the driver.
struct Cluster {
    dir: tempfile::TempDir,
    _redis: super::process::RedisServer,
    sims: Arc<super::sims::Sims>,
    plans: Vec<super::cluster::NodePlan>,
    nodes: Vec<NodeProcess>,
    gateway: super::cluster::GatewayProcess,
}

impl Cluster {
    fn names(&self) -> Vec<String> {
        self.plans.iter().map(|p| p.name.clone()).collect()
    }
}

impl Running {
    fn api(&self) -> String {
        match self {
            Running::Standalone { app, .. } => app.base.clone(),
            Running::Cluster(c) => c.gateway.base.clone(),
        }
    }

    fn network(&self) -> Network {
        match self {
            Running::Standalone { app, .. } => Network::One(app.base.clone()),
            Running::Cluster(c) => Network::Processes(c.sims.clone()),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Standalone { app, .. } => app.pid().into_iter().collect(),
            Running::Cluster(c) => c
                .nodes
                .iter()
                .filter_map(NodeProcess::pid)
                .chain(c.gateway.pid())
                .collect(),
        }
    }
}

/// Every trust level at `per_minute` sends a minute, spaced evenly, the hour and the
/// day as open as the rules allow.
fn throttled(per_minute: u32) -> anyhow::Result<QuotaTable> {
    let per_minute = per_minute.max(1);
    let per_hour = (per_minute * 60).min(MAX_PER_DAY);
    let level = Quota {
        per_minute,
        per_hour,
        per_day: MAX_PER_DAY,
        min_gap_ms: 60_000 / u64::from(per_minute),
        jitter_ms: 0,
        max_in_flight: 50,
    };
    let table = QuotaTable {
        newcomer: level,
        trusted: level,
        verified: level,
    };
    table.check()?;
    Ok(table)
}

pub async fn run(options: CampaignOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    let mut running = if options.nodes == 0 {
        let data = tempfile::tempdir()?;
        let app = Standalone::start(&options.wafleet, data.path()).await?;
        Running::Standalone {
            app: Box::new(app),
            _data: data,
        }
    } else {
        let LocalCluster {
            dir,
            redis,
            sims,
            plans,
            nodes,
            gateway,
        } = LocalCluster::start_with_sims(&options.wafleet, options.nodes, 1).await?;
        Running::Cluster(Box::new(Cluster {
            dir,
            _redis: redis,
            sims: Arc::new(sims),
            plans,
            nodes,
            gateway,
        }))
    };
    let api = running.api();
    let http = reqwest::Client::new();
    let set = http
        .put(format!("{api}/v1/settings/trust-levels"))
        .bearer_auth(ADMIN_KEY)
        .json(&throttled(options.per_minute)?)
        .send()
        .await?;
    anyhow::ensure!(
        set.status().is_success(),
        "PUT trust-levels: {}",
        set.status()
    );

    let ids: Vec<String> = (0..options.devices)
        .map(|i| format!("cmp-{i:04}"))
        .collect();
    let ready = Gauge::new("ready");
    let mut events = Box::pin(sse_events(&http, &format!("{api}/v1/events"), None).await?);
    let fleet = FleetPlan {
        api: api.clone(),
        network: running.network(),
        ids: ids.clone(),
        phone_prefix: DEVICE_PHONES.to_owned(),
        concurrency: 8,
    };
    pair_fleet_shown(&http, &fleet, &mut events, &ready, &progress).await?;
    drop(events);
    progress.note(format!("{} devices READY", ids.len()));

    // The job.
    let text = format!("campaign {}", unix_ms(SystemTime::now()));
    let recipients: Vec<Value> = (0..options.recipients)
        .map(|n| json!({"to": recipient_phone(n)}))
        .collect();
    // Memory before the job is made: what making it costs counts too.
    let mut rss_peak_kib: HashMap<u32, (u64, u64)> = running
        .pids()
        .into_iter()
        .filter_map(|pid| rss_kib_of(pid).ok().map(|kib| (pid, (kib, kib))))
        .collect();
    // The body is made before the clock starts: the time is the server's answer.
    let body = serde_json::to_vec(
        &json!({"name": "wafleet-load campaign", "devices": ids, "recipients": recipients, "text": text}),
    )?;
    drop(recipients);
    let created_at = Instant::now();
    let created = http
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(ADMIN_KEY)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let create_ms = created_at.elapsed().as_secs_f64() * 1e3;
    let status = created.status();
    let job: Value = created.json().await?;
    anyhow::ensure!(status.is_success(), "POST /v1/jobs: {status} {job}");
    let id = job["id"].as_str().context("job id")?.to_owned();
    progress.note(format!(
        "job {id} of {} recipients made in {create_ms:.0} ms",
        job["total"]
    ));

    let sent = Gauge::new("sent");
    let rss = Gauge::new("rss_mib");
    let sampler = Sampler::start(&[&sent, &rss]);
    let bar = progress.bar("recipients sent", &sent, options.recipients as u64);
    let expected_s = options.recipients as f64 * 60.0
        / (f64::from(options.per_minute.max(1)) * options.devices.max(1) as f64);
    let deadline = Instant::now() + Duration::from_secs_f64(expected_s * 3.0 + 180.0);
    let (mut restarted, mut killed) = (false, false);
    let mut get_ms = Vec::new();
    let last = loop {
        let asked = Instant::now();
        let now: Value = http
            .get(format!("{api}/v1/jobs/{id}"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map(|r| async { r.json().await })?
            .await
            .unwrap_or(Value::Null);
        get_ms.push(asked.elapsed().as_secs_f64() * 1e3);
        let done = now["sent"].as_u64().unwrap_or(0) + now["failed"].as_u64().unwrap_or(0);
        sent.set(done);
        let mut total_kib = 0;
        for pid in running.pids() {
            if let Ok(kib) = rss_kib_of(pid) {
                let entry = rss_peak_kib.entry(pid).or_insert((kib, kib));
                entry.1 = entry.1.max(kib);
                total_kib += kib;
            }
        }
        rss.set(total_kib / 1024);
        if now["status"] == "completed" {
            break now;
        }
        if options
            .seconds
            .is_some_and(|s| created_at.elapsed() >= Duration::from_secs(s))
        {
            let cancelled = http
                .post(format!("{api}/v1/jobs/{id}/cancel"))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await?;
            anyhow::ensure!(
                cancelled.status().is_success(),
                "cancel: {}",
                cancelled.status()
            );
            break cancelled.json().await?;
        }
        if Instant::now() > deadline {
            bail!("the job did not complete in time: {now}");
        }
        let share = done as f64 / options.recipients.max(1) as f64;
        if let (Running::Cluster(cluster), true) = (&mut running, options.disrupt) {
            if !restarted && share >= 0.3 {
                restarted = true;
                sampler.mark("rolling restart");
                rolling_restart(cluster, &options, &progress).await?;
            } else if restarted && !killed && share >= 0.6 {
                killed = true;
                sampler.mark("kill -9");
                kill_and_restart(cluster, &options, &progress).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    progress.finish(bar);
    let duration_s = created_at.elapsed().as_secs_f64();
    let timeline = sampler.finish();

    // Every inbox, read back (not after a run cut short).
    let network = running.network();
    let recipients_read = if options.seconds.is_some() {
        0
    } else {
        options.recipients
    };
    let mut reads = JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    for n in 0..recipients_read {
        let (http, network, gate, text) =
            (http.clone(), network.clone(), gate.clone(), text.clone());
        reads.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let inbox = network.inbox(&http, &recipient_phone(n)).await?;
            let ours: Vec<(String, i64)> = inbox
                .iter()
                .filter(|m| m["text"] == text.as_str())
                .map(|m| {
                    let at = m["at"]
                        .as_str()
                        .and_then(|at| humantime::parse_rfc3339(at).ok())
                        .map_or(0, unix_ms);
                    (m["from_phone"].as_str().unwrap_or_default().to_owned(), at)
                })
                .collect();
            anyhow::Ok(ours)
        });
    }
    let (mut reached, mut lost, mut duplicated) = (0u64, 0u64, 0u64);
    let mut by_device: HashMap<String, Vec<i64>> = HashMap::new();
    while let Some(read) = reads.join_next().await {
        let ours = read??;
        match ours.len() {
            0 => lost += 1,
            n => {
                reached += 1;
                duplicated += n as u64 - 1;
            }
        }
        for (from, at) in ours {
            by_device.entry(from).or_default().push(at);
        }
    }
    let mut max_per_minute = 0usize;
    let mut min_gap_ms = i64::MAX;
    let mut shares = Vec::new();
    for times in by_device.values_mut() {
        times.sort_unstable();
        shares.push(times.len());
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= 60_000 {
                start += 1;
            }
            max_per_minute = max_per_minute.max(end - start + 1);
            if end > 0 {
                min_gap_ms = min_gap_ms.min(times[end] - times[end - 1]);
            }
        }
    }
    shares.sort_unstable();
    get_ms.sort_by(f64::total_cmp);
    let rss_growth_mib = rss_peak_kib
        .values()
        .map(|(first, peak)| peak.saturating_sub(*first))
        .max()
        .unwrap_or(0) as f64
        / 1024.0;

    let job_sent = last["sent"].as_u64().unwrap_or(0);
    let mut report = Report::default();
    report.line(format!(
        "{} recipients over {} devices ({} nodes), {} sends/min per device: {:.1} s",
        options.recipients, options.devices, options.nodes, options.per_minute, duration_s
    ));
    if options.seconds.is_some() {
        report.line(format!(
            "cut short and cancelled: the job says sent {job_sent}, failed {}; inboxes not read",
            last["failed"]
        ));
    } else {
        report.line(format!(
            "reached {reached}, lost {lost}, duplicated {duplicated}; the job says sent {job_sent}, failed {}",
            last["failed"]
        ));
    }
    report.line(format!(
        "pace: at most {max_per_minute} messages of one device in any 60 s (quota {}), shortest gap {} ms; shares {shares:?}",
        options.per_minute,
        if min_gap_ms == i64::MAX { 0 } else { min_gap_ms }
    ));
    report.line(format!(
        "POST /v1/jobs {create_ms:.0} ms; GET /v1/jobs/{{id}} p50 {:.1} ms p99 {:.1} ms; largest RSS growth of a process {rss_growth_mib:.1} MiB",
        percentile(&get_ms, 0.5),
        percentile(&get_ms, 0.99)
    ));
    report.field("scenario", "campaign");
    report.field("devices", options.devices);
    report.field("recipients", options.recipients);
    report.field("nodes", options.nodes);
    report.field("per_minute", options.per_minute);
    report.field("disrupted", options.disrupt && options.nodes > 0);
    report.field("duration_s", round(duration_s));
    report.field("inboxes_read", recipients_read);
    report.field("reached", reached);
    report.field("lost", lost);
    report.field("duplicated", duplicated);
    report.field("job_sent", job_sent);
    report.field("job_failed", last["failed"].clone());
    report.field("max_per_minute_observed", max_per_minute);
    report.field(
        "min_gap_ms",
        if min_gap_ms == i64::MAX {
            0
        } else {
            min_gap_ms
        },
    );
    report.field("device_shares", json!(shares));
    report.field("create_ms", round(create_ms));
    report.field("get_p50_ms", round(percentile(&get_ms, 0.5)));
    report.field("get_p99_ms", round(percentile(&get_ms, 0.99)));
    report.field("rss_growth_mib", round(rss_growth_mib));
    if let Some(path) = &options.plot {
        let charts = [
            Chart::of_timeline(
                "recipients sent",
                "recipients/s",
                &timeline,
                &[("sent", "sent (or failed)", Shape::PerSecond)],
            ),
            Chart::of_timeline(
                "resident memory of the wafleet processes",
                "MiB",
                &timeline,
                &[("rss_mib", "RSS, all processes", Shape::Level)],
            ),
        ];
        plot::attach(&mut report, path, "wafleet-load campaign", &charts)?;
    }
    Ok(report)
}

/// SIGTERM to each node in turn, waiting for it to exit and starting it again.
async fn rolling_restart(
    cluster: &mut Cluster,
    options: &CampaignOptions,
    progress: &Progress,
) -> anyhow::Result<()> {
    let names = cluster.names();
    for i in 0..cluster.nodes.len() {
        let name = cluster.nodes[i].name.clone();
        progress.note(format!("rolling restart: SIGTERM to {name}"));
        cluster.nodes[i].signal("TERM")?;
        cluster.nodes[i].wait_exit(Duration::from_secs(30)).await?;
        cluster.nodes[i] = NodeProcess::start(
            &options.wafleet,
            cluster.dir.path(),
            &cluster.plans[i],
            COOKIE,
        )
        .await?;
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        for node in &mut cluster.nodes {
            node.wait_members(&all, Duration::from_secs(30)).await?;
        }
    }
    Ok(())
}

/// `kill -9` of the first node, then it is started again.
async fn kill_and_restart(
    cluster: &mut Cluster,
    options: &CampaignOptions,
    progress: &Progress,
) -> anyhow::Result<()> {
    let name = cluster.nodes[0].name.clone();
    progress.note(format!("kill -9 of {name}"));
    cluster.nodes[0].kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[0] = NodeProcess::start(
        &options.wafleet,
        cluster.dir.path(),
        &cluster.plans[0],
        COOKIE,
    )
    .await?;
    let names = cluster.names();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for node in &mut cluster.nodes {
        node.wait_members(&all, Duration::from_secs(30)).await?;
    }
    Ok(())
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
