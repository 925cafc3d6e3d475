//! Device events and the buses SSE is served from.
//!
//! Every event has an id from one increasing sequence, so a client can resume any stream
//! (one device, several, or all) with the last id it saw and get exactly what it missed.
//! Two backends behind one [`EventBus`] handle:
//! - [`memory`]: in process, for standalone (the last events of each device kept in RAM);
//! - [`redis`]: Redis Streams, for a cluster: nodes append, any gateway replica serves
//!   SSE from them.
//!
//! A [`Subscription`] first replays what the backend still holds after the resume id,
//! then follows live events; if it falls behind the live channel it catches up from the
//! backend, without a gap or a repeat. When the backend no longer holds everything after
//! the id a subscriber resumes from (trimmed, or from before a standalone restart), the
//! subscriber gets a [`Reset`] first instead of a silent gap.

mod hub;
pub mod memory;
pub mod redis;
mod subscription;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value};

pub use memory::BusConfig;
pub use redis::RedisBusConfig;
pub use subscription::{Delivery, Subscription};

use self::memory::MemoryBus;
use self::redis::RedisBus;

/// What happened, as named on the SSE `event:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The device's status changed.
    Status,
    /// A new QR code to scan.
    Qr,
    /// An outbound message moved on (sent, delivered, read, failed, cancelled).
    MessageStatus,
    /// A phone wrote to the device.
    MessageInbound,
    /// Progress of a bulk job.
    JobProgress,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Status,
        EventKind::Qr,
        EventKind::MessageStatus,
        EventKind::MessageInbound,
        EventKind::JobProgress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Qr => "qr",
            EventKind::MessageStatus => "message.status",
            EventKind::MessageInbound => "message.inbound",
            EventKind::JobProgress => "job.progress",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    /// Position in the bus's sequence; what `Last-Event-ID` carries.
    pub id: u64,
    pub device_id: String,
    pub kind: EventKind,
    /// The JSON payload; always includes `device_id`.
    pub data: Value,
    pub at_ms: i64,
    /// The event as its readers send it on (the gateway's SSE frame: `id:`, `event:`
    /// and `data:` lines), made by the first reader for all: with thousands of streams,
    /// an event is rendered once, not once per stream, and each stream sends these
    /// bytes (a reference count, no copy).
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
}

/// Which devices a subscriber wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Devices(HashSet<String>),
    /// Every device of one tenant: the events whose data names it (`tenant`). An
    /// event that names no tenant is not among them.
    Tenant(String),
    /// Some devices, of one tenant only: what a key limited to devices sees (an id it
    /// names that is, or later becomes, another tenant's device shows nothing).
    TenantDevices(String, HashSet<String>),
}

impl EventFilter {
    pub(crate) fn matches(&self, event: &DeviceEvent) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Devices(ids) => ids.contains(&event.device_id),
            EventFilter::Tenant(tenant) => names_tenant(event, tenant),
            EventFilter::TenantDevices(tenant, ids) => {
                ids.contains(&event.device_id) && names_tenant(event, tenant)
            }
        }
    }

    /// The devices whose streams the filter reads, when it reads only some.
    pub fn devices(&self) -> Option<&HashSet<String>> {
        match self {
            EventFilter::Devices(ids) | EventFilter::TenantDevices(_, ids) => Some(ids),
            EventFilter::All | EventFilter::Tenant(_) => None,
        }
    }

    /// Whether the filter reads the stream of every device (rather than some devices').
    pub(crate) fn reads_all(&self) -> bool {
        self.devices().is_none()
    }
}

fn names_tenant(event: &DeviceEvent, tenant: &str) -> bool {
    event.data.get("tenant").and_then(Value::as_str) == Some(tenant)
}

/// Some events after the id a subscriber resumed from (or had reached when it fell
/// behind) are no longer held by the bus: the subscriber cannot know what it missed and
/// should read the current state again (SSE: the `reset` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The last id the subscriber had.
    pub after: u64,
    /// The oldest event id the bus still holds for the subscriber's devices (`None`:
    /// it holds none); what follows the reset starts no earlier.
    pub oldest: Option<u64>,
}

/// What a backend still holds after a subscriber's id: the events, and a [`Reset`] when
/// some were dropped before it could read them.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) reset: Option<Reset>,
    pub(crate) events: VecDeque<Arc<DeviceEvent>>,
}

/// The bus cannot be reached (Redis down): worth a retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event bus unavailable: {0}")]
pub struct BusError(pub String);

/// A handle to the event bus of this process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Memory(Arc<MemoryBus>),
    Redis(Arc<RedisBus>),
}

impl EventBus {
    /// The in-process bus (standalone).
    pub fn in_memory(config: BusConfig) -> EventBus {
        EventBus {
            backend: Backend::Memory(Arc::new(MemoryBus::new(config))),
        }
    }

    /// Redis Streams (cluster). Fails if Redis cannot be reached now; later outages are
    /// retried in the background.
    pub async fn redis(config: RedisBusConfig) -> Result<EventBus, BusError> {
        Ok(EventBus {
            backend: Backend::Redis(Arc::new(RedisBus::connect(config).await?)),
        })
    }

    /// Appends an event of `device_id`; never waits (a Redis bus sends in the background).
    pub fn publish(&self, device_id: &str, kind: EventKind, data: Map<String, Value>) {
        match &self.backend {
            Backend::Memory(memory) => {
                memory.publish(device_id, kind, data);
            }
            Backend::Redis(redis) => redis.publish(device_id, kind, data),
        }
    }

    /// Drops what the bus keeps of a deleted device.
    pub fn forget(&self, device_id: &str) {
        match &self.backend {
            Backend::Memory(memory) => memory.forget(device_id),
            Backend::Redis(redis) => redis.forget(device_id),
        }
    }

    /// A subscription that first replays the kept events with an id above `after`
    /// (when given), then follows live events, in id order, each once. If the bus no
    /// longer holds all events after `after`, the subscription starts with a [`Reset`].
    pub async fn subscribe(
        &self,
        filter: EventFilter,
        after: Option<u64>,
    ) -> Result<Subscription, BusError> {
        let (live, replay, last) = match &self.backend {
            Backend::Memory(memory) => memory.subscribe(&filter, after),
            Backend::Redis(redis) => redis.subscribe(&filter, after).await?,
        };
        Ok(Subscription::new(
            self.backend.clone(),
            filter,
            live,
            replay,
            last,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishes on the memory bus and returns the event's id.
    fn publish(bus: &EventBus, device: &str, kind: EventKind, data: Map<String, Value>) -> u64 {
        match &bus.backend {
            Backend::Memory(memory) => memory.publish(device, kind, data),
            Backend::Redis(_) => unreachable!("memory tests"),
        }
    }

    fn data(n: u64) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("n".into(), Value::from(n));
        map
    }

    #[tokio::test]
    async fn resume_gives_exactly_the_missed_events_in_order() {
        let bus = EventBus::in_memory(BusConfig::default());
        let mut ids = Vec::new();
        for n in 0..10 {
            let device = if n % 2 == 0 { "a" } else { "b" };
            ids.push(publish(&bus, device, EventKind::Status, data(n)));
        }
        let mut sub = bus.subscribe(EventFilter::All, Some(ids[3])).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(sub.next().await.unwrap().id);
        }
        assert_eq!(got, ids[4..].to_vec());

        let only_a = EventFilter::Devices(["a".to_owned()].into());
        let mut sub = bus.subscribe(only_a, Some(ids[0])).await.unwrap();
        let first = sub.next().await.unwrap();
        assert_eq!((first.id, first.device_id.as_str()), (ids[2], "a"));
        assert_eq!(first.data["device_id"], "a");
    }

    #[tokio::test]
    async fn live_subscriber_that_lags_catches_up_without_gap_or_repeat() {
        // Every event (the shared channel), and one device (its own inbox).
        for filter in [
            EventFilter::All,
            EventFilter::Devices(["a".to_owned()].into()),
        ] {
            let bus = EventBus::in_memory(BusConfig {
                per_device_capacity: 1000,
                live_capacity: 4,
            });
            let mut sub = bus.subscribe(filter, None).await.unwrap();
            let ids: Vec<u64> = (0..50)
                .map(|n| publish(&bus, "a", EventKind::Status, data(n)))
                .collect();
            publish(&bus, "b", EventKind::Status, data(99));
            let mut got = Vec::new();
            for _ in 0..50 {
                got.push(sub.next().await.unwrap().id);
            }
            assert_eq!(got, ids);
        }
    }

    #[tokio::test]
    async fn a_new_subscriber_without_resume_sees_only_new_events() {
        let bus = EventBus::in_memory(BusConfig::default());
        publish(&bus, "a", EventKind::Status, data(0));
        let mut sub = bus.subscribe(EventFilter::All, None).await.unwrap();
        let id = publish(&bus, "a", EventKind::Qr, data(1));
        let event = sub.next().await.unwrap();
        assert_eq!((event.id, event.kind), (id, EventKind::Qr));
    }

    #[tokio::test]
    async fn per_device_buffer_is_bounded() {
        let bus = EventBus::in_memory(BusConfig {
            per_device_capacity: 3,
            live_capacity: 8,
        });
        for n in 0..10 {
            publish(&bus, "a", EventKind::Status, data(n));
        }
        let mut sub = bus.subscribe(EventFilter::All, Some(0)).await.unwrap();
        let first = sub.next().await.unwrap();
        assert_eq!(first.data["n"], 7, "only the last 3 of 10 are kept");
    }

    /// The next delivery, which must come at once.
    async fn recv(sub: &mut Subscription) -> Delivery {
        tokio::time::timeout(std::time::Duration::from_secs(1), sub.recv())
            .await
            .expect("a delivery")
            .expect("stream open")
    }

    fn event_n(delivery: &Delivery) -> u64 {
        match delivery {
            Delivery::Event(event) => event.data["n"].as_u64().unwrap(),
            Delivery::Reset(reset) => panic!("expected an event, got {reset:?}"),
        }
    }

    #[tokio::test]
    async fn resuming_from_before_a_trimmed_ring_gets_a_reset_then_what_is_kept() {
        let bus = EventBus::in_memory(BusConfig {
            per_device_capacity: 3,
            live_capacity: 64,
        });
        let ids: Vec<u64> = (0..10)
            .map(|n| publish(&bus, "a", EventKind::Status, data(n)))
            .collect();
        let only_a = EventFilter::Devices(["a".to_owned()].into());
        for filter in [EventFilter::All, only_a] {
            let mut sub = bus.subscribe(filter, Some(ids[2])).await.unwrap();
            assert_eq!(
                recv(&mut sub).await,
                Delivery::Reset(Reset {
                    after: ids[2],
                    oldest: Some(ids[7]),
                })
            );
            for n in 7..10 {
                assert_eq!(event_n(&recv(&mut sub).await), n);
            }
        }
        // From inside the kept window (the newest dropped event counts as seen): no reset.
        let mut sub = bus.subscribe(EventFilter::All, Some(ids[6])).await.unwrap();
        assert_eq!(event_n(&recv(&mut sub).await), 7);
    }

    #[tokio::test]
    async fn a_trimmed_ring_of_another_device_does_not_reset_a_device_stream() {
        let bus = EventBus::in_memory(BusConfig {
            per_device_capacity: 2,
            live_capacity: 64,
        });
        let first_b = publish(&bus, "b", EventKind::Status, data(0));
        for n in 1..6 {
            publish(&bus, "a", EventKind::Status, data(n));
        }
        let only_b = EventFilter::Devices(["b".to_owned()].into());
        let mut sub = bus.subscribe(only_b, Some(first_b - 1)).await.unwrap();
        assert_eq!(event_n(&recv(&mut sub).await), 0);
        // Every device: device a lost events after `first_b - 1`.
        let mut sub = bus
            .subscribe(EventFilter::All, Some(first_b - 1))
            .await
            .unwrap();
        assert!(matches!(recv(&mut sub).await, Delivery::Reset(_)));
    }

    #[tokio::test]
    async fn an_id_from_before_this_process_gets_a_reset() {
        let bus = EventBus::in_memory(BusConfig::default());
        publish(&bus, "a", EventKind::Status, data(0));
        let mut sub = bus.subscribe(EventFilter::All, Some(0)).await.unwrap();
        assert!(matches!(recv(&mut sub).await, Delivery::Reset(_)));
        assert_eq!(event_n(&recv(&mut sub).await), 0);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_past_the_rings_gets_a_reset_not_a_gap() {
        for filter in [
            EventFilter::All,
            EventFilter::Devices(["a".to_owned()].into()),
        ] {
            let bus = EventBus::in_memory(BusConfig {
                per_device_capacity: 5,
                live_capacity: 4,
            });
            let mut sub = bus.subscribe(filter, None).await.unwrap();
            for n in 0..20 {
                publish(&bus, "a", EventKind::Status, data(n));
            }
            assert!(matches!(recv(&mut sub).await, Delivery::Reset(_)));
            let kept: Vec<u64> = {
                let mut kept = Vec::new();
                for _ in 0..5 {
                    kept.push(event_n(&recv(&mut sub).await));
                }
                kept
            };
            assert_eq!(kept, (15..20).collect::<Vec<_>>());
            // Caught up: live again, no further reset.
            publish(&bus, "a", EventKind::Status, data(20));
            assert_eq!(event_n(&recv(&mut sub).await), 20);
        }
    }

    /// A stream that falls behind is counted, and so is the reset it is handed; a
    /// stream that keeps up is not.
    #[test]
    fn falling_behind_and_resets_are_counted() {
        let rendered = crate::metrics::recorded(async || {
            let bus = EventBus::in_memory(BusConfig {
                per_device_capacity: 5,
                live_capacity: 4,
            });
            let only_a = EventFilter::Devices(["a".to_owned()].into());
            let mut slow = bus.subscribe(only_a, None).await.unwrap();
            let mut quick = bus.subscribe(EventFilter::All, None).await.unwrap();
            publish(&bus, "a", EventKind::Status, data(0));
            assert_eq!(event_n(&recv(&mut quick).await), 0);
            for n in 1..20 {
                publish(&bus, "a", EventKind::Status, data(n));
            }
            assert!(matches!(recv(&mut slow).await, Delivery::Reset(_)));
        });
        for line in [
            "wafleet_events_subscribers_lagged_total 1",
            "wafleet_events_resets_total 1",
        ] {
            assert!(rendered.contains(line), "{line} in {rendered}");
        }
    }

    #[tokio::test]
    async fn a_subscriber_without_a_resume_id_never_gets_a_reset() {
        let bus = EventBus::in_memory(BusConfig {
            per_device_capacity: 1,
            live_capacity: 64,
        });
        publish(&bus, "a", EventKind::Status, data(0));
        publish(&bus, "a", EventKind::Status, data(1));
        let mut sub = bus.subscribe(EventFilter::All, None).await.unwrap();
        publish(&bus, "a", EventKind::Status, data(2));
        assert_eq!(event_n(&recv(&mut sub).await), 2);
    }

    #[test]
    fn a_replay_does_not_hold_the_bus_lock() {
        let memory = MemoryBus::new(BusConfig::default());
        memory.publish("a", EventKind::Status, data(0));
        // A replay holds one ring at a time, never the bus: with a ring locked (as a
        // replay copying it would), the bus still takes publishes and subscribers.
        let ring = memory.ring_for_test("a");
        let _copying = ring.lock().unwrap();
        let id = memory.publish("b", EventKind::Status, data(1));
        let only_b = EventFilter::Devices(["b".to_owned()].into());
        let (_live, replay, _) = memory.subscribe(&only_b, Some(id - 1));
        assert_eq!(replay.events.len(), 1);
        assert_eq!(replay.events[0].id, id);
    }
}
