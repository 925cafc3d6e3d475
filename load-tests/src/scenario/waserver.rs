//! A `wafleet-waserver` child process: the WhatsApp Web protocol test server the real
//! link (`wafleet standalone --link whatsapp=ws://…`) pairs with and logs in to, and its
//! control API (`/sim/scan`, `/sim/stats`), on the simulator's paths.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::progress::Progress;

/// What the server prints on stderr once it listens, before its WebSocket URL.
const LISTENING: &str = "wafleet-waserver listening on ";

/// The `wafleet-waserver` binary next to this one (`target/<profile>/wafleet-waserver`).
pub fn sibling_waserver() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wafleet-waserver")))
        .unwrap_or_else(|| PathBuf::from("wafleet-waserver"))
}

/// A running test server on a free loopback port; killed on drop.
#[derive(Debug)]
pub struct Waserver {
    child: Child,
    /// `ws://127.0.0.1:PORT/ws`: what the link dials.
    pub ws: String,
    /// `http://127.0.0.1:PORT`: the control API (`/sim/scan`, `/sim/stats`).
    pub base: String,
}

/// The counters of `/sim/stats` a run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaserverStats {
    pub pairings: u64,
    pub logins: u64,
    /// Logins refused (an unknown device: 401; a banned account: 402).
    pub refused_logins: u64,
    /// Copies of a device's message a phone could not decrypt.
    pub undecryptable: u64,
    /// Noise handshakes completed, by pattern (`xx`, `ik`, `xx_fallback`).
    pub handshakes: serde_json::Map<String, Value>,
    pub prekeys_uploaded: u64,
    /// Pre-key uploads (a device's first after pairing, then top-ups).
    pub prekey_uploads: u64,
    /// Stanzas the server had no answer for, with a count each.
    pub unknown: serde_json::Map<String, Value>,
}

impl WaserverStats {
    pub fn of(stats: &Value) -> anyhow::Result<WaserverStats> {
        let count = |name: &str| {
            stats[name]
                .as_u64()
                .with_context(|| format!("no {name} in /sim/stats: {stats}"))
        };
        let map = |name: &str| stats[name].as_object().cloned().unwrap_or_default();
        Ok(WaserverStats {
            pairings: count("pairings")?,
            logins: count("logins")?,
            refused_logins: count("refused_logins")?,
            undecryptable: count("undecryptable")?,
            handshakes: map("handshakes"),
            prekeys_uploaded: count("prekeys_uploaded")?,
            prekey_uploads: count("prekey_uploads")?,
            unknown: map("unknown"),
        })
    }

    /// Handshakes of each pattern since `before`.
    pub fn handshakes_since(&self, before: &WaserverStats) -> serde_json::Map<String, Value> {
        self.handshakes
            .iter()
            .map(|(pattern, n)| {
                let earlier = before.handshakes.get(pattern).and_then(Value::as_u64);
                let grown = n.as_u64().unwrap_or(0) - earlier.unwrap_or(0);
                (pattern.clone(), Value::from(grown))
            })
            .collect()
    }
}

impl Waserver {
    /// Starts `binary --listen 127.0.0.1:0` and waits until it says where it listens.
    pub async fn start(binary: &Path) -> anyhow::Result<Waserver> {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (build it: cargo build --release -p wafleet-waserver)",
                    binary.display()
                )
            })?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let ws = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(LISTENING) {
                    return Ok(url.trim().to_owned());
                }
                eprintln!("{line}");
            }
            bail!("wafleet-waserver exited before listening")
        })
        .await
        .context("wafleet-waserver did not listen within 20 s")??;
        // Its warnings, as the other children's, on this process's stderr.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
            }
        });
        let base = base_of(&ws)?;
        Ok(Waserver { child, ws, base })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        super::process::rss_kib_of(self.child.id().context("wafleet-waserver has exited")?)
    }

    /// Waits until the server has answered `devices` pre-key uploads: each device uploads
    /// once after its pairing, in the background after it is READY (whatsapp-rust's
    /// passive tasks), and with a thousand devices storing 812 keys each that takes a
    /// while. Memory read, or a process killed, before that measures a state no linked
    /// device stays in (and a killed one uploads again after its restart).
    pub async fn await_prekey_uploads(
        &self,
        progress: &Progress,
        http: &reqwest::Client,
        devices: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        progress.note(format!("waiting for {devices} devices' pre-key uploads"));
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let uploads = self.stats(http).await?.prekey_uploads;
            if uploads >= devices {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "only {uploads} of {devices} devices uploaded their pre-keys within {within:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<WaserverStats> {
        let stats: Value = http
            .get(format!("{}/sim/stats", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        WaserverStats::of(&stats)
    }
}

/// `http://ADDR` of `ws://ADDR/PATH`.
fn base_of(ws: &str) -> anyhow::Result<String> {
    let rest = ws
        .strip_prefix("ws://")
        .with_context(|| format!("not a ws:// URL: {ws}"))?;
    let addr = rest.split('/').next().unwrap_or(rest);
    Ok(format!("http://{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_control_api_is_at_the_websockets_address() {
        assert_eq!(
            base_of("ws://127.0.0.1:4567/ws").unwrap(),
            "http://127.0.0.1:4567"
        );
        assert!(base_of("http://127.0.0.1:4567").is_err());
    }

    #[test]
    fn handshakes_since_counts_each_pattern_that_grew() {
        let before = WaserverStats::of(&json!({
            "pairings": 2, "logins": 4, "prekeys_uploaded": 1624, "prekey_uploads": 2,
            "refused_logins": 0, "undecryptable": 0,
            "handshakes": {"xx": 6}, "unknown": {}
        }))
        .unwrap();
        let after = WaserverStats::of(&json!({
            "pairings": 2, "logins": 6, "prekeys_uploaded": 1624, "prekey_uploads": 2,
            "refused_logins": 0, "undecryptable": 0,
            "handshakes": {"xx": 6, "ik": 2}, "unknown": {}
        }))
        .unwrap();
        assert_eq!(
            Value::Object(after.handshakes_since(&before)),
            json!({"xx": 0, "ik": 2})
        );
    }

    #[test]
    fn stats_without_a_counter_are_an_error() {
        assert!(WaserverStats::of(&json!({"pairings": 1})).is_err());
    }
}
