//! `wafleet-load webhooks --devices N [--nodes K] --rate R [--seconds S]`: durable
//! webhooks under load, through a receiver that fails for a while and a `kill -9`.
//!
//! A standalone process (`--nodes 0`, the default) or a local cluster; N devices paired,
//! each given a signed webhook of `message.inbound` to a receiver on 127.0.0.1
//! ([`Receiver`]). For S seconds simulated phones write R messages a second in all
//! (round-robin over the devices, each text `device:seq`), paced by the clock. The
//! receiver answers 200 except during a window that starts at 30 % of the run and lasts
//! `--fail-seconds` (it answers 500: deliveries are retried); in a cluster, the node
//! owning the most devices is `kill -9`ed at 60 % of the run. Then the driver waits for
//! the receiver to get every message written (up to [`DRAIN`], ending sooner when
//! nothing arrives for [`QUIET`]).
//!
//! - deliveries/s: events delivered (first 2xx of each) per second while the receiver
//!   is healthy before the failure window (at most R: the rate written), and the peak
//!   over any 1 s window of the run (the catch-up after the failure shows the capacity);
//! - latency p50/p99: from the event's `created_at` (when the node recorded it) to its
//!   arrival at the receiver (same machine clock, milliseconds), for events written in
//!   the healthy phase before the failure window;
//! - lost: written (the simulator answered 202) and never delivered; duplicated: 2xx
//!   deliveries of an event after its first (allowed by at-least-once; each must carry
//!   the first's id, `duplicated_other_id` counts those that do not); out of order: per
//!   device, first deliveries whose seq is below one delivered before;
//! - bad signatures: deliveries whose `X-Wafleet-Signature` did not verify.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Report;
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Line};
use super::process::{ADMIN_KEY, sse_events};
use super::progress::Progress;
use super::receiver::{Hit, Receiver};
use super::sampling::Gauge;
use super::target::Target;
use super::throughput::{percentile, round};

/// Options of the webhooks scenario.
#[derive(Debug, Clone)]
pub struct WebhooksOptions {
    pub devices: usize,
    /// Cluster nodes behind a gateway; 0: one standalone process.
    pub nodes: usize,
    /// Messages written per second, in all.
    pub rate: u32,
    pub seconds: u64,
    /// How long the receiver answers 500, from 30 % of the run.
    pub fail_seconds: u64,
    /// `kill -9` of a node at 60 % of the run (clusters only).
    pub kill: bool,
    pub wafleet: PathBuf,
    pub sims: Option<usize>,
    pub plot: Option<PathBuf>,
}

/// The longest wait for the last deliveries after the last message is written.
pub const DRAIN: Duration = Duration::from_secs(120);
/// The drain ends when nothing arrives for this long.
pub const QUIET: Duration = Duration::from_secs(20);
/// Messages written at once at most.
const IN_FLIGHT: usize = 256;
const SECRET: &str = "wafleet-load-webhook-secret";
const DEVICE_PHONES: &str = "62858";
const WRITER_PHONES: &str = "62859";

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One message written by a phone.
#[derive(Debug, Clone, Copy)]
struct Written {
    device: usize,
    seq: u64,
    at_ms: i64,
}

pub async fn run(options: WebhooksOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    let receiver = Receiver::start(Some(SECRET.as_bytes())).await?;
    let target = Target::start(
        &options.wafleet,
        options.nodes,
        options.devices,
        options.sims,
        &[("WAFLEET__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")],
        false,
    )
    .await?;
    let api = target.api().to_owned();
    let network = target.network();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()?;
    progress.note(format!("{} up, API {api}", target.describe()));
    let settings = http
        .put(format!("{api}/v1/settings/webhooks"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"base_delay_ms": 250, "max_delay_ms": 2_000, "max_attempts": 100, "timeout_ms": 5_000}))
        .send()
        .await?;
    anyhow::ensure!(
        settings.status().is_success(),
        "PUT settings: {}",
        settings.status()
    );

    let ids: Vec<String> = (0..options.devices).map(|i| format!("wh-{i:06}")).collect();
    let mut events = Box::pin(sse_events(&http, &format!("{api}/v1/events"), None).await?);
    let fleet = FleetPlan {
        api: api.clone(),
        network: network.clone(),
        ids: ids.clone(),
        phone_prefix: DEVICE_PHONES.to_owned(),
        concurrency: 32,
    };
    pair_fleet_shown(&http, &fleet, &mut events, &Gauge::new("ready"), &progress).await?;
    drop(events);
    let gate = Arc::new(Semaphore::new(32));
    let mut puts = JoinSet::new();
    for id in &ids {
        let (http, url, gate) = (
            http.clone(),
            format!("{api}/v1/devices/{id}/webhook"),
            gate.clone(),
        );
        let body = json!({"url": receiver.url, "secret": SECRET, "events": ["message.inbound"]});
        puts.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let response = http
                .put(&url)
                .bearer_auth(ADMIN_KEY)
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "PUT {url}: {}",
                response.status()
            );
            anyhow::Ok(())
        });
    }
    while let Some(done) = puts.join_next().await {
        done??;
    }
    progress.note(format!("{} webhooks set", ids.len()));

    // Writing, with the receiver failing for a while and a node killed.
    let total = options.rate as u64 * options.seconds;
    let run_time = Duration::from_secs(options.seconds);
    let fail_from = run_time.mul_f64(0.3);
    let fail_until = fail_from + Duration::from_secs(options.fail_seconds);
    let kill_at = run_time.mul_f64(0.6);
    let started = Instant::now();
    let started_ms = unix_ms(SystemTime::now());
    let written_gauge = Gauge::new("written");
    let bar = progress.bar("messages written", &written_gauge, total);
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut writes: JoinSet<anyhow::Result<Option<Written>>> = JoinSet::new();
    let (mut failing, mut killed) = (false, None::<String>);
    let mut target = target;
    let mut written = Vec::new();
    for k in 0..total {
        let due = started + Duration::from_secs_f64(k as f64 / f64::from(options.rate.max(1)));
        tokio::time::sleep_until(due).await;
        let elapsed = started.elapsed();
        if !failing && elapsed >= fail_from && elapsed < fail_until {
            receiver.set_failing(true);
            failing = true;
        } else if failing && elapsed >= fail_until {
            receiver.set_failing(false);
            failing = false;
        }
        if options.kill && killed.is_none() && elapsed >= kill_at {
            killed = kill_busiest(&mut target, &ids).await;
        }
        let device = (k % options.devices as u64) as usize;
        let seq = k / options.devices as u64;
        let url = format!(
            "{}/sim/phones/{WRITER_PHONES}{device:08}/send",
            network.base_for(&ids[device])
        );
        let body = json!({"to_phone": format!("{DEVICE_PHONES}{device:08}"), "text": format!("{device}:{seq}")});
        let (http, gate, gauge) = (http.clone(), gate.clone(), written_gauge.clone());
        writes.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let at_ms = unix_ms(SystemTime::now());
            let answer = http.post(&url).json(&body).send().await;
            gauge.add(1);
            Ok(match answer {
                Ok(response) if response.status().as_u16() == 202 => {
                    Some(Written { device, seq, at_ms })
                }
                _ => None,
            })
        });
        while let Some(done) = writes.try_join_next() {
            written.extend(done??);
        }
    }
    while let Some(done) = writes.join_next().await {
        written.extend(done??);
    }
    if failing {
        receiver.set_failing(false);
    }
    let write_time = started.elapsed();
    progress.finish(bar);
    let mut all_written: Vec<Written> = written;
    all_written.sort_by_key(|w| (w.device, w.seq));
    progress.note(format!(
        "{} of {total} messages written in {:.1}s; waiting for their deliveries",
        all_written.len(),
        write_time.as_secs_f64()
    ));

    // Drain: until every written message was delivered, or nothing arrives for QUIET.
    let wanted = all_written.len();
    let drain_started = Instant::now();
    let (mut last_count, mut last_change) = (receiver.count(), Instant::now());
    loop {
        let hits = receiver.delivered();
        if first_deliveries(&hits).len() >= wanted {
            break;
        }
        let count = receiver.count();
        if count != last_count {
            (last_count, last_change) = (count, Instant::now());
        }
        if last_change.elapsed() > QUIET || drain_started.elapsed() > DRAIN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hits = receiver.hits();

    // The figures.
    let delivered_hits: Vec<&Hit> = hits
        .iter()
        .filter(|h| (200..300).contains(&h.status))
        .collect();
    let firsts = first_deliveries(&receiver.delivered());
    let written_keys: HashMap<(usize, u64), &Written> =
        all_written.iter().map(|w| ((w.device, w.seq), w)).collect();
    let lost = written_keys
        .keys()
        .filter(|key| !firsts.contains_key(key))
        .count();
    let mut duplicated = 0usize;
    let mut duplicated_other_id = 0usize;
    let mut seen_id: HashMap<(usize, u64), &str> = HashMap::new();
    let mut out_of_order = 0usize;
    let mut highest: HashMap<usize, u64> = HashMap::new();
    let mut arrivals_by_second: BTreeMap<i64, u64> = BTreeMap::new();
    let mut healthy_latency = Vec::new();
    let mut healthy_delivered = 0usize;
    let fail_from_ms = started_ms + fail_from.as_millis() as i64;
    for hit in &delivered_hits {
        let Some(key) = key_of(hit) else { continue };
        match seen_id.get(&key) {
            Some(first) => {
                duplicated += 1;
                if *first != hit.event_id {
                    duplicated_other_id += 1;
                }
                continue;
            }
            None => {
                seen_id.insert(key, &hit.event_id);
            }
        }
        *arrivals_by_second
            .entry((hit.received_ms - started_ms) / 1000)
            .or_default() += 1;
        let top = highest.entry(key.0).or_insert(0);
        if key.1 < *top {
            out_of_order += 1;
        }
        *top = (*top).max(key.1);
        if let Some(written) = written_keys.get(&key)
            && written.at_ms < fail_from_ms - 1_000
        {
            healthy_delivered += 1;
            if let Some(created) = created_ms(hit) {
                healthy_latency.push((hit.received_ms - created) as f64);
            }
        }
    }
    healthy_latency.sort_by(f64::total_cmp);
    let healthy_seconds = (fail_from.as_secs_f64() - 1.0).max(0.001);
    let deliveries_per_s = healthy_delivered as f64 / healthy_seconds;
    let peak_per_s = arrivals_by_second.values().copied().max().unwrap_or(0);
    let nodes = options.nodes.max(1);
    let bad_signatures = hits.iter().filter(|h| h.signature_ok != Some(true)).count();
    let attempts = hits.len();

    let mut report = Report::default();
    report.line(format!(
        "webhooks: {} devices on {}, {} messages/s written for {:.1}s, receiver failing {:.1}s..{:.1}s{}",
        options.devices,
        target.describe(),
        options.rate,
        write_time.as_secs_f64(),
        fail_from.as_secs_f64(),
        fail_until.as_secs_f64(),
        match &killed {
            Some(name) => format!(", kill -9 of {name} at {:.1}s", kill_at.as_secs_f64()),
            None => String::new(),
        }
    ));
    report.line(format!(
        "written {} (of {total}); delivered {} ({} attempts in all, {bad_signatures} with a bad signature)",
        all_written.len(),
        firsts.len(),
        attempts
    ));
    report.line(format!(
        "healthy phase: {deliveries_per_s:.0} deliveries/s ({:.0} per node), latency event -> receiver p50 {:.1} ms, p99 {:.1} ms; peak over 1 s {peak_per_s}/s ({:.0} per node)",
        deliveries_per_s / nodes as f64,
        percentile(&healthy_latency, 0.5),
        percentile(&healthy_latency, 0.99),
        peak_per_s as f64 / nodes as f64
    ));
    report.line(format!(
        "lost {lost}, duplicated {duplicated} ({duplicated_other_id} with another id), out of order {out_of_order}"
    ));
    report.field("scenario", "webhooks");
    report.field("target", target.kind());
    report.field("devices", options.devices);
    report.field("nodes", options.nodes);
    report.field("rate", options.rate);
    report.field("seconds", round(write_time.as_secs_f64()));
    report.field("written", all_written.len());
    report.field("delivered", firsts.len());
    report.field("attempts", attempts);
    report.field("deliveries_per_s", round(deliveries_per_s));
    report.field(
        "deliveries_per_s_per_node",
        round(deliveries_per_s / nodes as f64),
    );
    report.field("peak_deliveries_per_s", peak_per_s);
    report.field(
        "peak_deliveries_per_s_per_node",
        round(peak_per_s as f64 / nodes as f64),
    );
    report.field("latency_p50_ms", round(percentile(&healthy_latency, 0.5)));
    report.field("latency_p99_ms", round(percentile(&healthy_latency, 0.99)));
    report.field("latency_max_ms", round(percentile(&healthy_latency, 1.0)));
    report.field("lost", lost);
    report.field("duplicated", duplicated);
    report.field("duplicated_other_id", duplicated_other_id);
    report.field("out_of_order", out_of_order);
    report.field("bad_signatures", bad_signatures);
    report.field("killed", killed.clone());
    if let Some(path) = &options.plot {
        let points: Vec<(f64, f64)> = arrivals_by_second
            .iter()
            .map(|(s, n)| (*s as f64, *n as f64))
            .collect();
        let mut chart = Chart {
            title: "events delivered per second (first delivery of each)".into(),
            x_label: "seconds".into(),
            y_label: "deliveries/s".into(),
            lines: vec![Line::new("delivered/s", points)],
            marks: vec![
                (fail_from.as_secs_f64(), "receiver fails".into()),
                (fail_until.as_secs_f64(), "receiver back".into()),
            ],
        };
        if let Some(name) = &killed {
            chart
                .marks
                .push((kill_at.as_secs_f64(), format!("kill -9 {name}")));
        }
        let title = format!(
            "wafleet-load webhooks: {} devices, {}, {}/s",
            options.devices,
            target.describe(),
            options.rate
        );
        plot::attach(&mut report, path, &title, &[chart])?;
    }
    drop(progress);
    Ok(report)
}

/// `(device, seq)` of a `message.inbound` delivery's text.
fn key_of(hit: &Hit) -> Option<(usize, u64)> {
    let text = hit.body["data"]["text"].as_str()?;
    let (device, seq) = text.split_once(':')?;
    Some((device.parse().ok()?, seq.parse().ok()?))
}

/// When the node recorded the event (the body's `created_at`), Unix milliseconds.
fn created_ms(hit: &Hit) -> Option<i64> {
    let created = humantime::parse_rfc3339(hit.body["created_at"].as_str()?).ok()?;
    Some(unix_ms(created))
}

/// The first 2xx delivery of each event, by `(device, seq)`.
fn first_deliveries(delivered: &[Hit]) -> HashMap<(usize, u64), i64> {
    let mut firsts = HashMap::new();
    for hit in delivered {
        if let Some(key) = key_of(hit) {
            firsts.entry(key).or_insert(hit.received_ms);
        }
    }
    firsts
}

/// `kill -9` of the cluster node that owns the most devices; its name.
async fn kill_busiest(target: &mut Target, ids: &[String]) -> Option<String> {
    let Target::Cluster { nodes, .. } = target else {
        return None;
    };
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let placement = wafleet_cluster_config::Placement::new(1024, &names)
        .context("placement")
        .ok()?;
    let busiest = names
        .iter()
        .max_by_key(|n| {
            ids.iter()
                .filter(|id| placement.owner_of(id) == n.as_str())
                .count()
        })?
        .clone();
    nodes.iter_mut().find(|n| n.name == busiest)?.kill9().await;
    Some(busiest)
}
