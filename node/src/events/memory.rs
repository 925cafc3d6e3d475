//! The in-process event bus that standalone serves SSE from.
//!
//! Ids come from one increasing sequence per process. The bus keeps the last
//! [`BusConfig::per_device_capacity`] events of each device for replay; live subscribers
//! get new events through the [`Hub`], which wakes only those that follow them.
//!
//! A replay says [`Reset`] when it cannot give everything after the subscriber's id: a
//! device's ring dropped an event after that id, or the id is from before this process
//! started (what the previous process had after it is gone).
//!
//! Locks: the bus lock guards the id sequence and the map of rings, and is held for a
//! publish and for taking a subscriber's live receiver with the rings it reads; each
//! ring has its own lock. A replay copies events ring by ring without the bus lock, so
//! a subscriber resuming over thousands of devices never stalls publishers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value};

use super::hub::{Hub, Live};
use super::{DeviceEvent, EventFilter, EventKind, Replay, Reset};
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
    /// The first id of this process: an id below it is from an earlier process.
    first_id: u64,
    state: Mutex<BusState>,
    live: Arc<Hub>,
}

#[derive(Debug)]
struct BusState {
    /// The next event id. Starts at the wall clock in microseconds, so ids keep growing
    /// across restarts and a client resuming with an id from before a restart is told
    /// (a reset) and then gets every event of the new process.
    next_id: u64,
    recent: HashMap<String, Arc<Mutex<Ring>>>,
}

/// The kept events of one device.
#[derive(Debug, Default)]
pub(super) struct Ring {
    events: VecDeque<Arc<DeviceEvent>>,
    /// The id of the newest event dropped to make room (0: none yet).
    dropped_through: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBus {
    pub(crate) fn new(config: BusConfig) -> MemoryBus {
        let live = Hub::new(config.live_capacity);
        let first_id = (u64::try_from(now_ms()).unwrap_or(0) * 1000).max(1);
        MemoryBus {
            config,
            first_id,
            state: Mutex::new(BusState {
                next_id: first_id,
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
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        let event = Arc::new(DeviceEvent {
            id,
            device_id: device_id.to_owned(),
            kind,
            data: Value::Object(data),
            at_ms: now_ms(),
            rendered: Default::default(),
        });
        {
            let ring = state.recent.entry(device_id.to_owned()).or_default();
            let mut ring = lock(ring);
            if ring.events.len() >= self.config.per_device_capacity
                && let Some(dropped) = ring.events.pop_front()
            {
                ring.dropped_through = dropped.id;
            }
            ring.events.push_back(event.clone());
        }
        // Handed out under the bus lock so that live order equals id order.
        self.live.publish(&event);
        id
    }

    /// Drops the buffered events of a deleted device.
    pub(crate) fn forget(&self, device_id: &str) {
        lock(&self.state).recent.remove(device_id);
    }

    /// A live receiver, the replay of the events after `after` (when given), and the
    /// id to count from. The receiver and the rings are taken under one lock with the
    /// newest id so far, and the replay stops at that id: an event is either replayed
    /// or live, never neither.
    pub(crate) fn subscribe(
        &self,
        filter: &EventFilter,
        after: Option<u64>,
    ) -> (Live, Replay, u64) {
        let (live, rings, upto) = {
            let state = lock(&self.state);
            let rings = if after.is_some() {
                rings_of(&state, filter)
            } else {
                Vec::new()
            };
            (self.live.subscribe(filter), rings, state.next_id - 1)
        };
        let replay = match after {
            Some(after) => self.collect(&rings, after, upto),
            None => Replay::default(),
        };
        (live, replay, after.unwrap_or(upto))
    }

    /// The buffered events after `after`, for a subscriber that fell behind.
    pub(crate) fn replay(&self, filter: &EventFilter, after: u64) -> Replay {
        let (rings, upto) = {
            let state = lock(&self.state);
            (rings_of(&state, filter), state.next_id - 1)
        };
        let mut replay = self.collect(&rings, after, upto);
        replay.events.retain(|e| filter.matches(e));
        replay
    }

    /// The events of `rings` with `after < id <= upto`, in id order, and a reset if
    /// any of them dropped an event after `after` or `after` is from an earlier process.
    fn collect(&self, rings: &[Arc<Mutex<Ring>>], after: u64, upto: u64) -> Replay {
        let mut events = Vec::new();
        let mut dropped_through = 0;
        let mut oldest: Option<u64> = None;
        for ring in rings {
            let ring = lock(ring);
            dropped_through = dropped_through.max(ring.dropped_through);
            if let Some(first) = ring.events.front() {
                oldest = Some(oldest.map_or(first.id, |o| o.min(first.id)));
            }
            events.extend(
                ring.events
                    .iter()
                    .filter(|e| e.id > after && e.id <= upto)
                    .cloned(),
            );
        }
        events.sort_by_key(|e| e.id);
        let reset = (after.saturating_add(1) < self.first_id || dropped_through > after)
            .then_some(Reset { after, oldest });
        Replay {
            reset,
            events: events.into(),
        }
    }
}

#[cfg(test)]
impl MemoryBus {
    /// The ring of a device, to hold its lock in a test.
    pub(super) fn ring_for_test(&self, device_id: &str) -> Arc<Mutex<Ring>> {
        lock(&self.state).recent[device_id].clone()
    }
}

/// The rings a filter reads.
fn rings_of(state: &BusState, filter: &EventFilter) -> Vec<Arc<Mutex<Ring>>> {
    match filter.devices() {
        Some(ids) => ids
            .iter()
            .filter_map(|id| state.recent.get(id).cloned())
            .collect(),
        None => state.recent.values().cloned().collect(),
    }
}
