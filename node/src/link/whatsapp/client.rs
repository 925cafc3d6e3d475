//! Building a whatsapp-rust [`Client`] on a device's [`VaultBackend`], and the
//! [`Probe`] that tells a session what its connection attempt ran into.
//!
//! whatsapp-rust's run loop swallows the error of a failed connection attempt (it
//! logs it and, with auto-reconnect off, returns). The probe wraps the transport
//! factory and the HTTP client of one session and records how the dial and the
//! version fetch went, so the session can say *why* it is disconnected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use whatsapp_rust::TokioRuntime;
use whatsapp_rust::anyhow;
use whatsapp_rust::store::persistence_manager::PersistenceManager;
use whatsapp_rust::transport::{
    TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory,
    default_tls_connector,
};
use whatsapp_rust::wacore::net::{
    HttpClient, HttpRequest, HttpResponse, StreamingHttpResponse, UploadBody,
};
use whatsapp_rust::{Client, async_channel};

use super::store::VaultBackend;
use crate::link::LinkError;

/// WhatsApp Web's WebSocket.
pub const WHATSAPP_WS_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// How often the client saves its device record while connected (whatsapp-rust's
/// bot default); pairing and disconnecting save at once regardless.
const DEVICE_SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// How the link reaches WhatsApp.
#[derive(Debug, Clone, Default)]
pub struct WhatsAppConfig {
    /// The WebSocket to dial instead of [`WHATSAPP_WS_URL`]: a relay, or a test server.
    pub ws_url: Option<String>,
    /// Pin the WhatsApp Web client version instead of fetching the current one from
    /// web.whatsapp.com (at most once a day per device).
    pub version: Option<(u32, u32, u32)>,
}

impl WhatsAppConfig {
    pub fn url(&self) -> &str {
        self.ws_url.as_deref().unwrap_or(WHATSAPP_WS_URL)
    }
}

/// What every session of a node shares: the dialer (with its TLS roots) and the
/// HTTP client (with its connection pool).
#[derive(Clone)]
pub struct Connectors {
    config: WhatsAppConfig,
    transport: Arc<dyn TransportFactory>,
    http: Arc<dyn HttpClient>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Connectors {
    pub fn new(config: WhatsAppConfig) -> Connectors {
        let transport = TokioWebSocketTransportFactory::new()
            .with_url(config.url())
            .with_connector(default_tls_connector());
        Connectors {
            config,
            transport: Arc::new(transport),
            http: Arc::new(whatsapp_rust::http::UreqHttpClient::new()),
        }
    }

    pub fn config(&self) -> &WhatsAppConfig {
        &self.config
    }

    /// A client for `backend`'s device, not connected: loads the stored device or
    /// creates (and stores) a fresh identity. Auto-reconnect is off: a session makes
    /// one connection attempt and the device actor decides when to try again.
    pub async fn client(
        &self,
        backend: Arc<VaultBackend>,
        probe: Arc<Probe>,
    ) -> Result<Arc<Client>, LinkError> {
        let persistence = PersistenceManager::new(backend)
            .await
            .map_err(|e| LinkError::Storage(format!("cannot load the device: {e}")))?;
        let mut builder = Client::builder()
            .with_runtime(TokioRuntime)
            .with_persistence_manager(Arc::new(persistence))
            .with_transport_factory(ProbedTransport {
                inner: self.transport.clone(),
                probe: probe.clone(),
            })
            .with_http_client(ProbedHttp {
                inner: self.http.clone(),
                probe,
            })
            // wafleet relays text messages; the phone's chat history is not its business.
            .with_skip_history_sync(true)
            .with_background_saver_interval(DEVICE_SAVE_INTERVAL);
        if let Some(version) = self.config.version {
            builder = builder.with_version_override(version);
        }
        let client = builder
            .build()
            .await
            .map_err(|e| LinkError::Storage(format!("cannot build the client: {e}")))?
            .into_client();
        client
            .enable_auto_reconnect
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(client)
    }
}

/// How one connection attempt went, as far as the dial and the version fetch tell.
#[derive(Debug, Default)]
pub struct Probe {
    state: Mutex<ProbeState>,
}

#[derive(Debug, Default, Clone)]
struct ProbeState {
    url: String,
    dial: Dial,
    version_error: Option<String>,
}

#[derive(Debug, Default, Clone)]
enum Dial {
    #[default]
    NotStarted,
    Dialing,
    Open,
    Failed(String),
}

impl Probe {
    pub fn new(url: &str) -> Arc<Probe> {
        Arc::new(Probe {
            state: Mutex::new(ProbeState {
                url: url.to_owned(),
                ..ProbeState::default()
            }),
        })
    }

    fn update(&self, change: impl FnOnce(&mut ProbeState)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Why an attempt that never reached WhatsApp's login ended, in a sentence.
    pub fn failure(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match (state.dial, state.version_error) {
            (Dial::Failed(error), _) => {
                format!("cannot reach WhatsApp at {}: {error}", state.url)
            }
            (Dial::Dialing, _) => format!("timed out connecting to WhatsApp at {}", state.url),
            (_, Some(error)) => format!("cannot fetch the current WhatsApp Web version: {error}"),
            (Dial::Open, None) => format!(
                "the connection to {} closed during the handshake",
                state.url
            ),
            (Dial::NotStarted, None) => "the connection attempt did not start".into(),
        }
    }
}

/// Records in the probe how each dial went.
struct ProbedTransport {
    inner: Arc<dyn TransportFactory>,
    probe: Arc<Probe>,
}

#[async_trait]
impl TransportFactory for ProbedTransport {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        self.probe.update(|s| s.dial = Dial::Dialing);
        let result = self.inner.create_transport().await;
        self.probe.update(|s| {
            s.dial = match &result {
                Ok(_) => Dial::Open,
                Err(error) => Dial::Failed(format!("{error:#}")),
            }
        });
        result
    }
}

/// Records in the probe whether an HTTP request (the version fetch) failed.
struct ProbedHttp {
    inner: Arc<dyn HttpClient>,
    probe: Arc<Probe>,
}

#[async_trait]
impl HttpClient for ProbedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let result = self.inner.execute(request).await;
        if let Err(error) = &result {
            let error = format!("{error:#}");
            self.probe.update(|s| s.version_error = Some(error));
        }
        result
    }

    fn supports_streaming(&self) -> bool {
        self.inner.supports_streaming()
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.inner.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.inner.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.inner.execute_upload(request, body, content_length)
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::HttpResourceReport> {
        self.inner.resource_report()
    }
}
