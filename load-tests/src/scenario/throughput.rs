//! `wafleet-load throughput --devices N [--nodes K] --seconds S [--concurrency C]`: how
//! many messages wafleet accepts, sends and delivers per second with the sending limits
//! lifted, and how long each step takes.
//!
//! With `--nodes 0` (the default) one `wafleet standalone --link sim` process, its
//! simulator inside; with `--nodes K` a local cluster ([`LocalCluster`]: simulators,
//! redis, K nodes and a gateway). Either way the quota table is set to
//! [`QuotaTable::UNTHROTTLED`](wafleet_cluster_config::QuotaTable::UNTHROTTLED), N
//! devices are created and paired through the API, and then for S seconds C workers each
//! POST `/v1/devices/{id}/messages` one request after the other (round-robin over the
//! devices, to [`RECIPIENTS`] phones, every text unique). No request starts after S
//! seconds (nor past `--messages`); the driver then waits for the messages to reach the
//! phones (up to [`DRAIN`]) and reads every recipient's inbox.
//!
//! - accepted/s: 202 answers over the sending time; accept p50/p99: the HTTP round trip
//!   of those POSTs, as the driver saw it;
//! - sent/s, delivered/s: messages with a `sent` status on the event stream, and
//!   messages in a phone's inbox, over the time from the first request to the last of
//!   them;
//! - end to end p50/p99: from the POST that handed the message over to its arrival in
//!   the phone's inbox (the simulator's `at`, in ms, on the same machine's clock). Not
//!   from the 202: a message often reaches the phone before its answer reaches the
//!   client (in a cluster, most do, the answer going back through the gateway), which
//!   `delivered_before_answer` counts;
//! - lost: accepted and in no inbox after the drain; duplicated: in an inbox more than
//!   once (by message id, or by its unique text);
//! - refused: answers other than 202 (e.g. 429); failed: no answer within
//!   [`REQUEST_TIMEOUT`] or a broken connection;
//! - rate_limited: accepted with a `not_before` (the lifted limits still allow each
//!   device [`MAX_PER_DAY`] sends a day: a run sends at most that many per device).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wafleet_cluster_config::quota::MAX_PER_DAY;

use super::Report;
use super::event_watch::{EventWatch, WatchGauges};
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Shape};
use super::process::{ADMIN_KEY, sse_events};
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};
use super::sims::Network;
use super::target::Target;

/// Options of the throughput scenario.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    pub devices: usize,
    /// Cluster nodes behind a gateway; 0: one standalone process.
    pub nodes: usize,
    /// How long requests are started for.
    pub duration: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// At most this many requests (default: what the lifted limits allow the devices in
    /// a day, [`MAX_PER_DAY`] each).
    pub messages: Option<u64>,
    pub wafleet: PathBuf,
    /// `wafleet sim` processes of a cluster; `None`: as many as the devices need.
    pub sims: Option<usize>,
    /// Where to write the plot of the run (SVG); `None`: no plot.
    pub plot: Option<PathBuf>,
    /// A cluster's traffic over mutual TLS (development certificates made for the run),
    /// to measure what encryption costs.
    pub cluster_tls: bool,
}

/// Phones the messages go to (few, so their inboxes can be read whole).
pub const RECIPIENTS: u64 = 20;
/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the driver waits, after the last request, for messages to reach the phones.
pub const DRAIN: Duration = Duration::from_secs(30);
/// The drain ends sooner when nothing more arrives for this long.
const STALL: Duration = Duration::from_secs(10);

pub async fn run(options: ThroughputOptions) -> anyhow::Result<Report> {
    if options.devices == 0 {
        bail!("throughput needs at least one device");
    }
    let progress = Progress::new();
    let target = Target::start(
        &options.wafleet,
        options.nodes,
        options.devices,
        options.sims,
        &[],
        options.cluster_tls,
    )
    .await?;
    let api = target.api().to_owned();
    let network = target.network();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency.max(256))
        .build()?;
    progress.note(format!("{} up, API {api}", target.describe()));

    // Every device created and paired.
    let gauges = WatchGauges::new();
    let ids: Vec<String> = (0..options.devices).map(|i| format!("tp-{i:06}")).collect();
    let mut events = Box::pin(sse_events(&http, &format!("{api}/v1/events"), None).await?);
    let fleet = FleetPlan {
        api: api.clone(),
        network: network.clone(),
        ids: ids.clone(),
        phone_prefix: "62857".to_owned(),
        concurrency: 32,
    };
    let rescans = pair_fleet_shown(&http, &fleet, &mut events, &gauges.ready, &progress).await?;
    let watch = EventWatch::spawn(events, ids.iter().cloned(), gauges.clone());

    // Messages for the set time, C requests in flight.
    let accepted_count = Gauge::new("accepted");
    let sampler = Sampler::start(&[&accepted_count, &gauges.sent, &gauges.delivered]);
    let sampling_since = SystemTime::now();
    let accepting = progress.counter("messages accepted", &accepted_count);
    let delivering = progress.counter("delivered (status)", &gauges.delivered);
    let limit = options
        .messages
        .unwrap_or(options.devices as u64 * u64::from(MAX_PER_DAY));
    let sending = Sending {
        http: http.clone(),
        api: api.clone(),
        ids: Arc::new(ids),
        next: Arc::new(AtomicU64::new(0)),
        limit,
        deadline: Instant::now() + options.duration,
        accepted: accepted_count.clone(),
    };
    let started = (Instant::now(), SystemTime::now());
    let tally = sending.run(options.concurrency.max(1)).await?;
    let send_time = started.0.elapsed();
    sampler.mark("sending stops");
    progress.finish(accepting);
    progress.note(format!(
        "{} requests in {:.1}s: {} accepted; waiting up to {}s for them to reach the phones",
        sending.next.load(Ordering::Relaxed).min(limit),
        send_time.as_secs_f64(),
        tally.shots.len(),
        DRAIN.as_secs()
    ));

    drain(&http, &network, &watch, tally.shots.len()).await?;
    progress.finish(delivering);
    let arrivals = Arrivals::read(&http, &network).await?;
    let mut timeline = sampler.finish();
    timeline.add_events("at the phone", arrivals.seconds_since(sampling_since));

    // The figures.
    let mut accept_ms: Vec<f64> = tally.shots.iter().map(|s| ms(s.took)).collect();
    accept_ms.sort_by(f64::total_cmp);
    let mut end_to_end_ms = Vec::new();
    let (mut delivered, mut duplicated, mut last_arrival) = (0usize, 0usize, None);
    let mut before_answer = 0usize;
    for shot in &tally.shots {
        let Some((copies, at)) = arrivals.of(shot) else {
            continue;
        };
        delivered += 1;
        if copies > 1 {
            duplicated += 1;
        }
        end_to_end_ms.push(ms(at.duration_since(shot.posted_at).unwrap_or_default()));
        if at < shot.accepted_at {
            before_answer += 1;
        }
        last_arrival = last_arrival.max(Some(at));
    }
    end_to_end_ms.sort_by(f64::total_cmp);
    let accepted = tally.shots.len();
    let lost = accepted - delivered;
    let sent = watch.sent_count();
    let (last_sent, _) = watch.last_sent_and_delivered();
    let accepted_per_s = per_second(accepted, Some(send_time));
    let sent_per_s = per_second(sent, last_sent.map(|at| at.duration_since(started.0)));
    let delivered_per_s = per_second(
        delivered,
        last_arrival.and_then(|at| at.duration_since(started.1).ok()),
    );
    let refused: u64 = tally.refused.values().sum();
    let rate_limited = tally.shots.iter().filter(|s| s.limited).count();

    let mut report = Report::default();
    report.line(format!(
        "throughput: {} devices on {}, {} requests in flight for {:.1}s",
        options.devices,
        target.describe(),
        options.concurrency,
        send_time.as_secs_f64()
    ));
    report.line(format!(
        "accepted {accepted} ({accepted_per_s:.0}/s), refused {refused} {:?}, failed {}, rate-limited {rate_limited}",
        tally.refused, tally.failed
    ));
    if let Some(refusal) = &tally.first_refusal {
        report.line(format!("first refusal: {refusal}"));
    }
    report.line(format!(
        "sent {sent} ({sent_per_s:.0}/s), delivered to the phones {delivered} ({delivered_per_s:.0}/s)"
    ));
    report.line(format!(
        "accept latency p50 {:.2} ms, p99 {:.2} ms; end to end (POST -> at the phone) p50 {:.2} ms, p99 {:.2} ms; {before_answer} at the phone before their 202 came back",
        percentile(&accept_ms, 0.50),
        percentile(&accept_ms, 0.99),
        percentile(&end_to_end_ms, 0.50),
        percentile(&end_to_end_ms, 0.99)
    ));
    report.line(format!(
        "lost {lost}, delivered twice {duplicated}, event stream resets {}",
        watch.resets()
    ));
    report.field("scenario", "throughput");
    report.field("target", target.kind());
    report.field("devices", options.devices);
    report.field("nodes", options.nodes);
    report.field("sims", network.len());
    report.field("concurrency", options.concurrency);
    report.field("seconds", round(send_time.as_secs_f64()));
    report.field("qr_rescans", rescans);
    report.field("accepted", accepted);
    report.field("accepted_per_s", round(accepted_per_s));
    report.field("refused", refused);
    report.field("failed", tally.failed);
    report.field("rate_limited", rate_limited);
    report.field("sent", sent);
    report.field("sent_per_s", round(sent_per_s));
    report.field("delivered", delivered);
    report.field("delivered_per_s", round(delivered_per_s));
    report.field("accept_p50_ms", round(percentile(&accept_ms, 0.50)));
    report.field("accept_p99_ms", round(percentile(&accept_ms, 0.99)));
    report.field("accept_max_ms", round(percentile(&accept_ms, 1.0)));
    report.field("end_to_end_p50_ms", round(percentile(&end_to_end_ms, 0.50)));
    report.field("end_to_end_p99_ms", round(percentile(&end_to_end_ms, 0.99)));
    report.field("end_to_end_max_ms", round(percentile(&end_to_end_ms, 1.0)));
    report.field("delivered_before_answer", before_answer);
    report.field("lost", lost);
    report.field("duplicated", duplicated);
    report.field("sse_resets", watch.resets());
    if let Some(path) = &options.plot {
        let charts = [
            Chart::of_timeline(
                "messages per second (1 s window)",
                "messages/s",
                &timeline,
                &[
                    ("accepted", "accepted/s", Shape::PerSecond),
                    ("at the phone", "at the phone/s", Shape::PerSecond),
                    ("sent", "sent/s (status events)", Shape::PerSecond),
                    ("delivered", "delivered/s (status events)", Shape::PerSecond),
                ],
            ),
            Chart::of_timeline(
                "messages so far",
                "messages",
                &timeline,
                &[
                    ("accepted", "accepted", Shape::Level),
                    ("at the phone", "at the phone", Shape::Level),
                    ("sent", "sent (status events)", Shape::Level),
                    ("delivered", "delivered (status events)", Shape::Level),
                ],
            ),
        ];
        let title = format!(
            "wafleet-load throughput: {} devices, {}, {} in flight",
            options.devices,
            target.describe(),
            options.concurrency
        );
        plot::attach(&mut report, path, &title, &charts)?;
    }
    drop(progress);
    Ok(report)
}

/// The message sends of a run, shared by its workers.
#[derive(Debug, Clone)]
struct Sending {
    http: reqwest::Client,
    api: String,
    ids: Arc<Vec<String>>,
    /// The number of the next message; message `n` goes from device `n % N` to phone
    /// `n % RECIPIENTS`, with the text `tp-{n}`.
    next: Arc<AtomicU64>,
    /// No message numbered this or more.
    limit: u64,
    /// No request starts after this.
    deadline: Instant,
    accepted: Gauge,
}

/// One accepted message.
#[derive(Debug, Clone)]
struct Shot {
    message_id: String,
    text: String,
    /// When its POST was sent.
    posted_at: SystemTime,
    /// When its 202 answer had been read.
    accepted_at: SystemTime,
    /// The POST's round trip.
    took: Duration,
    /// Accepted with a `not_before`: held back by a rate limit.
    limited: bool,
}

/// What the workers got.
#[derive(Debug, Default)]
struct Tally {
    shots: Vec<Shot>,
    /// Answers other than 202, by status.
    refused: BTreeMap<u16, u64>,
    /// The first of them, with its body (what was wrong).
    first_refusal: Option<String>,
    /// No answer in time, or no answer at all.
    failed: u64,
}

impl Sending {
    /// `workers` workers until the deadline (or the limit); what they got, together.
    async fn run(&self, workers: usize) -> anyhow::Result<Tally> {
        let mut running = JoinSet::new();
        for _ in 0..workers {
            let sending = self.clone();
            running.spawn(async move { sending.work().await });
        }
        let mut tally = Tally::default();
        while let Some(done) = running.join_next().await {
            let part = done.context("a sending worker panicked")?;
            tally.shots.extend(part.shots);
            for (status, n) in part.refused {
                *tally.refused.entry(status).or_default() += n;
            }
            tally.first_refusal = tally.first_refusal.or(part.first_refusal);
            tally.failed += part.failed;
        }
        Ok(tally)
    }

    /// One request after the other.
    async fn work(&self) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < self.deadline {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.limit {
                break;
            }
            let device = &self.ids[(n % self.ids.len() as u64) as usize];
            let text = format!("tp-{n}");
            let body = json!({"to": recipient(n % RECIPIENTS), "text": text});
            let (started, posted_at) = (Instant::now(), SystemTime::now());
            let response = self
                .http
                .post(format!("{}/v1/devices/{device}/messages", self.api))
                .bearer_auth(ADMIN_KEY)
                .timeout(REQUEST_TIMEOUT)
                .json(&body)
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(_) => {
                    tally.failed += 1;
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status != 202 {
                let body = response.text().await.unwrap_or_default();
                *tally.refused.entry(status).or_default() += 1;
                tally
                    .first_refusal
                    .get_or_insert_with(|| format!("{status} {body}"));
                continue;
            }
            let Ok(answer) = response.json::<Value>().await else {
                tally.failed += 1;
                continue;
            };
            let took = started.elapsed();
            let accepted_at = SystemTime::now();
            tally.shots.push(Shot {
                message_id: answer["id"].as_str().unwrap_or_default().to_owned(),
                text,
                posted_at,
                accepted_at,
                took,
                limited: !answer["not_before"].is_null(),
            });
            self.accepted.add(1);
        }
        tally
    }
}

/// The phone number of recipient `i`.
fn recipient(i: u64) -> String {
    format!("62877{i:08}")
}

/// Waits until `expected` messages have reached the phones and their receipts have
/// come on the event stream, for at most [`DRAIN`], and no longer than [`STALL`]
/// without progress on either.
async fn drain(
    http: &reqwest::Client,
    network: &Network,
    watch: &EventWatch,
    expected: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DRAIN;
    let mut last = (0, 0);
    let mut moved = Instant::now();
    loop {
        let now = (
            network.stat(http, "messages_delivered").await? as usize,
            watch.delivered_count(),
        );
        if now.0 >= expected && now.1 >= expected {
            return Ok(());
        }
        if now != last {
            (last, moved) = (now, Instant::now());
        }
        if Instant::now() > deadline || moved.elapsed() > STALL {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What reached the recipients' phones, by message id and by text.
#[derive(Debug, Default)]
struct Arrivals {
    /// Copies and first arrival of each message id.
    by_id: HashMap<String, (usize, SystemTime)>,
    /// Copies and first arrival of each text.
    by_text: HashMap<String, (usize, SystemTime)>,
}

impl Arrivals {
    /// Every recipient's inbox, from every simulator.
    async fn read(http: &reqwest::Client, network: &Network) -> anyhow::Result<Arrivals> {
        let mut arrivals = Arrivals::default();
        for i in 0..RECIPIENTS {
            for message in network.inbox(http, &recipient(i)).await? {
                arrivals.note(&message)?;
            }
        }
        Ok(arrivals)
    }

    /// One inbox entry (`message_id`, `text`, `at`).
    fn note(&mut self, message: &Value) -> anyhow::Result<()> {
        let at = message["at"].as_str().unwrap_or_default();
        let at = humantime::parse_rfc3339(at)
            .with_context(|| format!("arrival time of an inbox message: {message}"))?;
        for (key, map) in [("message_id", &mut self.by_id), ("text", &mut self.by_text)] {
            let entry = map
                .entry(message[key].as_str().unwrap_or_default().to_owned())
                .or_insert((0, at));
            entry.0 += 1;
            entry.1 = entry.1.min(at);
        }
        Ok(())
    }

    /// When each message id first arrived, in seconds since `since` (negative before).
    fn seconds_since(&self, since: SystemTime) -> Vec<f64> {
        self.by_id
            .values()
            .map(|(_, at)| match at.duration_since(since) {
                Ok(after) => after.as_secs_f64(),
                Err(before) => -before.duration().as_secs_f64(),
            })
            .collect()
    }

    /// How many copies of `shot` reached its phone (by id or by text, whichever is
    /// more) and when the first did; `None` if none did.
    fn of(&self, shot: &Shot) -> Option<(usize, SystemTime)> {
        let by_id = self.by_id.get(&shot.message_id);
        let by_text = self.by_text.get(&shot.text);
        match (by_id, by_text) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(*a),
            (Some(a), Some(b)) => Some((a.0.max(b.0), a.1.min(b.1))),
        }
    }
}

/// `count` per second over `over` (0 without a time).
fn per_second(count: usize, over: Option<Duration>) -> f64 {
    match over {
        Some(time) if !time.is_zero() => count as f64 / time.as_secs_f64(),
        _ => 0.0,
    }
}

/// The `p` quantile of `sorted` (nearest rank); 0 when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot(id: &str, text: &str) -> Shot {
        Shot {
            message_id: id.to_owned(),
            text: text.to_owned(),
            posted_at: SystemTime::UNIX_EPOCH,
            accepted_at: SystemTime::UNIX_EPOCH,
            took: Duration::ZERO,
            limited: false,
        }
    }

    #[test]
    fn arrivals_count_copies_by_id_or_text_and_keep_the_first_time() {
        let mut arrivals = Arrivals::default();
        for (id, text, at) in [
            ("m1", "tp-1", "2026-01-01T00:00:00.010Z"),
            ("m2", "tp-2", "2026-01-01T00:00:00.020Z"),
            // m2 again, under its id: a resend the network did not deduplicate.
            ("m2", "tp-2", "2026-01-01T00:00:00.015Z"),
            // tp-3 twice under two ids: a resend with a new id.
            ("m3", "tp-3", "2026-01-01T00:00:00.030Z"),
            ("m3b", "tp-3", "2026-01-01T00:00:00.040Z"),
        ] {
            arrivals
                .note(&json!({"message_id": id, "text": text, "at": at}))
                .unwrap();
        }
        let ms_after_epoch = |at: SystemTime, base: &str| {
            at.duration_since(humantime::parse_rfc3339(base).unwrap())
                .unwrap()
                .as_millis()
        };
        let base = "2026-01-01T00:00:00Z";
        let (copies, at) = arrivals.of(&shot("m1", "tp-1")).unwrap();
        assert_eq!((copies, ms_after_epoch(at, base)), (1, 10));
        let (copies, at) = arrivals.of(&shot("m2", "tp-2")).unwrap();
        assert_eq!((copies, ms_after_epoch(at, base)), (2, 15));
        assert_eq!(arrivals.of(&shot("m3", "tp-3")).unwrap().0, 2);
        assert!(arrivals.of(&shot("m9", "tp-9")).is_none());
        assert!(
            arrivals
                .note(&json!({"message_id": "x", "at": "soon"}))
                .is_err()
        );
    }

    #[test]
    fn percentiles_and_rates() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 50.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&sorted, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(per_second(10, Some(Duration::from_secs(2))), 5.0);
        assert_eq!(per_second(10, Some(Duration::ZERO)), 0.0);
        assert_eq!(per_second(10, None), 0.0);
    }
}
