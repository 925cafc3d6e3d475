//! A task that follows a stream of every device's events (`GET /v1/events`) for the rest
//! of a run and keeps what the scenarios ask of it: which devices are READY (a gauge),
//! which messages were sent and delivered (gauges and ids), and each READY as it
//! arrives, with the moment it did (recovery times).
//!
//! Reading the stream in its own task means events are taken off the connection as they
//! come, whatever the scenario is doing (sleeping, killing a node, sending), so the
//! times and the sampled gauges are those of the events, not of when a loop got round
//! to them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sampling::Gauge;

/// The gauges an [`EventWatch`] keeps up to date.
#[derive(Debug, Clone)]
pub struct WatchGauges {
    /// Devices whose last word was READY.
    pub ready: Gauge,
    /// Messages with a `sent` (or later: `delivered`, `read`) status.
    pub sent: Gauge,
    /// Messages with a `delivered` (or `read`) status.
    pub delivered: Gauge,
}

impl WatchGauges {
    /// Gauges named `ready`, `sent`, `delivered`.
    pub fn new() -> WatchGauges {
        WatchGauges {
            ready: Gauge::new("ready"),
            sent: Gauge::new("sent"),
            delivered: Gauge::new("delivered"),
        }
    }
}

impl Default for WatchGauges {
    fn default() -> WatchGauges {
        WatchGauges::new()
    }
}

/// A device said READY.
#[derive(Debug, Clone)]
pub struct ReadyEvent {
    pub device: String,
    /// The node it runs on (`data.node`; empty when the event has none).
    pub node: String,
    /// When the watch read it.
    pub at: Instant,
}

/// What the stream said so far.
#[derive(Debug, Default)]
struct Seen {
    /// READY devices and the node each said it from: a later non-READY status from
    /// another node (the old owner's goodbye, arriving after the new owner's READY)
    /// does not make it not READY.
    ready: HashMap<String, String>,
    sent: HashSet<String>,
    delivered: HashSet<String>,
    last_sent: Option<Instant>,
    last_delivered: Option<Instant>,
    /// `reset` events: the stream lost events it could not replay (counts may be short).
    resets: u64,
    ended: bool,
}

/// The task following one event stream, and what it saw.
#[derive(Debug)]
pub struct EventWatch {
    seen: Arc<Mutex<Seen>>,
    gauges: WatchGauges,
    readies: mpsc::UnboundedReceiver<ReadyEvent>,
    task: JoinHandle<()>,
}

impl EventWatch {
    /// Follows `events` from now on; `ready` are the devices READY already (on nodes
    /// not known), e.g. those a pairing loop saw.
    pub fn spawn<S>(
        events: S,
        ready: impl IntoIterator<Item = String>,
        gauges: WatchGauges,
    ) -> EventWatch
    where
        S: Stream<Item = (String, Value)> + Send + Unpin + 'static,
    {
        let seen = Seen {
            ready: ready.into_iter().map(|d| (d, String::new())).collect(),
            ..Seen::default()
        };
        gauges.ready.set(seen.ready.len() as u64);
        let seen = Arc::new(Mutex::new(seen));
        let (tell, readies) = mpsc::unbounded_channel();
        let task = {
            let (seen, gauges) = (seen.clone(), gauges.clone());
            tokio::spawn(follow(events, seen, gauges, tell))
        };
        EventWatch {
            seen,
            gauges,
            readies,
            task,
        }
    }

    /// These devices are not READY any more (their node was killed or stopped), until
    /// they say READY again.
    pub fn not_ready<'a>(&self, devices: impl IntoIterator<Item = &'a String>) {
        let mut seen = lock(&self.seen);
        for device in devices {
            seen.ready.remove(device);
        }
        self.gauges.ready.set(seen.ready.len() as u64);
    }

    /// The next READY event not taken yet, waiting up to `within`.
    pub async fn next_ready(&mut self, within: Duration) -> anyhow::Result<ReadyEvent> {
        tokio::time::timeout(within, self.readies.recv())
            .await
            .with_context(|| format!("no READY event for {within:?}"))?
            .context("event stream ended")
    }

    /// Waits until `expected` messages have been seen delivered, for at most `within`,
    /// and no longer than `stall` without a new one; returns how many were.
    pub async fn drain(&self, expected: usize, within: Duration, stall: Duration) -> usize {
        let deadline = Instant::now() + within;
        let (mut count, mut moved) = (self.delivered_count(), Instant::now());
        while count < expected && Instant::now() < deadline && moved.elapsed() < stall {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.delivered_count();
            if now > count {
                (count, moved) = (now, Instant::now());
            }
        }
        count
    }

    /// Messages seen delivered (or read).
    pub fn delivered(&self) -> HashSet<String> {
        lock(&self.seen).delivered.clone()
    }

    pub fn delivered_count(&self) -> usize {
        lock(&self.seen).delivered.len()
    }

    pub fn sent_count(&self) -> usize {
        lock(&self.seen).sent.len()
    }

    /// When the last message was first seen sent, and delivered.
    pub fn last_sent_and_delivered(&self) -> (Option<Instant>, Option<Instant>) {
        let seen = lock(&self.seen);
        (seen.last_sent, seen.last_delivered)
    }

    /// How many `reset` events came (the stream lost events it could not replay).
    pub fn resets(&self) -> u64 {
        lock(&self.seen).resets
    }

    /// Whether the stream ended.
    pub fn ended(&self) -> bool {
        lock(&self.seen).ended
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow<S>(
    mut events: S,
    seen: Arc<Mutex<Seen>>,
    gauges: WatchGauges,
    tell: mpsc::UnboundedSender<ReadyEvent>,
) where
    S: Stream<Item = (String, Value)> + Unpin,
{
    while let Some((kind, data)) = events.next().await {
        let at = Instant::now();
        let mut seen = lock(&seen);
        match kind.as_str() {
            "status" => {
                let device = data["device_id"].as_str().unwrap_or_default();
                let node = data["node"].as_str().unwrap_or_default();
                if data["status"] == "READY" {
                    seen.ready.insert(device.to_owned(), node.to_owned());
                    let _ = tell.send(ReadyEvent {
                        device: device.to_owned(),
                        node: node.to_owned(),
                        at,
                    });
                } else if seen
                    .ready
                    .get(device)
                    .is_some_and(|from| from.is_empty() || from == node)
                {
                    seen.ready.remove(device);
                }
                gauges.ready.set(seen.ready.len() as u64);
            }
            "message.status" => {
                let message = data["message_id"].as_str().unwrap_or_default();
                let status = data["status"].as_str().unwrap_or_default();
                let delivered = matches!(status, "delivered" | "read");
                if (delivered || status == "sent") && seen.sent.insert(message.to_owned()) {
                    seen.last_sent = Some(at);
                    gauges.sent.add(1);
                }
                if delivered && seen.delivered.insert(message.to_owned()) {
                    seen.last_delivered = Some(at);
                    gauges.delivered.add(1);
                }
            }
            "reset" => seen.resets += 1,
            _ => {}
        }
    }
    lock(&seen).ended = true;
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(device: &str, node: &str, status: &str) -> (String, Value) {
        let data = json!({"device_id": device, "node": node, "status": status});
        ("status".to_owned(), data)
    }

    fn message(id: &str, status: &str) -> (String, Value) {
        let data = json!({"device_id": "d", "message_id": id, "status": status});
        ("message.status".to_owned(), data)
    }

    #[tokio::test]
    async fn follows_ready_devices_and_message_receipts() {
        let events = futures_util::stream::iter(vec![
            status("a", "node-2", "READY"),
            // The old owner's goodbye after the new owner's READY: still READY.
            status("a", "node-1", "STOPPED"),
            status("b", "node-1", "CONNECTING"),
            message("m1", "sent"),
            message("m1", "delivered"),
            // Straight to delivered: it was sent too.
            message("m2", "delivered"),
            message("m2", "read"),
            ("reset".to_owned(), json!({})),
        ]);
        let gauges = WatchGauges::new();
        let mut watch = EventWatch::spawn(events, ["b".to_owned()], gauges.clone());
        let first = watch.next_ready(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (first.device.as_str(), first.node.as_str()),
            ("a", "node-2")
        );
        assert!(
            watch.next_ready(Duration::from_secs(5)).await.is_err(),
            "ended"
        );
        assert!(watch.ended());
        assert_eq!(gauges.ready.get(), 1, "a READY, b no longer");
        assert_eq!((gauges.sent.get(), gauges.delivered.get()), (2, 2));
        assert_eq!(watch.sent_count(), 2);
        assert_eq!(watch.delivered(), HashSet::from(["m1".into(), "m2".into()]));
        assert_eq!(watch.resets(), 1);
        watch.not_ready([&"a".to_owned()]);
        assert_eq!(gauges.ready.get(), 0);
    }
}
