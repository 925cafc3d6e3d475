//! The Prometheus recorder (one per process) and the metrics the gateway records.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_DURATION: &str = "wafleet_gateway_request_duration_seconds";
pub const SSE_CLIENTS: &str = "wafleet_gateway_sse_clients";
pub const NODE_COMMANDS: &str = "wafleet_gateway_node_commands_total";

/// Every metric name this crate registers (histograms without their `_bucket`, `_sum`
/// and `_count` suffixes). A process's `/metrics` shows these,
/// [`wafleet_node::metrics::ALL`] and [`wafleet_http_edge::metrics::ALL`]: see [`all`].
pub const ALL: &[&str] = &[HTTP_DURATION, SSE_CLIENTS, NODE_COMMANDS];

/// Every metric name a wafleet process can export: this crate's, the node crate's and
/// the HTTP edge's.
pub fn all() -> impl Iterator<Item = &'static str> {
    ALL.iter()
        .chain(wafleet_node::metrics::ALL)
        .chain(wafleet_http_edge::metrics::ALL)
        .copied()
}

/// The buckets of [`HTTP_DURATION`].
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Outcomes counted in [`NODE_COMMANDS`].
const NODE_COMMAND_OUTCOMES: [&str; 4] = ["answered", "redirected", "unavailable", "timeout"];

/// How often the recorder's upkeep runs. metrics-exporter-prometheus keeps every raw
/// histogram sample until its upkeep (or a scrape) folds them into buckets, and
/// `install_recorder` leaves running it to the caller: without this, a process nobody
/// scraped grew by every store call's and request's sample (heaptrack found 10 MB after
/// 200 real-link pairings, BENCHMARKS.md "Issue 18").
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The name of the thread that runs the upkeep.
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Runs `handle`'s upkeep every [`UPKEEP_EVERY`] for the life of the process (a thread
/// of its own: the recorder may be installed before or outside any runtime).
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name(UPKEEP_THREAD.to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no metrics upkeep thread: histogram samples pile up until scraped");
    }
}

/// The process's recorder, installed on first use, with every metric described, and
/// its upkeep running.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = std::iter::once((HTTP_DURATION, HTTP_BUCKETS))
                .chain(wafleet_node::metrics::HISTOGRAM_BUCKETS.iter().copied())
                .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
                    builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
                })
                .and_then(|builder| builder.install_recorder())
                .inspect(|handle| keep_up(handle.clone()))
                .unwrap_or_else(|error| {
                    // Another recorder is installed (a host program's); ours renders empty.
                    tracing::warn!(%error, "prometheus recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                });
            describe();
            wafleet_node::metrics::describe();
            wafleet_http_edge::metrics::describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency until the response head, by route, method and status"
    );
    describe_gauge!(SSE_CLIENTS, Unit::Count, "open SSE streams");
    describe_counter!(
        NODE_COMMANDS,
        Unit::Count,
        "device commands sent to nodes (cluster) by outcome: answered, redirected (not owner), unavailable, timeout"
    );
    for outcome in NODE_COMMAND_OUTCOMES {
        counter!(NODE_COMMANDS, "outcome" => outcome).increment(0);
    }
}

/// Counts one outcome of sending a device command to a node.
pub(crate) fn node_command(outcome: &'static str) {
    counter!(NODE_COMMANDS, "outcome" => outcome).increment(1);
}

/// Middleware: records each request's latency under its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    histogram!(HTTP_DURATION, "route" => route, "method" => method, "status" => response.status().as_u16().to_string())
        .record(started.elapsed().as_secs_f64());
    response
}

/// Counts an open SSE stream for as long as it lives.
#[derive(Debug)]
pub struct SseClient(());

impl SseClient {
    pub fn connect() -> SseClient {
        gauge!(SSE_CLIENTS).increment(1.0);
        SseClient(())
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        gauge!(SSE_CLIENTS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of this process's threads.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// Installing the recorder starts its upkeep thread. A new thread names itself once
    /// it runs, so the test waits (up to 5 s) for the name to show.
    #[test]
    fn the_recorder_runs_its_upkeep() {
        prometheus();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut threads = thread_names();
        while !threads.iter().any(|name| name == UPKEEP_THREAD) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            threads = thread_names();
        }
        assert!(
            threads.iter().any(|name| name == UPKEEP_THREAD),
            "no {UPKEEP_THREAD} thread among {threads:?}"
        );
    }
}
