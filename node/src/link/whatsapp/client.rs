//! Building a whatsapp-rust [`Client`] on a device's [`VaultBackend`], and the
//! [`Probe`] that tells a session what its connection attempt ran into.
//!
//! whatsapp-rust's run loop swallows the error of a failed connection attempt (it
//! logs it and, with auto-reconnect off, returns). The probe wraps the transport
//! factory and the HTTP client of one session and records how the dial, the version
//! fetch and the first frames of the handshake went, so the session can say *why* it is
//! disconnected.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use wafleet_cluster_config::WhatsAppVersion;
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
use whatsapp_rust::{Client, InboundDurabilityHook, async_channel};

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
    /// web.whatsapp.com (each device asks at most once a day; the node fetches it at
    /// most once an hour for all of them, see [`SharedVersionFetch`]).
    pub version: Option<WhatsAppVersion>,
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
    /// The connectors of `config`'s URL. Refused in a `test-chain` build when that URL
    /// is WhatsApp's own (see [`test_chain`](super::test_chain)).
    pub fn new(config: WhatsAppConfig) -> Result<Connectors, LinkError> {
        super::test_chain::check_dial(&config)?;
        let transport = TokioWebSocketTransportFactory::new()
            .with_url(config.url())
            .with_connector(default_tls_connector());
        Ok(Connectors {
            config,
            transport: Arc::new(transport),
            http: Arc::new(SharedVersionFetch::new(Arc::new(
                whatsapp_rust::http::UreqHttpClient::new(),
            ))),
        })
    }

    pub fn config(&self) -> &WhatsAppConfig {
        &self.config
    }

    /// A client for `backend`'s device, not connected: loads the stored device or
    /// creates (and stores) a fresh identity. `inbound`: the hook that gates the
    /// acknowledgement of inbound messages (a session's; none for a client that only
    /// loads or measures a device). Auto-reconnect is off: a session makes
    /// one connection attempt and the device actor decides when to try again.
    pub async fn client(
        &self,
        backend: Arc<VaultBackend>,
        probe: Arc<Probe>,
        inbound: Option<Arc<dyn InboundDurabilityHook>>,
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
            builder = builder.with_version_override(version.parts);
        }
        if let Some(hook) = inbound {
            // Inbound messages are acknowledged once stored, not once decrypted.
            builder = builder.with_inbound_durability_hook_arc(hook);
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
    /// What crossed the connection of the latest dial (a fresh count per dial).
    frames: Arc<Frames>,
}

/// Writes to and messages from one connection, counted from its start. The
/// handshake's first write is the client's hello and its second the client's finish,
/// which the client sends only once it has checked the server's certificate chain
/// (counted as writes: once logged in, a write may carry several frames).
#[derive(Debug, Default)]
struct Frames {
    sent: AtomicU32,
    received: AtomicU32,
}

impl Frames {
    fn count(counter: &AtomicU32) {
        // Saturating: only the first few matter, and a long connection must not wrap.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    fn received(&self) -> u32 {
        self.received.load(Ordering::Relaxed)
    }
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
            // The server answered the hello, and the client hung up instead of sending its
            // finish: the server's certificate chain failed the client's check.
            (Dial::Open, None) if state.frames.sent() == 1 && state.frames.received() > 0 => {
                format!(
                    "WhatsApp's handshake with {} was refused: the server's certificate chain is not signed by WhatsApp (is this a test server? only a test-chain build accepts one)",
                    state.url
                )
            }
            (Dial::Open, None) => format!(
                "the connection to {} closed during the handshake",
                state.url
            ),
            (Dial::NotStarted, None) => "the connection attempt did not start".into(),
        }
    }
}

/// Records in the probe how each dial went, and counts what crosses the connection.
struct ProbedTransport {
    inner: Arc<dyn TransportFactory>,
    probe: Arc<Probe>,
}

#[async_trait]
impl TransportFactory for ProbedTransport {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        let frames = Arc::new(Frames::default());
        self.probe.update(|s| {
            s.dial = Dial::Dialing;
            s.frames = frames.clone();
        });
        let result = self.inner.create_transport().await;
        self.probe.update(|s| {
            s.dial = match &result {
                Ok(_) => Dial::Open,
                Err(error) => Dial::Failed(format!("{error:#}")),
            }
        });
        let (transport, events) = result?;
        let counted: Arc<dyn Transport> = Arc::new(CountedTransport {
            inner: transport,
            frames: frames.clone(),
        });
        Ok((counted, count_received(events, frames)))
    }
}

/// A transport that counts its writes.
struct CountedTransport {
    inner: Arc<dyn Transport>,
    frames: Arc<Frames>,
}

#[async_trait]
impl Transport for CountedTransport {
    async fn send(&self, data: Bytes) -> Result<(), anyhow::Error> {
        Frames::count(&self.frames.sent);
        self.inner.send(data).await
    }

    async fn disconnect(&self) {
        self.inner.disconnect().await
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::TransportResourceReport> {
        self.inner.resource_report()
    }
}

/// `events`, passed on one by one, each message received counted first. The channel
/// returned holds one event (the transport's own buffers the rest): a connection's
/// memory does not double. Ends when either side does.
fn count_received(
    events: async_channel::Receiver<TransportEvent>,
    frames: Arc<Frames>,
) -> async_channel::Receiver<TransportEvent> {
    let (tx, rx) = async_channel::bounded(1);
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if matches!(event, TransportEvent::DataReceived(_)) {
                Frames::count(&frames.received);
            }
            if tx.send(event).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// The [`HttpClient`] methods a wrapper passes to its `inner` client unchanged.
macro_rules! delegate_to_inner {
    () => {
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
    };
}

/// How long a fetched `sw.js` (the current WhatsApp Web version) serves every device.
const VERSION_FRESH: Duration = Duration::from_secs(3600);
/// How long a failed fetch is answered from memory, so that thousands of devices
/// starting without a route to WhatsApp do not each wait for their own failure.
const VERSION_RETRY: Duration = Duration::from_secs(10);

/// One fetch of WhatsApp Web's `sw.js` for every device of the node.
///
/// whatsapp-rust fetches it per device (to learn the client version, then once a day):
/// 10,000 devices starting would make 10,000 identical requests to web.whatsapp.com.
/// Here one request is in flight at a time; its answer serves every device for
/// [`VERSION_FRESH`] (a 2xx) or [`VERSION_RETRY`] (a failure or another status). Every
/// other request passes through.
pub(crate) struct SharedVersionFetch {
    inner: Arc<dyn HttpClient>,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<HttpResponse, String>)>>,
    fresh: Duration,
    retry: Duration,
}

impl SharedVersionFetch {
    pub(crate) fn new(inner: Arc<dyn HttpClient>) -> SharedVersionFetch {
        SharedVersionFetch::with_ttls(inner, VERSION_FRESH, VERSION_RETRY)
    }

    fn with_ttls(inner: Arc<dyn HttpClient>, fresh: Duration, retry: Duration) -> Self {
        SharedVersionFetch {
            inner,
            last: tokio::sync::Mutex::new(None),
            fresh,
            retry,
        }
    }

    fn is_version_fetch(request: &HttpRequest) -> bool {
        request.method.eq_ignore_ascii_case("GET") && request.url.ends_with("/sw.js")
    }
}

#[async_trait]
impl HttpClient for SharedVersionFetch {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        if !Self::is_version_fetch(&request) {
            return self.inner.execute(request).await;
        }
        // Held across the fetch: the devices that ask meanwhile wait for its answer.
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            let fresh = match answer {
                Ok(response) if (200..300).contains(&response.status_code) => self.fresh,
                _ => self.retry,
            };
            if at.elapsed() < fresh {
                return answer.clone().map_err(|e| anyhow::anyhow!(e));
            }
        }
        let answer = self
            .inner
            .execute(request)
            .await
            .map_err(|e| format!("{e:#}"));
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer.map_err(|e| anyhow::anyhow!(e))
    }

    delegate_to_inner!();
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

    delegate_to_inner!();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Answers `sw.js` with `status` (or fails when `fail`), counting requests by URL.
    struct Counting {
        status: u16,
        fail: bool,
        calls: Mutex<Vec<String>>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Counting {
        fn new(status: u16, fail: bool) -> Arc<Counting> {
            Arc::new(Counting {
                status,
                fail,
                calls: Mutex::default(),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
            })
        }

        fn calls(&self, url: &str) -> usize {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|u| *u == url)
                .count()
        }
    }

    #[async_trait]
    impl HttpClient for Counting {
        async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            self.calls.lock().unwrap().push(request.url.clone());
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail {
                anyhow::bail!("client DNS lookup failed");
            }
            Ok(HttpResponse {
                status_code: self.status,
                body: format!("body of {}", request.url).into_bytes(),
            })
        }
    }

    const SW: &str = "https://web.whatsapp.com/sw.js";

    const URL: &str = "ws://127.0.0.1:9000/ws/chat";

    /// A probe of a dial to [`URL`] in `dial`, after `sent` writes and `received`
    /// messages, with the version fetch failed when `version_error`.
    fn probe(dial: Dial, sent: u32, received: u32, version_error: Option<&str>) -> String {
        let probe = Probe::new(URL);
        probe.update(|s| {
            s.dial = dial;
            s.version_error = version_error.map(str::to_owned);
            s.frames = Arc::new(Frames {
                sent: AtomicU32::new(sent),
                received: AtomicU32::new(received),
            });
        });
        probe.failure()
    }

    #[test]
    fn a_probe_says_how_far_the_attempt_got() {
        assert_eq!(
            probe(Dial::NotStarted, 0, 0, None),
            "the connection attempt did not start"
        );
        assert_eq!(
            probe(Dial::Failed("connection refused".into()), 0, 0, None),
            format!("cannot reach WhatsApp at {URL}: connection refused")
        );
        assert_eq!(
            probe(Dial::Dialing, 0, 0, None),
            format!("timed out connecting to WhatsApp at {URL}")
        );
        assert_eq!(
            probe(Dial::Open, 0, 0, Some("client DNS lookup failed")),
            "cannot fetch the current WhatsApp Web version: client DNS lookup failed"
        );
        let closed = format!("the connection to {URL} closed during the handshake");
        // Closed before the hello, or before the server answered it.
        assert_eq!(probe(Dial::Open, 0, 0, None), closed);
        assert_eq!(probe(Dial::Open, 1, 0, None), closed);
        // The client sent its finish, so the chain passed: closed for another reason.
        assert_eq!(probe(Dial::Open, 2, 1, None), closed);
    }

    #[test]
    fn a_hello_answered_but_never_finished_is_a_refused_certificate_chain() {
        let refused = probe(Dial::Open, 1, 1, None);
        assert_eq!(
            refused,
            format!(
                "WhatsApp's handshake with {URL} was refused: the server's certificate chain is not signed by WhatsApp (is this a test server? only a test-chain build accepts one)"
            )
        );
        // The answer may come in several messages.
        assert_eq!(probe(Dial::Open, 1, 3, None), refused);
        // A failed version fetch explains more than the handshake does.
        assert!(probe(Dial::Open, 1, 1, Some("503")).contains("version"));
    }

    /// Writes nothing; its events are the test's to send.
    struct Silent;

    #[async_trait]
    impl Transport for Silent {
        async fn send(&self, _data: Bytes) -> Result<(), anyhow::Error> {
            Ok(())
        }

        async fn disconnect(&self) {}
    }

    /// Hands out one [`Silent`] transport whose events come from `events`.
    struct OneTransport(Mutex<Option<async_channel::Receiver<TransportEvent>>>);

    #[async_trait]
    impl TransportFactory for OneTransport {
        async fn create_transport(
            &self,
        ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error>
        {
            let events = self.0.lock().unwrap().take().expect("dialled once");
            Ok((Arc::new(Silent), events))
        }
    }

    #[tokio::test]
    async fn the_probed_transport_counts_writes_and_messages_in_order() {
        let (server, events) = async_channel::bounded(8);
        let probe = Probe::new(URL);
        let factory = ProbedTransport {
            inner: Arc::new(OneTransport(Mutex::new(Some(events)))),
            probe: probe.clone(),
        };
        let (transport, events) = factory.create_transport().await.unwrap();
        transport
            .send(Bytes::from_static(b"WA hello"))
            .await
            .unwrap();
        server.send(TransportEvent::Connected).await.unwrap();
        server
            .send(TransportEvent::DataReceived(Bytes::from_static(
                b"server hello",
            )))
            .await
            .unwrap();
        assert!(matches!(events.recv().await, Ok(TransportEvent::Connected)));
        assert!(matches!(
            events.recv().await,
            Ok(TransportEvent::DataReceived(data)) if data == "server hello"
        ));
        assert!(
            probe.failure().contains("certificate chain"),
            "{}",
            probe.failure()
        );
        transport.send(Bytes::from_static(b"finish")).await.unwrap();
        assert!(probe.failure().contains("closed during the handshake"));
        // The transport closing closes what the client reads.
        drop(server);
        assert!(events.recv().await.is_err());
    }

    async fn many(
        shared: &Arc<SharedVersionFetch>,
        n: usize,
        url: &str,
    ) -> Vec<Result<HttpResponse, String>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let shared = shared.clone();
                let url = url.to_owned();
                tokio::spawn(async move {
                    shared
                        .execute(HttpRequest::get(url))
                        .await
                        .map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_devices_share_one_version_fetch() {
        let inner = Counting::new(200, false);
        let shared = Arc::new(SharedVersionFetch::with_ttls(
            inner.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(10),
        ));
        let answers = many(&shared, 1000, SW).await;
        assert_eq!(inner.calls(SW), 1);
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().body == b"body of https://web.whatsapp.com/sw.js")
        );
        // Other requests are not shared.
        many(&shared, 3, "https://mmg.whatsapp.net/media").await;
        assert_eq!(inner.calls("https://mmg.whatsapp.net/media"), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_is_shared_briefly_then_asked_again() {
        let inner = Counting::new(200, true);
        let shared = Arc::new(SharedVersionFetch::with_ttls(
            inner.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(200),
        ));
        let answers = many(&shared, 100, SW).await;
        assert_eq!(inner.calls(SW), 1, "one failing fetch, not 100");
        for answer in &answers {
            let error = answer.as_ref().unwrap_err();
            assert!(error.contains("client DNS lookup failed"), "{error}");
        }
        assert_eq!(inner.most_in_flight.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        many(&shared, 10, SW).await;
        assert_eq!(inner.calls(SW), 2, "asked again once the failure is stale");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_status_is_not_kept_for_an_hour() {
        let inner = Counting::new(403, false);
        let shared = Arc::new(SharedVersionFetch::with_ttls(
            inner.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(100),
        ));
        let answers = many(&shared, 5, SW).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().status_code == 403)
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        many(&shared, 5, SW).await;
        assert_eq!(inner.calls(SW), 2);
    }
}
