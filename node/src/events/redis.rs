//! Redis Streams backend of the event bus, for a cluster: nodes append, any gateway
//! replica serves SSE from the same streams.
//!
//! Every event goes, in one Lua script call (atomic), to the global stream
//! `{prefix}:events` (capped at [`RedisBusConfig::global_cap`]) and, under the same
//! entry id, to its device's stream `{prefix}:events:{device_id}` (capped at
//! [`RedisBusConfig::per_device_cap`]). Replays read the device streams for a device
//! filter and the global stream otherwise; live events come from one task per process
//! that follows the global stream (`XREAD BLOCK`) and fans out in process.
//!
//! Event ids are Redis entry ids `MS-SEQ`, shown to clients as one number
//! `MS << 20 | SEQ` so that SSE ids look the same whatever the backend.
//!
//! Publishing never waits: events queue for one writer task ([`writer`]) that sends them
//! in batches, each event once even when a reply is lost and the batch is sent again,
//! and retries while Redis is away (up to [`RedisBusConfig::max_pending`] events; beyond
//! that new events are dropped and counted in `wafleet_events_dropped_total`). Events are
//! notifications: the state they announce is in the store. The writer's queue and lag
//! are exported (`wafleet_events_write_queue_depth`, `wafleet_events_write_lag_seconds`,
//! `wafleet_events_write_errors_total`), and so is the age of what the tail reads
//! (`wafleet_events_read_lag_seconds`).
//!
//! A replay tells a [`Reset`] when a stream it reads was trimmed past the subscriber's id:
//! the stream has lost entries (`XINFO STREAM`: `entries-added` above `length`) and its
//! first entry is more than one id above the subscriber's. Ids are sparse, so a
//! subscriber whose last id was exactly the newest trimmed entry is told too: a reset is
//! never missed, and very rarely given when it was not needed.
//!
//! The script builds device keys from its arguments, so it needs a single Redis (not
//! Redis Cluster).

mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, Value as RedisValue};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use self::writer::Write;
use super::hub::{Hub, Live};
use super::{BusError, DeviceEvent, EventFilter, EventKind, Replay, Reset};
use crate::clock::now_ms;
use crate::metrics;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;

/// Where the Redis bus writes and how much it keeps.
#[derive(Debug, Clone)]
pub struct RedisBusConfig {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// Key prefix, so several clusters (or tests) can share one Redis.
    pub prefix: String,
    /// Entries kept in the global stream (approximate trim).
    pub global_cap: usize,
    /// Entries kept per device (approximate trim): how far back a device's stream resumes.
    pub per_device_cap: usize,
    /// Events a live subscriber may fall behind before it catches up from Redis.
    pub live_capacity: usize,
    /// Events waiting to be written before new ones are dropped (Redis unreachable).
    pub max_pending: usize,
    /// The tenants' data keys: each event's payload is sealed with its tenant's before
    /// it goes to Redis, and opened when read. Every wafleet process sets it; without
    /// it (tests of the bus alone) payloads go to Redis in clear.
    pub keys: Option<Arc<DataKeys>>,
}

impl RedisBusConfig {
    pub fn new(url: impl Into<String>) -> RedisBusConfig {
        RedisBusConfig {
            url: url.into(),
            prefix: "wafleet".into(),
            global_cap: 100_000,
            per_device_cap: 256,
            live_capacity: 4096,
            max_pending: 100_000,
            keys: None,
        }
    }
}

/// The Redis bus of this process.
#[derive(Debug)]
pub(crate) struct RedisBus {
    config: RedisBusConfig,
    conn: ConnectionManager,
    writes: mpsc::UnboundedSender<Write>,
    pending: Arc<AtomicUsize>,
    live: Arc<Hub>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisBus {
    pub(crate) async fn connect(config: RedisBusConfig) -> Result<RedisBus, BusError> {
        let client = Client::open(config.url.as_str()).map_err(unavailable)?;
        // Few quick retries: a process started without Redis says so at once; later
        // outages are retried by the writer and the tail, and by the manager itself.
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = ConnectionManager::new_with_config(client.clone(), manager)
            .await
            .map_err(unavailable)?;
        let global = global_key(&config);
        // The live tail starts where the stream is now, so that no event appended after
        // this point can fall between a subscriber's replay and the live events.
        let last: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&global)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let start = last
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let live = Hub::new(config.live_capacity);
        let (writes, queue) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let tasks = vec![
            tokio::spawn(writer::run(
                conn.clone(),
                config.clone(),
                queue,
                pending.clone(),
            )),
            tokio::spawn(run_tail(
                client,
                global,
                start,
                live.clone(),
                config.keys.clone(),
            )),
        ];
        Ok(RedisBus {
            config,
            conn,
            writes,
            pending,
            live,
            tasks,
        })
    }

    pub(crate) fn publish(&self, device_id: &str, kind: EventKind, mut data: Map<String, Value>) {
        if self.pending.load(Ordering::Relaxed) >= self.config.max_pending {
            crate::metrics::event_dropped();
            return;
        }
        data.insert("device_id".into(), Value::String(device_id.to_owned()));
        let tenant = match data.get("tenant") {
            Some(Value::String(tenant)) => tenant.clone(),
            _ => crate::access::DEFAULT_TENANT.to_owned(),
        };
        let write = Write::Publish {
            device_id: device_id.to_owned(),
            tenant,
            kind,
            json: Value::Object(data).to_string(),
            at_ms: now_ms(),
        };
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.writes.send(write).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn forget(&self, device_id: &str) {
        let _ = self.writes.send(Write::Forget(device_id.to_owned()));
    }

    pub(crate) async fn subscribe(
        &self,
        filter: &EventFilter,
        after: Option<u64>,
    ) -> Result<(Live, Replay, u64), BusError> {
        // Subscribe before reading the replay: whatever the replay misses is live.
        let live = self.live.subscribe(filter);
        let replay = match after {
            Some(after) => self.replay(filter, after).await?,
            None => Replay::default(),
        };
        Ok((live, replay, after.unwrap_or(0)))
    }

    /// The kept events with an id above `after` that match `filter`, in id order, and a
    /// reset if a stream read was trimmed past `after`.
    pub(crate) async fn replay(
        &self,
        filter: &EventFilter,
        after: u64,
    ) -> Result<Replay, BusError> {
        let keys = match filter.devices() {
            Some(ids) => ids.iter().map(|id| device_key(&self.config, id)).collect(),
            None => vec![global_key(&self.config)],
        };
        let mut conn = self.conn.clone();
        let mut events = Vec::new();
        let mut lost = false;
        let mut oldest: Option<u64> = None;
        for key in &keys {
            // Read first, then look at the window: an entry trimmed before the read
            // shows in the window, so a gap is never missed.
            range_after(
                &mut conn,
                key,
                after,
                self.config.keys.as_deref(),
                &mut events,
            )
            .await?;
            let window = window(&mut conn, key, self.config_cap(filter)).await?;
            lost |= window.lost_after(after);
            if let Some(first) = window.first {
                oldest = Some(oldest.map_or(first, |o| o.min(first)));
            }
        }
        events.sort_by_key(|e| e.id);
        Ok(Replay {
            reset: lost.then_some(Reset { after, oldest }),
            events: events
                .into_iter()
                .filter(|e| filter.matches(e))
                .map(Arc::new)
                .collect(),
        })
    }

    /// The cap of the streams a filter reads.
    fn config_cap(&self, filter: &EventFilter) -> usize {
        if filter.reads_all() {
            self.config.global_cap
        } else {
            self.config.per_device_cap
        }
    }
}

/// What a stream still holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Window {
    /// Entries were removed from it (trimmed).
    trimmed: bool,
    /// Its first entry, as an event id.
    first: Option<u64>,
    /// The newest id it ever had (for a stream emptied entirely).
    last_generated: Option<u64>,
}

impl Window {
    /// Whether an entry after `after` may have been removed.
    fn lost_after(&self, after: u64) -> bool {
        if !self.trimmed {
            return false;
        }
        match (self.first, self.last_generated) {
            (Some(first), _) => after.saturating_add(1) < first,
            (None, Some(last)) => after < last,
            (None, None) => false,
        }
    }
}

/// `XINFO STREAM key`; a missing stream (never written, or forgotten) has lost nothing.
/// `cap`: the stream's cap, used to guess `trimmed` on a Redis before 7.0, which does
/// not count the entries ever added.
async fn window(conn: &mut ConnectionManager, key: &str, cap: usize) -> Result<Window, BusError> {
    let reply: redis::RedisResult<std::collections::HashMap<String, RedisValue>> =
        redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .query_async(conn)
            .await;
    let info = match reply {
        Ok(info) => info,
        Err(error) if error.to_string().contains("no such key") => {
            return Ok(Window::default());
        }
        Err(error) => return Err(unavailable(error)),
    };
    let int = |field: &str| match info.get(field) {
        Some(RedisValue::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    let length = int("length").unwrap_or(0);
    let trimmed = match int("entries-added") {
        Some(added) => added > length,
        None => length >= cap as u64,
    };
    let first = match info.get("first-entry") {
        Some(RedisValue::Array(entry)) => match entry.first() {
            Some(RedisValue::BulkString(id)) => std::str::from_utf8(id).ok().and_then(event_id),
            Some(RedisValue::SimpleString(id)) => event_id(id),
            _ => None,
        },
        _ => None,
    };
    let last_generated = match info.get("last-generated-id") {
        Some(RedisValue::BulkString(id)) => std::str::from_utf8(id).ok().and_then(event_id),
        Some(RedisValue::SimpleString(id)) => event_id(id),
        _ => None,
    };
    Ok(Window {
        trimmed,
        first,
        last_generated,
    })
}

/// Every entry of `key` after `after`, in pages.
async fn range_after(
    conn: &mut ConnectionManager,
    key: &str,
    after: u64,
    keys: Option<&DataKeys>,
    out: &mut Vec<DeviceEvent>,
) -> Result<(), BusError> {
    let mut from = format!("({}", redis_id(after));
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        let full = page.ids.len() == 1000;
        if let Some(last) = page.ids.last() {
            from = format!("({}", last.id);
        }
        for entry in &page.ids {
            out.extend(parse_entry(entry, keys).await);
        }
        if !full {
            return Ok(());
        }
    }
}

/// Follows the global stream from `last` and hands every entry to the live subscribers.
async fn run_tail(
    client: Client,
    key: String,
    mut last: String,
    live: Arc<Hub>,
    keys: Option<Arc<DataKeys>>,
) {
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => conn,
            Err(error) => {
                debug!(%error, "redis tail cannot connect, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        loop {
            let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(2000)
                .arg("STREAMS")
                .arg(&key)
                .arg(&last)
                .query_async(&mut conn)
                .await;
            let reply = match read {
                Ok(reply) => reply,
                Err(error) => {
                    warn!(%error, "redis tail lost its connection, reconnecting");
                    break;
                }
            };
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                last = entry.id.clone();
                if let Some(event) = parse_entry(&entry, keys.as_deref()).await {
                    metrics::events_read(age(event.at_ms));
                    live.publish(&Arc::new(event));
                }
            }
        }
    }
}

/// The event an entry holds, its payload opened with `keys`; `None` (logged) for an
/// entry that is malformed or does not open.
async fn parse_entry(entry: &StreamId, keys: Option<&DataKeys>) -> Option<DeviceEvent> {
    let text = |field: &str| match entry.map.get(field) {
        Some(RedisValue::BulkString(bytes)) => String::from_utf8(bytes.clone()).ok(),
        Some(RedisValue::SimpleString(s)) => Some(s.clone()),
        _ => None,
    };
    let device_id = text("d")?;
    let kind = EventKind::parse(&text("k")?)?;
    let at_ms: i64 = text("t")?.parse().ok()?;
    let mut json = text("j")?;
    if let Some(keys) = keys {
        let id = bus_event_id(kind, at_ms);
        json = match keys.open(&Place::bus_event(&device_id, &id), &json).await {
            Ok(json) => json,
            Err(error) => {
                warn!(entry = entry.id, %error, "an event in redis cannot be opened; skipped");
                return None;
            }
        };
    }
    Some(DeviceEvent {
        id: event_id(&entry.id)?,
        device_id,
        kind,
        data: serde_json::from_str(&json).ok()?,
        at_ms,
        rendered: Default::default(),
    })
}

/// What names an event's payload on the bus, for its seal: its kind and time.
pub(super) fn bus_event_id(kind: EventKind, at_ms: i64) -> String {
    format!("{}@{at_ms}", kind.as_str())
}

/// `MS-SEQ` as one number.
fn event_id(redis_id: &str) -> Option<u64> {
    let (ms, seq) = redis_id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    (seq < 1 << 20 && ms < 1 << 43).then_some(ms << 20 | seq)
}

/// One number back to `MS-SEQ`.
fn redis_id(event_id: u64) -> String {
    format!("{}-{}", event_id >> 20, event_id & ((1 << 20) - 1))
}

/// Time since `at_ms` (Unix ms), zero if it is in the future (another clock).
fn age(at_ms: i64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(at_ms).max(0) as u64)
}

fn global_key(config: &RedisBusConfig) -> String {
    format!("{}:events", config.prefix)
}

fn device_key(config: &RedisBusConfig, device_id: &str) -> String {
    format!("{}:events:{device_id}", config.prefix)
}

fn unavailable(error: redis::RedisError) -> BusError {
    BusError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_keep_their_order() {
        let ids = [
            "0-0",
            "0-1",
            "1700000000000-0",
            "1700000000000-5",
            "1700000000001-0",
        ];
        let numbers: Vec<u64> = ids.iter().map(|id| event_id(id).unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]));
        for (id, n) in ids.iter().zip(&numbers) {
            assert_eq!(&redis_id(*n), id);
        }
        assert_eq!(event_id("12"), None);
        assert_eq!(event_id("1-1048576"), None, "seq must fit 20 bits");
    }
}
