//! `wafleet`: one binary for every process of the system.

use clap::{Parser, Subcommand};

mod gateway;
mod keys;
mod node;
mod sim_seal;
mod standalone;
mod store;

/// mimalloc instead of glibc's malloc: under the throughput load glibc's allocator and
/// its free-list consolidation took about a sixth of the process's CPU (BENCHMARKS.md,
/// "allocator"). The `system-allocator` feature keeps glibc's, so that heaptrack (which
/// interposes `malloc`) sees every allocation; BENCHMARKS.md says where it was used.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "wafleet",
    version,
    about = "Run many linked WhatsApp devices behind one API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Node + gateway + embedded store in one process.
    Standalone(standalone::Args),
    /// One cluster node.
    Node {
        /// The node's TOML settings (see deploy/node.example.toml); any key can be
        /// overridden with WAFLEET__SECTION__KEY.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// One gateway replica: the API of a cluster.
    Gateway {
        /// The gateway's TOML settings (see deploy/gateway.example.toml); any key can be
        /// overridden with WAFLEET__SECTION__KEY.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// The simulated WhatsApp network on its own (one of several, with `[link] sim_urls`).
    Sim(standalone::SimArgs),
    /// Rotate the master key (it wraps the tenants' data keys and seals credentials).
    #[command(subcommand)]
    MasterKey(keys::MasterKeyCommand),
    /// Rotate a tenant's data key (it seals message texts and event payloads at rest).
    #[command(subcommand)]
    DataKey(keys::DataKeyCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Every device link is a socket: take every descriptor the system allows.
    if let Err(error) = wafleet_node::open_files::raise_limit() {
        tracing::warn!(%error, "cannot raise the open-files limit");
    }
    match Cli::parse().command {
        Command::Standalone(args) => standalone::run(args, shutdown_signal()).await,
        Command::Node { config } => node::run(config, shutdown_signal()).await,
        Command::Gateway { config } => gateway::run(config, shutdown_signal()).await,
        Command::Sim(args) => standalone::run_sim(args, shutdown_signal()).await,
        Command::MasterKey(command) => keys::master_key(command).await,
        Command::DataKey(command) => keys::data_key(command).await,
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
