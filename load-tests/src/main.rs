//! `wafleet-load`: load and failover scenarios against real wafleet processes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wafleet_load::scenario::{
    self,
    campaign::CampaignOptions,
    failover::FailoverOptions,
    idle::{IdleLink, IdleOptions},
    media::MediaOptions,
    plot,
    routing::RoutingOptions,
    sse::{Follow, SseOptions},
    throughput::ThroughputOptions,
    webhooks::WebhooksOptions,
};

#[derive(Debug, Parser)]
#[command(
    name = "wafleet-load",
    version,
    about = "Load scenarios for wafleet, with a report"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// What the failover and rolling scenarios take.
#[derive(Debug, clap::Args)]
struct ClusterRun {
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Messages per second through the gateway.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// `wafleet sim` processes (default: as many as the devices need, one per 9,500
    /// devices at an open-files limit of 20,000; see `sims_for`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    sims: Option<u64>,
    /// The wafleet binary (default: the one next to this binary).
    #[arg(long)]
    wafleet: Option<PathBuf>,
    /// Where to write the plot of the run, an SVG file (default:
    /// wafleet-load-<scenario>.svg in the current folder).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// What the nodes' devices are linked to: the simulators, or the real link
    /// (whatsapp-rust) to a wafleet-waserver child (needs a test-chain build).
    #[arg(long, value_enum, default_value_t = IdleLinkArg::Sim)]
    link: IdleLinkArg,
    /// The wafleet-waserver binary (default: the one next to this binary).
    #[arg(long)]
    waserver: Option<PathBuf>,
    /// The WhatsApp Web version the real link pins (the test server serves no sw.js).
    #[arg(long, default_value = "2.3000.1")]
    whatsapp_version: String,
}

impl ClusterRun {
    fn options(self, rolling: bool) -> anyhow::Result<FailoverOptions> {
        let scenario = if rolling { "rolling" } else { "failover" };
        let link = idle_link(self.link, false, self.waserver, self.whatsapp_version)?;
        Ok(FailoverOptions {
            devices: self.devices,
            nodes: self.nodes,
            rate: self.rate,
            wafleet: self
                .wafleet
                .unwrap_or_else(scenario::process::sibling_wafleet),
            rolling,
            sims: self.sims.map(|n| n as usize),
            plot: Some(self.plot.unwrap_or_else(|| plot::default_path(scenario))),
            link,
        })
    }
}

/// `idle --link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IdleLinkArg {
    Sim,
    Whatsapp,
}

/// `sse --follow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FollowArg {
    All,
    Device,
}

/// What `idle --link`, `--compare-sim`, `--waserver` and `--whatsapp-version` ask for.
fn idle_link(
    link: IdleLinkArg,
    compare_sim: bool,
    waserver: Option<PathBuf>,
    version: String,
) -> anyhow::Result<IdleLink> {
    Ok(match link {
        IdleLinkArg::Sim if compare_sim => {
            anyhow::bail!(
                "--compare-sim compares the real link with the simulated one: add --link whatsapp"
            )
        }
        IdleLinkArg::Sim => IdleLink::Sim,
        IdleLinkArg::Whatsapp => IdleLink::WhatsApp {
            waserver: waserver.unwrap_or_else(scenario::waserver::sibling_waserver),
            version,
        },
    })
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// The latency the cluster's routing adds: the same calls on a gateway (3 nodes)
    /// and on a standalone process, interleaved in one run.
    Routing {
        #[arg(long, default_value_t = 50)]
        devices: usize,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Where to write the plot (default: wafleet-load-routing.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// A simulator, redis, N nodes and a gateway; N devices paired; a message stream;
    /// kill -9 of the node with the most devices: recovery time, lost and duplicated
    /// messages, double ownership, new pairings.
    Failover(ClusterRun),
    /// Like failover, but a rolling restart: SIGTERM to each node in turn (it hands its
    /// shards off), its devices READY on the others, then it comes back and takes its
    /// share again before the next: handoff times, lost and duplicated messages.
    Rolling(ClusterRun),
    /// N devices created, paired and idle in one standalone process: memory per device
    /// and time to start and pair.
    Idle {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// What the devices are linked to: the simulator inside the process, or the real
        /// link (whatsapp-rust) to a wafleet-waserver child (needs a test-chain build).
        #[arg(long, value_enum, default_value_t = IdleLinkArg::Sim)]
        link: IdleLinkArg,
        /// With --link whatsapp: the same run on the simulated link first, and both
        /// reported side by side with their ratio.
        #[arg(long)]
        compare_sim: bool,
        /// The wafleet-waserver binary (default: the one next to this binary).
        #[arg(long)]
        waserver: Option<PathBuf>,
        /// The WhatsApp Web version the real link pins (the test server serves no sw.js).
        #[arg(long, default_value = "2.3000.1")]
        whatsapp_version: String,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// Seconds to wait, once the process is idle after the last READY (under 10 % of
        /// a core for 3 s), before memory is read: the allocator returns what a burst
        /// freed over time (a minute after pairing the real link holds less).
        #[arg(long, default_value_t = 2)]
        settle_s: u64,
        /// Then kill -9 the process, restart it on the same data, and time the recovery.
        #[arg(long)]
        restart: bool,
        /// Where to write the plot (default: wafleet-load-idle.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// N devices paired on a standalone process (or a cluster with --nodes K), the
    /// sending limits lifted, then messages through the API for S seconds with C
    /// requests in flight: accepted, sent and delivered per second, accept and
    /// end-to-end latency, lost and duplicated messages.
    Throughput {
        #[arg(long, default_value_t = 50)]
        devices: usize,
        /// Cluster nodes behind a gateway; 0: one standalone process.
        #[arg(long, default_value_t = 0)]
        nodes: usize,
        /// Seconds of sending.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
        concurrency: u64,
        /// At most this many messages (default: 10,000 per device, what the lifted
        /// limits allow a device in a day).
        #[arg(long)]
        messages: Option<u64>,
        /// `wafleet sim` processes of a cluster (default: as many as the devices need).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        sims: Option<u64>,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Where to write the plot (default: wafleet-load-throughput.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Encrypt the cluster's traffic (mutual TLS with certificates made for the run);
        /// needs --nodes.
        #[arg(long)]
        cluster_tls: bool,
    },
    /// N devices paired (standalone, or a cluster with --nodes K), each with a signed
    /// webhook to a local receiver; phones write R messages a second for S seconds; the
    /// receiver fails for a while, and in a cluster a node is killed (kill -9): delivery
    /// rate, latency event -> receiver, lost, duplicated, out of order.
    Webhooks {
        #[arg(long, default_value_t = 50)]
        devices: usize,
        /// Cluster nodes behind a gateway; 0: one standalone process.
        #[arg(long, default_value_t = 0)]
        nodes: usize,
        /// Messages written per second, in all.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Seconds of writing.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Seconds the receiver answers 500, from 30 % of the run.
        #[arg(long, default_value_t = 3)]
        fail_seconds: u64,
        /// Do not kill a node (clusters kill the busiest node at 60 % of the run).
        #[arg(long)]
        no_kill: bool,
        /// `wafleet sim` processes of a cluster (default: as many as the devices need).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        sims: Option<u64>,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Where to write the plot (default: wafleet-load-webhooks.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// One job of M recipients over N devices throttled to P sends a minute, through a
    /// cluster of K nodes (or a standalone process with --nodes 0), with a rolling
    /// restart and a kill -9 mid-way: lost, duplicated, the pace observed at the phones,
    /// the job's create and read times, memory.
    Campaign {
        #[arg(long, default_value_t = 3)]
        devices: usize,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        recipients: u64,
        /// Cluster nodes behind a gateway; 0: one standalone process.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Sends per device per minute, on every trust level.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=6000))]
        per_minute: u32,
        /// No rolling restart and no kill -9.
        #[arg(long)]
        calm: bool,
        /// Stop (and cancel the job) after this many seconds, without reading the
        /// inboxes: to measure a job too large to wait for.
        #[arg(long)]
        seconds: Option<u64>,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Where to write the plot (default: wafleet-load-campaign.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// One large file uploaded, sent to a simulated phone and downloaded again: what it
    /// costs each process in resident memory, and how long each step takes.
    Media {
        /// The file's size in MB (MiB).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=2048))]
        size_mb: u64,
        /// Cluster nodes behind a gateway; 0: one standalone process.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Where to write the plot (default: wafleet-load-media.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// N SSE streams (`GET /v1/events`) held on one gateway (a standalone process, or a
    /// cluster's gateway with --nodes K) while the devices get messages: the gateway's
    /// memory per stream, and event latency p50/p99 over every stream and event.
    Sse {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Cluster nodes behind a gateway; 0: one standalone process.
        #[arg(long, default_value_t = 0)]
        nodes: usize,
        /// Events per second, over all devices.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Seconds of events.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// What each stream follows: `all` (`/v1/events`, every event to every stream)
        /// or `device` (stream i: `/v1/devices/{device i % D}/events`).
        #[arg(long, value_enum, default_value_t = FollowArg::All)]
        follow: FollowArg,
        /// The wafleet binary (default: the one next to this binary).
        #[arg(long)]
        wafleet: Option<PathBuf>,
        /// Where to write the plot (default: wafleet-load-sse.svg).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The driver holds a connection per request in flight and its event streams.
    scenario::sims::files_limit();
    let report = match Cli::parse().scenario {
        Scenario::Routing {
            devices,
            requests,
            wafleet,
            plot,
        } => {
            scenario::routing::run(RoutingOptions {
                devices,
                requests,
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                plot: Some(plot.unwrap_or_else(|| plot::default_path("routing"))),
            })
            .await?
        }
        Scenario::Failover(run) => scenario::failover::run(run.options(false)?).await?,
        Scenario::Rolling(run) => scenario::failover::run(run.options(true)?).await?,
        Scenario::Idle {
            devices,
            concurrency,
            link,
            compare_sim,
            waserver,
            whatsapp_version,
            wafleet,
            timeout_s,
            settle_s,
            restart,
            plot,
        } => {
            let link = idle_link(link, compare_sim, waserver, whatsapp_version)?;
            scenario::idle::run(IdleOptions {
                devices,
                concurrency,
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                link,
                compare_sim,
                timeout: Duration::from_secs(timeout_s),
                settle: Duration::from_secs(settle_s),
                restart,
                plot: Some(plot.unwrap_or_else(|| plot::default_path("idle"))),
            })
            .await?
        }
        Scenario::Throughput {
            devices,
            nodes,
            seconds,
            concurrency,
            messages,
            sims,
            wafleet,
            plot,
            cluster_tls,
        } => {
            if cluster_tls && nodes == 0 {
                anyhow::bail!("--cluster-tls needs a cluster (--nodes N)");
            }
            scenario::throughput::run(ThroughputOptions {
                devices,
                nodes,
                duration: Duration::from_secs(seconds),
                concurrency: concurrency as usize,
                messages,
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                sims: sims.map(|n| n as usize),
                plot: Some(plot.unwrap_or_else(|| plot::default_path("throughput"))),
                cluster_tls,
            })
            .await?
        }
        Scenario::Webhooks {
            devices,
            nodes,
            rate,
            seconds,
            fail_seconds,
            no_kill,
            sims,
            wafleet,
            plot,
        } => {
            scenario::webhooks::run(WebhooksOptions {
                devices,
                nodes,
                rate,
                seconds,
                fail_seconds,
                kill: !no_kill,
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                sims: sims.map(|n| n as usize),
                plot: Some(plot.unwrap_or_else(|| plot::default_path("webhooks"))),
            })
            .await?
        }
        Scenario::Campaign {
            devices,
            recipients,
            nodes,
            per_minute,
            calm,
            seconds,
            wafleet,
            plot,
        } => {
            scenario::campaign::run(CampaignOptions {
                devices,
                recipients: recipients as usize,
                nodes,
                per_minute,
                disrupt: !calm,
                seconds,
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                plot: Some(plot.unwrap_or_else(|| plot::default_path("campaign"))),
            })
            .await?
        }
        Scenario::Media {
            size_mb,
            nodes,
            wafleet,
            plot,
        } => {
            scenario::media::run(MediaOptions {
                size_mb,
                nodes,
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                plot: Some(plot.unwrap_or_else(|| plot::default_path("media"))),
            })
            .await?
        }
        Scenario::Sse {
            clients,
            devices,
            nodes,
            rate,
            seconds,
            follow,
            wafleet,
            plot,
        } => {
            scenario::sse::run(SseOptions {
                clients,
                devices,
                nodes,
                rate,
                follow: match follow {
                    FollowArg::All => Follow::All,
                    FollowArg::Device => Follow::Device,
                },
                duration: Duration::from_secs(seconds),
                wafleet: wafleet.unwrap_or_else(scenario::process::sibling_wafleet),
                plot: Some(plot.unwrap_or_else(|| plot::default_path("sse"))),
            })
            .await?
        }
    };
    report.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_of(args: &[&str]) -> anyhow::Result<IdleLink> {
        let cli = Cli::try_parse_from(["wafleet-load", "idle"].iter().chain(args))?;
        let Scenario::Idle {
            link,
            compare_sim,
            waserver,
            whatsapp_version,
            ..
        } = cli.scenario
        else {
            unreachable!("parsed as idle")
        };
        idle_link(link, compare_sim, waserver, whatsapp_version)
    }

    fn failover_of(args: &[&str]) -> FailoverOptions {
        let cli = Cli::try_parse_from(["wafleet-load", "failover"].iter().chain(args)).unwrap();
        let Scenario::Failover(run) = cli.scenario else {
            unreachable!("parsed as failover")
        };
        run.options(false).unwrap()
    }

    #[test]
    fn failover_takes_the_real_link_as_idle_does() {
        assert_eq!(failover_of(&[]).link, IdleLink::Sim);
        let real = failover_of(&["--link", "whatsapp", "--whatsapp-version", "2.3000.7"]);
        let IdleLink::WhatsApp { waserver, version } = real.link else {
            panic!("not the real link")
        };
        assert_eq!(version, "2.3000.7");
        assert_eq!(waserver.file_name().unwrap(), "wafleet-waserver");
        assert!(!real.rolling);
    }

    #[test]
    fn idle_runs_on_the_simulator_unless_told() {
        assert_eq!(idle_of(&[]).unwrap(), IdleLink::Sim);
        assert!(idle_of(&["--compare-sim"]).is_err());
        assert!(idle_of(&["--link", "carrier-pigeon"]).is_err());
    }

    #[test]
    fn idle_on_the_real_link_pins_a_version_and_finds_the_test_server() {
        let IdleLink::WhatsApp { waserver, version } =
            idle_of(&["--link", "whatsapp", "--compare-sim"]).unwrap()
        else {
            panic!("not the real link")
        };
        assert_eq!(version, "2.3000.1");
        assert_eq!(waserver.file_name().unwrap(), "wafleet-waserver");
        let chosen = idle_of(&[
            "--link",
            "whatsapp",
            "--waserver",
            "/opt/ws",
            "--whatsapp-version",
            "2.3000.7",
        ])
        .unwrap();
        assert_eq!(
            chosen,
            IdleLink::WhatsApp {
                waserver: PathBuf::from("/opt/ws"),
                version: "2.3000.7".into()
            }
        );
    }
}
