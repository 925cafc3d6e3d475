//! `RemoteDevices` against real `NodeHost`s joined by real ractor_cluster sessions on
//! 127.0.0.1, in one process: node A runs a real `Fleet` (SQLite in a tempdir, the
//! simulated WhatsApp network in process), node B a fleet that owns nothing and
//! redirects. The gateway side talks to both only through the remote actor proxies
//! that the sessions create, so every command and reply crosses TCP as prost bytes.
//!
//! One process can hold two node servers: ractor's process groups are global, so each
//! host is seen locally and through the sessions; the tests pick the remote proxies.
//! Every wait is bounded and event-driven (bus events, process-group changes).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent, pg};
use serde_json::Value;
use tokio::sync::Notify;
use tower::ServiceExt;
use wafleet_gateway::remote::{HostResolver, RemoteDevices};
use wafleet_gateway::{AppState, DeviceApi};
use wafleet_node::api::{DeviceCommand, Empty, Reply};
use wafleet_node::catalog::Catalog;
use wafleet_node::cluster::host::{HOSTS_GROUP, HostMsg, host_actor_name};
use wafleet_node::cluster::ownership::{Ownership, OwnershipCheck};
use wafleet_node::cluster::wire::Wire;
use wafleet_node::cluster::{ClusterHandle, ClusterOptions, join};
use wafleet_node::events::{BusConfig, DeviceEvent, EventBus, EventFilter, EventKind};
use wafleet_node::link::{FramePipe, LinkError, SimDialer, SimLinkFactory};
use wafleet_node::media::{MediaLibrary, NoMediaStore};
use wafleet_node::seal::data_keys::DataKeys;
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{DeviceStatus, MessageStatus, SqliteStore, Store, TrustLevel};
use wafleet_node::{Fleet, FleetError, NewDevice, NodeConfig, SendText};
use wafleet_protocol::node_api::NodeReply;
use wafleet_sim::{Network, SimConfig};

/// Every wait gives up after this.
const WAIT: Duration = Duration::from_secs(20);
const KEY: &str = "test-admin-key";
const PHONE: &str = "6281234567890";
const START: DeviceCommand = DeviceCommand::Start(Empty {});
const STOP: DeviceCommand = DeviceCommand::Stop(Empty {});
const QR: DeviceCommand = DeviceCommand::Qr(Empty {});

/// Names unique in this test process: ractor's registry and groups are global.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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
}

/// A node's ownership answers: `default`, except for some devices.
#[derive(Debug)]
struct Rules {
    default: Ownership,
    except: HashMap<String, Ownership>,
}

impl OwnershipCheck for Rules {
    fn owns(&self, device_id: &str) -> Ownership {
        self.except.get(device_id).unwrap_or(&self.default).clone()
    }
}

fn elsewhere(hint: Option<&str>) -> Ownership {
    Ownership::Elsewhere {
        owner_hint: hint.map(str::to_owned),
    }
}

/// Placement as the test decides it: a device's owner by name, and the hosts by node.
#[derive(Debug, Default)]
struct Placement {
    owners: HashMap<String, String>,
    default_owner: Option<String>,
    hosts: HashMap<String, ActorRef<HostMsg>>,
}

impl HostResolver for Placement {
    fn owner_of(&self, device_id: &str) -> Option<String> {
        self.owners
            .get(device_id)
            .cloned()
            .or_else(|| self.default_owner.clone())
    }

    fn host_named(&self, node: &str) -> Option<ActorRef<HostMsg>> {
        self.hosts.get(node).cloned()
    }
}

async fn fleet(
    dir: &std::path::Path,
    file: &str,
    node: &str,
    network: &Network,
) -> (Fleet, Arc<dyn Store>, EventBus) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join(file)).unwrap());
    let bus = EventBus::in_memory(BusConfig::default());
    let config = NodeConfig {
        node_name: node.to_owned(),
        connect_jitter: Duration::ZERO,
        ..NodeConfig::default()
    };
    let links = SimLinkFactory::new(Arc::new(InProcessDialer(network.clone())));
    let fleet = Fleet::start(
        config,
        store.clone(),
        Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32]))),
        bus.clone(),
        Arc::new(links),
    )
    .await
    .unwrap();
    fleet
        .catalog()
        .set_quota_table(wafleet_cluster_config::QuotaTable::UNTHROTTLED)
        .await
        .unwrap();
    fleet.refresh_settings().await.unwrap();
    (fleet, store, bus)
}

fn options(
    name: &str,
    cookie: &str,
    port: u16,
    seeds: Vec<String>,
    fleet: Fleet,
    ownership: Rules,
) -> ClusterOptions {
    ClusterOptions {
        name: name.to_owned(),
        cookie: cookie.to_owned(),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        advertise_host: "127.0.0.1".into(),
        seeds,
        heartbeat_interval: Duration::from_millis(200),
        failure_timeout: Duration::from_secs(2),
        member: true,
        http_addr: String::new(),
        fleet: Some(fleet),
        ownership: Arc::new(ownership),
        tls: None,
    }
}

/// A port free now (ractor_cluster does not tell which port `:0` bound).
fn free_port() -> u16 {
    wafleet_load::scenario::process::free_port().unwrap()
}

/// Wakes the test whenever the hosts group changes.
struct GroupWatch;

enum Never {}
impl ractor::Message for Never {}

impl Actor for GroupWatch {
    type Msg = Never;
    type State = Arc<Notify>;
    type Arguments = Arc<Notify>;

    async fn pre_start(
        &self,
        myself: ActorRef<Never>,
        changed: Arc<Notify>,
    ) -> Result<Arc<Notify>, ActorProcessingErr> {
        pg::monitor(HOSTS_GROUP.to_owned(), myself.get_cell());
        Ok(changed)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Never>,
        event: SupervisionEvent,
        changed: &mut Arc<Notify>,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(_) = event {
            changed.notify_one();
        }
        Ok(())
    }
}

/// Node `node`'s host as seen through a ractor_cluster session (not the local actor),
/// once a session announced it.
async fn remote_host(node: &str) -> ActorRef<HostMsg> {
    let name = host_actor_name(node);
    let find = || {
        pg::get_members(&HOSTS_GROUP.to_owned())
            .into_iter()
            .find(|cell| !cell.get_id().is_local() && cell.get_name().as_deref() == Some(&name))
            .map(ActorRef::<HostMsg>::from)
    };
    let changed = Arc::new(Notify::new());
    let (watch, _) = Actor::spawn(None, GroupWatch, changed.clone())
        .await
        .unwrap();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(host) = find() {
                return host;
            }
            changed.notified().await;
        }
    })
    .await;
    watch.stop(None);
    found.unwrap_or_else(|_| panic!("no session announced the host of {node}"))
}

/// The next event of `kind` on `subscription` that `accept` takes.
async fn wait_event(
    subscription: &mut wafleet_node::events::Subscription,
    kind: EventKind,
    accept: impl Fn(&DeviceEvent) -> bool,
) -> Arc<DeviceEvent> {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = subscription.next().await.expect("the bus closed");
            if event.kind == kind && accept(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {} event in time", kind.as_str()))
}

fn status_is(status: DeviceStatus) -> impl Fn(&DeviceEvent) -> bool {
    move |event| event.data["status"] == status.as_str()
}

fn new_device(id: &str) -> NewDevice {
    NewDevice {
        id: id.to_owned(),
        name: id.to_owned(),
        trust_level: TrustLevel::Newcomer,
    }
}

/// Two nodes in one process: A runs the devices; B owns nothing and points at A
/// (or elsewhere, per device). The gateway's placement names A or B per device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_owner_over_the_cluster_and_fail_retryably_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let network = Network::open(SimConfig::default()).unwrap();
    let (a, b) = (unique("node-a"), unique("node-b"));
    let cookie = unique("cookie");
    let (fleet_a, store_a, bus_a) = fleet(dir.path(), "a.db", &a, &network).await;
    let (fleet_b, store_b, _bus_b) = fleet(dir.path(), "b.db", &b, &network).await;

    let port_a = free_port();
    let rules_a = Rules {
        default: Ownership::Owned { fence: None },
        except: HashMap::from([("echo".to_owned(), elsewhere(Some(&b)))]),
    };
    let rules_b = Rules {
        default: elsewhere(Some(&a)),
        except: HashMap::from([
            ("charlie".to_owned(), elsewhere(None)),
            ("delta".to_owned(), elsewhere(Some("node-c"))),
        ]),
    };
    let node_a: ClusterHandle = join(options(
        &a,
        &cookie,
        port_a,
        vec![],
        fleet_a.clone(),
        rules_a,
    ))
    .await
    .unwrap();
    let node_b = join(options(
        &b,
        &cookie,
        0,
        vec![format!("127.0.0.1:{port_a}")],
        fleet_b.clone(),
        rules_b,
    ))
    .await
    .unwrap();
    let host_a = remote_host(&a).await;
    let host_b = remote_host(&b).await;
    assert!(!host_a.get_id().is_local() && !host_b.get_id().is_local());
    assert_ne!(
        host_a.get_id(),
        node_a.host().get_id(),
        "a proxy, not the actor"
    );

    let placement = Placement {
        owners: ["bravo", "charlie", "delta", "golf"]
            .into_iter()
            .map(|id| (id.to_owned(), b.clone()))
            .chain([("foxtrot".to_owned(), "node-c".to_owned())])
            .collect(),
        default_owner: Some(a.clone()),
        hosts: HashMap::from([(a.clone(), host_a), (b.clone(), host_b.clone())]),
    };
    let catalog = Catalog::new(store_a.clone(), data_keys(store_a.clone()));
    let devices = RemoteDevices::new(Arc::new(placement), catalog.clone())
        .with_timeout(Duration::from_secs(15));

    // --- create → start → QR → scan → READY → send → delivered, all on A ---
    let mut events = bus_a
        .subscribe(EventFilter::Devices(["alpha".to_owned()].into()), None)
        .await
        .unwrap();
    let created = catalog.create_device(new_device("alpha")).await.unwrap();
    assert_eq!(created.status, DeviceStatus::Stopped);
    assert_eq!(devices.node_of("alpha"), a);
    devices.execute("alpha", START).await.unwrap();
    wait_event(&mut events, EventKind::Qr, |_| true).await;
    let qr = devices
        .execute("alpha", QR)
        .await
        .unwrap()
        .into_qr()
        .unwrap();
    network.scan(&qr.code, PHONE).unwrap();
    wait_event(
        &mut events,
        EventKind::Status,
        status_is(DeviceStatus::Ready),
    )
    .await;
    let device = catalog.device("alpha").await.unwrap();
    assert_eq!(device.status, DeviceStatus::Ready);
    assert_eq!(device.phone.as_deref(), Some(PHONE));

    let send = SendText {
        to_phone: "6289876543210".into(),
        text: "halo dari gateway".into(),
        idempotency_key: Some("k-1".into()),
        media: None,
        mentions: Vec::new(),
        send_at_ms: None,
        reply_to: None,
    };
    let sent = devices
        .execute("alpha", DeviceCommand::SendText(send.clone()))
        .await
        .and_then(Reply::into_sent)
        .unwrap();
    assert_eq!(sent.message.status, MessageStatus::Queued);
    assert!(!sent.replayed);
    let message_id = sent.message.id.clone();
    wait_event(&mut events, EventKind::MessageStatus, |event| {
        event.data["message_id"] == message_id.as_str() && event.data["status"] == "delivered"
    })
    .await;
    let message = catalog.message("alpha", &message_id).await.unwrap();
    assert_eq!(message.status, MessageStatus::Delivered);
    assert_eq!(message.text, "halo dari gateway");
    let again = devices
        .execute("alpha", DeviceCommand::SendText(send))
        .await
        .and_then(Reply::into_sent)
        .unwrap();
    assert!(
        again.replayed,
        "an idempotent repeat crosses the wire as such"
    );
    assert_eq!(again.message.id, message_id);

    // The node's refusals arrive as the same FleetError.
    assert!(matches!(
        catalog.create_device(new_device("alpha")).await,
        Err(FleetError::DeviceExists(id)) if id == "alpha"
    ));
    assert!(matches!(
        devices.execute("alpha", QR).await,
        Err(FleetError::WrongState {
            code: "device_not_in_scan_qr",
            ..
        })
    ));
    assert!(matches!(
        devices.execute("nobody", START).await,
        Err(FleetError::DeviceNotFound(id)) if id == "nobody"
    ));
    assert!(matches!(
        catalog.message("alpha", "msg_nope").await,
        Err(FleetError::MessageNotFound(_))
    ));

    // --- not owner: one redirect to the hinted node ---
    let bravo = catalog.create_device(new_device("bravo")).await.unwrap();
    assert_eq!(bravo.id, "bravo");
    assert!(
        store_a.get_device("bravo").await.unwrap().is_some(),
        "A ran it"
    );
    assert!(
        store_b.get_device("bravo").await.unwrap().is_none(),
        "B did not"
    );
    let stopped = devices
        .execute("bravo", STOP)
        .await
        .and_then(Reply::into_device)
        .unwrap();
    assert_eq!(stopped.status, DeviceStatus::Stopped);

    // No hint, a hint nobody can reach, or a second "not owner": unavailable, and
    // nothing ran. (Creating needs no owner: it is done in the store.)
    for id in ["charlie", "delta", "echo"] {
        catalog.create_device(new_device(id)).await.unwrap();
        let before = store_a.get_device(id).await.unwrap().unwrap();
        match devices.execute(id, START).await {
            Err(FleetError::Unavailable(reason)) => assert!(reason.contains(id), "{reason}"),
            other => panic!("{id}: {other:?}"),
        }
        let after = store_a.get_device(id).await.unwrap().unwrap();
        assert_eq!(after, before, "{id}: nothing ran");
    }

    // --- an owner with no session: 503, retryable, through the HTTP API ---
    catalog.create_device(new_device("foxtrot")).await.unwrap();
    let app = wafleet_gateway::router(AppState::new(
        Arc::new(devices.clone()),
        catalog.clone(),
        bus_a.clone(),
        no_media(catalog.store().clone()),
        KEY.to_owned(),
    ));
    let response = app
        .oneshot(
            Request::post("/v1/devices/alpha/start")
                .header("authorization", format!("Bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "A serves alpha over HTTP"
    );
    let app = wafleet_gateway::router(AppState::new(
        Arc::new(devices.clone()),
        catalog.clone(),
        bus_a.clone(),
        no_media(catalog.store().clone()),
        KEY.to_owned(),
    ));
    let response = app
        .oneshot(
            Request::post("/v1/devices/foxtrot/start")
                .header("authorization", format!("Bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["error"]["retryable"], true);

    // --- the owner's node goes away: its proxy stops, the command is unavailable ---
    drop(node_b);
    host_b
        .get_cell()
        .wait(Some(WAIT))
        .await
        .expect("the proxy of B's host stops with its session");
    match devices.execute("golf", START).await {
        Err(FleetError::Unavailable(reason)) => assert!(reason.contains("golf"), "{reason}"),
        other => panic!("{other:?}"),
    }

    drop(node_a);
    fleet_a.shutdown().await;
    fleet_b.shutdown().await;
}

/// A host that takes commands and never answers (a frozen node).
struct SilentHost;

impl Actor for SilentHost {
    type Msg = HostMsg;
    type State = Vec<ractor::RpcReplyPort<Wire<NodeReply>>>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<HostMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _myself: ActorRef<HostMsg>,
        msg: HostMsg,
        held: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let HostMsg::Command(_, reply) = msg {
            held.push(reply);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_silent_owner_is_a_504_and_no_live_node_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("g.db")).unwrap());
    let (silent, _) = Actor::spawn(None, SilentHost, ()).await.unwrap();
    let placement = Placement {
        owners: HashMap::from([("frozen".to_owned(), "node-f".to_owned())]),
        default_owner: None,
        hosts: HashMap::from([("node-f".to_owned(), silent.clone())]),
    };
    let catalog = Catalog::new(store.clone(), data_keys(store));
    let devices = RemoteDevices::new(Arc::new(placement), catalog.clone())
        .with_timeout(Duration::from_millis(100));
    assert!(matches!(
        devices.execute("frozen", START).await,
        Err(FleetError::Timeout)
    ));
    assert!(matches!(
        devices.execute("orphan", START).await,
        Err(FleetError::Unavailable(_))
    ));
    assert_eq!(devices.node_of("orphan"), "", "no live node");

    let app = wafleet_gateway::router(AppState::new(
        Arc::new(devices),
        catalog.clone(),
        EventBus::in_memory(BusConfig::default()),
        no_media(catalog.store().clone()),
        KEY.to_owned(),
    ));
    let response = app
        .oneshot(
            Request::post("/v1/devices/frozen/stop")
                .header("authorization", format!("Bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    silent.stop(None);
}

/// The data keys under the key the test's nodes use.
/// A media library that stores nothing (these tests send text only).
fn no_media(store: Arc<dyn Store>) -> Arc<MediaLibrary> {
    Arc::new(MediaLibrary::new(
        Arc::new(NoMediaStore),
        data_keys(store),
        Default::default(),
    ))
}

fn data_keys(store: Arc<dyn Store>) -> Arc<DataKeys> {
    Arc::new(DataKeys::new(
        store,
        Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32]))),
    ))
}
