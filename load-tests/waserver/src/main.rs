//! `wafleet-waserver`: the WhatsApp Web protocol test server as a process.

use clap::Parser;

/// A WhatsApp Web protocol test server for wafleet's real link, offline.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on: the WebSocket at /ws, the control API at /sim/.
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let running = wafleet_waserver::serve(&args.listen, wafleet_waserver::Network::new()).await?;
    eprintln!("wafleet-waserver listening on {}", running.ws_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
