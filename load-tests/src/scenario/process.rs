//! A `wafleet standalone --link sim` child process, its address, and a client for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin key the scenarios give the processes they start.
pub const ADMIN_KEY: &str = "wafleet-load-admin-key";

/// The `wafleet` binary next to this one (`target/<profile>/wafleet`).
pub fn sibling_wafleet() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wafleet")))
        .unwrap_or_else(|| PathBuf::from("wafleet"))
}

/// A running standalone process.
#[derive(Debug)]
pub struct Standalone {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl Standalone {
    pub async fn start(binary: &Path, data: &Path) -> anyhow::Result<Standalone> {
        Standalone::start_with_link(binary, data, "sim").await
    }

    /// With `--link LINK` (`sim`, or `sim=ws://…` for an external simulator), and the
    /// quota table set to [`QuotaTable::UNTHROTTLED`](wafleet_cluster_config::QuotaTable::UNTHROTTLED):
    /// scenarios measure wafleet, not the pace that keeps real numbers safe.
    pub async fn start_with_link(
        binary: &Path,
        data: &Path,
        link: &str,
    ) -> anyhow::Result<Standalone> {
        let standalone = Standalone::launch(binary, data, link).await?;
        unthrottle(&standalone.http, &standalone.base).await?;
        Ok(standalone)
    }

    /// [`Standalone::start`] with these environment variables set as well.
    pub async fn start_with_env(
        binary: &Path,
        data: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Standalone> {
        let standalone = Standalone::launch_with_env(binary, data, "sim", env).await?;
        unthrottle(&standalone.http, &standalone.base).await?;
        Ok(standalone)
    }

    /// With `--link LINK` and whatever quota table the data folder has (the defaults in
    /// a fresh one).
    pub async fn launch(binary: &Path, data: &Path, link: &str) -> anyhow::Result<Standalone> {
        Standalone::launch_with_env(binary, data, link, &[]).await
    }

    /// [`Standalone::launch`] with these environment variables set as well (for
    /// instance `WAFLEET__WEBHOOKS__ALLOW_PRIVATE_TARGETS=true`, so that webhooks may
    /// point at a receiver on 127.0.0.1).
    pub async fn launch_with_env(
        binary: &Path,
        data: &Path,
        link: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Standalone> {
        let mut child = Command::new(binary)
            .args([
                "standalone",
                "--listen",
                "127.0.0.1:0",
                "--link",
                link,
                "--data",
            ])
            .arg(data)
            .env("WAFLEET_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok(addr.trim().to_owned());
                }
            }
            bail!("wafleet exited before listening")
        })
        .await
        .context("wafleet did not listen within 30 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Standalone { child, base, http })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory of the process, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib_of(self.pid().context("process has exited")?)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST with the admin key; the status must be `expect`.
    pub async fn post(&self, path: &str, body: &Value, expect: u16) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != expect {
            bail!("POST {path}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("GET {path}: {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// An SSE stream of every device's events, as (event kind, data) pairs; with
    /// `replay`, starting from the oldest event the process still buffers.
    pub async fn events(
        &self,
        replay: bool,
    ) -> anyhow::Result<impl futures_util::Stream<Item = (String, Value)> + use<>> {
        sse_events(&self.http, &self.url("/v1/events"), replay.then_some(0)).await
    }

    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A throwaway `redis-server` on a free loopback port, without persistence; killed on
/// drop. Ready when returned (it said so on its log, no polling).
#[derive(Debug)]
pub struct RedisServer {
    _child: Child,
    pub url: String,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("redis-server not found: install it (apt-get install redis-server)")?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("Ready to accept connections") {
                    return Ok(());
                }
            }
            bail!("redis-server exited before it was ready")
        })
        .await
        .context("redis-server not ready within 10 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(RedisServer {
            _child: child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }
}

/// A TCP port free on 127.0.0.1 now, for a child process to listen on: a random port
/// below the range the OS picks ports from by itself (`ip_local_port_range`), that this
/// process has not handed out before, and that a bind succeeds on.
///
/// A port the OS picked (`bind(127.0.0.1:0)`, then let go) was the old way: any socket
/// of any process connecting somewhere could be given it again before the child bound
/// it (a cluster test failed on "Address already in use" that way). Below the range,
/// only another process choosing it explicitly can take it.
pub fn free_port() -> anyhow::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let below = local_port_range_start().clamp(FREE_PORTS_FROM + 1_000, u16::MAX);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1_000 {
        let port = fastrand::u16(FREE_PORTS_FROM..below);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between {FREE_PORTS_FROM} and {below}")
}

/// The lowest port [`free_port`] hands out (clear of the well-known and common ones).
const FREE_PORTS_FROM: u16 = 20_000;

/// The first port of the range the OS picks from by itself (32768 unless configured).
fn local_port_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// An SSE stream at `url` (with the admin key), as (event kind, data) pairs; resumed after
/// `last_event_id` when given.
pub async fn sse_events(
    http: &reqwest::Client,
    url: &str,
    last_event_id: Option<u64>,
) -> anyhow::Result<impl futures_util::Stream<Item = (String, Value)> + use<>> {
    let mut request = http.get(url).bearer_auth(ADMIN_KEY);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", response.status());
    }
    let bytes = response.bytes_stream();
    Ok(futures_util::stream::unfold(
        (bytes, String::new()),
        |(mut bytes, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut kind = None;
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            kind = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if let (Some(kind), Ok(data)) = (kind, serde_json::from_str(&data)) {
                        return Some(((kind, data), (bytes, buffer)));
                    }
                    continue;
                }
                let chunk = bytes.next().await?.ok()?;
                buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        },
    ))
}

/// GETs `url` with the admin key: the answer's JSON body, or an error for a non-2xx.
pub async fn admin_get(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// POSTs `body` to `url` with the admin key; retries (for up to 30 s) while the answer
/// says a retry is safe (`"retryable": true`, e.g. a node that is still taking its
/// shards). Returns the answer's body.
pub async fn post_patiently(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = http
            .post(url)
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        if answer["error"]["retryable"] != true || std::time::Instant::now() > deadline {
            bail!("POST {url}: {status} {answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets the quota table of the wafleet behind `base` to
/// [`QuotaTable::UNTHROTTLED`](wafleet_cluster_config::QuotaTable::UNTHROTTLED), through
/// its API (a gateway tells every node before it answers).
pub async fn unthrottle(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let table = wafleet_cluster_config::QuotaTable::UNTHROTTLED;
    let response = http
        .put(format!("{base}/v1/settings/trust-levels"))
        .bearer_auth(ADMIN_KEY)
        .json(&table)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "PUT /v1/settings/trust-levels: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Resident memory of process `pid`, in KiB (`VmRSS` in Linux `/proc`).
pub fn rss_kib_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds process `pid` has used so far, user and system (Linux `/proc`).
pub fn cpu_seconds_of(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    cpu_seconds_in(&stat).context("no CPU times in /proc stat")
}

/// Waits until process `pid` is idle: under 10 % of a core in each of 3 seconds in a
/// row (1,000 idle real-link devices cost about 5 %: keepalives and timers), at most
/// `within`. A READY device's
/// link still works in the background for a while (the real link stores and uploads its
/// pre-keys, a restarted one settles its sessions): memory read before that measures a
/// moment, not what a device keeps. Returns how long it waited.
pub async fn await_quiet(pid: u32, within: Duration) -> anyhow::Result<Duration> {
    const SAMPLE: Duration = Duration::from_secs(1);
    const QUIET_SAMPLES: u32 = 3;
    const QUIET_CPU_S: f64 = 0.10;
    let started = std::time::Instant::now();
    let mut quiet = 0;
    let mut before = cpu_seconds_of(pid)?;
    while quiet < QUIET_SAMPLES {
        if started.elapsed() >= within {
            bail!("process {pid} was still busy after {within:?}");
        }
        tokio::time::sleep(SAMPLE).await;
        let now = cpu_seconds_of(pid)?;
        quiet = if now - before < QUIET_CPU_S {
            quiet + 1
        } else {
            0
        };
        before = now;
    }
    Ok(started.elapsed())
}

/// User plus system time in a `/proc/PID/stat` line: its 14th and 15th fields, counted
/// after the command name (which may hold spaces and parentheses).
fn cpu_seconds_in(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_range_the_os_picks_from() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        let below = local_port_range_start().max(FREE_PORTS_FROM + 1_000);
        for port in ports {
            assert!((FREE_PORTS_FROM..below).contains(&port), "{port}");
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }

    #[test]
    fn cpu_times_are_read_after_the_command_name() {
        let stat = "4242 (wafleet (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_seconds_in(stat), Some(3.8));
        assert_eq!(cpu_seconds_in("4242 (short) S 1"), None);
    }
}
