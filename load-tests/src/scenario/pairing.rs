//! Pairing like a patient phone: a QR code that expired before the driver scanned it
//! is not the end of the pairing. The device shows a new code every `qr_ttl`
//! (30 s in the simulator); a person would look at the screen again and scan that.
//!
//! With thousands of devices started at once, a scan can come after the code it read
//! from the event stream expired (`410 qr_expired`, or `404 qr_not_found` once the
//! simulator has forgotten the retired code). Then [`scan_patiently`] reads the
//! device's current code from the API (`GET /v1/devices/{id}/qr?format=raw`) and scans
//! again, up to [`MAX_SCANS`] times.
//!
//! [`pair_fleet`] does it for a whole fleet: create, start, scan each device's first
//! code as it shows on the event stream, until every device is READY.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::process::{ADMIN_KEY, admin_get, post_patiently};
use super::progress::Progress;
use super::sampling::Gauge;
use super::sims::Network;

/// Scans of one device before giving up (each after its previous code expired).
pub const MAX_SCANS: u32 = 6;
/// How long to wait for the device to show a code other than the one that expired.
const NEW_CODE_WITHIN: Duration = Duration::from_secs(10);
/// Pause between two reads of the device's code while it still shows the old one.
const READ_AGAIN_AFTER: Duration = Duration::from_millis(200);

/// Where a device is paired: the API that shows its QR code, and the control API of
/// the simulator that serves it.
#[derive(Debug, Clone, Copy)]
pub struct PairingSite<'a> {
    /// `http://…` of the gateway or standalone process (the admin key is the scenarios').
    pub api: &'a str,
    /// `http://…` of the device's simulator.
    pub sim: &'a str,
}

/// A fleet to create, start and pair through an API.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// `http://…` of the gateway or standalone process.
    pub api: String,
    /// Where each device is scanned.
    pub network: Network,
    pub ids: Vec<String>,
    /// The device at index `i` of `ids` is linked to phone `{phone_prefix}{i:08}`.
    pub phone_prefix: String,
    /// Creations in flight at once; scans have as many of their own (behind thousands
    /// of creations they would wait past their codes' expiry).
    pub concurrency: usize,
}

/// Creates and starts every device of `plan` (retrying what the API says may be
/// retried), scans each one's first QR code as it shows on `events` (a stream of every
/// device's events opened before), and waits until every device has said READY;
/// `ready` follows how many have. Returns how many scans were repeated because a code
/// expired first.
/// [`pair_fleet`] with a progress bar of the devices READY, and a note of how long it
/// took.
pub async fn pair_fleet_shown<S>(
    http: &reqwest::Client,
    plan: &FleetPlan,
    events: &mut S,
    ready: &Gauge,
    progress: &Progress,
) -> anyhow::Result<u32>
where
    S: Stream<Item = (String, Value)> + Unpin,
{
    let started = Instant::now();
    let bar = progress.bar("devices paired", ready, plan.ids.len() as u64);
    let rescans = pair_fleet(http, plan, events, ready).await?;
    progress.finish(bar);
    progress.note(format!(
        "{} devices paired and READY in {:.1}s",
        plan.ids.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(rescans)
}

pub async fn pair_fleet<S>(
    http: &reqwest::Client,
    plan: &FleetPlan,
    events: &mut S,
    ready: &Gauge,
) -> anyhow::Result<u32>
where
    S: Stream<Item = (String, Value)> + Unpin,
{
    let index: HashMap<&str, usize> = plan
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut creations = JoinSet::new();
    for id in plan.ids.clone() {
        let (http, base, gate) = (http.clone(), plan.api.clone(), gate.clone());
        creations.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let device = json!({"id": id, "name": id});
            post_patiently(&http, &format!("{base}/v1/devices"), &device).await?;
            post_patiently(&http, &format!("{base}/v1/devices/{id}/start"), &json!({})).await?;
            anyhow::Ok(())
        });
    }
    let scan_gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut scans = JoinSet::new();
    let mut paired = HashSet::new();
    let mut scanned = HashSet::new();
    let mut rescans = 0u32;
    while paired.len() < plan.ids.len() {
        let (kind, data) = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .with_context(|| {
                format!(
                    "no event for 30 s while pairing ({} of {} READY)",
                    paired.len(),
                    plan.ids.len()
                )
            })?
            .context("event stream ended")?;
        let device = data["device_id"].as_str().unwrap_or_default();
        let Some(&i) = index.get(device) else {
            continue;
        };
        if kind == "qr" && scanned.insert(i) {
            let (http, network, gate) = (http.clone(), plan.network.clone(), scan_gate.clone());
            let api = plan.api.clone();
            let device = device.to_owned();
            let code = data["code"].as_str().unwrap_or_default().to_owned();
            let phone = format!("{}{i:08}", plan.phone_prefix);
            scans.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let site = PairingSite {
                    api: &api,
                    sim: network.base_for(&device),
                };
                scan_patiently(&http, site, &device, &code, &phone).await
            });
        } else if kind == "status" && data["status"] == "READY" && paired.insert(i) {
            ready.set(paired.len() as u64);
        }
        while let Some(done) = creations.try_join_next() {
            done??;
        }
        while let Some(done) = scans.try_join_next() {
            rescans += done??;
        }
    }
    while let Some(done) = creations.join_next().await {
        done??;
    }
    while let Some(done) = scans.join_next().await {
        rescans += done??;
    }
    Ok(rescans)
}

/// Scans `code` for `device_id` with `phone`, and again with the device's current code
/// whenever the code scanned had expired. Returns how many scans were repeated.
pub async fn scan_patiently(
    http: &reqwest::Client,
    site: PairingSite<'_>,
    device_id: &str,
    code: &str,
    phone: &str,
) -> anyhow::Result<u32> {
    let mut code = code.to_owned();
    for attempt in 0..MAX_SCANS {
        let response = http
            .post(format!("{}/sim/scan", site.sim))
            .json(&json!({"qr": code, "phone": phone}))
            .send()
            .await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        match (status, answer["error"]["code"].as_str()) {
            (200, _) => return Ok(attempt),
            (410, Some("qr_expired")) | (404, Some("qr_not_found")) => {
                match current_code(http, site.api, device_id, &code).await? {
                    Current::Code(next) => code = next,
                    Current::Paired => return Ok(attempt),
                }
            }
            _ => bail!("scan of {device_id}: {status} {answer}"),
        }
    }
    bail!("{device_id}: {MAX_SCANS} QR codes expired before they were scanned")
}

/// What the device shows now.
enum Current {
    Code(String),
    /// It is not pairing any more, because it is READY: a scan went through after all.
    Paired,
}

/// The device's QR code once it differs from `expired`.
async fn current_code(
    http: &reqwest::Client,
    api: &str,
    device_id: &str,
    expired: &str,
) -> anyhow::Result<Current> {
    let deadline = Instant::now() + NEW_CODE_WITHIN;
    loop {
        let response = http
            .get(format!("{api}/v1/devices/{device_id}/qr?format=raw"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200 => match answer["code"].as_str() {
                Some(code) if code != expired => return Ok(Current::Code(code.to_owned())),
                _ => {}
            },
            409 if device_status(http, api, device_id).await? == "READY" => {
                return Ok(Current::Paired);
            }
            // Between two codes, or restarting its pairing: look again shortly.
            409 | 503 | 504 => {}
            _ => bail!("QR code of {device_id}: {status} {answer}"),
        }
        if Instant::now() > deadline {
            bail!("{device_id} showed no new QR code within {NEW_CODE_WITHIN:?}");
        }
        tokio::time::sleep(READ_AGAIN_AFTER).await;
    }
}

async fn device_status(
    http: &reqwest::Client,
    api: &str,
    device_id: &str,
) -> anyhow::Result<String> {
    let device = admin_get(http, &format!("{api}/v1/devices/{device_id}")).await?;
    Ok(device["status"].as_str().unwrap_or_default().to_owned())
}
