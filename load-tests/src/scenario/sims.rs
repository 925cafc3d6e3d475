//! The simulated network as one or more `wafleet sim` child processes, and its control
//! API as a whole: each device's calls go to the simulator that serves it, counters and
//! inboxes are added up over all of them.
//!
//! A simulator holds one socket per connected device, and a process may hold only so
//! many open files (20,000 on the machines the benchmarks run on), so a large fleet
//! runs on several (`wafleet-load failover --sims N`, or as many as
//! [`sims_for`] says). Links pick their simulator by
//! [`sim_of`](wafleet_cluster_config::sim_of) over the URL list the nodes are given;
//! this driver uses the same rule and the same order to act as each device's phone.
//!
//! What lives where, for the control API: a link (and so its QR code, pairing code,
//! connection counters and pairings) on its device's simulator; a message a device sends
//! in the recipient phone's inbox *on the sender's simulator*. A phone's inbox is
//! therefore read from every simulator and merged ([`Sims::inbox`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Child;
use wafleet_cluster_config::sim_of;

use super::cluster::{spawn, wait_line};

/// Descriptors a simulator keeps for itself and its control API, whatever its devices
/// (a quarter of a smaller limit).
const RESERVED_FILES: u64 = 1_000;

/// How many simulators `devices` need when each process may open `files_limit` files.
///
/// Each device's link is one socket on its simulator. Room is left for two per device:
/// in a failover or a handoff a device's new connection can arrive before its simulator
/// has read the end of the old one, and a mass reconnect is exactly when a process must
/// not run out. With a limit of 20,000: up to 9,500 devices per simulator, so 20,000
/// devices need 3 and 30,000 need 4.
pub fn sims_for(devices: usize, files_limit: u64) -> usize {
    let reserved = RESERVED_FILES.min(files_limit / 4);
    let per_sim = (files_limit.saturating_sub(reserved) / 2).max(1);
    (devices as u64).div_ceil(per_sim).max(1) as usize
}

/// The open-files limit children get: the driver's hard limit (each wafleet process
/// raises its soft limit to it). Raises the driver's own soft limit on the way.
pub fn files_limit() -> u64 {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::Resource::NOFILE
        .get()
        .map(|(_, hard)| hard)
        .unwrap_or(1_024)
}

/// A `wafleet sim` child.
#[derive(Debug)]
pub struct SimProcess {
    _child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `ws://127.0.0.1:PORT/ws`
    pub ws: String,
}

impl SimProcess {
    pub async fn start(binary: &Path) -> anyhow::Result<SimProcess> {
        SimProcess::start_with(binary, &[]).await
    }

    /// With more `wafleet sim` arguments, e.g. `["--qr-ttl-ms", "1000"]`.
    pub async fn start_with(binary: &Path, args: &[&str]) -> anyhow::Result<SimProcess> {
        let mut all = vec!["sim", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (child, mut lines) = spawn(binary, &all, &[])?;
        let addr = wait_line(&mut lines, "listening on http://", Duration::from_secs(20)).await?;
        Ok(SimProcess {
            _child: child,
            base: format!("http://{addr}"),
            ws: format!("ws://{addr}/ws"),
        })
    }
}

/// The simulators of one network, in the order the links are given them.
#[derive(Debug)]
pub struct Sims {
    processes: Vec<SimProcess>,
}

impl Sims {
    /// Starts `count` simulators (at least one), all at once.
    pub async fn start(binary: &Path, count: usize) -> anyhow::Result<Sims> {
        if count == 0 {
            bail!("a simulated network needs at least one simulator");
        }
        let starts = (0..count).map(|_| SimProcess::start(binary));
        let processes = futures_util::future::try_join_all(starts).await?;
        Ok(Sims { processes })
    }

    /// Simulators already running, in the order the links know them.
    pub fn of(processes: Vec<SimProcess>) -> anyhow::Result<Sims> {
        if processes.is_empty() {
            bail!("a simulated network needs at least one simulator");
        }
        Ok(Sims { processes })
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Never true (see [`Sims::start`]).
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Every simulator, in order.
    pub fn all(&self) -> &[SimProcess] {
        &self.processes
    }

    /// Their WebSockets, in order: `[link] sim_urls` of every node.
    pub fn ws_urls(&self) -> Vec<String> {
        self.processes.iter().map(|p| p.ws.clone()).collect()
    }

    /// `--link` of a standalone process that uses them: `sim=URL,URL…`.
    pub fn link_arg(&self) -> String {
        format!("sim={}", self.ws_urls().join(","))
    }

    /// The simulator that serves `device_id` (the links' rule).
    pub fn serving(&self, device_id: &str) -> &SimProcess {
        &self.processes[sim_of(device_id, self.processes.len())]
    }

    /// The control API base (`http://…`) of the simulator that serves `device_id`.
    pub fn base_for(&self, device_id: &str) -> &str {
        &self.serving(device_id).base
    }

    /// Counter `name` of `/sim/stats` on each simulator, in order.
    pub async fn stat_each(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<Vec<i64>> {
        let mut values = Vec::with_capacity(self.processes.len());
        for sim in &self.processes {
            values.push(stat_at(http, &sim.base, name).await?);
        }
        Ok(values)
    }

    /// Counter `name` of `/sim/stats`, added up over every simulator.
    pub async fn stat(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<i64> {
        Ok(self.stat_each(http, name).await?.iter().sum())
    }

    /// What reached `phone`, from every simulator (each holds what its own devices
    /// sent), in order of arrival.
    pub async fn inbox(&self, http: &reqwest::Client, phone: &str) -> anyhow::Result<Vec<Value>> {
        let mut messages = Vec::new();
        for sim in &self.processes {
            messages.extend(inbox_at(http, &sim.base, phone).await?);
        }
        messages.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        Ok(messages)
    }
}

/// The simulated network of a run, as the driver acting as the phones sees it: the one
/// inside a standalone process (`--link sim`, control API on the process's own address),
/// `wafleet sim` processes, or the WhatsApp Web protocol test server of the real link.
#[derive(Debug, Clone)]
pub enum Network {
    /// `http://…` of the one control API every device is paired at and every inbox is
    /// read from: a standalone process's own (its simulator inside), or a
    /// `wafleet-waserver`'s (the real link's test server, on the same paths).
    One(String),
    Processes(Arc<Sims>),
}

impl Network {
    /// The control API base of the simulator that serves `device_id`.
    pub fn base_for(&self, device_id: &str) -> &str {
        match self {
            Network::One(base) => base,
            Network::Processes(sims) => sims.base_for(device_id),
        }
    }

    /// How many simulators (1 in process).
    pub fn len(&self) -> usize {
        match self {
            Network::One(_) => 1,
            Network::Processes(sims) => sims.len(),
        }
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counter `name` of `/sim/stats`, added up over every simulator.
    pub async fn stat(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<i64> {
        match self {
            Network::One(base) => stat_at(http, base, name).await,
            Network::Processes(sims) => sims.stat(http, name).await,
        }
    }

    /// What reached `phone`, from every simulator, in order of arrival.
    pub async fn inbox(&self, http: &reqwest::Client, phone: &str) -> anyhow::Result<Vec<Value>> {
        match self {
            Network::One(base) => inbox_at(http, base, phone).await,
            Network::Processes(sims) => sims.inbox(http, phone).await,
        }
    }
}

/// Counter `name` of `/sim/stats` on the simulator at `base`.
async fn stat_at(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<i64> {
    let stats: Value = http
        .get(format!("{base}/sim/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    stats[name]
        .as_i64()
        .with_context(|| format!("no {name} in {base}/sim/stats"))
}

/// `phone`'s inbox on the simulator at `base`.
async fn inbox_at(http: &reqwest::Client, base: &str, phone: &str) -> anyhow::Result<Vec<Value>> {
    let inbox: Value = http
        .get(format!("{base}/sim/phones/{phone}/inbox"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(match inbox {
        Value::Array(messages) => messages,
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_simulator_per_nine_thousand_five_hundred_devices_at_twenty_thousand_files() {
        assert_eq!(sims_for(0, 20_000), 1);
        assert_eq!(sims_for(1_000, 20_000), 1);
        assert_eq!(sims_for(9_500, 20_000), 1);
        assert_eq!(sims_for(9_501, 20_000), 2);
        assert_eq!(sims_for(16_000, 20_000), 2);
        assert_eq!(sims_for(20_000, 20_000), 3);
        assert_eq!(sims_for(30_000, 20_000), 4);
        // The usual default soft limit: 384 devices each.
        assert_eq!(sims_for(1_000, 1_024), 3);
        assert_eq!(sims_for(10, 100), 1);
        assert_eq!(sims_for(10, 0), 10);
        assert_eq!(sims_for(30_000, 1_048_576), 1);
    }
}
