//! Cluster processes for scenarios and tests: `wafleet node` and `wafleet gateway`
//! children on 127.0.0.1, each with a config file written here, and a whole
//! [`LocalCluster`] with its simulators ([`super::sims`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::certs::ClusterCerts;
use super::process::{RedisServer, free_port};
pub use super::sims::SimProcess;
use super::sims::Sims;

/// The cookie scenarios give their nodes (unless a test wants another).
pub const COOKIE: &str = "wafleet-load-test-cookie-0123456789";

/// How to write one node's config.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub name: String,
    pub cluster_port: u16,
    pub seeds: Vec<String>,
    pub db: PathBuf,
    pub redis_url: String,
    /// `[link] sim_urls`: the simulators' WebSockets, in the order every node lists them.
    pub sim_urls: Vec<String>,
    /// `[cluster.tls]`, when the cluster's traffic is encrypted (a gateway started with
    /// this plan uses the same files).
    pub tls: Option<ClusterCerts>,
    /// The real WhatsApp link instead of the simulators: `[link] kind = "whatsapp"` with
    /// this URL (a protocol test server) and pinned version.
    pub whatsapp: Option<WhatsAppPlan>,
}

/// Where a node's real WhatsApp link dials, and the version it announces.
#[derive(Debug, Clone)]
pub struct WhatsAppPlan {
    pub url: String,
    pub version: String,
}

impl NodePlan {
    /// This node's cluster address, as a seed for others.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.cluster_port)
    }

    /// Plans for `n` nodes named `node-1`… that seed each other, their devices linked
    /// to the simulators at `sim_urls`.
    pub fn cluster(
        n: usize,
        db: &Path,
        redis_url: &str,
        sim_urls: &[String],
    ) -> anyhow::Result<Vec<NodePlan>> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect::<Result<_, _>>()?;
        Ok((0..n)
            .map(|i| NodePlan {
                name: format!("node-{}", i + 1),
                cluster_port: ports[i],
                seeds: ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("127.0.0.1:{p}"))
                    .collect(),
                db: db.to_owned(),
                redis_url: redis_url.to_owned(),
                sim_urls: sim_urls.to_vec(),
                tls: None,
                whatsapp: None,
            })
            .collect())
    }

    fn toml(&self) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(|s| format!("{s:?}")).collect();
        let sims: Vec<String> = self.sim_urls.iter().map(|s| format!("{s:?}")).collect();
        format!(
            r#"[node]
name = {name:?}
cluster_listen = "127.0.0.1:{port}"
seeds = [{seeds}]
http_listen = "127.0.0.1:0"

[cluster]
heartbeat_interval_ms = 250
failure_timeout_ms = 1500

[lease]
ttl_ms = 3000
renew_interval_ms = 1000

[store]
kind = "sqlite"

[store.sqlite]
path = {db:?}

[redis]
url = {redis:?}

# Beside the shared store: every process of this machine reads every file.
[media.folder]
path = {media:?}

[recovery]
concurrency = 128
jitter_ms = 100

{link}

# Webhook receivers of tests and scenarios listen on 127.0.0.1.
[webhooks]
allow_private_targets = true

{tls}"#,
            name = self.name,
            port = self.cluster_port,
            seeds = seeds.join(", "),
            db = self.db.display().to_string(),
            redis = self.redis_url,
            link = match &self.whatsapp {
                None => format!("[link]\nkind = \"sim\"\nsim_urls = [{}]\n", sims.join(", ")),
                Some(whatsapp) => format!(
                    "[link]\nkind = \"whatsapp\"\nwhatsapp_url = {:?}\nwhatsapp_version = {:?}\n",
                    whatsapp.url, whatsapp.version
                ),
            },
            media = media_folder(&self.db),
            tls = tls_section(self.tls.as_ref()),
        )
    }
}

/// The media folder of the cluster whose shared store is `db`: beside it.
fn media_folder(db: &std::path::Path) -> String {
    db.with_file_name("media").display().to_string()
}

/// The `[cluster.tls]` section for `certs`, or nothing (traffic in clear).
fn tls_section(certs: Option<&ClusterCerts>) -> String {
    certs.map(ClusterCerts::toml).unwrap_or_default()
}

/// A `wafleet gateway` child.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`: the API.
    pub base: String,
    /// `http://ADDR` where `/metrics` is served, when the gateway has a
    /// `gateway.metrics_listen` (it prints `metrics on http://ADDR`).
    pub metrics: Option<String>,
}

impl GatewayProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Writes a config into `dir` (`{name}.toml`), starts a gateway with the admin key
    /// of the scenarios (seeded with the node cluster addresses `seeds`; `node` gives
    /// the shared store and redis), and waits until it hears `members` live nodes.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        name: &str,
        seeds: &[String],
        node: &NodePlan,
        cookie: &str,
        members: usize,
    ) -> anyhow::Result<GatewayProcess> {
        GatewayProcess::launch(
            binary,
            dir,
            name,
            seeds,
            node,
            members,
            &[("WAFLEET__CLUSTER__COOKIE", cookie)],
        )
        .await
    }

    /// Like [`GatewayProcess::start`], with `env` as the only settings from the
    /// environment (the cookie included: `WAFLEET__CLUSTER__COOKIE`), e.g.
    /// `WAFLEET__GATEWAY__METRICS_LISTEN`.
    pub async fn launch(
        binary: &Path,
        dir: &Path,
        name: &str,
        seeds: &[String],
        node: &NodePlan,
        members: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<GatewayProcess> {
        let seeds: Vec<String> = seeds.iter().map(|s| format!("{s:?}")).collect();
        let toml = format!(
            r#"[gateway]
name = {name:?}
listen = "127.0.0.1:0"
seeds = [{seeds}]
request_timeout_ms = 10000

[cluster]
heartbeat_interval_ms = 250
failure_timeout_ms = 1500

[store]
kind = "sqlite"

[store.sqlite]
path = {db:?}

[redis]
url = {redis:?}

[media.folder]
path = {media:?}

{tls}"#,
            seeds = seeds.join(", "),
            db = node.db.display().to_string(),
            media = media_folder(&node.db),
            redis = node.redis_url,
            tls = tls_section(node.tls.as_ref()),
        );
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml)?;
        let config = config.display().to_string();
        let mut env = env.to_vec();
        env.push(("WAFLEET_ADMIN_KEY", super::process::ADMIN_KEY));
        let (child, mut lines) = spawn(binary, &["gateway", "--config", &config], &env)?;
        // `metrics on http://ADDR`, if any, comes before `listening on http://ADDR`.
        let mut metrics = None;
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.recv().await {
                if let Some(addr) = line.strip_prefix("metrics on http://") {
                    metrics = Some(format!("http://{}", addr.trim()));
                }
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    return Ok(addr.trim().to_owned());
                }
            }
            bail!("gateway exited before printing its address")
        })
        .await
        .context("the gateway did not print its address within 20 s")??;
        let expected = members;
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.recv().await {
                if line
                    .strip_prefix("members: ")
                    .is_some_and(|m| m.split(',').filter(|n| !n.is_empty()).count() == expected)
                {
                    return Ok(());
                }
            }
            bail!("gateway exited before it heard the nodes")
        })
        .await
        .context("the gateway did not hear every node within 20 s")??;
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        Ok(GatewayProcess {
            child,
            base: format!("http://{addr}"),
            metrics,
        })
    }

    /// `kill -9`, waiting until the process is gone.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A `wafleet node` child.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    pub name: String,
    /// `http://127.0.0.1:PORT` (health, metrics, members).
    pub http: String,
    lines: mpsc::UnboundedReceiver<String>,
    /// The last `members:` and `shards:` it printed.
    members: Option<String>,
    shards: Option<usize>,
}

impl NodeProcess {
    /// Writes the plan's config into `dir` and starts the node with `cookie`.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        plan: &NodePlan,
        cookie: &str,
    ) -> anyhow::Result<NodeProcess> {
        let config = dir.join(format!("{}.toml", plan.name));
        std::fs::write(&config, plan.toml())?;
        let config = config.display().to_string();
        let (child, mut lines) = spawn(
            binary,
            &["node", "--config", &config],
            &[("WAFLEET__CLUSTER__COOKIE", cookie)],
        )?;
        let addr = wait_line(&mut lines, "listening on http://", Duration::from_secs(20)).await?;
        Ok(NodeProcess {
            child,
            name: plan.name.clone(),
            http: format!("http://{addr}"),
            lines,
            members: None,
            shards: None,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until this node's membership (its last `members:` line) is exactly
    /// `members`; returns how long it took.
    pub async fn wait_members(
        &mut self,
        members: &[&str],
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let wanted = members.join(",");
        let started = Instant::now();
        self.wait(within, |node| {
            node.members.as_deref() == Some(wanted.as_str())
        })
        .await
        .with_context(|| format!("{} never had members {wanted}", self.name))?;
        Ok(started.elapsed())
    }

    /// Waits until this node holds a number of shards (its last `shards:` line) that
    /// `accept` accepts; returns it.
    pub async fn wait_shards(
        &mut self,
        accept: impl Fn(usize) -> bool,
        within: Duration,
    ) -> anyhow::Result<usize> {
        self.wait(within, |node| node.shards.is_some_and(&accept))
            .await
            .with_context(|| format!("{} never held the expected shards", self.name))?;
        Ok(self.shards.unwrap_or(0))
    }

    /// Every membership this node reports during `window` (to check an absence).
    pub async fn members_seen_during(&mut self, window: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.note(&line);
            if line.starts_with("members: ") {
                seen.extend(self.members.clone());
            }
        }
        seen
    }

    async fn wait(
        &mut self,
        within: Duration,
        done: impl Fn(&NodeProcess) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.note(&line),
                Ok(None) => bail!("{} exited", self.name),
                Err(_) => bail!("timed out after {within:?}"),
            }
        }
        Ok(())
    }

    fn note(&mut self, line: &str) {
        if let Some(members) = line.strip_prefix("members: ") {
            self.members = Some(members.to_owned());
        } else if let Some(shards) = line.strip_prefix("shards: ") {
            self.shards = shards.parse().ok();
        }
    }

    /// Waits for the process to exit by itself (after a `TERM`), up to `within`.
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit within {within:?}", self.name))?
            .context("cannot wait for the node")
    }

    /// `kill -9`, waiting until the process is gone.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("process has exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }
}

pub(crate) type Lines = mpsc::UnboundedReceiver<String>;

/// Spawns a child whose stdout lines arrive on a channel (stderr is inherited).
pub(crate) fn spawn(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(Child, Lines)> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// The rest of the first line starting with `prefix`.
pub(crate) async fn wait_line(
    lines: &mut Lines,
    prefix: &str,
    within: Duration,
) -> anyhow::Result<String> {
    tokio::time::timeout(within, async {
        while let Some(line) = lines.recv().await {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
        bail!("exited before printing {prefix:?}")
    })
    .await
    .with_context(|| format!("no {prefix:?} within {within:?}"))?
}

/// A whole cluster on 127.0.0.1: redis, one or more simulators, `n` nodes sharing one
/// SQLite file (membership and placement settled), and a gateway that hears them all.
#[derive(Debug)]
pub struct LocalCluster {
    pub dir: tempfile::TempDir,
    pub redis: RedisServer,
    pub sims: Sims,
    pub plans: Vec<NodePlan>,
    pub nodes: Vec<NodeProcess>,
    pub gateway: GatewayProcess,
}

impl LocalCluster {
    /// With one simulator.
    pub async fn start(binary: &Path, n: usize) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with_sims(binary, n, 1).await
    }

    /// With `sims` simulators, every node given all of them.
    pub async fn start_with_sims(
        binary: &Path,
        n: usize,
        sims: usize,
    ) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with(binary, n, sims, false).await
    }

    /// With `sims` simulators, and with cluster traffic encrypted when `tls` (a
    /// development CA and certificate made for this cluster, [`ClusterCerts`]).
    pub async fn start_with(
        binary: &Path,
        n: usize,
        sims: usize,
        tls: bool,
    ) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_linked(binary, n, sims, tls, None).await
    }

    /// With the real WhatsApp link of every node dialling `whatsapp` (a protocol test
    /// server; `binary` must then be a `test-chain` build). The one simulator still runs,
    /// idle.
    pub async fn start_with_whatsapp(
        binary: &Path,
        n: usize,
        whatsapp: WhatsAppPlan,
    ) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_linked(binary, n, 1, false, Some(whatsapp)).await
    }

    async fn start_linked(
        binary: &Path,
        n: usize,
        sims: usize,
        tls: bool,
        whatsapp: Option<WhatsAppPlan>,
    ) -> anyhow::Result<LocalCluster> {
        let dir = tempfile::tempdir()?;
        let redis = RedisServer::start().await?;
        let sims = Sims::start(binary, sims).await?;
        let db = dir.path().join("wafleet.db");
        let mut plans = NodePlan::cluster(n, &db, &redis.url, &sims.ws_urls())?;
        for plan in &mut plans {
            plan.whatsapp = whatsapp.clone();
        }
        if tls {
            let certs = ClusterCerts::generate(dir.path(), "cluster")?;
            for plan in &mut plans {
                plan.tls = Some(certs.clone());
            }
        }
        let mut nodes = Vec::new();
        for plan in &plans {
            nodes.push(NodeProcess::start(binary, dir.path(), plan, COOKIE).await?);
        }
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        let placement = wafleet_cluster_config::Placement::new(1024, &names)?;
        for node in &mut nodes {
            node.wait_members(&names, Duration::from_secs(30)).await?;
            let expected = placement.shards_of(&node.name).count();
            node.wait_shards(|held| held == expected, Duration::from_secs(30))
                .await?;
        }
        let seeds: Vec<String> = plans.iter().map(NodePlan::address).collect();
        let gateway =
            GatewayProcess::start(binary, dir.path(), "gw-1", &seeds, &plans[0], COOKIE, n).await?;
        super::process::unthrottle(&reqwest::Client::new(), &gateway.base).await?;
        Ok(LocalCluster {
            dir,
            redis,
            sims,
            plans,
            nodes,
            gateway,
        })
    }

    /// The node names, in order.
    pub fn names(&self) -> Vec<String> {
        self.plans.iter().map(|p| p.name.clone()).collect()
    }
}
