//! Live events handed to the subscribers that follow them, and to no other.
//!
//! One `tokio::sync::broadcast` channel for every subscriber woke each of them for every
//! event, and each dropped what its filter did not want: with 10,000 SSE streams of one
//! device each, one event woke 10,000 tasks to write to a few of them. The hub files a
//! subscriber of some devices or of a tenant under each thing it follows, and an event
//! goes into the inboxes filed under its device and its tenant, waking those
//! subscribers only. A subscriber still checks its whole filter (a tenant's devices:
//! the device, then the tenant).
//!
//! A subscriber of every event still reads one broadcast channel that all such
//! subscribers share: an event is written once for all of them, where an inbox each
//! would be one push per subscriber (measured: about 8 % more of the gateway's CPU with
//! 10,000 such streams).
//!
//! An inbox is bounded like the broadcast channel: a subscriber that falls `capacity`
//! events behind is told it lagged (its inbox emptied) and catches up from the backend,
//! which holds every event the hub dropped for it.
//!
//! Order: the backend calls [`Hub::publish`] in id order (the memory bus under its
//! lock, the Redis bus from its one tail task), so each inbox is in id order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::broadcast;

use super::{DeviceEvent, EventFilter};

/// The subscribers of one bus, by what they follow.
#[derive(Debug)]
pub(crate) struct Hub {
    /// Events an inbox may hold before its subscriber counts as lagged.
    capacity: usize,
    /// What the subscribers of every event read.
    every: broadcast::Sender<Arc<DeviceEvent>>,
    registry: Mutex<Registry>,
}

/// Subscribers by key, each under every key it follows.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    tenants: HashMap<String, HashMap<u64, Arc<Inbox>>>,
    devices: HashMap<String, HashMap<u64, Arc<Inbox>>>,
}

/// What a filed subscriber is filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keys {
    Tenant(String),
    Devices(Vec<String>),
}

/// One subscriber's undelivered events.
#[derive(Debug, Default)]
struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Debug, Default)]
struct InboxState {
    events: VecDeque<Arc<DeviceEvent>>,
    /// Events were dropped since the subscriber last read.
    lagged: bool,
    /// The waiting subscriber's task.
    waker: Option<Waker>,
}

/// An inbox kept this large when empty; a larger one (after a burst) is shrunk back, so
/// that thousands of quiet subscribers do not each hold their busiest moment.
const QUIET_CAPACITY: usize = 8;

/// The subscriber fell behind: events were dropped from its inbox, and the backend
/// holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lagged;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Arc<Hub> {
        let capacity = capacity.max(1);
        Arc::new(Hub {
            capacity,
            every: broadcast::channel(capacity).0,
            registry: Mutex::default(),
        })
    }

    /// A subscriber of the events `filter` may want, from the next one published.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: &EventFilter) -> Live {
        let keys = match filter {
            EventFilter::All => {
                return Live::Every {
                    receiver: self.every.subscribe(),
                    _hub: self.clone(),
                };
            }
            EventFilter::Tenant(tenant) => Keys::Tenant(tenant.clone()),
            EventFilter::Devices(ids) | EventFilter::TenantDevices(_, ids) => {
                Keys::Devices(ids.iter().cloned().collect())
            }
        };
        let inbox = Arc::new(Inbox::default());
        let mut registry = lock(&self.registry);
        let id = registry.next;
        registry.next += 1;
        match &keys {
            Keys::Tenant(tenant) => {
                let filed = registry.tenants.entry(tenant.clone()).or_default();
                filed.insert(id, inbox.clone());
            }
            Keys::Devices(ids) => {
                for device in ids {
                    let filed = registry.devices.entry(device.clone()).or_default();
                    filed.insert(id, inbox.clone());
                }
            }
        }
        Live::Filed(Filed {
            hub: self.clone(),
            id,
            keys,
            inbox,
        })
    }

    /// Hands `event` to the subscribers of every event, and to those filed under its
    /// tenant or its device. Called in id order.
    pub(crate) fn publish(&self, event: &Arc<DeviceEvent>) {
        // None subscribed to every event: nothing to keep.
        let _ = self.every.send(event.clone());
        let registry = lock(&self.registry);
        let tenant = event.data.get("tenant").and_then(serde_json::Value::as_str);
        let filed = [
            tenant.and_then(|tenant| registry.tenants.get(tenant)),
            registry.devices.get(&event.device_id),
        ];
        for inbox in filed.into_iter().flatten().flat_map(HashMap::values) {
            inbox.push(event, self.capacity);
        }
    }

    /// Subscribers of every event, subscribers filed, and the keys they are filed
    /// under (tests).
    #[cfg(test)]
    fn filed(&self) -> (usize, usize, usize) {
        let registry = lock(&self.registry);
        let subscribers = registry.tenants.values().map(HashMap::len).sum::<usize>()
            + registry.devices.values().map(HashMap::len).sum::<usize>();
        (
            self.every.receiver_count(),
            subscribers,
            registry.tenants.len() + registry.devices.len(),
        )
    }

    fn unsubscribe(&self, id: u64, keys: &Keys) {
        let mut registry = lock(&self.registry);
        match keys {
            Keys::Tenant(tenant) => remove(&mut registry.tenants, tenant, id),
            Keys::Devices(ids) => {
                for device in ids {
                    remove(&mut registry.devices, device, id);
                }
            }
        }
    }
}

/// Removes subscriber `id` from `key`'s, and the key when it was the last.
fn remove(filed: &mut HashMap<String, HashMap<u64, Arc<Inbox>>>, key: &str, id: u64) {
    if let Some(subscribers) = filed.get_mut(key) {
        subscribers.remove(&id);
        if subscribers.is_empty() {
            filed.remove(key);
        }
    }
}

impl Inbox {
    fn push(&self, event: &Arc<DeviceEvent>, capacity: usize) {
        let waker = {
            let mut state = lock(&self.state);
            if state.events.len() >= capacity {
                // What it would have read next is older than what it can still get
                // here: it reads the backend from its last id, this included.
                state.events = VecDeque::new();
                state.lagged = true;
            } else {
                state.events.push_back(event.clone());
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// One subscriber of a [`Hub`].
#[derive(Debug)]
pub(crate) enum Live {
    /// Of every event.
    Every {
        receiver: broadcast::Receiver<Arc<DeviceEvent>>,
        /// Keeps the sender, so the channel is never closed under the receiver.
        _hub: Arc<Hub>,
    },
    Filed(Filed),
}

impl Live {
    /// The next event for this subscriber, or [`Lagged`] once after events were
    /// dropped for it. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Result<Arc<DeviceEvent>, Lagged> {
        match self {
            Live::Every { receiver, .. } => match receiver.recv().await {
                Ok(event) => Ok(event),
                Err(broadcast::error::RecvError::Lagged(_)) => Err(Lagged),
                // The hub this holds keeps the sender.
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            },
            Live::Filed(filed) => std::future::poll_fn(|cx| filed.poll_recv(cx)).await,
        }
    }
}

/// A subscriber filed under its devices or its tenant, until dropped.
#[derive(Debug)]
pub(crate) struct Filed {
    hub: Arc<Hub>,
    id: u64,
    keys: Keys,
    inbox: Arc<Inbox>,
}

impl Filed {
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Arc<DeviceEvent>, Lagged>> {
        let mut state = lock(&self.inbox.state);
        if state.lagged {
            state.lagged = false;
            return Poll::Ready(Err(Lagged));
        }
        if let Some(event) = state.events.pop_front() {
            if state.events.is_empty() && state.events.capacity() > QUIET_CAPACITY {
                state.events.shrink_to(QUIET_CAPACITY);
            }
            return Poll::Ready(Ok(event));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Filed {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.keys);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use serde_json::json;

    use super::*;
    use crate::events::EventKind;

    fn event(id: u64, device: &str, tenant: Option<&str>) -> Arc<DeviceEvent> {
        let mut data = json!({"device_id": device});
        if let Some(tenant) = tenant {
            data["tenant"] = tenant.into();
        }
        Arc::new(DeviceEvent {
            id,
            device_id: device.to_owned(),
            kind: EventKind::Status,
            data,
            at_ms: 0,
            rendered: OnceLock::new(),
        })
    }

    fn devices(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// What `live` has now, without waiting: ids, or `None` for a lag.
    fn drain(live: &mut Live) -> Vec<Option<u64>> {
        let waker = Waker::from(Arc::new(Count::default()));
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        loop {
            let next = match live {
                Live::Every { receiver, .. } => match receiver.try_recv() {
                    Ok(event) => Some(event.id),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => None,
                    Err(_) => return got,
                },
                Live::Filed(filed) => match filed.poll_recv(&mut cx) {
                    Poll::Ready(next) => next.ok().map(|event| event.id),
                    Poll::Pending => return got,
                },
            };
            got.push(next);
        }
    }

    fn filed(live: &Live) -> &Filed {
        match live {
            Live::Filed(filed) => filed,
            Live::Every { .. } => panic!("a subscriber of every event"),
        }
    }

    #[test]
    fn an_event_reaches_the_subscribers_filed_under_it_and_no_other() {
        let hub = Hub::new(16);
        let mut all = hub.subscribe(&EventFilter::All);
        let mut tenant_a = hub.subscribe(&EventFilter::Tenant("a".into()));
        let mut d1 = hub.subscribe(&EventFilter::Devices(devices(&["d1"])));
        let mut d1_d2 = hub.subscribe(&EventFilter::Devices(devices(&["d1", "d2"])));
        let mut a_d2 = hub.subscribe(&EventFilter::TenantDevices("a".into(), devices(&["d2"])));
        hub.publish(&event(1, "d1", Some("a")));
        hub.publish(&event(2, "d2", Some("b")));
        hub.publish(&event(3, "d3", Some("a")));
        hub.publish(&event(4, "d2", None));
        assert_eq!(drain(&mut all), [Some(1), Some(2), Some(3), Some(4)]);
        assert_eq!(drain(&mut tenant_a), [Some(1), Some(3)]);
        assert_eq!(drain(&mut d1), [Some(1)]);
        // Once each, though filed under two devices.
        assert_eq!(drain(&mut d1_d2), [Some(1), Some(2), Some(4)]);
        // Filed by device: the tenant is the subscription's own check.
        assert_eq!(drain(&mut a_d2), [Some(2), Some(4)]);
    }

    #[test]
    fn only_the_subscribers_of_an_event_are_woken() {
        let hub = Hub::new(16);
        let (one, other) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let mut d1 = hub.subscribe(&EventFilter::Devices(devices(&["d1"])));
        let d2 = hub.subscribe(&EventFilter::Devices(devices(&["d2"])));
        for (live, count) in [(&d1, &one), (&d2, &other)] {
            let waker = Waker::from(count.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(filed(live).poll_recv(&mut cx).is_pending());
        }
        hub.publish(&event(1, "d1", None));
        assert_eq!(one.0.load(Ordering::SeqCst), 1);
        assert_eq!(other.0.load(Ordering::SeqCst), 0);
        // Woken once per wait, not once per event.
        hub.publish(&event(2, "d1", None));
        assert_eq!(one.0.load(Ordering::SeqCst), 1);
        assert_eq!(drain(&mut d1), [Some(1), Some(2)]);
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_once_then_gets_what_follows() {
        let hub = Hub::new(4);
        let mut d1 = hub.subscribe(&EventFilter::Devices(devices(&["d1"])));
        let mut all = hub.subscribe(&EventFilter::All);
        for id in 1..=6 {
            hub.publish(&event(id, "d1", None));
        }
        // 1-4 kept, 5 dropped them all, 6 is in.
        assert_eq!(drain(&mut d1), [None, Some(6)]);
        // The shared channel keeps its newest 4.
        assert_eq!(drain(&mut all), [None, Some(3), Some(4), Some(5), Some(6)]);
        hub.publish(&event(7, "d1", None));
        assert_eq!(drain(&mut d1), [Some(7)]);
        assert_eq!(drain(&mut all), [Some(7)]);
    }

    #[test]
    fn a_burst_does_not_stay_in_a_quiet_inbox() {
        let hub = Hub::new(1000);
        let mut live = hub.subscribe(&EventFilter::Devices(devices(&["d1"])));
        for id in 0..500 {
            hub.publish(&event(id, "d1", None));
        }
        assert_eq!(drain(&mut live).len(), 500);
        assert!(lock(&filed(&live).inbox.state).events.capacity() <= QUIET_CAPACITY);
    }

    #[test]
    fn a_dropped_subscriber_is_unfiled_and_its_keys_go_with_the_last() {
        let hub = Hub::new(16);
        let first = hub.subscribe(&EventFilter::Devices(devices(&["d1", "d2"])));
        let second = hub.subscribe(&EventFilter::Devices(devices(&["d1"])));
        let tenant = hub.subscribe(&EventFilter::Tenant("a".into()));
        let all = hub.subscribe(&EventFilter::All);
        assert_eq!(hub.filed(), (1, 4, 3));
        drop(first);
        assert_eq!(hub.filed(), (1, 2, 2));
        drop((second, tenant, all));
        assert_eq!(hub.filed(), (0, 0, 0));
        hub.publish(&event(1, "d1", Some("a")));
    }

    #[tokio::test]
    async fn recv_waits_for_the_next_event() {
        let hub = Hub::new(16);
        for filter in [EventFilter::All, EventFilter::Devices(devices(&["d1"]))] {
            let mut live = hub.subscribe(&filter);
            let publisher = {
                let hub = hub.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    hub.publish(&event(7, "d1", None));
                })
            };
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), live.recv())
                .await
                .expect("woken");
            assert_eq!(got.map(|event| event.id), Ok(7));
            publisher.await.unwrap();
        }
    }
}
