//! The in-process event bus that standalone serves SSE from.
//!
//! Ids come from one increasing sequence per process. The bus keeps the last
//! [`BusConfig::per_device_capacity`] events of each device for replay; live subscribers
//! get new events through a broadcast channel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::{DeviceEvent, EventFilter, EventKind};
use crate::clock::now_ms;

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
#[derive(Debug)]
pub(crate) struct MemoryBus {
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

impl MemoryBus {
    pub(crate) fn new(config: BusConfig) -> MemoryBus {
        let (live, _) = broadcast::channel(config.live_capacity.max(1));
        let start = u64::try_from(now_ms()).unwrap_or(0) * 1000;
        MemoryBus {
            config,
            state: Mutex::new(BusState {
                next_id: start.max(1),
                recent: HashMap::new(),
            }),
            live,
        }
    }

    /// Appends an event; `device_id` is added to `data`. Returns its id.
    pub(crate) fn publish(
        &self,
        device_id: &str,
        kind: EventKind,
        mut data: Map<String, Value>,
    ) -> u64 {
        data.insert("device_id".into(), Value::String(device_id.to_owned()));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
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
        if ring.len() >= self.config.per_device_capacity {
            ring.pop_front();
        }
        ring.push_back(event.clone());
        // Sent under the lock so that live order equals id order.
        let _ = self.live.send(event);
        id
    }

    /// Drops the buffered events of a deleted device.
    pub(crate) fn forget(&self, device_id: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.recent.remove(device_id);
    }

    /// A live receiver and the buffered events after `after` (all taken under one lock,
    /// so nothing falls between them), and the id to count from.
    pub(crate) fn subscribe(
        &self,
        filter: &EventFilter,
        after: Option<u64>,
    ) -> (
        broadcast::Receiver<Arc<DeviceEvent>>,
        VecDeque<Arc<DeviceEvent>>,
        u64,
    ) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.live.subscribe();
        let pending = match after {
            Some(after) => buffered_after(&state, filter, after),
            None => VecDeque::new(),
        };
        let last = after.unwrap_or(state.next_id.saturating_sub(1));
        (live, pending, last)
    }

    /// The buffered events after `after`, for a subscriber that fell behind.
    pub(crate) fn replay(&self, filter: &EventFilter, after: u64) -> VecDeque<Arc<DeviceEvent>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        buffered_after(&state, filter, after)
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
