//! Device events and the in-process event bus that standalone serves SSE from.
//!
//! Every event gets an id from one increasing sequence, so a client can resume any
//! stream (one device, several, or all) with the last id it saw. The bus keeps the
//! last [`BusConfig::per_device_capacity`] events of each device for that replay;
//! live subscribers get new events through a broadcast channel and, if they fall
//! behind it, catch up from the per-device buffers without a gap or a repeat.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::clock::now_ms;

/// What happened, as named on the SSE `event:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The device's status changed.
    Status,
    /// A new QR code to scan.
    Qr,
    /// An outbound message moved on (sent, delivered, read, failed).
    MessageStatus,
    /// A phone wrote to the device.
    MessageInbound,
    /// Progress of a bulk job.
    JobProgress,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Qr => "qr",
            EventKind::MessageStatus => "message.status",
            EventKind::MessageInbound => "message.inbound",
            EventKind::JobProgress => "job.progress",
        }
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
}

/// Which devices a subscriber wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Devices(HashSet<String>),
}

impl EventFilter {
    fn matches(&self, device_id: &str) -> bool {
        match self {
            EventFilter::All => true,
            EventFilter::Devices(ids) => ids.contains(device_id),
        }
    }
}

/// Sizes of the bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Events kept per device for `Last-Event-ID` replay.
    pub per_device_capacity: usize,
    /// Events a live subscriber may fall behind before it catches up from the buffers.
    pub live_capacity: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            per_device_capacity: 256,
            live_capacity: 4096,
        }
    }
}

/// The in-process event bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

#[derive(Debug)]
struct BusInner {
    config: BusConfig,
    state: Mutex<BusState>,
    live: broadcast::Sender<Arc<DeviceEvent>>,
}

#[derive(Debug)]
struct BusState {
    /// The next event id. Starts at the wall clock in microseconds, so ids keep growing
    /// across restarts and a client resuming with an id from before a restart gets every
    /// event of the new process.
    next_id: u64,
    recent: HashMap<String, VecDeque<Arc<DeviceEvent>>>,
}

impl EventBus {
    pub fn new(config: BusConfig) -> EventBus {
        let (live, _) = broadcast::channel(config.live_capacity.max(1));
        let start = u64::try_from(now_ms()).unwrap_or(0) * 1000;
        EventBus {
            inner: Arc::new(BusInner {
                config,
                state: Mutex::new(BusState {
                    next_id: start.max(1),
                    recent: HashMap::new(),
                }),
                live,
            }),
        }
    }

    /// Appends an event; `device_id` is added to `data`.
    pub fn publish(&self, device_id: &str, kind: EventKind, mut data: Map<String, Value>) -> u64 {
        data.insert("device_id".into(), Value::String(device_id.to_owned()));
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = state.next_id;
        state.next_id += 1;
        let event = Arc::new(DeviceEvent {
            id,
            device_id: device_id.to_owned(),
            kind,
            data: Value::Object(data),
            at_ms: now_ms(),
        });
        let ring = state.recent.entry(device_id.to_owned()).or_default();
        if ring.len() >= self.inner.config.per_device_capacity {
            ring.pop_front();
        }
        ring.push_back(event.clone());
        // Sent under the lock so that live order equals id order.
        let _ = self.inner.live.send(event);
        id
    }

    /// Drops the buffered events of a deleted device.
    pub fn forget(&self, device_id: &str) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.recent.remove(device_id);
    }

    /// A subscription that first replays the buffered events with an id above `after`
    /// (when given), then follows live events, in id order, each once.
    pub fn subscribe(&self, filter: EventFilter, after: Option<u64>) -> Subscription {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.inner.live.subscribe();
        let pending = match after {
            Some(after) => buffered_after(&state, &filter, after),
            None => VecDeque::new(),
        };
        let last = after.unwrap_or(state.next_id.saturating_sub(1));
        drop(state);
        Subscription {
            bus: self.clone(),
            filter,
            live,
            pending,
            last,
        }
    }
}

fn buffered_after(
    state: &BusState,
    filter: &EventFilter,
    after: u64,
) -> VecDeque<Arc<DeviceEvent>> {
    let mut events: Vec<Arc<DeviceEvent>> = match filter {
        EventFilter::All => state
            .recent
            .values()
            .flat_map(|ring| ring.iter().filter(|e| e.id > after).cloned())
            .collect(),
        EventFilter::Devices(ids) => ids
            .iter()
            .filter_map(|id| state.recent.get(id))
            .flat_map(|ring| ring.iter().filter(|e| e.id > after).cloned())
            .collect(),
    };
    events.sort_by_key(|e| e.id);
    events.into()
}

/// A stream of events for one subscriber.
#[derive(Debug)]
pub struct Subscription {
    bus: EventBus,
    filter: EventFilter,
    live: broadcast::Receiver<Arc<DeviceEvent>>,
    pending: VecDeque<Arc<DeviceEvent>>,
    /// The id of the last event handed out (or skipped as already seen).
    last: u64,
}

impl Subscription {
    /// The next event; `None` only when the bus is gone.
    pub async fn next(&mut self) -> Option<Arc<DeviceEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.id > self.last {
                    self.last = event.id;
                    return Some(event);
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.id > self.last && self.filter.matches(&event.device_id) {
                        self.last = event.id;
                        return Some(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let state = self
                        .bus
                        .inner
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    self.pending = buffered_after(&state, &self.filter, self.last);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u64) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("n".into(), Value::from(n));
        map
    }

    #[tokio::test]
    async fn resume_gives_exactly_the_missed_events_in_order() {
        let bus = EventBus::new(BusConfig::default());
        let mut ids = Vec::new();
        for n in 0..10 {
            let device = if n % 2 == 0 { "a" } else { "b" };
            ids.push(bus.publish(device, EventKind::Status, data(n)));
        }
        let mut sub = bus.subscribe(EventFilter::All, Some(ids[3]));
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(sub.next().await.unwrap().id);
        }
        assert_eq!(got, ids[4..].to_vec());

        let only_a = EventFilter::Devices(["a".to_owned()].into());
        let mut sub = bus.subscribe(only_a, Some(ids[0]));
        let first = sub.next().await.unwrap();
        assert_eq!((first.id, first.device_id.as_str()), (ids[2], "a"));
        assert_eq!(first.data["device_id"], "a");
    }

    #[tokio::test]
    async fn live_subscriber_that_lags_catches_up_without_gap_or_repeat() {
        let bus = EventBus::new(BusConfig {
            per_device_capacity: 1000,
            live_capacity: 4,
        });
        let mut sub = bus.subscribe(EventFilter::All, None);
        let ids: Vec<u64> = (0..50)
            .map(|n| bus.publish("a", EventKind::Status, data(n)))
            .collect();
        let mut got = Vec::new();
        for _ in 0..50 {
            got.push(sub.next().await.unwrap().id);
        }
        assert_eq!(got, ids);
    }

    #[tokio::test]
    async fn a_new_subscriber_without_resume_sees_only_new_events() {
        let bus = EventBus::new(BusConfig::default());
        bus.publish("a", EventKind::Status, data(0));
        let mut sub = bus.subscribe(EventFilter::All, None);
        let id = bus.publish("a", EventKind::Qr, data(1));
        let event = sub.next().await.unwrap();
        assert_eq!((event.id, event.kind), (id, EventKind::Qr));
    }

    #[test]
    fn per_device_buffer_is_bounded() {
        let bus = EventBus::new(BusConfig {
            per_device_capacity: 3,
            live_capacity: 8,
        });
        for n in 0..10 {
            bus.publish("a", EventKind::Status, data(n));
        }
        let state = bus.inner.state.lock().unwrap();
        assert_eq!(state.recent["a"].len(), 3);
    }
}
