//! `wafleet-load sse --clients N [--devices D] [--nodes K] [--rate R] [--seconds S]
//! [--follow all|device]`: N server-sent-event streams held on one gateway while devices
//! emit events: the gateway's memory per stream, and how long an event takes to reach
//! every stream that follows it.
//!
//! The target (`Target`) is one `wafleet standalone --link sim` process (its gateway
//! runs inside it, so its memory is the gateway's and the devices' together), or with
//! `--nodes K` a local cluster whose gateway is a process of its own: every stream is
//! opened on that one gateway, and its memory is the one measured (the process that
//! listens on the API's port, found by `listener_pid`).
//!
//! 1. D devices are created and paired through the API, on an event stream of their
//!    own that is closed before anything is measured.
//! 2. After [`SETTLE`], the gateway's resident memory (`VmRSS` in `/proc`):
//!    `rss_before`.
//! 3. N streams are opened from this driver. With `--follow all` (the default) each is
//!    `GET /v1/events`: every device's events, the heaviest stream a client can ask for
//!    (each carries every event, so one event is written N times). With
//!    `--follow device` stream `i` is `GET /v1/devices/{device i % D}/events`, one
//!    device's events, as a dashboard per number reads them: an event goes to the N / D
//!    streams of its device, so what the other streams cost the gateway shows. Each is
//!    its own TCP connection speaking plain HTTP/1.1 (`SseDecoder`), at most
//!    [`CONNECTS_AT_ONCE`] being opened at a time, and each task holds up to
//!    [`STREAMS_PER_TASK`] of them. A stream is open when its `200` head has come: the
//!    gateway has subscribed it to the event bus by then.
//! 4. After [`IDLE`] with every stream open and quiet: `rss_after`;
//!    `bytes_per_stream` = (`rss_after` - `rss_before`) / streams open. RSS is what the
//!    allocator holds, not what is in use: the more streams, the truer the figure.
//! 5. For S seconds, R times a second, a phone sends a message to device `n % D`
//!    (`POST /sim/phones/{phone}/send` with the text `sse-{n}`): the device stores it
//!    and emits `message.inbound`, which every stream that follows the device should
//!    carry.
//! 6. The driver waits until every stream has had every event (at most [`DRAIN`], and
//!    no longer than `STALL` without a new one), then closes the streams.
//!
//! The figures, over every (stream, event) pair:
//! - `latency_p50_ms`, `latency_p99_ms`: from the event's `at` (when the device put it
//!   on the event bus; whole milliseconds, rounded down, so a figure is up to 1 ms above
//!   the truth) to when this driver read it off that stream's socket. One machine, one
//!   clock. The driver shares the machine's cores with the gateway, and reads N sockets
//!   for each event: at large N part of a latency is the driver's turn to read.
//! - `end_to_end_p50_ms`, `end_to_end_p99_ms`: from the driver's POST to the phone to
//!   the same read (simulator, device, store and bus included).
//! - `missed`: for each event at least one stream got, the streams following its device
//!   that did not get it;
//!   `unseen`: messages the simulator accepted that no stream got; `duplicated`: an
//!   event a stream got twice; `resets`: `reset` events (a stream fell behind what the
//!   bus keeps).
//! - `gateway_cpu_ms_per_event`, `driver_cpu_ms_per_event`: CPU time (user and system)
//!   of the gateway's process and of this driver from the first event to the end of the
//!   drain, per event. With `--nodes 0` the gateway's process also runs the devices and
//!   the simulator, a small part of it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::Report;
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Shape};
use super::process::{ADMIN_KEY, cpu_seconds_of, rss_kib_of, sse_events};
use super::progress::Progress;
use super::sampling::{Gauge, Sampler};
use super::sims::{Network, files_limit};
use super::target::Target;
use super::throughput::round;

/// Options of the SSE scenario.
#[derive(Debug, Clone)]
pub struct SseOptions {
    /// Streams held on the gateway.
    pub clients: usize,
    /// Devices paired; the events are messages to them, round-robin.
    pub devices: usize,
    /// Cluster nodes behind the gateway; 0: one standalone process.
    pub nodes: usize,
    /// Events per second, over all devices.
    pub rate: u32,
    /// What each stream follows.
    pub follow: Follow,
    /// How long events are emitted for.
    pub duration: Duration,
    /// The `wafleet` binary to run.
    pub wafleet: PathBuf,
    /// Where to write the plot of the run (SVG); `None`: no plot.
    pub plot: Option<PathBuf>,
}

/// What each stream of the scenario follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// `/v1/events`: every event.
    All,
    /// `/v1/devices/{id}/events`, stream `i` following device `i % D`.
    Device,
}

impl Follow {
    fn describe(self) -> &'static str {
        match self {
            Follow::All => "/v1/events",
            Follow::Device => "/v1/devices/{id}/events",
        }
    }
}

/// Streams one task holds (reads in turn).
pub const STREAMS_PER_TASK: usize = 250;
/// Streams being opened at once, over all tasks.
pub const CONNECTS_AT_ONCE: usize = 128;
/// How long one stream may take to connect and get its head.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening every stream may take.
const OPEN_ALL_WITHIN: Duration = Duration::from_secs(300);
/// The pause after pairing, before `rss_before` (the pairing stream closed, the burst
/// of pairing settled).
pub const SETTLE: Duration = Duration::from_secs(2);
/// How long the streams stay open and quiet before `rss_after`.
pub const IDLE: Duration = Duration::from_secs(2);
/// How long the driver waits, after the last event, for every stream to have it.
pub const DRAIN: Duration = Duration::from_secs(15);
/// The drain ends sooner when nothing more arrives for this long.
const STALL: Duration = Duration::from_secs(5);
/// At most this many events a run (each stream keeps a bit per event).
pub const MAX_EVENTS: usize = 10_000;
/// How long a POST to the simulator may take before it counts as refused.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Open files the driver keeps for itself beside the streams (its API client, the
/// pairing stream, the children's pipes).
const SPARE_FILES: u64 = 500;
/// How often the gateway's resident memory is read for the plot.
const RSS_EVERY: Duration = Duration::from_millis(250);
/// Room made in a stream's buffer before each read.
const READ_CHUNK: usize = 2048;
/// The device at index `i` is linked to phone `{DEVICE_PHONES}{i:08}`.
const DEVICE_PHONES: &str = "62859";
/// The phone that writes to every device.
const SENDER: &str = "6289800000001";

pub async fn run(options: SseOptions) -> anyhow::Result<Report> {
    if options.clients == 0 || options.devices == 0 || options.rate == 0 {
        bail!("sse needs at least one client, one device and a rate of one event a second");
    }
    let planned = (f64::from(options.rate) * options.duration.as_secs_f64()).ceil() as usize;
    let planned = planned.max(1);
    if planned > MAX_EVENTS {
        bail!("{planned} events planned (rate x seconds); at most {MAX_EVENTS} a run");
    }
    let files = files_limit();
    if options.clients as u64 + SPARE_FILES > files {
        bail!(
            "{} streams need {} open files; this process may open {files} (ulimit -Hn)",
            options.clients,
            options.clients as u64 + SPARE_FILES
        );
    }
    let progress = Progress::new();
    let target = Target::start(
        &options.wafleet,
        options.nodes,
        options.devices,
        None,
        &[],
        false,
    )
    .await?;
    let api = target.api().to_owned();
    let addr = api_addr(&api)?;
    let pid = listener_pid(addr)?;
    let http = reqwest::Client::new();
    progress.note(format!(
        "{} up, API {api}, gateway pid {pid}",
        target.describe()
    ));

    // Every device created and paired, on a stream that is then closed.
    let ids: Vec<String> = (0..options.devices)
        .map(|i| format!("sse-{i:06}"))
        .collect();
    let mut pairing = Box::pin(sse_events(&http, &format!("{api}/v1/events"), None).await?);
    let fleet = FleetPlan {
        api: api.clone(),
        network: target.network(),
        ids: ids.clone(),
        phone_prefix: DEVICE_PHONES.to_owned(),
        concurrency: 32,
    };
    let ready = Gauge::new("ready");
    let rescans = pair_fleet_shown(&http, &fleet, &mut pairing, &ready, &progress).await?;
    drop(pairing);

    let gauges = StreamGauges::new();
    let (rss, emitted) = (Gauge::new("rss_kib"), Gauge::new("emitted"));
    let sampler = Sampler::start(&[
        &gauges.opened,
        &gauges.closed,
        &rss,
        &emitted,
        &gauges.receipts,
    ]);
    let rss_watch = watch_rss(pid, rss.clone());
    tokio::time::sleep(SETTLE).await;
    let rss_before = rss_kib_of(pid)?;

    // N streams opened, then left quiet for a moment.
    let posted: Arc<Vec<AtomicU64>> = Arc::new((0..planned).map(|_| AtomicU64::new(0)).collect());
    let clients = Arc::new(Clients::new(
        addr,
        Follows::new(options.follow, &ids),
        planned,
        posted.clone(),
        gauges.clone(),
    ));
    let (stop, stopped) = watch::channel(false);
    let opening_bar = progress.bar("streams open", &gauges.opened, options.clients as u64);
    sampler.mark("opening streams");
    let opening = Instant::now();
    let mut holders = JoinSet::new();
    for count in shares(options.clients, STREAMS_PER_TASK) {
        holders.spawn(hold(clients.clone(), count, stopped.clone()));
    }
    let open_deadline = Instant::now() + OPEN_ALL_WITHIN;
    while gauges.attempts.get() < options.clients as u64 && Instant::now() < open_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_time = opening.elapsed();
    progress.finish(opening_bar);
    let opened = gauges.opened.get();
    progress.note(format!(
        "{opened} of {} streams open in {:.1}s ({} failed to open){}",
        options.clients,
        open_time.as_secs_f64(),
        gauges.open_failed.get(),
        clients
            .first_error()
            .map_or(String::new(), |e| format!(": {e}"))
    ));
    if opened == 0 {
        bail!("no stream opened");
    }
    tokio::time::sleep(IDLE).await;
    let rss_after = rss_kib_of(pid)?;
    let gateway_streams = sse_clients(&http, &api).await;
    let bytes_per_stream = rss_after.saturating_sub(rss_before) as f64 * 1024.0 / opened as f64;

    // Events for the set time, then until every stream has had them.
    let events_from = sampler.elapsed();
    sampler.mark("events");
    let emitting = progress.bar("events emitted", &emitted, planned as u64);
    let receiving = progress.bar(
        "events received",
        &gauges.receipts,
        clients.follows.expected(&(0..planned).collect::<Vec<_>>()),
    );
    let emitter = Emitter {
        http: http.clone(),
        network: target.network(),
        ids: Arc::new(ids),
        posted,
        emitted: emitted.clone(),
    };
    let cpu_before = (cpu_seconds_of(pid)?, cpu_seconds_of(std::process::id())?);
    let sent = emitter.run(planned, options.rate, options.duration).await;
    progress.finish(emitting);
    sampler.mark("events stop");
    let expected = clients.follows.expected(&sent.accepted);
    // A stream that ended early gets nothing more (with one device each, the drain
    // waits for its share until nothing moves for `STALL`).
    let ended = match options.follow {
        Follow::All => gauges.closed.get() * sent.accepted.len() as u64,
        Follow::Device => 0,
    };
    drain(&gauges.receipts, expected.saturating_sub(ended)).await;
    let cpu_after = (cpu_seconds_of(pid)?, cpu_seconds_of(std::process::id())?);
    progress.finish(receiving);
    let _ = stop.send(true);
    let mut tally = Tally::new(planned);
    while let Some(part) = holders.join_next().await {
        tally.merge(part.context("a stream task panicked")?);
    }
    rss_watch.abort();
    let timeline = sampler.finish();
    let rss_peak = timeline
        .level("rss_kib")
        .iter()
        .filter(|(t, _)| *t >= events_from)
        .map(|(_, kib)| *kib as u64)
        .max()
        .unwrap_or(rss_after);

    // The figures.
    let closed = gauges.closed.get();
    let events = sent.accepted.len();
    let missed = missed(&tally.got, |n| clients.follows.followers(n));
    let unseen = sent.accepted.iter().filter(|n| tally.got[**n] == 0).count();
    let receipts: u64 = tally.got.iter().map(|g| u64::from(*g)).sum();
    let latency = |p| round(clients.latency.percentile_ms(p));
    // CPU from the first event to the end of the drain, per event emitted.
    let per_event =
        |before: f64, after: f64| round((after - before) * 1000.0 / events.max(1) as f64);
    let (gateway_cpu, driver_cpu) = (
        per_event(cpu_before.0, cpu_after.0),
        per_event(cpu_before.1, cpu_after.1),
    );
    let end_to_end = |p| round(clients.end_to_end.percentile_ms(p));

    let mut report = Report::default();
    report.line(format!(
        "sse: {} streams of {} on {}, {} devices, {} events/s for {:.1}s",
        options.clients,
        options.follow.describe(),
        target.describe(),
        options.devices,
        options.rate,
        sent.seconds
    ));
    report.line(format!(
        "streams: {opened} open in {:.1}s, {} failed to open, {closed} ended early; the gateway counted {}",
        open_time.as_secs_f64(),
        gauges.open_failed.get(),
        gateway_streams.map_or("?".to_owned(), |n| n.to_string())
    ));
    report.line(format!(
        "gateway resident memory: {rss_before} KiB before, {rss_after} KiB with the streams open: {bytes_per_stream:.0} bytes ({:.1} KB) per stream; at most {rss_peak} KiB while events flowed",
        bytes_per_stream / 1000.0
    ));
    report.line(format!(
        "events: {events} emitted ({} refused), {receipts} of {expected} receipts; missed {missed}, unseen {unseen}, duplicated {}, resets {}",
        sent.refused,
        tally.duplicated,
        tally.resets
    ));
    if let Some(refusal) = &sent.first_refusal {
        report.line(format!("first refusal: {refusal}"));
    }
    report.line(format!(
        "CPU per event, from the first event to the last receipt: gateway {gateway_cpu:.1} ms, this driver {driver_cpu:.1} ms"
    ));
    report.line(format!(
        "event latency (bus -> stream) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; end to end (phone -> stream) p50 {:.2} ms, p99 {:.2} ms",
        latency(0.50),
        latency(0.99),
        latency(1.0),
        end_to_end(0.50),
        end_to_end(0.99)
    ));
    report.field("scenario", "sse");
    report.field("target", target.kind());
    report.field("clients", options.clients);
    report.field("devices", options.devices);
    report.field(
        "follow",
        match options.follow {
            Follow::All => "all",
            Follow::Device => "device",
        },
    );
    report.field("nodes", options.nodes);
    report.field("qr_rescans", rescans);
    report.field("streams_open", opened);
    report.field("open_failed", gauges.open_failed.get());
    report.field("streams_closed", closed);
    report.field("gateway_sse_clients", gateway_streams);
    report.field("open_s", round(open_time.as_secs_f64()));
    report.field("rss_before_kib", rss_before);
    report.field("rss_after_kib", rss_after);
    report.field("rss_peak_kib", rss_peak);
    report.field("bytes_per_stream", bytes_per_stream.round());
    report.field("rate", options.rate);
    report.field("seconds", round(sent.seconds));
    report.field("events", events);
    report.field("events_refused", sent.refused);
    report.field("receipts", receipts);
    report.field("expected_receipts", expected);
    report.field("missed", missed);
    report.field("unseen", unseen);
    report.field("duplicated", tally.duplicated);
    report.field("resets", tally.resets);
    report.field("gateway_cpu_ms_per_event", gateway_cpu);
    report.field("driver_cpu_ms_per_event", driver_cpu);
    report.field("latency_p50_ms", latency(0.50));
    report.field("latency_p99_ms", latency(0.99));
    report.field("latency_max_ms", latency(1.0));
    report.field("end_to_end_p50_ms", end_to_end(0.50));
    report.field("end_to_end_p99_ms", end_to_end(0.99));
    report.field("end_to_end_max_ms", end_to_end(1.0));
    if let Some(path) = &options.plot {
        let charts = [
            Chart::of_timeline(
                "streams",
                "streams",
                &timeline,
                &[
                    ("opened", "streams opened", Shape::Level),
                    ("closed", "streams ended early", Shape::Level),
                ],
            ),
            Chart::of_timeline(
                "gateway resident memory",
                "KiB",
                &timeline,
                &[("rss_kib", "VmRSS (KiB)", Shape::Level)],
            ),
            Chart::of_timeline(
                "events emitted per second (1 s window)",
                "events/s",
                &timeline,
                &[("emitted", "emitted/s", Shape::PerSecond)],
            ),
            Chart::of_timeline(
                "events received per second, over every stream (1 s window)",
                "receipts/s",
                &timeline,
                &[("receipts", "received/s", Shape::PerSecond)],
            ),
        ];
        let title = format!(
            "wafleet-load sse: {} streams on {}, {} events/s",
            options.clients,
            target.describe(),
            options.rate
        );
        plot::attach(&mut report, path, &title, &charts)?;
    }
    drop(progress);
    Ok(report)
}

/// The gauges the stream tasks keep up to date.
#[derive(Debug, Clone)]
struct StreamGauges {
    /// Streams whose `200` head came.
    opened: Gauge,
    /// Streams that could not be opened.
    open_failed: Gauge,
    /// Streams opened or not: when it reaches N, opening is over.
    attempts: Gauge,
    /// Streams that ended, or broke, before the driver closed them.
    closed: Gauge,
    /// (stream, event) pairs received, without duplicates.
    receipts: Gauge,
}

impl StreamGauges {
    fn new() -> StreamGauges {
        StreamGauges {
            opened: Gauge::new("opened"),
            open_failed: Gauge::new("open_failed"),
            attempts: Gauge::new("attempts"),
            closed: Gauge::new("closed"),
            receipts: Gauge::new("receipts"),
        }
    }
}

/// What every stream task shares.
#[derive(Debug)]
struct Clients {
    addr: SocketAddr,
    /// What the streams follow, and how many follow each device.
    follows: Follows,
    /// Permits to open a stream ([`CONNECTS_AT_ONCE`]).
    connecting: Semaphore,
    /// Events this run may emit: the size of each stream's record of what it got.
    events: usize,
    /// When event `n`'s message was posted to the phone, in µs since the Unix epoch
    /// (0: not yet), by `n`.
    posted: Arc<Vec<AtomicU64>>,
    /// Event `at` to receipt.
    latency: Histogram,
    /// POST to the phone to receipt.
    end_to_end: Histogram,
    gauges: StreamGauges,
    /// Why the first stream that failed did.
    first_error: Mutex<Option<String>>,
}

impl Clients {
    fn new(
        addr: SocketAddr,
        follows: Follows,
        events: usize,
        posted: Arc<Vec<AtomicU64>>,
        gauges: StreamGauges,
    ) -> Clients {
        Clients {
            addr,
            follows,
            connecting: Semaphore::new(CONNECTS_AT_ONCE),
            events,
            posted,
            latency: Histogram::new(),
            end_to_end: Histogram::new(),
            gauges,
            first_error: Mutex::new(None),
        }
    }

    /// One stream, opened (counted either way).
    async fn open(&self) -> anyhow::Result<Connection> {
        let opened = async {
            let _permit = self.connecting.acquire().await?;
            let (request, follows) = self.follows.next(self.addr);
            let connection =
                tokio::time::timeout(OPEN_TIMEOUT, Connection::open(self.addr, &request))
                    .await
                    .with_context(|| format!("no stream head within {OPEN_TIMEOUT:?}"))??;
            anyhow::Ok((connection, follows))
        }
        .await;
        let opened = match opened {
            Ok((connection, follows)) => {
                follows.fetch_add(1, Ordering::Relaxed);
                Ok(connection)
            }
            Err(error) => Err(error),
        };
        match &opened {
            Ok(_) => self.gauges.opened.add(1),
            Err(error) => {
                self.gauges.open_failed.add(1);
                self.note_error(format!("{error:#}"));
            }
        }
        self.gauges.attempts.add(1);
        opened
    }

    fn note_error(&self, error: String) {
        lock(&self.first_error).get_or_insert(error);
    }

    fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }
}

/// Holds `count` streams in one task: opens them, then reads whichever has something
/// until `stop`. Returns what they got.
async fn hold(clients: Arc<Clients>, count: usize, mut stop: watch::Receiver<bool>) -> Tally {
    let mut tally = Tally::new(clients.events);
    let opening = futures_util::stream::iter(0..count)
        .map(|_| clients.open())
        .buffer_unordered(CONNECTS_AT_ONCE)
        .collect::<Vec<_>>();
    let opened = tokio::select! {
        opened = opening => opened,
        _ = stop.changed() => return tally,
    };
    let mut streams: SelectAll<BoxStream<'static, Batch>> = SelectAll::new();
    for connection in opened.into_iter().flatten() {
        streams.push(batches(connection, tally.seen.len()).boxed());
        tally.seen.push(Seen::new(clients.events));
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            batch = streams.next() => match batch {
                Some(batch) => tally.take(batch, &clients),
                None => {
                    let _ = stop.changed().await;
                    break;
                }
            },
        }
    }
    tally
}

/// `total` split into shares of at most `most`, as even as can be.
fn shares(total: usize, most: usize) -> Vec<usize> {
    let tasks = total.div_ceil(most.max(1));
    (0..tasks)
        .map(|i| total / tasks + usize::from(i < total % tasks))
        .collect()
}

/// What one read of a stream brought.
#[derive(Debug)]
struct Batch {
    /// The stream's index in its task.
    index: usize,
    /// When the read returned.
    received_at: SystemTime,
    events: Vec<SseEvent>,
    /// Why the stream ended with this read, if it did.
    ended: Option<String>,
}

/// The reads of `connection`, until it ends.
fn batches(connection: Connection, index: usize) -> impl Stream<Item = Batch> + Send {
    futures_util::stream::unfold(Some(connection), move |connection| async move {
        let mut connection = connection?;
        let mut events = Vec::new();
        let (received_at, ended) = match connection.read(&mut events).await {
            Ok((at, true)) => (at, None),
            Ok((at, false)) => (at, Some("the gateway ended a stream".to_owned())),
            Err(error) => (
                SystemTime::now(),
                Some(format!("a stream broke: {error:#}")),
            ),
        };
        let next = ended.is_none().then_some(connection);
        let batch = Batch {
            index,
            received_at,
            events,
            ended,
        };
        Some((batch, next))
    })
}

/// One stream's connection.
#[derive(Debug)]
struct Connection {
    socket: TcpStream,
    decoder: SseDecoder,
}

impl Connection {
    /// Connects, asks for the stream, and waits for its `200` head.
    async fn open(addr: SocketAddr, request: &str) -> anyhow::Result<Connection> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut connection = Connection {
            socket,
            decoder: SseDecoder::default(),
        };
        connection.socket.write_all(request.as_bytes()).await?;
        // Nothing is emitted while streams open: what comes with the head is dropped.
        let mut before = Vec::new();
        while !connection.decoder.head_read() {
            if !connection.read(&mut before).await?.1 {
                bail!("the gateway closed a stream before its head");
            }
        }
        Ok(connection)
    }

    /// Waits for bytes, and decodes the events they complete into `events`. Returns
    /// when the read returned, and whether the stream is still open.
    async fn read(&mut self, events: &mut Vec<SseEvent>) -> anyhow::Result<(SystemTime, bool)> {
        self.decoder.raw.reserve(READ_CHUNK);
        let read = self.socket.read_buf(&mut self.decoder.raw).await?;
        let at = SystemTime::now();
        self.decoder.decode(events)?;
        Ok((at, read > 0 && !self.decoder.ended()))
    }
}

/// What the streams of one task got.
#[derive(Debug)]
struct Tally {
    /// How many streams got event `n`, by `n`.
    got: Vec<u32>,
    /// The events each stream got so far, by stream index.
    seen: Vec<Seen>,
    duplicated: u64,
    resets: u64,
    parsed: Parsed,
}

impl Tally {
    fn new(events: usize) -> Tally {
        Tally {
            got: vec![0; events],
            seen: Vec::new(),
            duplicated: 0,
            resets: 0,
            parsed: Parsed::default(),
        }
    }

    fn take(&mut self, batch: Batch, clients: &Clients) {
        for event in &batch.events {
            match event.kind.as_str() {
                "message.inbound" => {
                    self.inbound(batch.index, &event.data, batch.received_at, clients)
                }
                "reset" => self.resets += 1,
                _ => {}
            }
        }
        if let Some(reason) = batch.ended {
            clients.gauges.closed.add(1);
            clients.note_error(reason);
        }
    }

    /// A `message.inbound` event's `data` that stream `index` read at `received_at`.
    fn inbound(&mut self, index: usize, data: &str, received_at: SystemTime, clients: &Clients) {
        let Some(Inbound { n, at }) = self.parsed.get(data) else {
            return;
        };
        if n >= self.got.len() {
            return;
        }
        if !self.seen[index].insert(n) {
            self.duplicated += 1;
            return;
        }
        self.got[n] += 1;
        clients.gauges.receipts.add(1);
        if let Some(at) = at {
            let latency = received_at.duration_since(at).unwrap_or_default();
            clients.latency.record(latency);
        }
        let posted = clients.posted[n].load(Ordering::Relaxed);
        if posted > 0 {
            let posted = UNIX_EPOCH + Duration::from_micros(posted);
            let took = received_at.duration_since(posted).unwrap_or_default();
            clients.end_to_end.record(took);
        }
    }

    fn merge(&mut self, other: Tally) {
        for (sum, part) in self.got.iter_mut().zip(&other.got) {
            *sum += part;
        }
        self.duplicated += other.duplicated;
        self.resets += other.resets;
    }
}

/// The `n` of a message this run sent (its text is `sse-{n}`).
fn event_number(data: &Value) -> Option<usize> {
    data["text"].as_str()?.strip_prefix("sse-")?.parse().ok()
}

/// What the tally reads in a `message.inbound` event of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inbound {
    /// Its message's `n`.
    n: usize,
    /// Its `at`: when the device put it on the bus.
    at: Option<SystemTime>,
}

impl Inbound {
    /// `data` read as JSON; `None` for an event not of this run.
    fn parse(data: &str) -> Option<Inbound> {
        let data = serde_json::from_str::<Value>(data).ok()?;
        let n = event_number(&data)?;
        let at = data["at"]
            .as_str()
            .and_then(|at| humantime::parse_rfc3339(at).ok());
        Some(Inbound { n, at })
    }
}

/// The `data` of the last few distinct events one task read, parsed. Its streams carry
/// the same events (all, or those of a few devices), so a task parses each event's JSON once for its
/// [`STREAMS_PER_TASK`] streams rather than once per stream: at 10,000 streams the
/// parsing was a third of the driver's time, which it takes from the gateway on the
/// same cores. A stream's latency is stamped when its read returns, before any of this.
#[derive(Debug, Default)]
struct Parsed {
    /// Newest last.
    recent: VecDeque<(String, Option<Inbound>)>,
}

impl Parsed {
    /// Events in flight at once are few: a stream that is behind by more is parsed again.
    const KEEP: usize = 32;

    fn get(&mut self, data: &str) -> Option<Inbound> {
        if let Some((_, inbound)) = self.recent.iter().rev().find(|(text, _)| text == data) {
            return *inbound;
        }
        let inbound = Inbound::parse(data);
        if self.recent.len() == Parsed::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back((data.to_owned(), inbound));
        inbound
    }
}

/// For each event `n` that at least one stream got (`got[n]` of them), the streams
/// following it (`followers(n)`) that did not, added up.
fn missed(got: &[u32], followers: impl Fn(usize) -> u64) -> u64 {
    got.iter()
        .enumerate()
        .filter(|(_, got)| **got > 0)
        .map(|(n, got)| followers(n).saturating_sub(u64::from(*got)))
        .sum()
}

/// What the streams follow: the request each one sends, and how many opened streams
/// follow each device (one count for every device with [`Follow::All`]).
#[derive(Debug)]
struct Follows {
    follow: Follow,
    /// Device ids, by index; event `n` is device `n % len`'s.
    ids: Arc<Vec<String>>,
    /// Streams asked for so far: stream `i` follows device `i % len`.
    asked: std::sync::atomic::AtomicUsize,
    /// Opened streams by device index, or one count for all.
    opened: Vec<AtomicU64>,
}

impl Follows {
    fn new(follow: Follow, ids: &[String]) -> Follows {
        let counts = match follow {
            Follow::All => 1,
            Follow::Device => ids.len(),
        };
        Follows {
            follow,
            ids: Arc::new(ids.to_vec()),
            asked: Default::default(),
            opened: (0..counts).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The next stream's request, and the count to add it to once it is open.
    fn next(&self, addr: SocketAddr) -> (String, &AtomicU64) {
        let i = self.asked.fetch_add(1, Ordering::Relaxed);
        let (path, count) = match self.follow {
            Follow::All => ("/v1/events".to_owned(), 0),
            Follow::Device => {
                let device = i % self.ids.len();
                (format!("/v1/devices/{}/events", self.ids[device]), device)
            }
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        (request, &self.opened[count])
    }

    /// The open streams that follow event `n`.
    fn followers(&self, n: usize) -> u64 {
        let count = match self.follow {
            Follow::All => 0,
            Follow::Device => n % self.ids.len(),
        };
        self.opened[count].load(Ordering::Relaxed)
    }

    /// The receipts events `events` make, over every stream that follows them.
    fn expected(&self, events: &[usize]) -> u64 {
        events.iter().map(|n| self.followers(*n)).sum()
    }
}

/// The events one stream got: a bit per event number.
#[derive(Debug, Clone)]
struct Seen(Vec<u64>);

impl Seen {
    fn new(events: usize) -> Seen {
        Seen(vec![0; events.div_ceil(64)])
    }

    /// Marks `n`; whether it was new.
    fn insert(&mut self, n: usize) -> bool {
        let (word, bit) = (n / 64, 1u64 << (n % 64));
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

/// Latencies counted in buckets of [`Histogram::RESOLUTION_US`], for percentiles over
/// millions of (stream, event) pairs without keeping each one. Shared by the stream
/// tasks (atomic counts).
#[derive(Debug)]
struct Histogram {
    buckets: Vec<AtomicU64>,
    /// The largest latency recorded, in µs.
    max_us: AtomicU64,
}

impl Histogram {
    const RESOLUTION_US: u64 = 10;
    /// Buckets up to 5 s; anything longer counts in the last one.
    const BUCKETS: usize = 500_000;

    fn new() -> Histogram {
        Histogram {
            buckets: (0..Histogram::BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }

    fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = usize::try_from(us / Histogram::RESOLUTION_US)
            .unwrap_or(usize::MAX)
            .min(Histogram::BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The `p` quantile (nearest rank) in ms: the upper edge of its bucket, never above
    /// the largest latency recorded (that, in the last bucket); 0 when empty.
    fn percentile_ms(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let max_us = self.max_us.load(Ordering::Relaxed);
        let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
        let mut below = 0;
        for (bucket, count) in counts.iter().enumerate() {
            below += count;
            if below >= rank && bucket < Histogram::BUCKETS - 1 {
                let edge = (bucket as u64 + 1) * Histogram::RESOLUTION_US;
                return edge.min(max_us) as f64 / 1000.0;
            }
            if below >= rank {
                break;
            }
        }
        max_us as f64 / 1000.0
    }
}

/// One SSE response read off a raw HTTP/1.1 connection: its head, then its body
/// (chunked, as hyper frames a body of unknown length, or else until the connection
/// closes), cut into events.
#[derive(Debug, Default)]
struct SseDecoder {
    /// Bytes read and not decoded yet (part of the head, of a chunk-size line…); the
    /// socket reads straight into it.
    raw: Vec<u8>,
    framing: Framing,
    /// Body bytes, de-chunked, not cut into events yet (the start of an event).
    body: Vec<u8>,
}

/// Where an [`SseDecoder`] is in the response.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The head has not all come.
    #[default]
    Head,
    /// Chunked: `left` bytes of the current chunk are still to come, its closing CRLF
    /// included; 0: a chunk-size line comes next.
    Chunked { left: usize },
    /// Everything until the connection closes is body.
    UntilClose,
    /// The last chunk came: the stream ended.
    Ended,
}

/// One event of a stream: its `event:` name (`message` without one) and its `data:`
/// lines, joined.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    kind: String,
    data: String,
}

impl SseDecoder {
    fn head_read(&self) -> bool {
        self.framing != Framing::Head
    }

    fn ended(&self) -> bool {
        self.framing == Framing::Ended
    }

    /// `bytes` as they came off the socket (tests).
    #[cfg(test)]
    fn feed(&mut self, bytes: &[u8], events: &mut Vec<SseEvent>) -> anyhow::Result<()> {
        self.raw.extend_from_slice(bytes);
        self.decode(events)
    }

    /// Decodes what `raw` holds and adds the events it completes to `events`; what is
    /// incomplete waits for more. An error for a head other than `200`, or a chunk size
    /// that is not one.
    fn decode(&mut self, events: &mut Vec<SseEvent>) -> anyhow::Result<()> {
        let mut at = 0;
        if self.framing == Framing::Head {
            let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                return Ok(());
            };
            self.framing = head_framing(&self.raw[..end])?;
            at = end + 4;
        }
        loop {
            match self.framing {
                Framing::Head => break,
                // What follows the last chunk (trailers) is not body.
                Framing::Ended => {
                    at = self.raw.len();
                    break;
                }
                Framing::UntilClose => {
                    self.body.extend_from_slice(&self.raw[at..]);
                    at = self.raw.len();
                    break;
                }
                Framing::Chunked { left: 0 } => {
                    let Some(end) = find(&self.raw[at..], b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.raw[at..at + end]);
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16)
                        .with_context(|| format!("not a chunk size: {line:?}"))?;
                    at += end + 2;
                    self.framing = match size {
                        0 => Framing::Ended,
                        size => Framing::Chunked { left: size + 2 },
                    };
                }
                Framing::Chunked { left } => {
                    let available = self.raw.len() - at;
                    if available == 0 {
                        break;
                    }
                    let data_left = left.saturating_sub(2);
                    let data = data_left.min(available);
                    self.body.extend_from_slice(&self.raw[at..at + data]);
                    // The closing CRLF, once the data is all there.
                    let crlf = if data == data_left {
                        (left - data).min(available - data)
                    } else {
                        0
                    };
                    at += data + crlf;
                    self.framing = Framing::Chunked {
                        left: left - data - crlf,
                    };
                }
            }
        }
        self.raw.drain(..at);
        cut_events(&mut self.body, events);
        Ok(())
    }
}

/// The framing of the body after `head` (without its blank line); an error unless the
/// status is `200`.
fn head_framing(head: &[u8]) -> anyhow::Result<Framing> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET /v1/events: {status}");
    }
    let chunked = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        });
    Ok(if chunked {
        Framing::Chunked { left: 0 }
    } else {
        Framing::UntilClose
    })
}

/// Cuts the complete events (each ends with a blank line) off the front of `body`;
/// comments (the heartbeat) and `id:` lines are dropped.
fn cut_events(body: &mut Vec<u8>, events: &mut Vec<SseEvent>) {
    let mut at = 0;
    while let Some(end) = find(&body[at..], b"\n\n") {
        let block = String::from_utf8_lossy(&body[at..at + end]);
        at += end + 2;
        let mut kind = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                kind = Some(value.trim_start());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if kind.is_some() || !data.is_empty() {
            events.push(SseEvent {
                kind: kind.unwrap_or("message").to_owned(),
                data: data.join("\n"),
            });
        }
    }
    body.drain(..at);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The messages that make the events, and what became of them.
#[derive(Debug, Clone)]
struct Emitter {
    http: reqwest::Client,
    network: Network,
    ids: Arc<Vec<String>>,
    /// See [`Clients::posted`].
    posted: Arc<Vec<AtomicU64>>,
    emitted: Gauge,
}

/// What the simulator said to the messages.
#[derive(Debug, Default)]
struct Emitted {
    /// The `n` of each message it accepted.
    accepted: Vec<usize>,
    refused: u64,
    first_refusal: Option<String>,
    /// From the first message to the last.
    seconds: f64,
}

impl Emitter {
    /// `planned` messages, `rate` a second, for no longer than `duration`.
    async fn run(&self, planned: usize, rate: u32, duration: Duration) -> Emitted {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let started = Instant::now();
        let deadline = started + duration;
        let mut posts = JoinSet::new();
        for n in 0..planned {
            tick.tick().await;
            if Instant::now() >= deadline {
                break;
            }
            let emitter = self.clone();
            posts.spawn(async move { (n, emitter.post(n).await) });
        }
        let mut emitted = Emitted {
            seconds: started.elapsed().as_secs_f64(),
            ..Emitted::default()
        };
        while let Some(done) = posts.join_next().await {
            let refusal = match done {
                Ok((n, Ok(()))) => {
                    emitted.accepted.push(n);
                    continue;
                }
                Ok((_, Err(refusal))) => refusal,
                Err(panicked) => panicked.to_string(),
            };
            emitted.refused += 1;
            emitted.first_refusal.get_or_insert(refusal);
        }
        emitted
    }

    /// Message `n`: from [`SENDER`] to device `n % D`, with the text `sse-{n}`.
    async fn post(&self, n: usize) -> Result<(), String> {
        let device = n % self.ids.len();
        let url = format!(
            "{}/sim/phones/{SENDER}/send",
            self.network.base_for(&self.ids[device])
        );
        let body =
            json!({"to_phone": format!("{DEVICE_PHONES}{device:08}"), "text": format!("sse-{n}")});
        self.posted[n].store(micros_since_epoch(SystemTime::now()), Ordering::Relaxed);
        self.emitted.add(1);
        let response = self
            .http
            .post(url)
            .timeout(REQUEST_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status().as_u16();
        if status == 202 {
            return Ok(());
        }
        Err(format!(
            "{status} {}",
            response.text().await.unwrap_or_default()
        ))
    }
}

/// Waits until `receipts` reaches `expected`, for at most [`DRAIN`], and no longer
/// than [`STALL`] without progress.
async fn drain(receipts: &Gauge, expected: u64) {
    let deadline = Instant::now() + DRAIN;
    let (mut last, mut moved) = (receipts.get(), Instant::now());
    while last < expected && Instant::now() < deadline && moved.elapsed() < STALL {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = receipts.get();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
}

/// A task that sets `gauge` to the resident memory of `pid` every [`RSS_EVERY`], until
/// the process is gone.
fn watch_rss(pid: u32, gauge: Gauge) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RSS_EVERY);
        loop {
            tick.tick().await;
            let Ok(kib) = rss_kib_of(pid) else {
                break;
            };
            gauge.set(kib);
        }
    })
}

/// The child of this process that listens on `addr`: the gateway the streams go to
/// (the standalone process, or a cluster's gateway). The listening socket's inode from
/// `/proc/net/tcp`, then the child that holds it among its open files.
fn listener_pid(addr: SocketAddr) -> anyhow::Result<u32> {
    let port = format!(":{:04X}", addr.port());
    let sockets = std::fs::read_to_string("/proc/net/tcp")?;
    // `sl local_address rem_address st … inode`; st 0A is LISTEN.
    let inode = sockets
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[1].ends_with(&port) && f[3] == "0A")
        .map(|f| f[9].to_owned())
        .with_context(|| format!("nothing listens on {addr}"))?;
    let socket = PathBuf::from(format!("socket:[{inode}]"));
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if parent_of(pid) != Some(me) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = files
            .flatten()
            .any(|file| std::fs::read_link(file.path()).is_ok_and(|to| to == socket));
        if holds {
            return Ok(pid);
        }
    }
    bail!("no child of this process listens on {addr}")
}

/// The parent of process `pid` (`/proc/{pid}/stat`: `pid (name) state ppid …`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The streams the gateway says it holds (`wafleet_gateway_sse_clients` on its
/// `/metrics`), if it says.
async fn sse_clients(http: &reqwest::Client, api: &str) -> Option<u64> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| {
            l.strip_prefix("wafleet_gateway_sse_clients")
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .find_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|n| n as u64)
}

/// `http://127.0.0.1:PORT` as a socket address.
fn api_addr(api: &str) -> anyhow::Result<SocketAddr> {
    let addr = api.strip_prefix("http://").unwrap_or(api);
    addr.trim_end_matches('/')
        .parse()
        .with_context(|| format!("not an address: {api}"))
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

    /// `body` as one chunk.
    fn chunk(body: &str) -> Vec<u8> {
        format!("{:x}\r\n{body}\r\n", body.len()).into_bytes()
    }

    fn event(kind: &str, data: &str) -> SseEvent {
        SseEvent {
            kind: kind.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn the_decoder_reads_a_chunked_stream_whatever_the_reads() {
        let mut bytes = HEAD.to_vec();
        bytes.extend(chunk(": heartbeat\n\n"));
        bytes.extend(chunk(
            "id: 7\nevent: message.inbound\ndata: {\"text\":\"sse-1\"}\n\n",
        ));
        // An event over two chunks, and two events in one.
        bytes.extend(chunk("event: status\ndata: {\"a\":"));
        bytes.extend(chunk(
            "1}\n\nevent: reset\ndata: {}\n\ndata: x\ndata: y\n\n",
        ));
        let whole = [
            event("message.inbound", "{\"text\":\"sse-1\"}"),
            event("status", "{\"a\":1}"),
            event("reset", "{}"),
            event("message", "x\ny"),
        ];
        for step in [1, 2, 3, 7, 64, bytes.len()] {
            let mut decoder = SseDecoder::default();
            let mut events = Vec::new();
            for piece in bytes.chunks(step) {
                decoder.feed(piece, &mut events).unwrap();
            }
            assert!(decoder.head_read());
            assert_eq!(events, whole, "reads of {step} bytes");
            assert!(!decoder.ended());
            assert!(decoder.raw.is_empty() && decoder.body.is_empty());
            decoder.feed(b"0\r\n\r\n", &mut events).unwrap();
            assert!(decoder.ended());
        }
    }

    #[test]
    fn the_decoder_refuses_other_answers_and_reads_unchunked_bodies() {
        let mut events = Vec::new();
        let refused = SseDecoder::default().feed(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n",
            &mut events,
        );
        assert!(format!("{:#}", refused.unwrap_err()).contains("401"));
        let mut decoder = SseDecoder::default();
        decoder
            .feed(
                b"HTTP/1.1 200 OK\r\n\r\nevent: qr\ndata: {}\n\n",
                &mut events,
            )
            .unwrap();
        assert_eq!(events, [event("qr", "{}")]);
        let mut broken = SseDecoder::default();
        assert!(broken.feed(HEAD, &mut events).is_ok());
        assert!(broken.feed(b"zz\r\n", &mut events).is_err());
    }

    #[test]
    fn a_histogram_gives_nearest_rank_percentiles_to_ten_microseconds() {
        let histogram = Histogram::new();
        assert_eq!(histogram.percentile_ms(0.5), 0.0);
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        // The upper edge of the bucket: 50 ms is in [50.00, 50.01).
        assert_eq!(histogram.percentile_ms(0.5), 50.01);
        assert_eq!(histogram.percentile_ms(0.99), 99.01);
        assert_eq!(histogram.percentile_ms(1.0), 100.0, "never above the max");
        histogram.record(Duration::from_micros(100_001));
        assert_eq!(histogram.percentile_ms(1.0), 100.001);
        // Past the last bucket: counted there, reported as the max.
        histogram.record(Duration::from_secs(9));
        assert_eq!(histogram.percentile_ms(1.0), 9000.0);
    }

    #[test]
    fn missed_counts_the_streams_without_an_event_others_got() {
        // 3 streams: event 0 reached all, 1 two of them, 2 none (unseen, not missed).
        assert_eq!(missed(&[3, 2, 0], |_| 3), 1);
        assert_eq!(missed(&[], |_| 3), 0);
        // Each event followed by as many streams as its device has.
        assert_eq!(missed(&[2, 1, 1], |n| [2, 3, 1][n]), 2);
        let mut seen = Seen::new(130);
        assert!(seen.insert(129));
        assert!(!seen.insert(129));
        assert!(seen.insert(0));
    }

    #[test]
    fn a_stream_follows_every_device_or_one_in_turn() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let ids = ["d0".to_owned(), "d1".to_owned()];
        let all = Follows::new(Follow::All, &ids);
        let (request, count) = all.next(addr);
        assert!(
            request.starts_with("GET /v1/events HTTP/1.1\r\n"),
            "{request}"
        );
        count.fetch_add(1, Ordering::Relaxed);
        all.next(addr).1.fetch_add(1, Ordering::Relaxed);
        assert_eq!((all.followers(0), all.followers(1)), (2, 2));
        assert_eq!(all.expected(&[0, 1, 2]), 6);

        let device = Follows::new(Follow::Device, &ids);
        let paths: Vec<String> = (0..3)
            .map(|_| {
                let (request, count) = device.next(addr);
                count.fetch_add(1, Ordering::Relaxed);
                request.split(' ').nth(1).unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/v1/devices/d0/events",
                "/v1/devices/d1/events",
                "/v1/devices/d0/events"
            ]
        );
        // Event n is device n % 2's: two streams follow d0, one d1.
        assert_eq!((device.followers(0), device.followers(1)), (2, 1));
        assert_eq!(device.expected(&[0, 1, 2, 3]), 6);
    }

    #[test]
    fn streams_are_shared_evenly_between_tasks() {
        assert_eq!(shares(50, 250), [50]);
        assert_eq!(shares(250, 250), [250]);
        assert_eq!(shares(251, 250), [126, 125]);
        assert_eq!(shares(10_000, 250).len(), 40);
        assert_eq!(shares(10_000, 250).iter().sum::<usize>(), 10_000);
        assert!(shares(0, 250).is_empty());
    }

    #[test]
    fn a_task_parses_each_event_once_and_reads_it_the_same() {
        let mut parsed = Parsed::default();
        let at = "2026-12-07T04:00:00.123Z";
        let data = format!(r#"{{"device_id":"sse-000001","text":"sse-7","at":"{at}"}}"#);
        let inbound = Inbound {
            n: 7,
            at: Some(humantime::parse_rfc3339(at).unwrap()),
        };
        assert_eq!(parsed.get(&data), Some(inbound));
        assert_eq!(parsed.get(&data), Some(inbound));
        assert_eq!(parsed.recent.len(), 1);
        assert_eq!(parsed.get(r#"{"text":"hello"}"#), None);
        for n in 0..Parsed::KEEP * 2 {
            assert_eq!(
                parsed.get(&format!(r#"{{"text":"sse-{n}"}}"#)).unwrap().n,
                n
            );
        }
        assert_eq!(parsed.recent.len(), Parsed::KEEP);
        assert_eq!(
            parsed.get(&data),
            Some(inbound),
            "parsed again once forgotten"
        );
    }

    #[test]
    fn event_numbers_and_addresses() {
        assert_eq!(event_number(&json!({"text": "sse-42"})), Some(42));
        assert_eq!(event_number(&json!({"text": "hello"})), None);
        assert_eq!(
            api_addr("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parent_of(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
    }
}
