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
//! Publishing never waits: events queue for one writer task that sends them in batches
//! and retries while Redis is away (up to [`RedisBusConfig::max_pending`] events; beyond
//! that new events are dropped and counted in `wafleet_events_dropped_total`). Events are
//! notifications: the state they announce is in the store. The writer's queue and lag
//! are exported (`wafleet_events_write_queue_depth`, `wafleet_events_write_lag_seconds`,
//! `wafleet_events_write_errors_total`), and so is the age of what the tail reads
//! (`wafleet_events_read_lag_seconds`).
//!
//! The script builds device keys from its arguments, so it needs a single Redis (not
//! Redis Cluster).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, Script, Value as RedisValue};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{BusError, DeviceEvent, EventFilter, EventKind};
use crate::clock::now_ms;
use crate::metrics;

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
        }
    }
}

/// Appends an event to the global stream and, with the same id, to its device's stream.
/// KEYS[1] global stream; ARGV: global cap, device cap, device key prefix, then
/// (device, kind, json, at_ms) per event. Returns the ids.
const APPEND: &str = r"
local out = {}
local n = (#ARGV - 3) / 4
for i = 0, n - 1 do
  local d, k, j, t = ARGV[4 + i * 4], ARGV[5 + i * 4], ARGV[6 + i * 4], ARGV[7 + i * 4]
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', d, 'k', k, 'j', j, 't', t)
  redis.call('XADD', ARGV[3] .. d, 'MAXLEN', '~', ARGV[2], id, 'd', d, 'k', k, 'j', j, 't', t)
  out[#out + 1] = id
end
return out
";

/// Most events sent in one script call.
const BATCH: usize = 256;

enum Write {
    Publish {
        device_id: String,
        kind: EventKind,
        json: String,
        at_ms: i64,
    },
    Forget(String),
}

/// The Redis bus of this process.
#[derive(Debug)]
pub(crate) struct RedisBus {
    config: RedisBusConfig,
    conn: ConnectionManager,
    writes: mpsc::UnboundedSender<Write>,
    pending: Arc<AtomicUsize>,
    live: broadcast::Sender<Arc<DeviceEvent>>,
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
        let (live, _) = broadcast::channel(config.live_capacity.max(1));
        let (writes, queue) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let tasks = vec![
            tokio::spawn(run_writer(
                conn.clone(),
                config.clone(),
                queue,
                pending.clone(),
            )),
            tokio::spawn(run_tail(client, global, start, live.clone())),
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
        let write = Write::Publish {
            device_id: device_id.to_owned(),
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
    ) -> Result<
        (
            broadcast::Receiver<Arc<DeviceEvent>>,
            VecDeque<Arc<DeviceEvent>>,
            u64,
        ),
        BusError,
    > {
        // Subscribe before reading the replay: whatever the replay misses is live.
        let live = self.live.subscribe();
        let pending = match after {
            Some(after) => self.replay(filter, after).await?,
            None => VecDeque::new(),
        };
        Ok((live, pending, after.unwrap_or(0)))
    }

    /// The kept events with an id above `after` that match `filter`, in id order.
    pub(crate) async fn replay(
        &self,
        filter: &EventFilter,
        after: u64,
    ) -> Result<VecDeque<Arc<DeviceEvent>>, BusError> {
        let mut conn = self.conn.clone();
        let mut events = Vec::new();
        match filter {
            EventFilter::All => {
                range_after(&mut conn, &global_key(&self.config), after, &mut events).await?;
            }
            EventFilter::Devices(ids) => {
                for id in ids {
                    let key = device_key(&self.config, id);
                    range_after(&mut conn, &key, after, &mut events).await?;
                }
                events.sort_by_key(|e| e.id);
            }
        }
        Ok(events
            .into_iter()
            .filter(|e| filter.matches(&e.device_id))
            .map(Arc::new)
            .collect())
    }
}

/// Every entry of `key` after `after`, in pages.
async fn range_after(
    conn: &mut ConnectionManager,
    key: &str,
    after: u64,
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
        out.extend(page.ids.iter().filter_map(parse_entry));
        if !full {
            return Ok(());
        }
    }
}

async fn run_writer(
    mut conn: ConnectionManager,
    config: RedisBusConfig,
    mut queue: mpsc::UnboundedReceiver<Write>,
    pending: Arc<AtomicUsize>,
) {
    let script = Script::new(APPEND);
    let global = global_key(&config);
    let device_prefix = device_key(&config, "");
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let oldest_ms = batch
            .iter()
            .filter_map(|w| match w {
                Write::Publish { at_ms, .. } => Some(*at_ms),
                Write::Forget(_) => None,
            })
            .min();
        let mut backoff = Duration::from_millis(50);
        loop {
            metrics::events_queue_depth(pending.load(Ordering::Relaxed));
            match write_batch(&mut conn, &script, &global, &device_prefix, &config, &batch).await {
                Ok(()) => break,
                Err(error) => {
                    metrics::events_write_error();
                    warn!(%error, events = batch.len(), "cannot write events to redis, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if let Some(oldest_ms) = oldest_ms {
            metrics::events_written(age(oldest_ms));
        }
        let published = batch
            .iter()
            .filter(|w| matches!(w, Write::Publish { .. }))
            .count();
        let left = pending
            .fetch_sub(published, Ordering::Relaxed)
            .saturating_sub(published);
        metrics::events_queue_depth(left);
        batch.clear();
    }
}

async fn write_batch(
    conn: &mut ConnectionManager,
    script: &Script,
    global: &str,
    device_prefix: &str,
    config: &RedisBusConfig,
    batch: &[Write],
) -> redis::RedisResult<()> {
    let mut i = 0;
    while i < batch.len() {
        if let Write::Forget(device_id) = &batch[i] {
            redis::cmd("DEL")
                .arg(format!("{device_prefix}{device_id}"))
                .query_async::<()>(conn)
                .await?;
            i += 1;
            continue;
        }
        let mut invocation = script.key(global);
        invocation
            .arg(config.global_cap)
            .arg(config.per_device_cap)
            .arg(device_prefix);
        while let Some(Write::Publish {
            device_id,
            kind,
            json,
            at_ms,
        }) = batch.get(i)
        {
            invocation
                .arg(device_id)
                .arg(kind.as_str())
                .arg(json)
                .arg(*at_ms);
            i += 1;
        }
        invocation.invoke_async::<Vec<String>>(conn).await?;
    }
    Ok(())
}

/// Follows the global stream from `last` and hands every entry to the live channel.
async fn run_tail(
    client: Client,
    key: String,
    mut last: String,
    live: broadcast::Sender<Arc<DeviceEvent>>,
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
                if let Some(event) = parse_entry(&entry) {
                    metrics::events_read(age(event.at_ms));
                    let _ = live.send(Arc::new(event));
                }
            }
        }
    }
}

fn parse_entry(entry: &StreamId) -> Option<DeviceEvent> {
    let text = |field: &str| match entry.map.get(field) {
        Some(RedisValue::BulkString(bytes)) => String::from_utf8(bytes.clone()).ok(),
        Some(RedisValue::SimpleString(s)) => Some(s.clone()),
        _ => None,
    };
    Some(DeviceEvent {
        id: event_id(&entry.id)?,
        device_id: text("d")?,
        kind: EventKind::parse(&text("k")?)?,
        data: serde_json::from_str(&text("j")?).ok()?,
        at_ms: text("t")?.parse().ok()?,
    })
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
