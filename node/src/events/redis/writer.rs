//! The Redis bus's writer task: appends the events of this process in batches, each
//! event exactly once, and never lets one bad batch hold back the ones after it.
//!
//! **Once.** A reply can be lost after Redis ran a script (the connection drops, the
//! response times out), and the writer then sends the same batch again. Every event
//! carries a sequence number of this writer (one random writer id per bus), and the
//! script remembers the highest number it appended under the writer's key: an event at
//! or below it was appended by the call whose reply was lost and is skipped.
//!
//! **No wedge.** A connection error is retried until Redis answers (the queue is
//! bounded by `max_pending`, so a long outage drops new events, counted). An error
//! Redis *answers* with is retried a few times and then the batch is given up, counted
//! as dropped: it would fail the same way forever. Inside the script, an event Redis
//! refuses (say its device key holds something else) is left out alone, its global entry
//! removed again, so the events beside it are still written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{RedisBusConfig, age, bus_event_id, device_key, global_key};
use crate::events::EventKind;
use crate::metrics;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;

/// Appends events to the global stream and, with the same id, to their device's stream,
/// skipping those this writer appended already.
///
/// KEYS[1] the global stream, KEYS[2] the writer's key (its last appended sequence
/// number). ARGV: global cap, device cap, device key prefix, sequence number of the
/// first event, lifetime of the writer's key (s), then (device, kind, json, at_ms) per
/// event. Returns `{skipped, {error, ...}}`.
const APPEND: &str = r"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = tonumber(ARGV[4])
local n = (#ARGV - 5) / 4
local skipped = 0
local errors = {}
for i = 0, n - 1 do
  if first + i <= last then
    skipped = skipped + 1
  else
    local b = 6 + i * 4
    local d, k, j, t = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    local id = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', d, 'k', k, 'j', j, 't', t)
    if type(id) == 'table' then
      errors[#errors + 1] = d .. ': ' .. tostring(id.err)
    else
      local r = redis.pcall('XADD', ARGV[3] .. d, 'MAXLEN', '~', ARGV[2], id, 'd', d, 'k', k, 'j', j, 't', t)
      if type(r) == 'table' then
        redis.call('XDEL', KEYS[1], id)
        errors[#errors + 1] = d .. ': ' .. tostring(r.err)
      end
    end
  end
end
if first + n - 1 > last then
  redis.call('SET', KEYS[2], first + n - 1, 'EX', ARGV[5])
end
return {skipped, errors}
";

/// Most events sent in one script call.
const BATCH: usize = 256;

/// How long the script remembers a writer's last sequence number after its last write:
/// far longer than any retry of a lost reply.
const WRITER_KEY_TTL_SECS: u64 = 24 * 3600;

/// Attempts at a batch that Redis answers with an error before it is given up.
const MAX_REFUSALS: u32 = 8;

pub(super) enum Write {
    Publish {
        device_id: String,
        /// Whose data key seals the payload.
        tenant: String,
        kind: EventKind,
        json: String,
        at_ms: i64,
    },
    Forget(String),
}

/// The unit the writer retries: a run of publishes (one script call), or a forget.
enum Step<'a> {
    Append(&'a [Write]),
    Forget(&'a str),
}

/// Splits a batch into steps, in order.
fn steps(batch: &[Write]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut start = 0;
    for (i, write) in batch.iter().enumerate() {
        if let Write::Forget(device_id) = write {
            if start < i {
                steps.push(Step::Append(&batch[start..i]));
            }
            steps.push(Step::Forget(device_id));
            start = i + 1;
        }
    }
    if start < batch.len() {
        steps.push(Step::Append(&batch[start..]));
    }
    steps
}

/// Writes what the bus queues, until the bus is dropped.
pub(super) async fn run(
    mut conn: ConnectionManager,
    config: RedisBusConfig,
    mut queue: mpsc::UnboundedReceiver<Write>,
    pending: Arc<AtomicUsize>,
) {
    let script = Script::new(APPEND);
    let writer = Writer {
        global: global_key(&config),
        device_prefix: device_key(&config, ""),
        writer_key: format!(
            "{}:events:writer:{}",
            config.prefix,
            uuid::Uuid::new_v4().simple()
        ),
        config,
        script,
    };
    // Numbers are taken here, in queue order, not when an event is published: the
    // script skips anything at or below the last number it saw.
    let mut next_seq: u64 = 1;
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
        if let Some(keys) = &writer.config.keys {
            let unsealed = seal(keys, &mut batch).await;
            if unsealed > 0 {
                pending.fetch_sub(unsealed, Ordering::Relaxed);
            }
        }
        metrics::events_queue_depth(pending.load(Ordering::Relaxed));
        for step in steps(&batch) {
            match step {
                Step::Append(events) => {
                    let first_seq = next_seq;
                    next_seq += events.len() as u64;
                    writer.append(&mut conn, events, first_seq).await;
                }
                Step::Forget(device_id) => writer.forget(&mut conn, device_id).await,
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

/// Seals every payload of `batch` with its tenant's data key. An event that cannot be
/// sealed now (the store cannot give the key) is dropped, counted and logged, never
/// written in clear; returns how many were.
async fn seal(keys: &DataKeys, batch: &mut Vec<Write>) -> usize {
    let mut dropped = 0;
    let mut sealed = Vec::with_capacity(batch.len());
    for mut write in batch.drain(..) {
        if let Write::Publish {
            device_id,
            tenant,
            kind,
            json,
            at_ms,
        } = &mut write
        {
            let id = bus_event_id(*kind, *at_ms);
            match keys
                .seal(tenant, &Place::bus_event(device_id, &id), json)
                .await
            {
                Ok(text) => *json = text.into_string(),
                Err(error) => {
                    dropped += 1;
                    metrics::event_dropped();
                    warn!(device_id, %error, "cannot seal an event (no data key); dropped");
                    continue;
                }
            }
        }
        sealed.push(write);
    }
    *batch = sealed;
    dropped
}

struct Writer {
    config: RedisBusConfig,
    script: Script,
    global: String,
    device_prefix: String,
    writer_key: String,
}

impl Writer {
    /// Appends `events` (numbered from `first_seq`), retried until Redis has them or
    /// refuses them for good.
    async fn append(&self, conn: &mut ConnectionManager, events: &[Write], first_seq: u64) {
        let mut invocation = self.script.key(&self.global);
        invocation
            .key(&self.writer_key)
            .arg(self.config.global_cap)
            .arg(self.config.per_device_cap)
            .arg(&self.device_prefix)
            .arg(first_seq)
            .arg(WRITER_KEY_TTL_SECS);
        for write in events {
            if let Write::Publish {
                device_id,
                kind,
                json,
                at_ms,
                ..
            } = write
            {
                invocation
                    .arg(device_id)
                    .arg(kind.as_str())
                    .arg(json)
                    .arg(*at_ms);
            }
        }
        let outcome = retried(events.len(), || {
            let mut conn = conn.clone();
            let invocation = &invocation;
            async move {
                invocation
                    .invoke_async::<(u64, Vec<String>)>(&mut conn)
                    .await
            }
        })
        .await;
        match outcome {
            Some((skipped, refused)) => {
                if skipped > 0 {
                    debug!(
                        skipped,
                        "events already appended by a call whose reply was lost"
                    );
                }
                for error in &refused {
                    metrics::event_dropped();
                    warn!(%error, "redis refused an event, dropped");
                }
            }
            None => {
                for _ in events {
                    metrics::event_dropped();
                }
            }
        }
    }

    /// Drops a deleted device's stream (idempotent, so a retry is harmless).
    async fn forget(&self, conn: &mut ConnectionManager, device_id: &str) {
        let key = format!("{}{device_id}", self.device_prefix);
        retried(0, || {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await;
    }
}

/// Runs `attempt` until it succeeds: without limit while Redis cannot be reached, at
/// most [`MAX_REFUSALS`] times while it answers with an error. `None`: given up.
async fn retried<T, F, Fut>(events: usize, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut refusals = 0;
    loop {
        let error = match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        metrics::events_write_error();
        if not_answered(&error) {
            warn!(%error, events, "cannot write events to redis, retrying");
        } else {
            refusals += 1;
            if refusals >= MAX_REFUSALS {
                warn!(%error, events, "redis keeps refusing a batch of events, dropped");
                return None;
            }
            warn!(%error, events, refusals, "redis refused a batch of events, retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Redis could not be asked or did not answer: the same call may well succeed later.
fn not_answered(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(device: &str) -> Write {
        Write::Publish {
            device_id: device.into(),
            tenant: "default".into(),
            kind: EventKind::Status,
            json: "{}".into(),
            at_ms: 0,
        }
    }

    #[test]
    fn a_batch_splits_at_forgets_in_order() {
        let batch = vec![
            publish("a"),
            publish("b"),
            Write::Forget("a".into()),
            Write::Forget("b".into()),
            publish("c"),
        ];
        let shape: Vec<String> = steps(&batch)
            .iter()
            .map(|s| match s {
                Step::Append(events) => format!("append {}", events.len()),
                Step::Forget(d) => format!("forget {d}"),
            })
            .collect();
        assert_eq!(
            shape,
            ["append 2", "forget a", "forget b", "append 1"].map(String::from)
        );
    }
}
