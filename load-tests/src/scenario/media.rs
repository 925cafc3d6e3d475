//! `wafleet-load media --size-mb M [--nodes K]`: one large file through wafleet, and
//! what it costs in memory.
//!
//! A local cluster of K nodes and a gateway (default 1; `--nodes 0`: a standalone
//! process) with one paired device. The driver uploads an M MB document (bytes made on
//! the fly and hashed as they go: the driver holds none of it), sends it to a
//! simulated phone, waits for `delivered`, checks the phone's inbox shows the same
//! SHA-256, downloads it back through the API and hashes that too. Meanwhile it reads
//! every wafleet process's resident memory (VmRSS) every 50 ms:
//!
//! - `rss_rise_mb` per process (gateway, node-1…, or standalone): the peak during the
//!   run minus the median of the second before the upload — what streaming a file of
//!   M MB costs (the goal: under 32 MB for 100 MB);
//! - upload, send-to-delivered and download times and rates;
//! - `sha256_ok`: the phone's inbox and the download both have the file's SHA-256.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::Report;
use super::pairing::{FleetPlan, pair_fleet_shown};
use super::plot::{self, Chart, Line};
use super::process::{ADMIN_KEY, rss_kib_of, sse_events};
use super::progress::Progress;
use super::sampling::Gauge;
use super::target::Target;
use super::throughput::round;

/// Options of the media scenario.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    pub size_mb: u64,
    /// Cluster nodes behind a gateway; 0: one standalone process.
    pub nodes: usize,
    pub wafleet: PathBuf,
    pub plot: Option<PathBuf>,
}

const DEVICE_PHONES: &str = "62857";
const RECIPIENT: &str = "6285900000001";
/// How often each process's memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The longest wait for the phone to have the file.
const DELIVERY_WAIT: Duration = Duration::from_secs(300);
/// The bytes of one chunk the driver makes.
const CHUNK: usize = 256 * 1024;

/// Memory readings: process name → (seconds from the start, MiB).
type Samples = Arc<Mutex<BTreeMap<String, Vec<(f64, f64)>>>>;

pub async fn run(options: MediaOptions) -> anyhow::Result<Report> {
    let progress = Progress::new();
    let target = Target::start(&options.wafleet, options.nodes, 1, Some(1), &[], false).await?;
    let api = target.api().to_owned();
    let http = reqwest::Client::new();
    progress.note(format!("{} up, API {api}", target.describe()));
    let id = "media-0".to_owned();
    let mut events = Box::pin(sse_events(&http, &format!("{api}/v1/events"), None).await?);
    let fleet = FleetPlan {
        api: api.clone(),
        network: target.network(),
        ids: vec![id.clone()],
        phone_prefix: DEVICE_PHONES.to_owned(),
        concurrency: 1,
    };
    pair_fleet_shown(&http, &fleet, &mut events, &Gauge::new("ready"), &progress).await?;

    // Memory, read in the background from now on.
    let processes = target.processes();
    let samples: Samples = Arc::default();
    let started = Instant::now();
    let sampler = {
        let (samples, processes) = (samples.clone(), processes.clone());
        tokio::spawn(async move {
            loop {
                for (name, pid) in &processes {
                    if let Ok(kib) = rss_kib_of(*pid) {
                        samples
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(name.clone())
                            .or_default()
                            .push((started.elapsed().as_secs_f64(), kib as f64 / 1024.0));
                    }
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let upload_from = started.elapsed().as_secs_f64();

    // Upload, made and hashed on the fly.
    let size = options.size_mb * 1024 * 1024;
    let sent_gauge = Gauge::new("uploaded");
    let bar = progress.bar("MB uploaded", &sent_gauge, options.size_mb);
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let body = {
        let (hasher, gauge) = (hasher.clone(), sent_gauge.clone());
        let chunks = size.div_ceil(CHUNK as u64);
        stream::iter(0..chunks).map(move |i| {
            let len = (size - i * CHUNK as u64).min(CHUNK as u64) as usize;
            let chunk = noise_chunk(i, len);
            hasher
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&chunk);
            gauge.set((i + 1) * CHUNK as u64 / (1024 * 1024));
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        })
    };
    let clock = Instant::now();
    let uploaded = http
        .post(format!("{api}/v1/media?type=document&filename=large.bin"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    anyhow::ensure!(
        uploaded.status().as_u16() == 201,
        "upload: {} {}",
        uploaded.status(),
        uploaded.text().await.unwrap_or_default()
    );
    let upload_s = clock.elapsed().as_secs_f64();
    progress.finish(bar);
    let uploaded: Value = uploaded.json().await?;
    let expected =
        hex(&std::mem::take(&mut *hasher.lock().unwrap_or_else(|e| e.into_inner())).finalize());
    let media_id = uploaded["id"].as_str().context("no media id")?.to_owned();
    let upload_sha_ok = uploaded["sha256"] == expected;

    // Send, until the phone has it.
    let clock = Instant::now();
    let sent = http
        .post(format!("{api}/v1/devices/{id}/messages"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"to": RECIPIENT, "media": {"id": media_id, "type": "document"}}))
        .send()
        .await?;
    anyhow::ensure!(sent.status().as_u16() == 202, "send: {}", sent.status());
    let message_id = sent.json::<Value>().await?["id"]
        .as_str()
        .context("no message id")?
        .to_owned();
    let outcome = tokio::time::timeout(DELIVERY_WAIT, async {
        while let Some((kind, data)) = events.next().await {
            if kind == "message.status"
                && data["message_id"] == message_id.as_str()
                && matches!(data["status"].as_str(), Some("delivered" | "failed"))
            {
                return Some(data);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .context("no outcome of the send")?;
    let deliver_s = clock.elapsed().as_secs_f64();
    anyhow::ensure!(
        outcome["status"] == "delivered",
        "the send failed: {outcome}"
    );
    let inbox: Value = http
        .get(format!(
            "{}/sim/phones/{RECIPIENT}/inbox",
            target.network().base_for(&id)
        ))
        .send()
        .await?
        .json()
        .await?;
    let inbox_sha_ok = inbox[0]["media"]["sha256"] == expected;

    // Download, hashed as it streams.
    let clock = Instant::now();
    let download = http
        .get(format!("{api}/v1/media/{media_id}"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?;
    anyhow::ensure!(
        download.status().is_success(),
        "download: {}",
        download.status()
    );
    let mut stream = download.bytes_stream();
    let (mut downloaded, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        downloaded += chunk.len() as u64;
        hash.update(&chunk);
    }
    let download_s = clock.elapsed().as_secs_f64();
    let download_sha_ok = downloaded == size && hex(&hash.finalize()) == expected;
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.abort();

    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut report = Report::default();
    let mb = options.size_mb as f64;
    report.line(format!(
        "{} MB through {}: upload {:.1} s ({:.0} MB/s), sent and delivered {:.1} s, download {:.1} s ({:.0} MB/s)",
        options.size_mb,
        target.kind(),
        upload_s,
        mb / upload_s,
        deliver_s,
        download_s,
        mb / download_s
    ));
    let sha256_ok = upload_sha_ok && inbox_sha_ok && download_sha_ok;
    report.line(format!(
        "SHA-256 {} (upload answer {upload_sha_ok}, phone's inbox {inbox_sha_ok}, download {download_sha_ok})",
        if sha256_ok { "matches everywhere" } else { "DIFFERS" }
    ));
    let mut rises = serde_json::Map::new();
    for (name, points) in &samples {
        let (before, after): (Vec<f64>, Vec<f64>) = (
            points
                .iter()
                .filter(|(t, _)| *t < upload_from)
                .map(|(_, m)| *m)
                .collect(),
            points
                .iter()
                .filter(|(t, _)| *t >= upload_from)
                .map(|(_, m)| *m)
                .collect(),
        );
        let baseline = median(before);
        let peak = after.into_iter().fold(baseline, f64::max);
        report.line(format!(
            "{name}: resident {baseline:.1} MB before, peak {peak:.1} MB: +{:.1} MB",
            peak - baseline
        ));
        rises.insert(name.clone(), json!(round(peak - baseline)));
    }
    report.field("scenario", "media");
    report.field("size_mb", options.size_mb);
    report.field("target", target.kind());
    report.field("upload_s", round(upload_s));
    report.field("deliver_s", round(deliver_s));
    report.field("download_s", round(download_s));
    report.field("sha256_ok", sha256_ok);
    report.field("rss_rise_mb", Value::Object(rises));
    if let Some(path) = &options.plot {
        let chart = Chart {
            title: "resident memory".to_owned(),
            x_label: "seconds".to_owned(),
            y_label: "MB".to_owned(),
            lines: samples
                .iter()
                .map(|(name, points)| Line::new(name, points.clone()))
                .collect(),
            marks: vec![(upload_from, "upload".to_owned())],
        };
        plot::attach(&mut report, path, "wafleet-load media", &[chart])?;
    }
    Ok(report)
}

/// Bytes that do not compress, different in every chunk.
fn noise_chunk(index: u64, len: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
