//! The load scenarios work end to end (small sizes; the real figures come from
//! `wafleet-load` in release, see BENCHMARKS.md).

use std::time::Duration;

use wafleet_load::scenario::idle::{IdleOptions, run};

#[tokio::test]
async fn idle_scenario_pairs_every_device_and_recovers_after_kill9() {
    let report = run(IdleOptions {
        devices: 20,
        concurrency: 8,
        wafleet: env!("CARGO_BIN_EXE_wafleet").into(),
        timeout: Duration::from_secs(60),
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
