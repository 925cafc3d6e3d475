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
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use wafleet_cluster_config::Placement;

use super::Report;
use super::cluster::{COOKIE, LocalCluster, NodeProcess};
use super::pairing::{PairingSite, scan_patiently};
use super::process::{ADMIN_KEY, sse_events};
use super::sims::{files_limit, sims_for};

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
}

/// Phones the messages go to (few, so their inboxes can be read whole).
const RECIPIENTS: usize = 20;

pub async fn run(options: FailoverOptions) -> anyhow::Result<Report> {
    if options.nodes < 2 {
        bail!("failover needs at least 2 nodes");
    }
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
    eprintln!(
        "cluster up: {} nodes, {} simulators, gateway {}",
        options.nodes,
        sims.len(),
        gateway.base
    );

    // Create, start and pair every device through the gateway.
    let ids: Vec<String> = (0..options.devices).map(|i| format!("fo-{i:06}")).collect();
    let mut events =
        Box::pin(sse_events(&http, &format!("{}/v1/events", gateway.base), None).await?);
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let (http, base, gate) = (http.clone(), gateway.base.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            post(
                &http,
                &format!("{base}/v1/devices"),
                &json!({"id": id, "name": id}),
            )
            .await?;
            post(&http, &format!("{base}/v1/devices/{id}/start"), &json!({})).await?;
            anyhow::Ok(())
        });
    }
    // Scans have their own 32 requests in flight: behind thousands of creations they
    // would wait past their codes' expiry.
    let scan_gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut scans = tokio::task::JoinSet::new();
    let mut ready = HashSet::new();
    let mut scanned = HashSet::new();
    let mut rescans = 0u32;
    while ready.len() < ids.len() {
        let (kind, data) = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("no event for 30 s while pairing")?
            .context("event stream ended")?;
        let device = data["device_id"].as_str().unwrap_or_default().to_owned();
        if kind == "qr" && scanned.insert(device.clone()) {
            let n: usize = device.trim_start_matches("fo-").parse().unwrap_or(0);
            let (http, sims, gate) = (http.clone(), sims.clone(), scan_gate.clone());
            let api = gateway.base.clone();
            let code = data["code"].as_str().unwrap_or_default().to_owned();
            scans.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let site = PairingSite {
                    api: &api,
                    sim: sims.base_for(&device),
                };
                let phone = format!("62855{n:08}");
                scan_patiently(&http, site, &device, &code, &phone).await
            });
        } else if kind == "status" && data["status"] == "READY" {
            ready.insert(device);
        }
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
        while let Some(done) = scans.try_join_next() {
            rescans += done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    while let Some(done) = scans.join_next().await {
        rescans += done??;
    }
    eprintln!(
        "{} devices paired and READY in {:.1}s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let pairings_before = sims.stat(&http, "pairings").await?;
    let replaced_before = sims.stat(&http, "connections_replaced").await?;
    let links_per_sim = sims.stat_each(&http, "links_total").await?;
    eprintln!("links per simulator: {links_per_sim:?}; {rescans} QR codes scanned again");

    // A steady stream of messages, round-robin over devices and recipient phones.
    // Accepted message id → (recipient index, device).
    let accepted = Arc::new(Mutex::new(HashMap::<String, (usize, String)>::new()));
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (http, base, ids) = (http.clone(), gateway.base.clone(), ids.clone());
        let (accepted, sending) = (accepted.clone(), sending.clone());
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
                match post(&http, &format!("{base}/v1/devices/{id}/messages"), &body).await {
                    Ok(answer) => {
                        if let Some(message) = answer["id"].as_str() {
                            accepted
                                .lock()
                                .await
                                .insert(message.to_owned(), (to, id.clone()));
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
    let mut live_events =
        Box::pin(sse_events(&http, &format!("{}/v1/events", gateway.base), None).await?);
    let mut delivered: HashSet<String> = HashSet::new();
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
        if options.rolling {
            nodes[victim_index].signal("TERM")?;
            eprintln!("SIGTERM to {victim}, which owns {} devices", moved.len());
        } else {
            nodes[victim_index].kill9().await;
            eprintln!("killed {victim}, which owned {} devices", moved.len());
        }
        let stopped = Instant::now();
        let ready = await_ready(
            &mut live_events,
            &moved,
            |node| node != victim.as_str(),
            &mut delivered,
        )
        .await
        .context("recovery")?;
        eprintln!(
            "all {} devices of {victim} READY on the others after {:.2}s",
            moved.len(),
            stopped.elapsed().as_secs_f64()
        );
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
            nodes[victim_index] =
                NodeProcess::start(&options.wafleet, dir.path(), plan, COOKIE).await?;
            let all: Vec<&str> = names.iter().map(String::as_str).collect();
            for node in &mut nodes {
                node.wait_members(&all, Duration::from_secs(30)).await?;
            }
            let rejoined = Instant::now();
            await_ready(
                &mut live_events,
                &moved,
                |node| node == victim.as_str(),
                &mut delivered,
            )
            .await
            .with_context(|| format!("{victim} taking its devices back"))?;
            eprintln!(
                "{victim} is back with its {} devices after {:.2}s",
                moved.len(),
                rejoined.elapsed().as_secs_f64()
            );
        }
    }

    // Keep sending a little, then stop and let everything accepted drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sending.store(false, Ordering::Relaxed);
    let refused = sender.await?;
    let accepted = accepted.lock().await.clone();
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while delivered.len() < accepted.len() && Instant::now() < drain_deadline {
        match tokio::time::timeout(Duration::from_secs(5), live_events.next()).await {
            Ok(Some((kind, data))) if kind == "message.status" && data["status"] == "delivered" => {
                delivered.insert(data["message_id"].as_str().unwrap_or_default().to_owned());
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    // Messages delivered before the kill came on the first stream; count from the store
    // of truth instead: every phone's inbox.
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
        "READY on another node after the stop: p50 {:.2}s, p99 {:.2}s, max {:.2}s",
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
            let answer: Value = http
                .get(format!("{base}/v1/devices/{device}/messages/{message}"))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await?
                .error_for_status()?
                .json()
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

/// POSTs with the admin key; retries (for up to 30 s) while the answer says it may.
async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http
            .post(url)
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        if answer["error"]["retryable"] != true || Instant::now() > deadline {
            bail!("POST {url}: {status} {answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Follows `events` until every device of `devices` has reported READY from a node
/// `on` accepts; returns the seconds each took from the call. Notes the `delivered`
/// receipts it sees on the way.
async fn await_ready<S>(
    events: &mut S,
    devices: &HashSet<String>,
    on: impl Fn(&str) -> bool,
    delivered: &mut HashSet<String>,
) -> anyhow::Result<HashMap<String, f64>>
where
    S: futures_util::Stream<Item = (String, Value)> + Unpin,
{
    let started = Instant::now();
    let mut ready: HashMap<String, f64> = HashMap::new();
    while ready.len() < devices.len() {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "only {} of {} devices READY after 120 s",
                ready.len(),
                devices.len()
            );
        }
        let Ok(next) = tokio::time::timeout(Duration::from_secs(30), events.next()).await else {
            bail!("no event for 30 s");
        };
        let (kind, data) = next.context("event stream ended")?;
        let device = data["device_id"].as_str().unwrap_or_default().to_owned();
        if kind == "status"
            && data["status"] == "READY"
            && on(data["node"].as_str().unwrap_or_default())
            && devices.contains(&device)
        {
            ready
                .entry(device)
                .or_insert_with(|| started.elapsed().as_secs_f64());
        } else if kind == "message.status" && data["status"] == "delivered" {
            delivered.insert(data["message_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(ready)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
