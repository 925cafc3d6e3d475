//! A simulated network of several `wafleet sim` processes: each device links to the
//! simulator the shared rule (`sim_of`) picks, pairing and sending work on every one of
//! them, and the load driver's view of the network (scans, counters, inboxes) adds up.
//! Also: the driver pairs like a patient phone when a QR code expired before its scan,
//! and a process out of open files says so once.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Sse;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use wafleet_cluster_config::sim_of;
use wafleet_load::scenario::pairing::{PairingSite, scan_patiently};
use wafleet_load::scenario::process::Standalone;
use wafleet_load::scenario::sims::{SimProcess, Sims};

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_spread_over_two_simulators_pair_and_send_on_both() {
    let wafleet = Path::new(WAFLEET);
    let sims = Sims::start(wafleet, 2).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start_with_link(wafleet, data.path(), &sims.link_arg())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..16).map(|i| format!("ms-{i:02}")).collect();
    let on: Vec<usize> = ids.iter().map(|id| sim_of(id, 2)).collect();
    assert!(
        on.contains(&0) && on.contains(&1),
        "the ids must land on both simulators: {on:?}"
    );

    // Create and start every device; scan each QR code on its own simulator.
    let mut events = Sse::connect(&http, &app.url("/v1/events"), None).await;
    for id in &ids {
        app.post("/v1/devices", &json!({"id": id, "name": id}), 201)
            .await
            .unwrap();
        app.post(&format!("/v1/devices/{id}/start"), &json!({}), 202)
            .await
            .unwrap();
    }
    let mut ready = HashSet::new();
    let mut scanned = HashSet::new();
    while ready.len() < ids.len() {
        let event = events.next().await;
        let device = event.data["device_id"].as_str().unwrap().to_owned();
        match event.kind.as_str() {
            "qr" if scanned.insert(device.clone()) => {
                let n: usize = device["ms-".len()..].parse().unwrap();
                // The other simulator has never seen this code: two separate networks.
                let other = &sims.all()[1 - sim_of(&device, 2)].base;
                let wrong = http
                    .post(format!("{other}/sim/scan"))
                    .json(&json!({"qr": event.data["code"], "phone": phone(n)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    wrong.status(),
                    404,
                    "{device} scanned on the wrong simulator"
                );
                let site = PairingSite {
                    api: &app.base,
                    sim: sims.base_for(&device),
                };
                let code = event.data["code"].as_str().unwrap();
                scan_patiently(&http, site, &device, code, &phone(n))
                    .await
                    .unwrap();
            }
            "status" if event.data["status"] == "READY" => {
                ready.insert(device);
            }
            _ => {}
        }
    }

    // Each simulator holds exactly the links the rule gives it.
    let links = sims.stat_each(&http, "links_connected").await.unwrap();
    let expected: Vec<i64> = (0..2)
        .map(|s| on.iter().filter(|&&o| o == s).count() as i64)
        .collect();
    assert_eq!(links, expected);
    assert_eq!(
        sims.stat(&http, "pairings").await.unwrap(),
        ids.len() as i64
    );

    // Every device sends to the same phone; the phone's inbox, read over both
    // simulators, has every message once.
    let mut sent = HashMap::new();
    for id in &ids {
        let accepted = app
            .post(
                &format!("/v1/devices/{id}/messages"),
                &json!({"to": "6281900000001", "text": format!("from {id}")}),
                202,
            )
            .await
            .unwrap();
        sent.insert(accepted["id"].as_str().unwrap().to_owned(), id.clone());
    }
    let mut delivered = HashSet::new();
    while delivered.len() < sent.len() {
        let event = events.next_of_kind("message.status").await;
        if event.data["status"] == "delivered" {
            delivered.insert(event.data["message_id"].as_str().unwrap().to_owned());
        }
    }
    let inbox = sims.inbox(&http, "6281900000001").await.unwrap();
    assert_eq!(inbox.len(), ids.len(), "{inbox:?}");
    let texts: HashSet<&str> = inbox.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), ids.len());
    let delivered_each = sims.stat_each(&http, "messages_delivered").await.unwrap();
    assert_eq!(delivered_each, expected, "each simulator delivered its own");

    // A restart reconnects every device to its own simulator, without a new pairing.
    app.kill().await;
    let app = Standalone::start_with_link(wafleet, data.path(), &sims.link_arg())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sims.stat_each(&http, "links_connected").await.unwrap() != expected {
        assert!(Instant::now() < deadline, "not every link came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sims.stat(&http, "pairings").await.unwrap(),
        ids.len() as i64
    );
    assert_eq!(sims.stat(&http, "handshakes_refused").await.unwrap(), 0);
    app.kill().await;
}

/// A QR code that expired before the driver scanned it: the driver reads the device's
/// current code and scans that.
#[tokio::test]
async fn a_scan_of_an_expired_qr_code_reads_the_current_one_and_scans_again() {
    let wafleet = Path::new(WAFLEET);
    // Codes of one second, ten of them: the device pairs for ten seconds.
    let sim = SimProcess::start_with(wafleet, &["--qr-ttl-ms", "1000"])
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start_with_link(wafleet, data.path(), &format!("sim={}", sim.ws))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    app.post("/v1/devices", &json!({"id": "late", "name": "late"}), 201)
        .await
        .unwrap();
    let mut events = Sse::connect(&http, &app.url("/v1/devices/late/events"), None).await;
    app.post("/v1/devices/late/start", &json!({}), 202)
        .await
        .unwrap();
    let first = events.next_of_kind("qr").await.data["code"]
        .as_str()
        .unwrap()
        .to_owned();
    // A phone that looks away: the code it read expires, the device shows the next.
    let next = events.next_of_kind("qr").await;
    assert_ne!(next.data["code"], first.as_str());
    let stale = http
        .post(format!("{}/sim/scan", sim.base))
        .json(&json!({"qr": first, "phone": "6281900000002"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 410, "the first code has expired");

    let site = PairingSite {
        api: &app.base,
        sim: &sim.base,
    };
    let rescans = scan_patiently(&http, site, "late", &first, "6281900000002")
        .await
        .unwrap();
    assert_eq!(rescans, 1, "one more scan, of the current code");
    events.until_status("READY").await;
    let device = app.get_json("/v1/devices/late").await.unwrap();
    assert_eq!(device["status"], "READY");
    assert_eq!(device["phone"], "6281900000002");
}

/// A simulator that cannot open another file says so once, clearly, and serves again
/// when connections close (the accept loop is not an error line a second).
#[tokio::test]
async fn a_simulator_out_of_open_files_says_so_once() {
    // `ulimit -n` sets the soft and the hard limit: the process cannot raise it.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {WAFLEET} sim --listen 127.0.0.1:0"
        ))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = stdout.next_line().await.unwrap().expect("sim exited");
        if let Some(addr) = line.strip_prefix("listening on http://") {
            break addr.to_owned();
        }
    };
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = lines_tx.send(line);
        }
    });

    // Far more connections than the process may hold, kept open for three seconds.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&addr).await {
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(held);
    // Served again once they are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = reqwest::get(format!("http://{addr}/sim/stats")).await;
        if let Ok(response) = stats
            && response.status() == 200
        {
            let _: Value = response.json().await.unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the simulator never served again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut log = Vec::new();
    while let Ok(line) = lines.try_recv() {
        log.push(line);
    }
    let out: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("out of open files"))
        .collect();
    assert_eq!(out.len(), 1, "said once: {log:#?}");
    assert!(out[0].contains("ERROR"), "{}", out[0]);
    assert!(
        log.iter().any(|l| l.contains("open files available again")),
        "and said when it was over: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("accept error")),
        "axum's own line a second: {log:#?}"
    );
    let _ = child.kill().await;
}

fn phone(n: usize) -> String {
    format!("62819{n:08}")
}
