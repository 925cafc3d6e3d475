//! The dashboard (`/ui`) in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/ui/dashboard.mjs`, its packages from `tests/ui/package-lock.json`) against a
//! real standalone with the simulated network. The script logs in with a key, creates a
//! device, sees its QR code replaced when the simulator rotates it, scans it through
//! `/sim/scan`, sees READY without a reload,
//! sends a message and sees it delivered, starts a small job and watches its progress
//! reach 100 %, then lists a fleet of 1,000 devices and watches a status change; it fails
//! if any request leaves the gateway's origin or the page reports an error.
//!
//! Needs `chromium`, `node` and `npm ci` done in `tests/ui` (`.ci/run` does all three);
//! skipped without them unless `WAFLEET_REQUIRE_TOOLS` is set.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::tools::tool;
use common::{KEY, Standalone};

/// Devices in the fleet check (the figure).
const FLEET: &str = "1000";

/// How long the simulator shows each QR code.
const QR_TTL_MS: &str = "8000";

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_links_a_device_sends_and_runs_a_job_in_a_real_browser() {
    let Some(chromium) = tool("chromium", "the browser test", "Debian package chromium") else {
        return;
    };
    let Some(node) = tool("node", "the browser test", "Debian package nodejs") else {
        return;
    };
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    if !scripts.join("node_modules/playwright-core").is_dir() {
        assert!(
            std::env::var_os("WAFLEET_REQUIRE_TOOLS").is_none(),
            "playwright-core is required (WAFLEET_REQUIRE_TOOLS is set): run `npm ci` in tests/ui"
        );
        eprintln!("playwright-core not installed: skipped the browser test (`npm ci` in tests/ui)");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    // QR codes rotate every 8 s instead of 30, so that the test sees the page follow one.
    let app =
        Standalone::start_with_env(data.path(), &[("WAFLEET_SIM_QR_TTL_MS", QR_TTL_MS)]).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let run = tokio::process::Command::new(node)
        .arg("dashboard.mjs")
        .current_dir(&scripts)
        .env("WAFLEET_URL", &app.base)
        .env("WAFLEET_KEY", KEY)
        .env("CHROMIUM", chromium)
        .env("SHOTS", &shots)
        .env("FLEET", FLEET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser test ran for more than 5 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    assert_eq!(summary["passed"], true);
    assert_eq!(summary["foreign_requests"], 0);
    println!("screenshots in {}", shots.display());
}
