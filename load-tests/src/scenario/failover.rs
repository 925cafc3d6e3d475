//! `wafleet-load failover --devices N [--nodes 3] [--rate R] [--sims S]`: simulators
//! (as many as the devices need, see [`sims_for`]), redis, N nodes and a gateway as real
//! processes on 127.0.0.1; N devices created and paired through the gateway (a QR code
//! that expired before its scan is read again and scanned again, see [`super::pairing`]);
//! a steady stream of messages; then `kill -9` of the node that owns
//! the most devices. It measures how long until every one of that node's devices is
//! READY again, and whether any message was lost or delivered twice.
//!
//! `wafleet-load rolling` is the same with a rolling restart instead of a kill: `SIGTERM`
//! to each node in turn (it hands its shards off), its devices READY on the others, then
//! the node back with its share before the next one.
//!
//! - recovery: per device of the killed node, from the kill to its first READY event
//!   reported by another node (p50, p99, max);
//! - accepted / delivered / lost: messages answered 202, their `delivered` receipts, and
//!   the difference after a drain period;
//! - duplicated: messages found more than once in the phones' inboxes;
//! - status_behind: messages in an inbox whose status, asked of the gateway after the
//!   drain, is not `delivered` or `read` (a receipt lost on the way, e.g. in a move);
//! - double_ownership: link connections the simulator saw replaced by another connection
//!   of the same device while the first was live (two nodes connected at once);
//! - new_pairings: pairings in the simulator during the run after the initial ones.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;
use wafleet_cluster_config::Placement;

use super::Report;
use super::cluster::{COOKIE, LocalCluster, NodeProcess};
use super::event_watch::{EventWatch, WatchGauges};
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Shape};
use super::process::{admin_get, post_patiently, sse_events};
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};
use super::sims::{Network, files_limit, sims_for};

/// Options of the failover scenario.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    pub devices: usize,
    pub nodes: usize,
    /// Messages per second through the gateway during the run.
    pub rate: u32,
    pub wafleet: PathBuf,
    /// Instead of killing one node: a rolling restart, `SIGTERM` to each node in turn
    /// (it hands its shards off), waiting for its devices to be READY on the others and
    /// for it to come back and take its share again before the next.
    pub rolling: bool,
    /// How many `wafleet sim` processes; `None`: as many as the devices need
    /// ([`sims_for`] the open-files limit).
    pub sims: Option<usize>,
    /// Where to write the plot of the run (SVG); `None`: no plot.
    pub plot: Option<PathBuf>,
}

/// Phones the messages go to (few, so their inboxes can be read whole).
const RECIPIENTS: usize = 20;

pub async fn run(options: FailoverOptions) -> anyhow::Result<Report> {
    if options.nodes < 2 {
        bail!("failover needs at least 2 nodes");
    }
    let progress = Progress::new();
    let gauges = WatchGauges::new();
    let accepted_count = Gauge::new("accepted");
    let sampler = Sampler::start(&[&gauges.ready, &accepted_count, &gauges.delivered]);
    let sim_count = options
        .sims
        .unwrap_or_else(|| sims_for(options.devices, files_limit()));
    let LocalCluster {
        dir,
        redis,
        sims,
        mut nodes,
        gateway,
        plans,
    } = LocalCluster::start_with_sims(&options.wafleet, options.nodes, sim_count).await?;
    let sims = Arc::new(sims);
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let placement = Placement::new(1024, &names)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    progress.note(format!(
        "cluster up: {} nodes, {} simulators, gateway {}",
        options.nodes,
        sims.len(),
        gateway.base
    ));

    // Create, start and pair every device through the gateway.
    let ids: Vec<String> = (0..options.devices).map(|i| format!("fo-{i:06}")).collect();
    let mut events =
        Box::pin(sse_events(&http, &format!("{}/v1/events", gateway.base), None).await?);
    let fleet = FleetPlan {
        api: gateway.base.clone(),
        network: Network::Processes(sims.clone()),
        ids: ids.clone(),
        phone_prefix: "62855".to_owned(),
        concurrency: 32,
    };
    let rescans = pair_fleet_shown(&http, &fleet, &mut events, &gauges.ready, &progress).await?;
    // The same stream, read by its own task from now on.
    let mut watch = EventWatch::spawn(events, ids.iter().cloned(), gauges.clone());
    let pairings_before = sims.stat(&http, "pairings").await?;
    let replaced_before = sims.stat(&http, "connections_replaced").await?;
    let links_per_sim = sims.stat_each(&http, "links_total").await?;
    progress.note(format!(
        "links per simulator: {links_per_sim:?}; {rescans} QR codes scanned again"
    ));

    // A steady stream of messages, round-robin over devices and recipient phones.
    // Accepted message id → (recipient index, device).
    let accepted = Arc::new(Mutex::new(HashMap::<String, (usize, String)>::new()));
    let sending = Arc::new(AtomicBool::new(true));
    let sending_bar = progress.counter("messages accepted", &accepted_count);
    let sender = {
        let (http, base, ids) = (http.clone(), gateway.base.clone(), ids.clone());
        let (accepted, sending) = (accepted.clone(), sending.clone());
        let accepted_count = accepted_count.clone();
        let period = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let mut n = 0usize;
            let mut refused = 0u64;
            while sending.load(Ordering::Relaxed) {
                tick.tick().await;
                let id = &ids[n % ids.len()];
                let to = n % RECIPIENTS;
                let body = json!({"to": format!("62866{to:08}"), "text": format!("m-{n}")});
                let url = format!("{base}/v1/devices/{id}/messages");
                match post_patiently(&http, &url, &body).await {
                    Ok(answer) => {
                        if let Some(message) = answer["id"].as_str() {
                            accepted
                                .lock()
                                .await
                                .insert(message.to_owned(), (to, id.clone()));
                            accepted_count.add(1);
                        }
                    }
                    Err(_) => refused += 1,
                }
                n += 1;
            }
            refused
        })
    };

    // Let traffic flow, then kill the node owning the most devices (or, rolling, stop
    // every node in turn).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut recovered: Vec<f64> = Vec::new();
    let victims: Vec<String> = if options.rolling {
        names.clone()
    } else {
        vec![
            names
                .iter()
                .max_by_key(|n| {
                    ids.iter()
                        .filter(|id| placement.owner_of(id) == n.as_str())
                        .count()
                })
                .cloned()
                .context("no node")?,
        ]
    };
    let mut moved_total = 0usize;
    for victim in &victims {
        let moved: HashSet<String> = ids
            .iter()
            .filter(|id| placement.owner_of(id) == victim.as_str())
            .cloned()
            .collect();
        moved_total += moved.len();
        let victim_index = nodes
            .iter()
            .position(|n| &n.name == victim)
            .context("victim")?;
        let stopped = Instant::now();
        if options.rolling {
            nodes[victim_index].signal("TERM")?;
            sampler.mark(&format!("SIGTERM {victim}"));
            progress.note(format!(
                "SIGTERM to {victim}, which owns {} devices",
                moved.len()
            ));
        } else {
            nodes[victim_index].kill9().await;
            sampler.mark(&format!("kill -9 {victim}"));
            progress.note(format!(
                "killed {victim}, which owned {} devices",
                moved.len()
            ));
        }
        // They are not READY until another node says they are.
        watch.not_ready(&moved);
        let ready = await_ready(
            &mut watch,
            &progress,
            &format!("READY after {victim}"),
            &moved,
            |node| node != victim.as_str(),
            stopped,
        )
        .await
        .context("recovery")?;
        progress.note(format!(
            "all {} devices of {victim} READY on the others after {:.2}s",
            moved.len(),
            stopped.elapsed().as_secs_f64()
        ));
        recovered.extend(ready.values().copied());
        if options.rolling {
            let status = nodes[victim_index]
                .wait_exit(Duration::from_secs(30))
                .await?;
            if !status.success() {
                bail!("{victim} exited with {status} after SIGTERM");
            }
            // It comes back and takes its share again, as in a rolling upgrade.
            let plan = plans
                .iter()
                .find(|p| &p.name == victim)
                .context("plan of the victim")?;
            let restarted = Instant::now();
            sampler.mark(&format!("{victim} back"));
            nodes[victim_index] =
                NodeProcess::start(&options.wafleet, dir.path(), plan, COOKIE).await?;
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            for node in &mut nodes {
                node.wait_members(&all, Duration::from_secs(30)).await?;
            }
            await_ready(
                &mut watch,
                &progress,
                &format!("back on {victim}"),
                &moved,
                |node| node == victim.as_str(),
                restarted,
            )
            .await
            .with_context(|| format!("{victim} taking its devices back"))?;
            progress.note(format!(
                "{victim} is back with its {} devices {:.2}s after it was started again",
                moved.len(),
                restarted.elapsed().as_secs_f64()
            ));
        }
    }

    // Keep sending a little, then stop and let everything accepted drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sending.store(false, Ordering::Relaxed);
    let refused = sender.await?;
    progress.finish(sending_bar);
    let accepted = accepted.lock().await.clone();
    watch
        .drain(
            accepted.len(),
            Duration::from_secs(30),
            Duration::from_secs(5),
        )
        .await;
    // Count from the store of truth: every phone's inbox.
    let mut in_inboxes: HashMap<String, usize> = HashMap::new();
    for to in 0..RECIPIENTS {
        for message in sims.inbox(&http, &format!("62866{to:08}")).await? {
            *in_inboxes
                .entry(
                    message["message_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
                .or_default() += 1;
        }
    }
    let delivered_count = accepted
        .keys()
        .filter(|id| in_inboxes.contains_key(*id))
        .count();
    let duplicated = in_inboxes.values().filter(|n| **n > 1).count();
    let lost = accepted.len() - delivered_count;
    let status_behind = statuses_behind(
        &http,
        &gateway.base,
        accepted
            .iter()
            .filter(|(id, _)| in_inboxes.contains_key(*id))
            .map(|(id, (_, device))| (device.clone(), id.clone())),
    )
    .await?;
    let new_pairings = sims.stat(&http, "pairings").await? - pairings_before;
    let double_ownership = sims.stat(&http, "connections_replaced").await? - replaced_before;

    let mut times: Vec<f64> = recovered;
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    let mut report = Report::default();
    let scenario = if options.rolling {
        "rolling"
    } else {
        "failover"
    };
    report.line(format!(
        "{scenario}: {} devices on {} nodes and {} simulators; {} ({}) with {moved_total} devices in all",
        options.devices,
        options.nodes,
        sims.len(),
        if options.rolling {
            "SIGTERM to each node in turn"
        } else {
            "killed"
        },
        victims.join(", "),
    ));
    report.line(format!(
        "READY on another node after the stop: first {:.2}s, p50 {:.2}s, p99 {:.2}s, max {:.2}s",
        pct(0.0),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    ));
    report.line(format!(
        "messages: {} accepted ({} refused), {} delivered, {} lost, {} delivered twice, {} with a status behind; {} double ownership, {} new pairings",
        accepted.len(),
        refused,
        delivered_count,
        lost,
        duplicated,
        status_behind,
        double_ownership,
        new_pairings
    ));
    report.field("scenario", scenario);
    report.field("devices", options.devices);
    report.field("nodes", options.nodes);
    report.field("sims", sims.len());
    report.field("links_per_sim", links_per_sim);
    report.field("qr_rescans", rescans);
    report.field("killed_node_devices", moved_total);
    report.field("recovery_first_s", round(pct(0.0)));
    report.field("recovery_p50_s", round(pct(0.50)));
    report.field("recovery_p99_s", round(pct(0.99)));
    report.field("recovery_max_s", round(pct(1.0)));
    report.field("accepted", accepted.len());
    report.field("refused", refused);
    report.field("delivered", delivered_count);
    report.field("lost", lost);
    report.field("duplicated", duplicated);
    report.field("status_behind", status_behind);
    report.field("double_ownership", double_ownership);
    report.field("new_pairings", new_pairings);
    let timeline = sampler.finish();
    if let Some(path) = &options.plot {
        let charts = [
            Chart::of_timeline(
                "devices READY (a stopped node's devices count again once READY elsewhere)",
                "devices",
                &timeline,
                &[("ready", "devices READY", Shape::Level)],
            ),
            Chart::of_timeline(
                "messages per second (1 s window)",
                "messages/s",
                &timeline,
                &[
                    ("accepted", "accepted/s", Shape::PerSecond),
                    ("delivered", "delivered/s (receipts)", Shape::PerSecond),
                ],
            ),
        ];
        let title = format!(
            "wafleet-load {scenario}: {} devices, {} nodes",
            options.devices, options.nodes
        );
        plot::attach(&mut report, path, &title, &charts)?;
    }
    drop(progress);
    drop(redis);
    Ok(report)
}

/// How many of these (device, message) pairs the gateway reports as neither `delivered`
/// nor `read` (16 requests in flight).
async fn statuses_behind(
    http: &reqwest::Client,
    base: &str,
    messages: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<usize> {
    let statuses: Vec<anyhow::Result<String>> = futures_util::stream::iter(messages)
        .map(|(device, message)| async move {
            let answer = admin_get(
                http,
                &format!("{base}/v1/devices/{device}/messages/{message}"),
            )
            .await?;
            Ok(answer["status"].as_str().unwrap_or_default().to_owned())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut behind = 0;
    for status in statuses {
        if !matches!(status?.as_str(), "delivered" | "read") {
            behind += 1;
        }
    }
    Ok(behind)
}

/// Takes READY events from `watch` until every device of `devices` has said READY
/// from a node `on` accepts, after `since`; returns the seconds each took from `since`.
/// A bar labelled `label` shows how many have.
async fn await_ready(
    watch: &mut EventWatch,
    progress: &Progress,
    label: &str,
    devices: &HashSet<String>,
    on: impl Fn(&str) -> bool,
    since: Instant,
) -> anyhow::Result<HashMap<String, f64>> {
    let count = Gauge::new(label);
    let bar = progress.bar(label, &count, devices.len() as u64);
    let mut ready: HashMap<String, f64> = HashMap::new();
    while ready.len() < devices.len() {
        if since.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {} devices READY after 120 s",
                ready.len(),
                devices.len()
            );
        }
        let event = watch.next_ready(Duration::from_secs(30)).await?;
        if event.at >= since && on(&event.node) && devices.contains(&event.device) {
            ready
                .entry(event.device)
                .or_insert_with(|| event.at.duration_since(since).as_secs_f64());
            count.set(ready.len() as u64);
        }
    }
    progress.finish(bar);
    Ok(ready)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
