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
