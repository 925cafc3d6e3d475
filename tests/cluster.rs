//! The cluster with real processes on 127.0.0.1: `wafleet node` ×3, `wafleet sim`, a real
//! redis-server, one SQLite file shared by the nodes. Every wait is bounded and
//! event-driven (the nodes print membership changes; device events come from Redis).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use wafleet_cluster_config::{Placement, shard_of};
mod common;

use wafleet_load::scenario::cluster::{COOKIE, GatewayProcess, NodePlan, NodeProcess, SimProcess};
use wafleet_load::scenario::process::{RedisServer, Standalone};
use wafleet_node::events::{EventBus, EventFilter, RedisBusConfig, Subscription};

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");
const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    _redis: RedisServer,
    sim: SimProcess,
    dir: tempfile::TempDir,
    redis_url: String,
}

impl Cluster {
    async fn new() -> Cluster {
        let redis = RedisServer::start().await.unwrap();
        let sim = SimProcess::start(Path::new(WAFLEET)).await.unwrap();
        Cluster {
            redis_url: redis.url.clone(),
            _redis: redis,
            sim,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn plans(&self, n: usize) -> Vec<NodePlan> {
        let db = self.dir.path().join("wafleet.db");
        NodePlan::cluster(n, &db, &self.redis_url, std::slice::from_ref(&self.sim.ws)).unwrap()
    }

    /// Starts every node of `plans` with the cluster cookie.
    async fn start_all(&self, plans: &[NodePlan]) -> Vec<NodeProcess> {
        let mut nodes = Vec::new();
        for plan in plans {
            nodes.push(self.start(plan, COOKIE).await);
        }
        nodes
    }

    /// The cluster's Redis event bus as a gateway reads it: with the nodes' master key
    /// (`master.key` beside the shared database, made by the first node) and store, to
    /// open the sealed payloads.
    async fn bus(&self) -> EventBus {
        let db = self.dir.path().join("wafleet.db");
        let keys = wafleet_node::seal::load_master_key_file(&self.dir.path().join("master.key"))
            .expect("the nodes' master key");
        let store: Arc<dyn wafleet_node::store::Store> =
            Arc::new(wafleet_node::store::SqliteStore::open(&db).unwrap());
        let data_keys = wafleet_node::seal::data_keys::DataKeys::new(
            store,
            Arc::new(wafleet_node::seal::Sealer::from_keys(keys)),
        );
        EventBus::redis(RedisBusConfig {
            keys: Some(Arc::new(data_keys)),
            ..RedisBusConfig::new(self.redis_url.clone())
        })
        .await
        .unwrap()
    }

    /// Every device event from the start, as a gateway would read it from Redis.
    async fn events(&self) -> (EventBus, Subscription) {
        let bus = self.bus().await;
        let events = bus.subscribe(EventFilter::All, Some(0)).await.unwrap();
        (bus, events)
    }

    /// The simulator's counters.
    /// The simulator's stats once every one of `n` links is connected (a device moved by
    /// a membership change reconnects within moments); panics with the last stats if
    /// that does not happen within `WAIT`.
    async fn all_connected(&self, n: u64) -> Value {
        let started = Instant::now();
        let deadline = started + WAIT;
        loop {
            let stats = self.sim_stats().await;
            if stats["links_connected"].as_u64() == Some(n) {
                println!("all {n} links connected after {:?}", started.elapsed());
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "not all {n} links connected: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sim_stats(&self) -> Value {
        reqwest::get(format!("{}/sim/stats", self.sim.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn start(&self, plan: &NodePlan, cookie: &str) -> NodeProcess {
        NodeProcess::start(Path::new(WAFLEET), self.dir.path(), plan, cookie)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn nodes_detect_a_killed_and_a_frozen_peer_and_take_a_resumed_one_back() {
    let cluster = Cluster::new().await;
    let plans = cluster.plans(3);
    let mut nodes = cluster.start_all(&plans).await;
    let all = ["node-1", "node-2", "node-3"];
    for node in &mut nodes {
        node.wait_members(&all, WAIT).await.unwrap();
    }

    // kill -9: the survivors notice within the failure timeout (1.5 s) plus a tick.
    nodes[2].kill9().await;
    let killed = Instant::now();
    for node in &mut nodes[..2] {
        node.wait_members(&["node-1", "node-2"], WAIT)
            .await
            .unwrap();
    }
    let detected = killed.elapsed();
    println!("kill detected in {detected:?}");
    assert!(detected < Duration::from_secs(3), "{detected:?}");

    // SIGSTOP keeps the TCP session open: only the heartbeats stop.
    nodes[1].signal("STOP").unwrap();
    let frozen = Instant::now();
    nodes[0].wait_members(&["node-1"], WAIT).await.unwrap();
    let detected = frozen.elapsed();
    println!("freeze detected in {detected:?}");
    assert!(detected < Duration::from_secs(3), "{detected:?}");

    nodes[1].signal("CONT").unwrap();
    nodes[0]
        .wait_members(&["node-1", "node-2"], WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn nodes_with_different_cookies_refuse_each_other() {
    let cluster = Cluster::new().await;
    let plans = cluster.plans(2);
    let mut first = cluster.start(&plans[0], COOKIE).await;
    let mut stranger = cluster
        .start(&plans[1], "another-cookie-entirely-0123456789")
        .await;
    first.wait_members(&["node-1"], WAIT).await.unwrap();
    stranger.wait_members(&["node-2"], WAIT).await.unwrap();
    // Seeds are retried every 250 ms; 3 s is a dozen refused attempts.
    let window = Duration::from_secs(3);
    let (seen_by_first, seen_by_stranger) = tokio::join!(
        first.members_seen_during(window),
        stranger.members_seen_during(window)
    );
    assert!(seen_by_first.is_empty(), "node-1 saw {seen_by_first:?}");
    assert!(
        seen_by_stranger.is_empty(),
        "node-2 saw {seen_by_stranger:?}"
    );
}

/// Waits until every node holds exactly the shards placement gives it, then until every
/// device's latest status event says READY from its owner. Returns device → owner.
async fn settle(
    nodes: &mut [NodeProcess],
    events: &mut Subscription,
    ids: &HashSet<String>,
) -> HashMap<String, String> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let placement = Placement::new(1024, &names).unwrap();
    for node in nodes.iter_mut() {
        let expected = placement.shards_of(&node.name).count();
        node.wait_shards(|n| n == expected, WAIT).await.unwrap();
    }
    let owners: HashMap<String, String> = ids
        .iter()
        .map(|id| (id.clone(), placement.owner_of(id).to_owned()))
        .collect();
    let mut latest: HashMap<String, (String, String)> = HashMap::new();
    let settled = |latest: &HashMap<String, (String, String)>| {
        owners.iter().all(|(id, owner)| {
            latest
                .get(id)
                .is_some_and(|(s, n)| s == "READY" && n == owner)
        })
    };
    tokio::time::timeout(WAIT, async {
        while !settled(&latest) {
            let event = events.next().await.expect("event stream ended");
            if event.kind.as_str() == "status" {
                let status = event.data["status"].as_str().unwrap_or_default().to_owned();
                let node = event.data["node"].as_str().unwrap_or_default().to_owned();
                latest.insert(event.device_id.clone(), (status, node));
            }
        }
    })
    .await
    .expect("devices READY on their owners in time");
    owners
}

/// READY events per device from Redis, as any gateway would see them.
async fn ready_devices(
    events: &mut Subscription,
    wanted: &HashSet<String>,
    within: Duration,
) -> HashMap<String, Instant> {
    let mut ready = HashMap::new();
    tokio::time::timeout(within, async {
        while ready.len() < wanted.len() {
            let event = events.next().await.expect("event stream ended");
            if event.kind.as_str() == "status"
                && event.data["status"] == "READY"
                && wanted.contains(&event.device_id)
            {
                ready
                    .entry(event.device_id.clone())
                    .or_insert_with(Instant::now);
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        let missing: Vec<_> = wanted.iter().filter(|d| !ready.contains_key(*d)).collect();
        panic!(
            "only {} of {} READY in time; missing {missing:?}",
            ready.len(),
            wanted.len()
        )
    });
    ready
}

/// Three nodes running 30 paired devices, and the node that holds the most of them.
struct Running {
    bus: EventBus,
    nodes: Vec<NodeProcess>,
    ids: HashSet<String>,
    victim_name: &'static str,
    /// The devices the victim holds.
    moved: HashSet<String>,
}

async fn three_nodes_running_devices(cluster: &Cluster) -> Running {
    let ids = pair_devices(cluster, 30).await;

    // Three nodes take them over from the stored credentials.
    let (bus, mut events) = cluster.events().await;
    let plans = cluster.plans(3);
    let mut nodes = cluster.start_all(&plans).await;
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2", "node-3"], WAIT)
            .await
            .unwrap();
    }
    // Wait until the joins have settled: every node holds its shards and runs its
    // devices (the first node to start holds everything until the others join).
    settle(&mut nodes, &mut events, &ids).await;

    // Who holds what, from the leases.
    let holders = owners(&cluster.dir.path().join("wafleet.db"), &ids);
    let victim_name = ["node-1", "node-2", "node-3"]
        .into_iter()
        .max_by_key(|n| holders.values().filter(|o| o == n).count())
        .unwrap();
    let moved: HashSet<String> = holders
        .iter()
        .filter(|(_, o)| *o == victim_name)
        .map(|(d, _)| d.clone())
        .collect();
    assert!(!moved.is_empty());
    Running {
        bus,
        nodes,
        ids,
        victim_name,
        moved,
    }
}

#[tokio::test]
async fn a_killed_nodes_devices_are_ready_on_the_survivors_without_a_new_scan() {
    let cluster = Cluster::new().await;
    // kill -9 the node with the most devices.
    let Running {
        bus,
        mut nodes,
        ids,
        victim_name,
        moved,
    } = three_nodes_running_devices(&cluster).await;
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    let victim = nodes.iter_mut().find(|n| n.name == victim_name).unwrap();
    victim.kill9().await;
    let killed = Instant::now();
    let ready = ready_devices(&mut events, &moved, WAIT).await;
    let slowest = ready
        .values()
        .map(|at| at.duration_since(killed))
        .max()
        .unwrap();
    println!(
        "{} devices of {victim_name} READY again within {slowest:?} of the kill",
        moved.len()
    );
    assert!(slowest < Duration::from_secs(10), "{slowest:?}");

    let stats = cluster.all_connected(30).await;
    assert_eq!(stats["pairings"], 30, "no new pairing");
    let owners_after = owners(&cluster.dir.path().join("wafleet.db"), &ids);
    assert!(owners_after.values().all(|o| o != victim_name));

    // The survivors counted the takeover and timed each device's recovery to READY
    // (recorded just after the READY event is published: read until they agree).
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (mut takeovers, mut recovered, mut timed) = (0.0, 0.0, 0.0);
        for node in nodes.iter().filter(|n| n.name != victim_name) {
            let metrics = http
                .get(format!("{}/metrics", node.http))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            takeovers += metric(&metrics, "wafleet_node_lease_takeovers_total ");
            recovered += metric(
                &metrics,
                "wafleet_node_recoveries_total{outcome=\"ready\"} ",
            );
            timed += metric(&metrics, "wafleet_node_recovery_duration_seconds_count ");
        }
        // At least the victim's devices; with bounded placement a few more may move
        // between the survivors when the member set changes.
        let settled = recovered as usize >= moved.len() && timed == recovered;
        if settled || std::time::Instant::now() > deadline {
            assert!(takeovers > 0.0, "no lease takeover counted");
            assert!(
                recovered as usize >= moved.len(),
                "recoveries ended READY: {recovered} for {} moved",
                moved.len()
            );
            assert_eq!(timed, recovered, "every recovery timed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_stopped_with_sigterm_hands_its_devices_over_without_waiting_for_leases() {
    let cluster = Cluster::new().await;
    let Running {
        bus,
        mut nodes,
        ids,
        victim_name,
        moved,
    } = three_nodes_running_devices(&cluster).await;

    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    let victim = nodes.iter_mut().find(|n| n.name == victim_name).unwrap();
    victim.signal("TERM").unwrap();
    let stopped = Instant::now();
    let ready = ready_devices(&mut events, &moved, WAIT).await;
    let slowest = ready
        .values()
        .map(|at| at.duration_since(stopped))
        .max()
        .unwrap();
    println!(
        "{} devices of {victim_name} READY on the others within {slowest:?} of SIGTERM",
        moved.len()
    );
    // A kill waits for the failure timeout (1.5 s) and then the lease TTL (3 s); a
    // handoff waits for neither.
    assert!(slowest < Duration::from_millis(1_500), "{slowest:?}");
    let status = victim.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "the node exits cleanly: {status}");
    let survivors: Vec<&str> = ["node-1", "node-2", "node-3"]
        .into_iter()
        .filter(|n| *n != victim_name)
        .collect();
    for node in nodes.iter_mut().filter(|n| n.name != victim_name) {
        node.wait_members(&survivors, WAIT).await.unwrap();
    }
    let stats = cluster.all_connected(30).await;
    assert_eq!(stats["pairings"], 30, "no new pairing");
    let owners_after = owners(&cluster.dir.path().join("wafleet.db"), &ids);
    assert!(owners_after.values().all(|o| o != victim_name));
}

/// The value of the series whose line starts with `series` (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Pairs `n` devices through a standalone process on the cluster's simulator and
/// database, waits until each is READY there (credentials stored), and stops it.
async fn pair_devices(cluster: &Cluster, n: u32) -> HashSet<String> {
    let http = reqwest::Client::new();
    // Pair 30 devices through a standalone process on the same simulator and database.
    let link = format!("sim={}", cluster.sim.ws);
    let standalone = Standalone::start_with_link(Path::new(WAFLEET), cluster.dir.path(), &link)
        .await
        .unwrap();
    let ids: HashSet<String> = (0..n).map(|i| format!("dev-{i:02}")).collect();
    let mut events = Box::pin(standalone.events(false).await.unwrap());
    for id in &ids {
        standalone
            .post("/v1/devices", &json!({"id": id, "name": id}), 201)
            .await
            .unwrap();
        standalone
            .post(&format!("/v1/devices/{id}/start"), &json!({}), 202)
            .await
            .unwrap();
    }
    // Scan each QR as it shows; done when every device is READY (credentials stored).
    let mut ready = HashSet::new();
    tokio::time::timeout(WAIT, async {
        while ready.len() < ids.len() {
            let (kind, data) = events.next().await.expect("SSE ended");
            let device = data["device_id"].as_str().unwrap().to_owned();
            if kind == "qr" {
                let n: u32 = device.trim_start_matches("dev-").parse().unwrap();
                let scanned = http
                    .post(format!("{}/sim/scan", cluster.sim.base))
                    .json(&json!({"qr": data["code"], "phone": format!("62811000{n:05}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(scanned.status(), 200);
            } else if kind == "status" && data["status"] == "READY" {
                ready.insert(device);
            }
        }
    })
    .await
    .expect("all paired in time");
    drop(events);
    standalone.kill().await;
    let stats = cluster.sim_stats().await;
    assert_eq!(stats["pairings"], n);

    ids
}

/// Device → holder of its shard's lease.
fn owners(db: &Path, ids: &HashSet<String>) -> HashMap<String, String> {
    let db = rusqlite::Connection::open(db).unwrap();
    let mut statement = db
        .prepare("SELECT shard, holder FROM leases WHERE holder IS NOT NULL")
        .unwrap();
    let holders: HashMap<u32, String> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids.iter()
        .map(|id| {
            (
                id.clone(),
                holders
                    .get(&shard_of(id, 1024))
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_frozen_node_loses_its_devices_and_does_not_serve_them_when_resumed() {
    let cluster = Cluster::new().await;
    let ids = pair_devices(&cluster, 20).await;
    let (bus, mut events) = cluster.events().await;
    let plans = cluster.plans(2);
    let mut nodes = cluster.start_all(&plans).await;
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2"], WAIT)
            .await
            .unwrap();
    }
    let db = cluster.dir.path().join("wafleet.db");
    let frozen: HashSet<String> = settle(&mut nodes, &mut events, &ids)
        .await
        .into_iter()
        .filter(|(_, o)| o == "node-2")
        .map(|(d, _)| d)
        .collect();
    assert!(!frozen.is_empty());

    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    nodes[1].signal("STOP").unwrap();
    let stopped = Instant::now();
    let ready = ready_devices(&mut events, &frozen, WAIT).await;
    let slowest = ready
        .values()
        .map(|at| at.duration_since(stopped))
        .max()
        .unwrap();
    println!(
        "{} devices of a frozen node READY on the other within {slowest:?}",
        frozen.len()
    );
    assert!(slowest < Duration::from_secs(10), "{slowest:?}");

    // Resumed, the old node finds its leases gone and stops, writing nothing: every
    // device stays READY under node-1 and wanted running.
    nodes[1].signal("CONT").unwrap();
    nodes[0]
        .wait_members(&["node-1", "node-2"], WAIT)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{}/metrics", nodes[1].http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!(
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("wafleet_node_devices_fenced"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        metrics.contains("wafleet_node_devices{status=\"READY\"} 20"),
        "a node reports the cluster's devices by status"
    );
    let store = rusqlite::Connection::open(&db).unwrap();
    for id in &frozen {
        let (status, wanted): (String, bool) = store
            .query_row(
                "SELECT status, desired_running FROM devices WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(wanted, "{id} still wanted running");
        assert_ne!(status, "STOPPED", "{id} was not stopped by the stale owner");
    }
    let stats = cluster.sim_stats().await;
    assert_eq!(stats["pairings"], 20, "no new pairing");
}

/// Sends `body` to `url` through a gateway, retrying while the answer is 503 or 504 with
/// `retryable: true` (an owner being replaced), as a client should; bounded.
async fn post_retrying(http: &reqwest::Client, url: &str, body: &Value) -> (Value, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut retries = 0;
    loop {
        let response = http
            .post(url)
            .bearer_auth(wafleet_load::scenario::process::ADMIN_KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return (answer, retries);
        }
        assert!(
            matches!(status, 503 | 504) && answer["error"]["retryable"] == true,
            "POST {url}: {status} {answer}"
        );
        assert!(
            Instant::now() < deadline,
            "POST {url} still {status} after 30 s"
        );
        retries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await; // a client's retry pause
    }
}

#[tokio::test]
async fn through_a_gateway_calls_reach_owners_messages_survive_a_kill_and_sse_resumes() {
    let cluster = Cluster::new().await;
    let plans = cluster.plans(3);
    let mut nodes = cluster.start_all(&plans).await;
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2", "node-3"], WAIT)
            .await
            .unwrap();
    }
    let seeds: Vec<String> = plans.iter().map(NodePlan::address).collect();
    let dir = cluster.dir.path();
    let mut gateway = GatewayProcess::start(
        Path::new(WAFLEET),
        dir,
        "gw-1",
        &seeds,
        &plans[0],
        COOKIE,
        3,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    wafleet_load::scenario::process::unthrottle(&http, &gateway.base)
        .await
        .unwrap();
    let api = |base: &str, path: &str| format!("{base}{path}");
    let mut sse = common::Sse::connect(&http, &api(&gateway.base, "/v1/events"), None).await;

    let ids: Vec<String> = (0..12).map(|i| format!("gw-dev-{i:02}")).collect();
    for id in &ids {
        post_retrying(
            &http,
            &api(&gateway.base, "/v1/devices"),
            &json!({"id": id, "name": id}),
        )
        .await;
        post_retrying(
            &http,
            &api(&gateway.base, &format!("/v1/devices/{id}/start")),
            &json!({}),
        )
        .await;
    }
    let mut ready = HashSet::new();
    while ready.len() < ids.len() {
        let event = sse.next().await;
        let device = event.data["device_id"].as_str().unwrap().to_owned();
        if event.kind == "qr" {
            let n: u32 = device.trim_start_matches("gw-dev-").parse().unwrap();
            let scanned = http
                .post(format!("{}/sim/scan", cluster.sim.base))
                .json(&json!({"qr": event.data["code"], "phone": format!("62812300{n:05}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(scanned.status(), 200);
        } else if event.kind == "status" && event.data["status"] == "READY" {
            ready.insert(device);
        }
    }

    // Round one, then kill the node owning the most devices and send round two at once.
    let (round_one, _) = send_round(&http, &gateway.base, &ids, "one").await;
    wait_delivered(&mut sse, round_one, &dir.join("wafleet.db")).await;

    let placement = Placement::new(1024, ["node-1", "node-2", "node-3"]).unwrap();
    let victim = ["node-1", "node-2", "node-3"]
        .into_iter()
        .max_by_key(|n| ids.iter().filter(|id| placement.owner_of(id) == *n).count())
        .unwrap();
    nodes
        .iter_mut()
        .find(|n| n.name == victim)
        .unwrap()
        .kill9()
        .await;
    let (round_two, retries) = send_round(&http, &gateway.base, &ids, "two").await;
    println!("round two accepted with {retries} retries of 503/504 while {victim} was replaced");
    wait_delivered(&mut sse, round_two, &dir.join("wafleet.db")).await;
    let last_seen = sse.last_id();

    // The gateway dies while a client follows events; a new one serves the resume.
    drop(sse);
    gateway.kill9().await;
    let gateway = GatewayProcess::start(
        Path::new(WAFLEET),
        dir,
        "gw-2",
        &seeds,
        &plans[0],
        COOKIE,
        2,
    )
    .await
    .unwrap();
    let (round_three, _) = send_round(&http, &gateway.base, &ids, "three").await;
    let bus = cluster.bus().await;
    let mut reference = bus
        .subscribe(EventFilter::All, Some(last_seen))
        .await
        .unwrap();
    let mut resumed =
        common::Sse::connect(&http, &api(&gateway.base, "/v1/events"), Some(last_seen)).await;
    let mut pending = round_three;
    while !pending.is_empty() {
        let expected = reference.next().await.unwrap();
        let got = resumed.next().await;
        assert_eq!(
            got.id, expected.id,
            "no gap, no repeat across the gateway restart"
        );
        if got.kind == "message.status" && got.data["status"] == "delivered" {
            pending.remove(got.data["message_id"].as_str().unwrap());
        }
    }

    // Every message reached its phone exactly once.
    assert_inboxes(&http, &cluster.sim.base, &ids, &["one", "two", "three"]).await;
}

/// Sends one message to each device (device i to phone 62898700000i) through the
/// gateway at `base`; returns the accepted message ids and the retries it took.
async fn send_round(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    round: &str,
) -> (HashSet<String>, u32) {
    let mut accepted = HashSet::new();
    let mut retries = 0;
    for (i, id) in ids.iter().enumerate() {
        let body = json!({"to": format!("62898700{i:05}"), "text": format!("{round}-{id}")});
        let (answer, r) =
            post_retrying(http, &format!("{base}/v1/devices/{id}/messages"), &body).await;
        retries += r;
        accepted.insert(answer["id"].as_str().unwrap().to_owned());
    }
    (accepted, retries)
}

/// Reads events until every message in `pending` was delivered; on a timeout, says
/// what the store holds for the ones still pending.
async fn wait_delivered(sse: &mut common::Sse, mut pending: HashSet<String>, db: &Path) {
    while !pending.is_empty() {
        let Some(event) = sse.try_next(WAIT).await else {
            let db = rusqlite::Connection::open(db).unwrap();
            let rows: Vec<String> = pending
                .iter()
                .map(|id| {
                    db.query_row(
                        "SELECT device_id, status, created_at_ms, not_before_ms, sent_at_ms \
                         FROM messages WHERE id = ?1",
                        [id],
                        |r| {
                            Ok(format!(
                                "{id}: device {} {} created {} not_before {:?} sent {:?}",
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i64>(2)?,
                                r.get::<_, Option<i64>>(3)?,
                                r.get::<_, Option<i64>>(4)?,
                            ))
                        },
                    )
                    .unwrap_or_else(|e| format!("{id}: {e}"))
                })
                .collect();
            panic!("no delivery within {WAIT:?}; still pending: {rows:#?}");
        };
        if event.kind == "message.status" && event.data["status"] == "delivered" {
            pending.remove(event.data["message_id"].as_str().unwrap());
        }
    }
}

#[tokio::test]
async fn a_fourth_node_takes_about_a_quarter_of_the_devices_and_no_message_is_lost() {
    let cluster = Cluster::new().await;
    let ids = pair_devices(&cluster, 40).await;
    let bus = cluster.bus().await;
    let mut events = bus.subscribe(EventFilter::All, Some(0)).await.unwrap();
    let plans = cluster.plans(4);
    let mut nodes = cluster.start_all(&plans[..3]).await;
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2", "node-3"], WAIT)
            .await
            .unwrap();
    }
    let before = settle(&mut nodes, &mut events, &ids).await;
    let seeds: Vec<String> = plans[..3].iter().map(NodePlan::address).collect();
    let gateway = GatewayProcess::start(
        Path::new(WAFLEET),
        cluster.dir.path(),
        "gw-1",
        &seeds,
        &plans[0],
        COOKIE,
        3,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    wafleet_load::scenario::process::unthrottle(&http, &gateway.base)
        .await
        .unwrap();
    let ordered: Vec<String> = {
        let mut ordered: Vec<String> = ids.iter().cloned().collect();
        ordered.sort();
        ordered
    };
    let mut sse = common::Sse::connect(&http, &format!("{}/v1/events", gateway.base), None).await;
    let (first, _) = send_round(&http, &gateway.base, &ordered, "before").await;

    // node-4 joins while messages flow. (Replaying from the start: devices that stay put
    // report nothing new.)
    let mut events = bus.subscribe(EventFilter::All, Some(0)).await.unwrap();
    let joined = Instant::now();
    nodes.push(cluster.start(&plans[3], COOKIE).await);
    let (during, _) = send_round(&http, &gateway.base, &ordered, "during").await;
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2", "node-3", "node-4"], WAIT)
            .await
            .unwrap();
    }
    let after = settle(&mut nodes, &mut events, &ids).await;
    let moved: Vec<&String> = ids.iter().filter(|id| before[*id] != after[*id]).collect();
    assert!(
        moved.iter().all(|id| after[*id] == "node-4"),
        "only moves to the newcomer"
    );
    let share = moved.len() as f64 / ids.len() as f64;
    println!(
        "node-4 took {} of {} devices ({:.0} %), all READY there {:?} after it started",
        moved.len(),
        ids.len(),
        share * 100.0,
        joined.elapsed()
    );
    assert!((0.10..=0.45).contains(&share), "about a quarter: {share}");
    assert!(joined.elapsed() < Duration::from_secs(10));

    let (last, _) = send_round(&http, &gateway.base, &ordered, "after").await;
    let mut all = first;
    all.extend(during);
    all.extend(last);
    wait_delivered(&mut sse, all, &cluster.dir.path().join("wafleet.db")).await;
    assert_inboxes(
        &http,
        &cluster.sim.base,
        &ordered,
        &["before", "during", "after"],
    )
    .await;
}

/// Each device i sent one message per round to phone 62898700000i: its inbox holds exactly
/// those texts, in order, once each.
async fn assert_inboxes(http: &reqwest::Client, sim: &str, ids: &[String], rounds: &[&str]) {
    for (i, id) in ids.iter().enumerate() {
        let inbox: Value = http
            .get(format!("{sim}/sim/phones/62898700{i:05}/inbox"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let texts: Vec<&str> = inbox
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = rounds.iter().map(|r| format!("{r}-{id}")).collect();
        assert_eq!(texts, expected, "{id}");
    }
}

/// `gateway.metrics_listen`: the gateway serves `/metrics` on that address over real
/// HTTP (the Prometheus text, with the API's requests counted), and no longer on the
/// API's port; the metrics address serves nothing of the API.
#[tokio::test]
async fn a_gateway_with_metrics_listen_serves_metrics_there_and_not_on_the_api_port() {
    let cluster = Cluster::new().await;
    let plans = cluster.plans(1);
    // No node runs: the gateway keeps dialing its seed and serves meanwhile.
    let gateway = GatewayProcess::launch(
        Path::new(WAFLEET),
        cluster.dir.path(),
        "gw-metrics",
        &[plans[0].address()],
        &plans[0],
        0,
        &[
            ("WAFLEET__CLUSTER__COOKIE", COOKIE),
            ("WAFLEET__GATEWAY__METRICS_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await
    .unwrap();
    let metrics = gateway
        .metrics
        .clone()
        .expect("the gateway prints `metrics on http://ADDR`");
    assert_ne!(metrics, gateway.base);
    let http = reqwest::Client::new();

    // An API request, so that the API's own latency series exists.
    let health = http
        .get(format!("{}/healthz", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let scraped = http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    let content_type = scraped.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = scraped.text().await.unwrap();
    assert!(
        text.contains("wafleet_gateway_node_commands_total{outcome=\"answered\"} 0"),
        "no gateway counters in:\n{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("wafleet_gateway_request_duration_seconds_count")
                && l.contains("route=\"/healthz\"")
        ),
        "the API request is not counted:\n{text}"
    );

    let on_api = http
        .get(format!("{}/metrics", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404, "/metrics left the API's port");
    for path in ["/healthz", "/v1/devices"] {
        let answer = http.get(format!("{metrics}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path} on the metrics address");
    }
}

/// A node on ScyllaDB never makes up a master key (each node would make a different one
/// and could not open what another sealed): without `WAFLEET_MASTER_KEY` or
/// `store.master_key_file` it exits at once, naming both, before it dials the store;
/// a key file it is given must exist. Nothing is written where a SQLite node would keep
/// its key.
#[tokio::test]
async fn a_node_on_scylla_without_a_master_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: a node that got past the key would fail there instead.
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        r#"[node]
name = "node-1"
cluster_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[store]
kind = "scylla"

[store.scylla]
uris = ["127.0.0.1:1"]
connect_timeout_ms = 200

[redis]
url = "redis://127.0.0.1:1"
"#,
    )
    .unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut command = tokio::process::Command::new(WAFLEET);
        command
            .args(["node", "--config", config.to_str().unwrap()])
            .current_dir(dir.path())
            .env_remove("WAFLEET_MASTER_KEY")
            .env_remove("WAFLEET__STORE__MASTER_KEY_FILE")
            .env("WAFLEET__CLUSTER__COOKIE", COOKIE)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        async move {
            let output = tokio::time::timeout(WAIT, command.output())
                .await
                .expect("the node exits in time")
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status, stderr)
        }
    };

    let (status, stderr) = run(&[]).await;
    assert!(!status.success(), "started without a key: {stderr}");
    for named in ["WAFLEET_MASTER_KEY", "store.master_key_file"] {
        assert!(stderr.contains(named), "{named} not named in: {stderr}");
    }
    assert!(
        !stderr.contains("scylla store"),
        "dialed the store first: {stderr}"
    );

    let missing = dir.path().join("secrets").join("master.key");
    let (status, stderr) =
        run(&[("WAFLEET__STORE__MASTER_KEY_FILE", missing.to_str().unwrap())]).await;
    assert!(!status.success(), "started without its key file: {stderr}");
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "the key file is not named in: {stderr}"
    );
    assert!(!missing.exists(), "a key file was created");

    // With the key, the node gets past it and on to the store, which is not there.
    let (status, stderr) = run(&[(
        "WAFLEET_MASTER_KEY",
        "d2FmbGVldC1jb21wb3NlLWRldi1tYXN0ZXIta2V5ISE=",
    )])
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("cannot open the scylla store"), "{stderr}");

    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["node.toml"], "nothing written beside the config");
}

/// A message scheduled through a gateway is sent at its time by whichever node owns its
/// device then: here the owner is killed (`kill -9`) right after the `202`, and the node
/// that takes the device over sends it, once, not before its `send_at`.
#[tokio::test]
async fn a_scheduled_message_is_sent_by_the_next_owner_after_its_node_is_killed() {
    let cluster = Cluster::new().await;
    let plans = cluster.plans(3);
    let mut nodes = cluster.start_all(&plans).await;
    for node in &mut nodes {
        node.wait_members(&["node-1", "node-2", "node-3"], WAIT)
            .await
            .unwrap();
    }
    let seeds: Vec<String> = plans.iter().map(NodePlan::address).collect();
    let gateway = GatewayProcess::start(
        Path::new(WAFLEET),
        cluster.dir.path(),
        "gw-1",
        &seeds,
        &plans[0],
        COOKIE,
        3,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    wafleet_load::scenario::process::unthrottle(&http, &gateway.base)
        .await
        .unwrap();
    let gw = gateway.base.clone();
    let mut sse = common::Sse::connect(&http, &format!("{gw}/v1/events"), None).await;
    let id = "sched-dev";
    post_retrying(
        &http,
        &format!("{gw}/v1/devices"),
        &json!({"id": id, "name": id}),
    )
    .await;
    post_retrying(&http, &format!("{gw}/v1/devices/{id}/start"), &json!({})).await;
    loop {
        let event = sse.next().await;
        if event.kind == "qr" {
            let scanned = http
                .post(format!("{}/sim/scan", cluster.sim.base))
                .json(&json!({"qr": event.data["code"], "phone": "6281230099001"}))
                .send()
                .await
                .unwrap();
            assert_eq!(scanned.status(), 200);
        } else if event.kind == "status" && event.data["status"] == "READY" {
            break;
        }
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let send_at = now + 4_000;
    let send_at_text = wafleet_node::clock::rfc3339(send_at);
    let (accepted, _) = post_retrying(
        &http,
        &format!("{gw}/v1/devices/{id}/messages"),
        &json!({"to": "6289870099001", "text": "scheduled across a kill", "send_at": send_at_text}),
    )
    .await;
    assert_eq!(accepted["status"], "scheduled", "{accepted}");
    let placement = Placement::new(1024, ["node-1", "node-2", "node-3"]).unwrap();
    let victim = placement.owner_of(id).to_owned();
    nodes
        .iter_mut()
        .find(|n| n.name == victim)
        .unwrap()
        .kill9()
        .await;

    let deadline = Instant::now() + WAIT;
    let inbox = loop {
        let inbox: Vec<Value> = http
            .get(format!(
                "{}/sim/phones/6289870099001/inbox",
                cluster.sim.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !inbox.is_empty() {
            break inbox;
        }
        assert!(Instant::now() < deadline, "never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(inbox[0]["text"], "scheduled across a kill");
    let arrived = wafleet_node::clock::parse_rfc3339(inbox[0]["at"].as_str().unwrap()).unwrap();
    assert!(arrived >= send_at, "arrived {} ms early", send_at - arrived);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let again: Vec<Value> = http
        .get(format!(
            "{}/sim/phones/6289870099001/inbox",
            cluster.sim.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "sent once");
}
