//! The Redis event writer appends each event once, whatever happens to its replies, and
//! keeps going past an event Redis refuses. Against a real `redis-server` on loopback;
//! the node's bus reaches it through a proxy that can lose a reply: it forwards a script
//! call to Redis, then closes the connection without passing Redis's answer back (what
//! a dropped connection or a response timeout looks like to the writer). A gateway's bus,
//! connected directly, serves the subscription SSE reads from.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wafleet_load::scenario::process::RedisServer;
use wafleet_node::events::{EventBus, EventFilter, EventKind, RedisBusConfig, Subscription};

fn config(url: &str) -> RedisBusConfig {
    RedisBusConfig {
        prefix: format!("once-{}", std::process::id()),
        ..RedisBusConfig::new(url)
    }
}

fn data(n: u64) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("n".into(), Value::from(n));
    map
}

/// The `n` of the next `count` events, within 10 s.
async fn take(subscription: &mut Subscription, count: usize) -> Vec<u64> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut out = Vec::new();
        while out.len() < count {
            let event = subscription.next().await.expect("stream ended");
            out.push(event.data["n"].as_u64().unwrap());
        }
        out
    })
    .await
    .expect("events in time")
}

/// Nothing more arrives within `within`.
async fn quiet(subscription: &mut Subscription, within: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(within, subscription.next()).await {
        panic!("an event more than expected: {event:?}");
    }
}

/// A TCP proxy to Redis that can lose the reply to the next script call.
struct LossyProxy {
    url: String,
    armed: Arc<AtomicBool>,
    lost: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LossyProxy {
    async fn start(redis_url: &str) -> LossyProxy {
        let upstream = redis_url
            .strip_prefix("redis://")
            .expect("redis:// url")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let armed = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU32::new(0));
        let (arm, count) = (armed.clone(), lost.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                connections.spawn(relay(client, server, arm.clone(), count.clone()));
            }
        });
        LossyProxy {
            url,
            armed,
            lost,
            task,
        }
    }

    /// The next `EVALSHA` reaches Redis and runs; its reply never comes back.
    fn lose_next_script_reply(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn replies_lost(&self) -> u32 {
        self.lost.load(Ordering::SeqCst)
    }
}

/// Relays one connection until either side closes, or until it has delivered an armed
/// script call: then Redis's answer is swallowed and both sides are closed.
async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>, lost: Arc<AtomicU32>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let swallow = Arc::new(AtomicBool::new(false));
    let swallowing = swallow.clone();
    let back = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
            if swallowing.load(Ordering::SeqCst) {
                continue;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
        let chunk = &buf[..n];
        let script_call = chunk.windows(7).any(|w| w.eq_ignore_ascii_case(b"EVALSHA"));
        if script_call && armed.swap(false, Ordering::SeqCst) {
            // Swallow before forwarding, so no byte of the answer can slip through.
            swallow.store(true, Ordering::SeqCst);
            if server_tx.write_all(chunk).await.is_err() {
                break;
            }
            // Let Redis run the script, then drop the connection.
            tokio::time::sleep(Duration::from_millis(300)).await;
            lost.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if server_tx.write_all(chunk).await.is_err() {
            break;
        }
    }
    back.abort();
}

/// Entries in a stream, read directly.
async fn xlen(url: &str, key: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_redis_batch_retried_after_a_lost_reply_yields_each_event_once_on_sse() {
    let server = RedisServer::start().await.unwrap();
    let proxy = LossyProxy::start(&server.url).await;
    let node = EventBus::redis(config(&proxy.url)).await.unwrap();
    let gateway = EventBus::redis(config(&server.url)).await.unwrap();
    let mut sse = gateway.subscribe(EventFilter::All, None).await.unwrap();

    // One event first, so the script is loaded and the next call is a plain EVALSHA.
    node.publish("a", EventKind::Status, data(0));
    assert_eq!(take(&mut sse, 1).await, [0]);

    proxy.lose_next_script_reply();
    for n in 1..=20 {
        node.publish(
            if n % 2 == 0 { "a" } else { "b" },
            EventKind::Status,
            data(n),
        );
    }
    let got = take(&mut sse, 20).await;
    assert_eq!(
        got,
        (1..=20).collect::<Vec<_>>(),
        "each event once, in order"
    );
    // The writer sends the batch again once it sees the connection gone; a duplicate
    // would come before the next event.
    node.publish("a", EventKind::Status, data(21));
    assert_eq!(take(&mut sse, 1).await, [21]);
    quiet(&mut sse, Duration::from_millis(500)).await;
    assert_eq!(proxy.replies_lost(), 1, "the test lost a reply");

    let prefix = config(&server.url).prefix;
    assert_eq!(xlen(&server.url, &format!("{prefix}:events")).await, 22);
    assert_eq!(xlen(&server.url, &format!("{prefix}:events:a")).await, 12);
    assert_eq!(xlen(&server.url, &format!("{prefix}:events:b")).await, 10);

    // A resume reads the same: each event once.
    let mut resumed = gateway.subscribe(EventFilter::All, Some(0)).await.unwrap();
    assert_eq!(take(&mut resumed, 22).await, (0..=21).collect::<Vec<_>>());
    quiet(&mut resumed, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn an_event_redis_refuses_does_not_hold_back_the_others() {
    let server = RedisServer::start().await.unwrap();
    let config = config(&server.url);
    // Device `p`'s stream key holds a string: Redis refuses every append to it.
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(format!("{}:events:p", config.prefix))
        .arg("not a stream")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let bus = EventBus::redis(config.clone()).await.unwrap();
    let mut sse = bus.subscribe(EventFilter::All, None).await.unwrap();
    for n in 0..10 {
        bus.publish(if n == 3 { "p" } else { "a" }, EventKind::Status, data(n));
    }
    let expected: Vec<u64> = (0..10).filter(|&n| n != 3).collect();
    assert_eq!(take(&mut sse, 9).await, expected);
    // Later batches go through as well.
    bus.publish("a", EventKind::Status, data(10));
    assert_eq!(take(&mut sse, 1).await, [10]);
    quiet(&mut sse, Duration::from_millis(300)).await;
    assert_eq!(
        xlen(&server.url, &format!("{}:events", config.prefix)).await,
        10,
        "the refused event is not left in the global stream alone"
    );
}
