//! The load scenarios work end to end (small sizes; the real figures come from
//! `wafleet-load` in release, see BENCHMARKS.md).

use std::time::Duration;

use wafleet_load::scenario::idle::{IdleLink, IdleOptions, run};
use wafleet_load::scenario::sse::Follow;

#[tokio::test]
async fn idle_scenario_pairs_every_device_and_recovers_after_kill9() {
    let report = run(IdleOptions {
        devices: 20,
        concurrency: 8,
        wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
        link: IdleLink::Sim,
        compare_sim: false,
        timeout: Duration::from_secs(60),
        settle: Duration::from_secs(2),
        restart: true,
        plot: None,
    })
    .await
    .unwrap();
    let fields = &report.fields;
    assert_eq!(fields["devices"], 20);
    assert_eq!(fields["ready"], 20);
    assert_eq!(fields["restart_new_pairings"], 0);
    assert!(fields["rss_ready_kib"].as_u64().unwrap() > 0);
    assert!(
        fields["restart_all_ready_s"].as_f64().unwrap() < 5.0,
        "{fields:?}"
    );
}

/// A rolling restart of a three-node cluster (SIGTERM to each node in turn, which hands
/// its shards off) under a message stream loses nothing, delivers nothing twice, and has
/// every device READY on another node well within the kill failover bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_loses_no_message() {
    let report =
        wafleet_load::scenario::failover::run(wafleet_load::scenario::failover::FailoverOptions {
            devices: 60,
            nodes: 3,
            rate: 40,
            wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
            rolling: true,
            sims: None,
            plot: None,
            link: IdleLink::Sim,
        })
        .await
        .unwrap();
    let fields = &report.fields;
    println!("{fields:?}");
    assert_eq!(fields["scenario"], "rolling");
    assert_eq!(fields["killed_node_devices"], 60, "every device moved once");
    assert!(fields["accepted"].as_u64().unwrap() > 100, "{fields:?}");
    assert_eq!(fields["lost"], 0, "{fields:?}");
    assert_eq!(fields["duplicated"], 0, "{fields:?}");
    assert_eq!(
        fields["status_behind"], 0,
        "every delivered message's status says so: {fields:?}"
    );
    assert_eq!(fields["new_pairings"], 0, "{fields:?}");
    // The kill failover bound is the failure timeout plus the lease TTL (4.5 s here);
    // a handoff needs neither.
    assert!(
        fields["recovery_max_s"].as_f64().unwrap() < 4.5,
        "{fields:?}"
    );
}

/// A kill -9 failover with the simulated network run as two processes: devices land on
/// both, the driver scans, counts and reads inboxes on the right ones, and the figures
/// add up (nothing lost or twice, no double ownership, no new pairing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_over_two_simulators_loses_nothing() {
    let report =
        wafleet_load::scenario::failover::run(wafleet_load::scenario::failover::FailoverOptions {
            devices: 40,
            nodes: 3,
            rate: 30,
            wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
            rolling: false,
            sims: Some(2),
            plot: None,
            link: IdleLink::Sim,
        })
        .await
        .unwrap();
    let fields = &report.fields;
    println!("{fields:?}");
    assert_eq!(fields["sims"], 2);
    let links = fields["links_per_sim"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    assert!(links.iter().all(|n| n.as_u64().unwrap() > 0), "{fields:?}");
    assert_eq!(
        links.iter().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        40,
        "{fields:?}"
    );
    assert!(fields["accepted"].as_u64().unwrap() > 50, "{fields:?}");
    assert_eq!(fields["lost"], 0, "{fields:?}");
    assert_eq!(fields["duplicated"], 0, "{fields:?}");
    assert_eq!(fields["double_ownership"], 0, "{fields:?}");
    assert_eq!(fields["new_pairings"], 0, "{fields:?}");
}

/// A short throughput run on a standalone process: messages are accepted, every one
/// reaches its phone exactly once, and the plot is written beside the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_throughput_run_delivers_every_accepted_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("throughput.svg");
    let report = wafleet_load::scenario::throughput::run(
        wafleet_load::scenario::throughput::ThroughputOptions {
            devices: 4,
            nodes: 0,
            duration: Duration::from_secs(2),
            concurrency: 8,
            messages: Some(20_000),
            wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
            sims: None,
            plot: Some(plot.clone()),
            cluster_tls: false,
        },
    )
    .await
    .unwrap();
    let fields = &report.fields;
    println!("{fields:?}");
    assert_eq!(fields["scenario"], "throughput");
    assert_eq!(fields["target"], "standalone");
    assert!(fields["accepted"].as_u64().unwrap() > 0, "{fields:?}");
    assert!(
        fields["accepted_per_s"].as_f64().unwrap() > 0.0,
        "{fields:?}"
    );
    assert_eq!(fields["lost"], 0, "{fields:?}");
    assert_eq!(fields["duplicated"], 0, "{fields:?}");
    assert_eq!(fields["delivered"], fields["accepted"], "{fields:?}");
    assert_eq!(fields["refused"], 0, "{fields:?}");
    assert_eq!(fields["rate_limited"], 0, "{fields:?}");
    assert!(
        fields["accept_p99_ms"].as_f64().unwrap() > 0.0,
        "{fields:?}"
    );
    assert_eq!(fields["plot"], plot.display().to_string());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("accepted/s"),
        "{svg:.300}"
    );
}

/// Fifty SSE streams held on a standalone process while four devices get messages: the
/// gateway counts every stream, every stream gets every event exactly once, and the
/// memory and latency figures are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_sse_streams_each_get_every_event_once() {
    fifty_sse_streams(Follow::All).await;
}

/// The same with each stream following one device: every stream gets its device's
/// events exactly once, and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_sse_streams_of_one_device_each_get_its_events_once() {
    fifty_sse_streams(Follow::Device).await;
}

async fn fifty_sse_streams(follow: Follow) {
    let report = wafleet_load::scenario::sse::run(wafleet_load::scenario::sse::SseOptions {
        clients: 50,
        devices: 4,
        nodes: 0,
        rate: 10,
        follow,
        duration: Duration::from_secs(2),
        wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
        plot: None,
    })
    .await
    .unwrap();
    let fields = &report.fields;
    println!("{fields:?}");
    assert_eq!(fields["scenario"], "sse");
    assert_eq!(fields["clients"], 50);
    assert_eq!(fields["streams_open"], 50, "{fields:?}");
    assert_eq!(fields["streams_closed"], 0, "{fields:?}");
    assert_eq!(fields["gateway_sse_clients"], 50, "{fields:?}");
    let events = fields["events"].as_u64().unwrap();
    assert!(events >= 10, "{fields:?}");
    // Event n is device n % 4's, which 13, 13, 12 and 12 of the streams follow.
    let followers = |n: u64| match follow {
        Follow::All => 50,
        Follow::Device => [13, 13, 12, 12][(n % 4) as usize],
    };
    let expected: u64 = (0..events).map(followers).sum();
    assert_eq!(fields["expected_receipts"], expected, "{fields:?}");
    assert_eq!(fields["receipts"], expected, "{fields:?}");
    assert_eq!(fields["missed"], 0, "{fields:?}");
    assert_eq!(fields["unseen"], 0, "{fields:?}");
    assert_eq!(fields["duplicated"], 0, "{fields:?}");
    assert!(fields["rss_after_kib"].as_u64().unwrap() > 0, "{fields:?}");
    assert!(fields["bytes_per_stream"].is_number(), "{fields:?}");
    let (p50, p99) = (
        fields["latency_p50_ms"].as_f64().unwrap(),
        fields["latency_p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{fields:?}");
    // The POST comes before the event's `at`, which is rounded down to the ms.
    assert!(
        fields["end_to_end_p99_ms"].as_f64().unwrap() >= p99 - 1.1,
        "{fields:?}"
    );
}

/// A short webhooks run on a three-node cluster: a receiver failing for a while and a
/// node killed in the middle lose nothing, deliver nothing out of order, and every
/// repeat keeps its event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhooks_run_through_a_failing_receiver_and_a_kill_loses_nothing() {
    let report =
        wafleet_load::scenario::webhooks::run(wafleet_load::scenario::webhooks::WebhooksOptions {
            devices: 12,
            nodes: 3,
            rate: 60,
            seconds: 8,
            fail_seconds: 2,
            kill: true,
            wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
            sims: None,
            plot: None,
        })
        .await
        .unwrap();
    let fields = &report.fields;
    assert_eq!(fields["written"], 480, "{fields:?}");
    assert_eq!(fields["delivered"], 480, "{fields:?}");
    assert_eq!(fields["lost"], 0, "{fields:?}");
    assert_eq!(fields["out_of_order"], 0, "{fields:?}");
    assert_eq!(fields["duplicated_other_id"], 0, "{fields:?}");
    assert_eq!(fields["bad_signatures"], 0, "{fields:?}");
    assert!(fields["killed"].is_string(), "{fields:?}");
}

/// A small file through a one-node cluster: uploaded, delivered and downloaded with the
/// same SHA-256, and each process's memory read (the figure itself is a benchmark's,
/// in release: BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_goes_through_a_cluster_whole() {
    let report = wafleet_load::scenario::media::run(wafleet_load::scenario::media::MediaOptions {
        size_mb: 4,
        nodes: 1,
        wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
        plot: None,
    })
    .await
    .unwrap();
    let fields = &report.fields;
    assert_eq!(fields["scenario"], "media");
    assert_eq!(fields["sha256_ok"], true, "{fields:?}");
    for process in ["gateway", "node-1"] {
        assert!(fields["rss_rise_mb"][process].is_number(), "{fields:?}");
    }
}
