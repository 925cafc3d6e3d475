//! `wafleet standalone` and `wafleet sim`: wiring the crates into processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::net::TcpListener;
use tracing::info;
use wafleet_cluster_config::{MediaFolderSettings, StandaloneSettings, WhatsAppVersion};
use wafleet_gateway::AppState;
use wafleet_node::events::{BusConfig, EventBus};
use wafleet_node::link::ws::WsDialer;
use wafleet_node::link::{
    FramePipe, LinkError, LinkFactory, SimBlob, SimDialer, SimLinkFactory, SimSpread,
    WhatsAppConfig, WhatsAppLinkFactory,
};
use wafleet_node::media::{ByteStream, reader_stream};
use wafleet_node::open_files;
use wafleet_node::store::{MeteredStore, SqliteStore};
use wafleet_node::{Fleet, NodeConfig};
use wafleet_sim::{Network, SimConfig};

/// `wafleet standalone`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address of the API (`:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Data folder: the store, the keys, the simulator's state.
    #[arg(long, default_value = "./wafleet-data")]
    data: PathBuf,
    /// `whatsapp` (real WhatsApp), `whatsapp=wss://HOST/PATH` (through a relay),
    /// `sim` (a simulated network in this process), `sim=ws://HOST:PORT/ws`, or
    /// `sim=ws://A/ws,ws://B/ws` (a network of several `wafleet sim` processes: each
    /// device dials the one its id picks, see `wafleet_cluster_config::sim_of`).
    #[arg(long, default_value = "whatsapp")]
    link: String,
    /// With `--link whatsapp`: the WhatsApp Web version the devices announce, like
    /// `2.3000.1023456789`, instead of the current one fetched from web.whatsapp.com
    /// (needed to reach a test server, or without a route to web.whatsapp.com).
    #[arg(long, env = "WAFLEET_WHATSAPP_VERSION")]
    whatsapp_version: Option<WhatsAppVersion>,
    #[command(flatten)]
    qr: QrTtl,
}

/// How long the simulated network shows each QR code (`wafleet sim`, and standalone's
/// `--link sim`).
#[derive(Debug, clap::Args)]
pub(crate) struct QrTtl {
    /// How long each QR code is shown before the next replaces it, in milliseconds
    /// (WhatsApp: 20–60 s). Short values let tests see a code expire or rotate. Only
    /// the simulated network's.
    #[arg(long, env = "WAFLEET_SIM_QR_TTL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    qr_ttl_ms: u64,
}

impl QrTtl {
    fn duration(&self) -> Duration {
        Duration::from_millis(self.qr_ttl_ms)
    }
}

/// The file that keeps the generated admin key.
const ADMIN_KEY_FILE: &str = "admin.key";

pub(crate) async fn run(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create data folder {}", args.data.display()))?;
    let admin_key = admin_key(&args.data)?;
    let sealer = Arc::new(crate::keys::standalone_sealer(&args.data)?);
    let store =
        SqliteStore::open(&args.data.join("wafleet.db")).context("cannot open the store")?;
    // Before the simulator opens its state (sealed with the same key) or any device
    // starts: a wrong key refuses here (see wafleet_node::seal::key_check).
    wafleet_node::seal::key_check::verify(&store, &sealer).await?;

    let (links, network): (Arc<dyn LinkFactory>, Option<Network>) = match args.link.as_str() {
        "sim" => {
            let network = Network::open(SimConfig {
                qr_ttl: args.qr.duration(),
                data_path: Some(args.data.join("sim.db")),
                state_seal: Some(Arc::new(crate::sim_seal::SimStateSeal(sealer.clone()))),
                ..SimConfig::default()
            })
            .context("cannot open the simulated network")?;
            let dialer = InProcessDialer(network.clone());
            (
                Arc::new(SimLinkFactory::new(Arc::new(dialer))),
                Some(network),
            )
        }
        urls if urls.starts_with("sim=") => {
            let urls: Vec<&str> = urls["sim=".len()..].split(',').map(str::trim).collect();
            if let Some(bad) = urls
                .iter()
                .find(|url| !(url.starts_with("ws://") || url.starts_with("wss://")))
            {
                bail!(
                    "--link sim=URL[,URL…] needs ws:// URLs, like sim=ws://127.0.0.1:8090/ws; got {bad:?}"
                );
            }
            (Arc::new(SimLinkFactory::new(sim_dialer(&urls)?)), None)
        }
        "whatsapp" => (whatsapp(None, args.whatsapp_version)?, None),
        url if url.starts_with("whatsapp=") => {
            let url = &url["whatsapp=".len()..];
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                bail!("--link whatsapp=URL needs a ws:// or wss:// URL");
            }
            (whatsapp(Some(url), args.whatsapp_version)?, None)
        }
        other => bail!(
            "unknown --link {other:?}: use whatsapp, whatsapp=wss://URL, sim or sim=ws://HOST:PORT/ws"
        ),
    };

    let mut settings = StandaloneSettings::from_env().context("cannot read the environment")?;
    if settings.media.folder == MediaFolderSettings::default() {
        settings.media.folder.path = args.data.join("media");
    }
    let media = wafleet_node::media::open(&settings.media)
        .await
        .context("cannot open the media storage")?;
    let fleet = Fleet::start(
        NodeConfig {
            webhooks: settings.webhooks,
            media: Some(media),
            media_limits: settings.media.limits.clone(),
            media_allow_private_urls: settings.media.allow_private_urls,
            ..NodeConfig::default()
        },
        Arc::new(MeteredStore::new(Arc::new(store))),
        sealer,
        EventBus::in_memory(BusConfig::default()),
        links,
    )
    .await
    .context("cannot start the fleet")?;

    let state = AppState::new(
        Arc::new(fleet.clone()),
        fleet.catalog().clone(),
        fleet.bus().clone(),
        fleet.media().clone(),
        admin_key,
    );
    let mut router = wafleet_gateway::router(state);
    if let Some(network) = network {
        router = router.merge(wafleet_sim::router(network));
    }
    let listener = bind(&args.listen).await?;
    announce(&listener)?;
    wafleet_gateway::serve(
        listener,
        router,
        wafleet_gateway::Edge::new("api", settings.http),
        shutdown,
    )
    .await?;
    info!("shutting down");
    fleet.shutdown().await;
    Ok(())
}

/// The real link, dialling `url` (WhatsApp's own WebSocket when `None`).
fn whatsapp(
    url: Option<&str>,
    version: Option<WhatsAppVersion>,
) -> anyhow::Result<Arc<dyn LinkFactory>> {
    let config = WhatsAppConfig {
        ws_url: url.map(str::to_owned),
        version,
    };
    Ok(Arc::new(WhatsAppLinkFactory::new(config)?))
}

/// `wafleet sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// Address to listen on (`:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    #[command(flatten)]
    qr: QrTtl,
}

/// `wafleet sim`.
pub(crate) async fn run_sim(
    args: SimArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = StandaloneSettings::from_env().context("cannot read the environment")?;
    let network = Network::open(SimConfig {
        qr_ttl: args.qr.duration(),
        ..SimConfig::default()
    })?;
    let listener = bind(&args.listen).await?;
    announce(&listener)?;
    wafleet_sim::serve(
        open_files::Listener::new(listener),
        network,
        wafleet_gateway::Edge::new("sim", settings.http),
        shutdown,
    )
    .await?;
    Ok(())
}

/// The dialer of the simulators at `urls` (WebSockets, in the order every process of
/// the network lists them): each device dials the one its id picks.
pub(crate) fn sim_dialer(urls: &[&str]) -> anyhow::Result<Arc<dyn SimDialer>> {
    let dialers = urls
        .iter()
        .map(|url| Arc::new(WsDialer::new(*url)) as Arc<dyn SimDialer>)
        .collect();
    Ok(Arc::new(SimSpread::new(dialers)?))
}

/// Binds a socket address.
pub(crate) async fn bind_addr(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let listen = if listen.starts_with(':') {
        format!("127.0.0.1{listen}")
    } else {
        listen.to_owned()
    };
    TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Prints the bound address on a line of its own, for people and scripts.
pub(crate) fn announce(listener: &TcpListener) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    println!("listening on http://{addr}");
    Ok(())
}

/// `WAFLEET_ADMIN_KEY`, else the key kept in the data folder, else a new one (printed
/// once, then kept).
fn admin_key(data: &Path) -> anyhow::Result<String> {
    if let Ok(key) = std::env::var("WAFLEET_ADMIN_KEY") {
        if key.trim().is_empty() {
            bail!("WAFLEET_ADMIN_KEY is set but empty");
        }
        return Ok(key.trim().to_owned());
    }
    let path = data.join(ADMIN_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => return Ok(key.trim().to_owned()),
        Ok(_) => bail!("{} is empty; delete it to get a new key", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key = format!("wfk_{}", uuid::Uuid::new_v4().simple());
    write_private(&path, &key)?;
    println!(
        "admin key: {key} (kept in {}; set WAFLEET_ADMIN_KEY to choose your own)",
        path.display()
    );
    Ok(key)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Dials the simulated network running in this process.
#[derive(Debug)]
struct InProcessDialer(Network);

#[async_trait]
impl SimDialer for InProcessDialer {
    async fn dial(&self, _device_id: &str) -> Result<FramePipe, LinkError> {
        let connection = self.0.attach();
        Ok(FramePipe {
            tx: connection.tx,
            rx: connection.rx,
        })
    }

    async fn upload_media(
        &self,
        _device_id: &str,
        mime: &str,
        body: ByteStream,
    ) -> Result<SimBlob, LinkError> {
        let blob = self
            .0
            .put_media(mime, body)
            .await
            .map_err(|e| LinkError::Connect(format!("the simulator's media folder: {e}")))?;
        Ok(SimBlob {
            handle: blob.handle,
            size: blob.size,
            sha256: blob.sha256,
        })
    }

    async fn download_media(
        &self,
        _device_id: &str,
        handle: &str,
    ) -> Result<ByteStream, LinkError> {
        let (_, file) = self.0.media_file(handle).await.ok_or_else(|| {
            LinkError::Connect(format!("no media file {handle} in the simulator"))
        })?;
        Ok(reader_stream(file))
    }
}
