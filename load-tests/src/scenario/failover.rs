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
//!
//! With `--link whatsapp` the nodes' devices are on the real link (whatsapp-rust) to one
//! `wafleet-waserver` child instead ([`IdleLink`], as `idle --link whatsapp`): pairing
//! through its `/sim/scan`, messages to its phones, which decrypt them into their
//! inboxes (found there by their text: the link gives a message a WhatsApp id of its
//! own), and new pairings, logins, handshakes, pre-key uploads and double ownership
//! (`connections_replaced`: a login over a live connection of the same device) from its
//! `/sim/stats`.

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
use super::cluster::{COOKIE, LocalCluster, NodeProcess, WhatsAppPlan};
use super::event_watch::{EventWatch, WatchGauges};
use super::idle::IdleLink;
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Shape};
use super::process::{admin_get, post_patiently, sse_events};
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};
use super::sims::{Network, files_limit, sims_for};
use super::waserver::{Waserver, WaserverStats};

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
    /// What the nodes' devices are linked to: the simulators, or the real link to a
    /// `wafleet-waserver` child (`wafleet` must then be a test-chain build).
    pub link: IdleLink,
}

/// A message the gateway accepted.
#[derive(Debug, Clone)]
struct Accepted {
    device: String,
    text: String,
}

/// What a message is found by in an inbox: the simulator keeps wafleet's id; the real
/// link sends it with a WhatsApp id of its own (a hash), so there it is its text,
/// unique in a run.
fn accepted_key(link: &IdleLink, id: &str, message: &Accepted) -> String {
    match link {
        IdleLink::Sim => id.to_owned(),
        IdleLink::WhatsApp { .. } => message.text.clone(),
    }
}

/// The key of a message in a phone's inbox, as [`accepted_key`] makes it.
fn inbox_key(link: &IdleLink, message: &serde_json::Value) -> String {
    let field = match link {
        IdleLink::Sim => "message_id",
        IdleLink::WhatsApp { .. } => "text",
    };
    message[field].as_str().unwrap_or_default().to_owned()
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
    let waserver = match &options.link {
        IdleLink::Sim => None,
        IdleLink::WhatsApp { waserver, .. } => Some(Waserver::start(waserver).await?),
    };
    let cluster = match (&options.link, &waserver) {
        (IdleLink::WhatsApp { version, .. }, Some(server)) => {
            let plan = WhatsAppPlan {
                url: server.ws.clone(),
                version: version.clone(),
            };
            LocalCluster::start_with_whatsapp(&options.wafleet, options.nodes, plan).await?
        }
        _ => {
            let sim_count = options
                .sims
                .unwrap_or_else(|| sims_for(options.devices, files_limit()));
            LocalCluster::start_with_sims(&options.wafleet, options.nodes, sim_count).await?
        }
    };
    let LocalCluster {
        dir,
        redis,
        sims,
        mut nodes,
        gateway,
        plans,
    } = cluster;
    let sims = Arc::new(sims);
    // Where the devices are paired and the phones read: the test server on the real
    // link (the cluster's one simulator idles).
    let network = match &waserver {
        Some(server) => Network::One(server.base.clone()),
        None => Network::Processes(sims.clone()),
    };
    let linked_to = match &waserver {
        Some(_) => "the real link to one wafleet-waserver".to_owned(),
        None => format!("{} simulators", sims.len()),
    };
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let placement = Placement::new(1024, &names)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    progress.note(format!(
        "cluster up: {} nodes, {linked_to}, gateway {}",
        options.nodes, gateway.base
    ));

    // Create, start and pair every device through the gateway.
    let ids: Vec<String> = (0..options.devices).map(|i| format!("fo-{i:06}")).collect();
    let mut events =
        Box::pin(sse_events(&http, &format!("{}/v1/events", gateway.base), None).await?);
    let fleet = FleetPlan {
        api: gateway.base.clone(),
        network: network.clone(),
        ids: ids.clone(),
        phone_prefix: "62855".to_owned(),
        concurrency: 32,
    };
    let rescans = pair_fleet_shown(&http, &fleet, &mut events, &gauges.ready, &progress).await?;
    if let Some(server) = &waserver {
        server
            .await_prekey_uploads(
                &progress,
                &http,
                options.devices as u64,
                Duration::from_secs(600),
            )
            .await?;
    }
    // The same stream, read by its own task from now on.
    let mut watch = EventWatch::spawn(events, ids.iter().cloned(), gauges.clone());
    let pairings_before = network.stat(&http, "pairings").await?;
    let replaced_before = network.stat(&http, "connections_replaced").await?;
    let server_before = match &waserver {
        Some(server) => Some(server.stats(&http).await?),
        None => None,
    };
    let links_per_sim = match &waserver {
        Some(_) => None,
        None => Some(sims.stat_each(&http, "links_total").await?),
    };
    match &server_before {
        Some(stats) => progress.note(format!(
            "test server: {} pairings, {} logins, {} pre-keys uploaded; {rescans} QR codes scanned again",
            stats.pairings, stats.logins, stats.prekeys_uploaded
        )),
        None => progress.note(format!(
            "links per simulator: {:?}; {rescans} QR codes scanned again",
            links_per_sim.clone().unwrap_or_default()
        )),
    }

    // A steady stream of messages, round-robin over devices and recipient phones.
    // Accepted message id → what it was.
    let accepted = Arc::new(Mutex::new(HashMap::<String, Accepted>::new()));
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
                let text = format!("m-{n}");
                let body = json!({"to": format!("62866{to:08}"), "text": text});
                let url = format!("{base}/v1/devices/{id}/messages");
                match post_patiently(&http, &url, &body).await {
                    Ok(answer) => {
                        if let Some(message) = answer["id"].as_str() {
                            let sent = Accepted {
                                device: id.clone(),
                                text,
                            };
                            accepted.lock().await.insert(message.to_owned(), sent);
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
    let mut all_moved: HashSet<String> = HashSet::new();
    // The test server's counters at the first stop: what it counts later is the
    // failover's (before, the pairings' tail: pre-key uploads that finish after READY).
    let server_at_stop = match &waserver {
        Some(server) => Some(server.stats(&http).await?),
        None => None,
    };
    for victim in &victims {
        let moved: HashSet<String> = ids
            .iter()
            .filter(|id| placement.owner_of(id) == victim.as_str())
            .cloned()
            .collect();
        moved_total += moved.len();
        all_moved.extend(moved.iter().cloned());
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
    // Key → the message id of each copy found.
    let mut in_inboxes: HashMap<String, Vec<String>> = HashMap::new();
    for to in 0..RECIPIENTS {
        for message in network.inbox(&http, &format!("62866{to:08}")).await? {
            let id = message["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            in_inboxes
                .entry(inbox_key(&options.link, &message))
                .or_default()
                .push(id);
        }
    }
    let arrived = |(id, message): &(&String, &Accepted)| {
        in_inboxes.contains_key(&accepted_key(&options.link, id, message))
    };
    let delivered_count = accepted.iter().filter(arrived).count();
    let twice: Vec<(&String, &Vec<String>)> =
        in_inboxes.iter().filter(|(_, ids)| ids.len() > 1).collect();
    let duplicated = twice.len();
    // On the real link: copies under one WhatsApp id (the same send, repeated), which
    // a phone's app shows once.
    let duplicated_same_id = twice
        .iter()
        .filter(|(_, ids)| ids.iter().all(|id| *id == ids[0]))
        .count();
    // Which devices sent them, and whether they were moved.
    let sender_of: HashMap<String, &str> = accepted
        .iter()
        .map(|(id, m)| (accepted_key(&options.link, id, m), m.device.as_str()))
        .collect();
    let duplicated_senders: Vec<String> = twice
        .iter()
        .map(|(key, ids)| {
            let device = sender_of.get(*key).copied().unwrap_or("?");
            let moved = if all_moved.contains(device) {
                "moved"
            } else {
                "not moved"
            };
            format!("{key} ×{} from {device} ({moved})", ids.len())
        })
        .collect();
    let lost = accepted.len() - delivered_count;
    let status_behind = statuses_behind(
        &http,
        &gateway.base,
        accepted
            .iter()
            .filter(arrived)
            .map(|(id, message)| (message.device.clone(), id.clone())),
    )
    .await?;
    let new_pairings = network.stat(&http, "pairings").await? - pairings_before;
    let double_ownership = network.stat(&http, "connections_replaced").await? - replaced_before;
    let server_during = match (&waserver, &server_before, &server_at_stop) {
        (Some(server), Some(before), Some(at_stop)) => {
            let after = server.stats(&http).await?;
            Some((
                ServerDuring::of(before, at_stop),
                ServerDuring::of(at_stop, &after),
            ))
        }
        _ => None,
    };

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
        "{scenario}: {} devices on {} nodes and {linked_to}; {} ({}) with {moved_total} devices in all",
        options.devices,
        options.nodes,
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
    if let Some((settling, during)) = &server_during {
        report.line(format!(
            "test server from the first stop to the end: {} logins ({} by pattern), {} pre-keys uploaded, {} refused logins, {} undecryptable copies; between the last READY of the pairing and the stop: {} logins, {} pre-keys uploaded",
            during.logins,
            serde_json::Value::Object(during.handshakes.clone()),
            during.prekeys_uploaded,
            during.refused_logins,
            during.undecryptable,
            settling.logins,
            settling.prekeys_uploaded
        ));
    }
    report.field("scenario", scenario);
    report.field("link", options.link.name());
    report.field("devices", options.devices);
    report.field("nodes", options.nodes);
    match (&links_per_sim, &server_during) {
        (Some(links), _) => {
            report.field("sims", sims.len());
            report.field("links_per_sim", links.clone());
        }
        (None, Some((settling, during))) => {
            report.field("waserver_logins_before_stop", settling.logins);
            report.field(
                "waserver_prekeys_uploaded_before_stop",
                settling.prekeys_uploaded,
            );
            report.field("waserver_logins", during.logins);
            report.field(
                "waserver_handshakes",
                serde_json::Value::Object(during.handshakes.clone()),
            );
            report.field("waserver_prekeys_uploaded", during.prekeys_uploaded);
            report.field("waserver_refused_logins", during.refused_logins);
            report.field("waserver_undecryptable", during.undecryptable);
        }
        (None, None) => {}
    }
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
    if !duplicated_senders.is_empty() {
        report.line(format!(
            "delivered twice: {} ({duplicated_same_id} under one message id both times)",
            duplicated_senders.join(", ")
        ));
        report.field("duplicated_same_id", duplicated_same_id);
        report.field("duplicated_senders", duplicated_senders.clone());
    }
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
            "wafleet-load {scenario}: {} devices, {} nodes, link {}",
            options.devices,
            options.nodes,
            options.link.name()
        );
        plot::attach(&mut report, path, &title, &charts)?;
    }
    drop(progress);
    drop(redis);
    drop(waserver);
    Ok(report)
}

/// What the test server counted between two reads of its `/sim/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
struct ServerDuring {
    logins: u64,
    /// Noise handshakes by pattern: `ik` a device resuming, `xx` a first connection or
    /// a pairing.
    handshakes: serde_json::Map<String, serde_json::Value>,
    prekeys_uploaded: u64,
    refused_logins: u64,
    undecryptable: u64,
}

impl ServerDuring {
    fn of(before: &WaserverStats, after: &WaserverStats) -> ServerDuring {
        ServerDuring {
            logins: after.logins.saturating_sub(before.logins),
            handshakes: after.handshakes_since(before),
            prekeys_uploaded: after
                .prekeys_uploaded
                .saturating_sub(before.prekeys_uploaded),
            refused_logins: after.refused_logins.saturating_sub(before.refused_logins),
            undecryptable: after.undecryptable.saturating_sub(before.undecryptable),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn real_link() -> IdleLink {
        IdleLink::WhatsApp {
            waserver: PathBuf::from("wafleet-waserver"),
            version: "2.3000.1".into(),
        }
    }

    #[test]
    fn the_simulator_finds_a_message_by_its_id_and_the_test_server_by_its_text() {
        let sent = Accepted {
            device: "fo-000001".into(),
            text: "m-1".into(),
        };
        // The test server's inbox holds the link's own id (`3EB0…`), not wafleet's.
        let copy = json!({"message_id": "3EB0ABCDEF0123456789AB", "text": "m-1"});
        assert_eq!(inbox_key(&real_link(), &copy), "m-1");
        assert_eq!(accepted_key(&real_link(), "msg_1", &sent), "m-1");
        let copy = json!({"message_id": "msg_1", "text": "m-1"});
        assert_eq!(inbox_key(&IdleLink::Sim, &copy), "msg_1");
        assert_eq!(accepted_key(&IdleLink::Sim, "msg_1", &sent), "msg_1");
    }

    #[test]
    fn the_test_servers_counts_are_taken_between_two_reads() {
        let before = WaserverStats::of(&json!({
            "pairings": 300, "logins": 300, "prekeys_uploaded": 243600, "prekey_uploads": 300,
            "refused_logins": 0, "undecryptable": 1,
            "handshakes": {"Xx": 600}, "unknown": {}
        }))
        .unwrap();
        let after = WaserverStats::of(&json!({
            "pairings": 300, "logins": 457, "prekeys_uploaded": 244412, "prekey_uploads": 301,
            "refused_logins": 0, "undecryptable": 1,
            "handshakes": {"Xx": 600, "Ik": 157}, "unknown": {}
        }))
        .unwrap();
        let during = ServerDuring::of(&before, &after);
        assert_eq!(
            (during.logins, during.prekeys_uploaded, during.undecryptable),
            (157, 812, 0)
        );
        assert_eq!(
            serde_json::Value::Object(during.handshakes),
            json!({"Xx": 0, "Ik": 157})
        );
    }
}
