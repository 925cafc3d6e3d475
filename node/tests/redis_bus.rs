//! The Redis Streams event bus against a real `redis-server` (started per test on a free
//! loopback port): a node's bus writes, a gateway's bus (another instance, its own
//! connections) serves subscriptions, resumes are exact, a gateway restart loses
//! nothing, and a resume from before what Redis still holds gets a reset.

use std::time::Duration;

use serde_json::{Map, Value};
use wafleet_load::scenario::process::{RedisServer, free_port};
use wafleet_node::events::{
    Delivery, EventBus, EventFilter, EventKind, RedisBusConfig, Reset, Subscription,
};

async fn redis() -> RedisServer {
    RedisServer::start().await.unwrap()
}

fn config(server: &RedisServer) -> RedisBusConfig {
    RedisBusConfig {
        prefix: format!("test-{}", std::process::id()),
        ..RedisBusConfig::new(server.url.clone())
    }
}

fn data(n: u64) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("n".into(), Value::from(n));
    map
}

/// The next `count` events, within 10 s.
async fn take(subscription: &mut Subscription, count: usize) -> Vec<(u64, String, u64)> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut out = Vec::new();
        while out.len() < count {
            let event = subscription.next().await.expect("stream ended");
            out.push((
                event.id,
                event.device_id.clone(),
                event.data["n"].as_u64().unwrap(),
            ));
        }
        out
    })
    .await
    .expect("events in time")
}

#[tokio::test]
async fn a_gateway_bus_sees_what_a_node_bus_publishes_and_resumes_exactly() {
    let server = redis().await;
    let node = EventBus::redis(config(&server)).await.unwrap();
    let gateway = EventBus::redis(config(&server)).await.unwrap();
    let mut live = gateway.subscribe(EventFilter::All, None).await.unwrap();

    let devices = ["a", "b", "c"];
    for n in 0..60 {
        node.publish(devices[n as usize % 3], EventKind::Status, data(n));
    }
    let all = take(&mut live, 60).await;
    assert_eq!(
        all.iter().map(|e| e.2).collect::<Vec<_>>(),
        (0..60).collect::<Vec<_>>()
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");

    // Resume after the 20th event: exactly the other 40, in order.
    let mut resumed = gateway
        .subscribe(EventFilter::All, Some(all[19].0))
        .await
        .unwrap();
    assert_eq!(take(&mut resumed, 40).await, all[20..].to_vec());

    // One device, resumed: only its events after that id.
    let only_b = EventFilter::Devices(["b".to_owned()].into());
    let mut b = gateway.subscribe(only_b, Some(all[19].0)).await.unwrap();
    let expected: Vec<_> = all[20..].iter().filter(|e| e.1 == "b").cloned().collect();
    assert_eq!(take(&mut b, expected.len()).await, expected);

    // A gateway restart: a new bus instance resumes from Redis with no gap, and then
    // follows new events.
    drop(live);
    drop(gateway);
    let restarted = EventBus::redis(config(&server)).await.unwrap();
    let mut after_restart = restarted
        .subscribe(EventFilter::All, Some(all[49].0))
        .await
        .unwrap();
    node.publish("a", EventKind::Qr, data(60));
    let got = take(&mut after_restart, 11).await;
    assert_eq!(got[..10].to_vec(), all[50..].to_vec());
    assert_eq!(got[10].2, 60);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_catches_up_from_redis() {
    let server = redis().await;
    let node = EventBus::redis(config(&server)).await.unwrap();
    let gateway = EventBus::redis(RedisBusConfig {
        live_capacity: 4,
        ..config(&server)
    })
    .await
    .unwrap();
    let mut slow = gateway.subscribe(EventFilter::All, Some(0)).await.unwrap();
    let mut fast = gateway.subscribe(EventFilter::All, Some(0)).await.unwrap();
    for n in 0..200 {
        node.publish("x", EventKind::Status, data(n));
    }
    // `fast` drains as events arrive; `slow` reads only afterwards, long past the live
    // channel's 4 slots.
    let seen = take(&mut fast, 200).await;
    let caught_up = take(&mut slow, 200).await;
    assert_eq!(caught_up, seen);
    assert_eq!(
        caught_up.iter().map(|e| e.2).collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn forget_drops_a_device_stream() {
    let server = redis().await;
    let bus = EventBus::redis(config(&server)).await.unwrap();
    let mut all = bus.subscribe(EventFilter::All, None).await.unwrap();
    bus.publish("gone", EventKind::Status, data(1));
    bus.publish("kept", EventKind::Status, data(2));
    take(&mut all, 2).await;
    bus.forget("gone");
    bus.publish("kept", EventKind::Status, data(3));
    take(&mut all, 1).await; // the writer handled the forget before this publish

    let gone = EventFilter::Devices(["gone".to_owned()].into());
    let mut replay = bus.subscribe(gone, Some(0)).await.unwrap();
    bus.publish("gone", EventKind::Status, data(4));
    assert_eq!(
        take(&mut replay, 1).await[0].2,
        4,
        "nothing of before the forget"
    );
}

#[tokio::test]
async fn no_redis_is_a_clear_error() {
    let port = free_port().unwrap();
    let error = EventBus::redis(RedisBusConfig::new(format!("redis://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unavailable"), "{error}");
}

#[tokio::test]
async fn a_resume_from_before_the_trimmed_streams_gets_a_reset_then_what_is_kept() {
    let server = redis().await;
    // Redis trims whole nodes of 100 entries: 250 events leave the oldest behind.
    let bus = EventBus::redis(RedisBusConfig {
        global_cap: 5,
        per_device_cap: 5,
        ..config(&server)
    })
    .await
    .unwrap();
    let only_z = EventFilter::Devices(["z".to_owned()].into());
    let mut z = bus.subscribe(only_z, None).await.unwrap();
    for n in 0..250 {
        bus.publish("a", EventKind::Status, data(n));
    }
    // The writer keeps order: once z's event is in, so are the 250 before it.
    bus.publish("z", EventKind::Status, data(250));
    take(&mut z, 1).await;

    let only_a = EventFilter::Devices(["a".to_owned()].into());
    for (filter, last) in [(EventFilter::All, 250), (only_a.clone(), 249)] {
        // An id from long before: what was trimmed after it is lost.
        let mut resumed = bus.subscribe(filter, Some(1)).await.unwrap();
        let reset = match resumed.recv().await.expect("a delivery") {
            Delivery::Reset(reset) => reset,
            Delivery::Event(event) => panic!("a gap passed silently: got {event:?}"),
        };
        let oldest = reset.oldest.expect("Redis still holds some");
        assert_eq!(
            reset,
            Reset {
                after: 1,
                oldest: Some(oldest)
            }
        );
        let first = resumed.next().await.unwrap();
        assert_eq!(first.id, oldest, "the kept events follow the reset");
        let first_n = first.data["n"].as_u64().unwrap();
        assert!(first_n > 0, "the test trimmed the streams");
        let rest = take(&mut resumed, (last - first_n) as usize).await;
        let ns: Vec<u64> = rest.iter().map(|e| e.2).collect();
        assert_eq!(ns, (first_n + 1..=last).collect::<Vec<_>>());
    }

    // From inside what is kept: no reset, exactly the rest.
    let mut all_a = bus.subscribe(only_a.clone(), Some(1)).await.unwrap();
    assert!(matches!(all_a.recv().await, Some(Delivery::Reset(_))));
    let kept = take(&mut all_a, 2).await;
    let mut inside = bus.subscribe(only_a, Some(kept[0].0)).await.unwrap();
    match inside.recv().await.expect("a delivery") {
        Delivery::Event(event) => assert_eq!(event.id, kept[1].0),
        Delivery::Reset(reset) => panic!("no reset inside the window: {reset:?}"),
    }
}

#[tokio::test]
async fn a_resume_of_untrimmed_streams_never_resets() {
    let server = redis().await;
    let bus = EventBus::redis(config(&server)).await.unwrap();
    let mut live = bus.subscribe(EventFilter::All, None).await.unwrap();
    for n in 0..3 {
        bus.publish("a", EventKind::Status, data(n));
    }
    take(&mut live, 3).await;
    // Id 0: everything, nothing trimmed; a device never seen: nothing at all.
    let mut resumed = bus.subscribe(EventFilter::All, Some(0)).await.unwrap();
    assert!(matches!(resumed.recv().await, Some(Delivery::Event(_))));
    let never = EventFilter::Devices(["never".to_owned()].into());
    let mut none = bus.subscribe(never, Some(0)).await.unwrap();
    bus.publish("never", EventKind::Status, data(9));
    assert!(matches!(none.recv().await, Some(Delivery::Event(e)) if e.data["n"] == 9));
}
