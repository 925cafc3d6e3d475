//! The real WhatsApp link with no WhatsApp to reach: pointed at local servers on
//! 127.0.0.1 that refuse connections, accept and drop them (before and after the
//! WebSocket upgrade), or accept and never answer. Each time the device reports
//! DISCONNECTED with a reason that says what happened, retries with a backoff that
//! grows to its cap, and stops dialing the moment it is stopped (the link has no retry
//! loop of its own); the runtime is left with no stray tasks.
//!
//! Only loopback is dialed: the WebSocket URL is overridden and the client version is
//! pinned, so the link never fetches it from web.whatsapp.com.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use wafleet_cluster_config::WhatsAppVersion;
use wafleet_node::events::{BusConfig, EventBus, EventFilter, Subscription};
use wafleet_node::link::{WhatsAppConfig, WhatsAppLinkFactory};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{SqliteStore, Store, TrustLevel};
use wafleet_node::{Fleet, NewDevice, NodeConfig};

const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(400);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(700);

/// What a local server does with each connection.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Closes the TCP connection at once.
    Drop,
    /// Completes the WebSocket upgrade, then closes.
    UpgradeThenClose,
    /// Accepts and never sends a byte.
    Stall,
    /// Completes the upgrade and answers the client's hello with a frame that is no
    /// WhatsApp server hello, then waits for the client to hang up.
    AnswerHelloWithJunk,
}

/// A server on 127.0.0.1 and how many connections it accepted.
struct Server {
    url: String,
    accepted: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws/chat", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            match behaviour {
                Behaviour::Drop => drop(stream),
                Behaviour::UpgradeThenClose => {
                    tokio::spawn(async move {
                        if let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await {
                            let _ = socket.close(None).await;
                        }
                    });
                }
                Behaviour::Stall => held.push(stream),
                Behaviour::AnswerHelloWithJunk => {
                    tokio::spawn(async move {
                        use futures_util::{SinkExt, StreamExt};
                        use tokio_tungstenite::tungstenite::Message;
                        let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                            return;
                        };
                        if let Some(Ok(_hello)) = socket.next().await {
                            // A 3-byte big-endian length, then that many bytes.
                            let frame = [0, 0, 4, 1, 2, 3, 4];
                            let _ = socket.send(Message::binary(frame.to_vec())).await;
                            while let Some(Ok(_)) = socket.next().await {}
                        }
                    });
                }
            }
        }
    });
    Server {
        url,
        accepted,
        task,
    }
}

/// A URL nothing listens on: a port bound then released.
fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("ws://{addr}/ws/chat")
}

async fn fleet(dir: &std::path::Path, url: &str) -> (Fleet, EventBus, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("wafleet.db")).unwrap());
    let bus = EventBus::in_memory(BusConfig::default());
    let links = WhatsAppLinkFactory::new(WhatsAppConfig {
        ws_url: Some(url.to_owned()),
        version: Some(WhatsAppVersion {
            parts: (2, 3000, 1_000_000_000),
        }),
    })
    .expect("a factory for a test URL");
    let config = NodeConfig {
        connect_jitter: Duration::ZERO,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        reconnect_min: RECONNECT_MIN,
        reconnect_max: RECONNECT_MAX,
        ..NodeConfig::default()
    };
    let fleet = Fleet::start(
        config,
        store.clone(),
        Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32]))),
        bus.clone(),
        Arc::new(links),
    )
    .await
    .unwrap();
    (fleet, bus, store)
}

/// The reasons and arrival times of the next `n` DISCONNECTED statuses (30 s at most).
async fn disconnects(events: &mut Subscription, n: usize) -> Vec<(String, Instant)> {
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while seen.len() < n {
            let event = events.next().await.unwrap();
            if event.kind.as_str() == "status" && event.data["status"] == "DISCONNECTED" {
                let reason = event.data["reason"].as_str().unwrap_or("").to_owned();
                seen.push((reason, Instant::now()));
            }
        }
        seen
    })
    .await
    .expect("DISCONNECTED statuses in time")
}

async fn create(fleet: &Fleet, id: &str) {
    fleet
        .catalog()
        .create_device(NewDevice {
            id: id.into(),
            name: id.into(),
            trust_level: TrustLevel::Newcomer,
        })
        .await
        .unwrap();
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Runs a device against `url` until it has disconnected `attempts` times, checks
/// the reasons and the backoff, stops it, and checks that nothing dials afterwards
/// and no task is left behind. Returns the reasons.
async fn exercise(url: &str, accepted: Option<&AtomicU32>, attempts: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, bus, _store) = fleet(dir.path(), url).await;
    create(&fleet, "offline").await;
    let tasks_before = alive_tasks();
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    fleet.start_device("offline", None).await.unwrap();

    let seen = disconnects(&mut events, attempts).await;
    let reasons: Vec<String> = seen.iter().map(|(r, _)| r.clone()).collect();

    // Backoff: the later gaps are at least half the cap (the delay is base/2 plus up to
    // base/2 of jitter, and the base has reached the cap by the 4th retry), and no gap
    // exceeds the cap plus one attempt: retries grow to the cap and stay there.
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].1 - w[0].1).collect();
    for gap in &gaps[3..] {
        assert!(*gap >= RECONNECT_MAX / 2, "no backoff: gaps {gaps:?}");
    }
    for gap in &gaps {
        assert!(
            *gap <= RECONNECT_MAX + HANDSHAKE_TIMEOUT + Duration::from_secs(2),
            "backoff beyond the cap: gaps {gaps:?}"
        );
    }
    let device = fleet.catalog().device("offline").await.unwrap();
    assert_ne!(
        device.status.as_str(),
        "FAILED",
        "a network failure is not a crash"
    );

    // Stopped, the device dials no more: the link has no reconnect loop of its own.
    fleet.stop_device("offline", None).await.unwrap();
    let dialed = accepted.map(|a| a.load(Ordering::SeqCst));
    tokio::time::sleep(RECONNECT_MAX * 3).await;
    if let Some(accepted) = accepted {
        assert_eq!(
            Some(accepted.load(Ordering::SeqCst)),
            dialed,
            "a stopped device kept dialing"
        );
        assert!(
            dialed.unwrap() as usize >= attempts,
            "every attempt reached the server"
        );
    }
    assert_eq!(
        fleet
            .catalog()
            .device("offline")
            .await
            .unwrap()
            .status
            .as_str(),
        "STOPPED"
    );

    // The healthy process is left with no stray client tasks (closing a stalled
    // client is cut off after 5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive_tasks() > tasks_before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        alive_tasks() <= tasks_before + 2,
        "{} tasks alive, {tasks_before} before the device started",
        alive_tasks()
    );
    fleet.shutdown().await;
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_disconnected_with_the_reason_and_backs_off() {
    let url = refusing_url();
    let reasons = exercise(&url, None, 7).await;
    for reason in &reasons {
        assert!(
            reason.contains(&format!("cannot reach WhatsApp at {url}"))
                && reason.contains("refused"),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_before_the_upgrade_is_disconnected_with_the_reason() {
    let server = server(Behaviour::Drop).await;
    let reasons = exercise(&server.url, Some(&server.accepted), 7).await;
    for reason in &reasons {
        assert!(
            reason.contains(&format!("cannot reach WhatsApp at {}", server.url)),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_during_the_handshake_is_disconnected_with_the_reason() {
    let server = server(Behaviour::UpgradeThenClose).await;
    let reasons = exercise(&server.url, Some(&server.accepted), 7).await;
    for reason in &reasons {
        assert!(
            reason.contains(&format!(
                "the connection to {} closed during the handshake",
                server.url
            )),
            "{reason}"
        );
    }
}

/// What a client sees of a server whose certificate chain it refuses: its hello
/// answered, and no finish sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_the_hello_but_not_as_whatsapp_is_a_refused_chain() {
    let server = server(Behaviour::AnswerHelloWithJunk).await;
    let reasons = exercise(&server.url, Some(&server.accepted), 5).await;
    for reason in &reasons {
        assert!(
            reason.contains(&format!(
                "WhatsApp's handshake with {} was refused: the server's certificate chain is not signed by WhatsApp",
                server.url
            )),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_times_out_and_backs_off() {
    let server = server(Behaviour::Stall).await;
    let reasons = exercise(&server.url, Some(&server.accepted), 5).await;
    for reason in &reasons {
        assert_eq!(reason, "handshake timed out");
    }
}

/// An operator logout while the client is still connecting: the link's closing flush
/// must not bring the wiped credentials back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_while_connecting_leaves_no_protocol_state_behind() {
    let server = server(Behaviour::Stall).await;
    let dir = tempfile::tempdir().unwrap();
    let (fleet, _bus, store) = fleet(dir.path(), &server.url).await;
    create(&fleet, "leaving").await;
    fleet.start_device("leaving", None).await.unwrap();
    // The device record exists from the first open (its identity is fixed there).
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .list_link_state("leaving", "wa.device")
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "no device record stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let device = fleet.logout_device("leaving", None).await.unwrap();
    assert_eq!(device.status.as_str(), "LOGGED_OUT");
    // Closing a stalled client is cut off after 5 s; then nothing may remain.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for namespace in ["wa.device", "wa.meta", "wa.prekey", "wa.session"] {
        assert!(
            store
                .list_link_state("leaving", namespace)
                .await
                .unwrap()
                .is_empty(),
            "{namespace} survived the logout"
        );
    }
    fleet.shutdown().await;
}
