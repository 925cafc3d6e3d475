//! Load scenarios against real wafleet processes on 127.0.0.1.
//!
//! Each scenario starts what it needs as child processes, shows its progress on stderr
//! (bars when stderr is a terminal, notes always), writes a plot of the run (SVG), and
//! returns a [`Report`] that the binary prints as a summary followed by one JSON object
//! on the last line of stdout.
//!
//! # Layout
//! - [`cluster`]: `wafleet node` and `wafleet gateway` children with their configs, and a
//!   whole local cluster.
//! - [`certs`]: a development CA and certificate for cluster TLS (`[cluster.tls]`).
//! - [`sims`]: `wafleet sim` children, one or several, and their control API as a whole
//!   (each device's calls to its own simulator, counters and inboxes over all); the
//!   [`Network`](sims::Network) of a run, in process or not.
//! - [`pairing`]: scanning like a patient phone (a QR code that expired: read the
//!   current one and scan again), and a whole fleet created and paired.
//! - [`process`]: a `wafleet standalone` child process and its HTTP/SSE client.
//! - [`event_watch`]: a task that follows the event stream: devices READY, messages
//!   sent and delivered.
//! - [`sampling`]: the gauges a run updates and their time series, read every 100 ms.
//! - [`progress`]: bars that follow the gauges, and notes, on stderr.
//! - [`plot`]: the SVG plot of a run.
//! - [`failover`]: a cluster, a message stream, `kill -9` of a node: recovery, loss.
//! - [`routing`]: gateway vs standalone latency of the same calls, in one run.
//! - [`idle`]: N devices created, paired and left idle: memory per device, pairing time,
//!   on the simulated link or the real one (against [`waserver`]), or both side by side.
//! - [`waserver`]: a `wafleet-waserver` child, the WhatsApp Web protocol test server
//!   the real link pairs with, and its `/sim/stats`.
//! - [`throughput`]: messages accepted, sent and delivered per second with the limits
//!   lifted, and their latencies, on a standalone process or a cluster.
//! - [`webhooks`]: inbound messages to devices with webhooks, a failing receiver and a
//!   `kill -9`: delivery rate and latency, lost, duplicated, out of order.
//! - [`campaign`]: one job over a pool of throttled devices, through a rolling restart
//!   and a `kill -9`: exactly one message per recipient, the pace kept, the times.
//! - [`media`]: one large file uploaded, sent to a phone and downloaded again: the
//!   resident memory it costs each process, and the times.
//! - [`sse`]: N event streams held on one gateway while devices emit events: memory
//!   per stream, event latency over every stream.
//! - [`receiver`]: a webhook receiver on 127.0.0.1 that records and can fail.
//! - `target`: a standalone process or a local cluster, as a scenario runs against.

pub mod campaign;
pub mod certs;
pub mod cluster;
pub mod event_watch;
pub mod failover;
pub mod idle;
pub mod media;
pub mod pairing;
pub mod plot;
pub mod process;
pub mod progress;
pub mod receiver;
pub mod routing;
pub mod sampling;
pub mod sims;
pub mod sse;
mod target;
pub mod throughput;
pub mod waserver;
pub mod webhooks;

use serde_json::{Map, Value};

/// What a scenario measured: a human summary and the fields of the JSON line.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub summary: Vec<String>,
    pub fields: Map<String, Value>,
}

impl Report {
    pub fn line(&mut self, line: impl Into<String>) {
        self.summary.push(line.into());
    }

    pub fn field(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.to_owned(), value.into());
    }

    /// The summary lines, then the JSON object on the last line.
    pub fn print(&self) {
        for line in &self.summary {
            println!("{line}");
        }
        println!("{}", Value::Object(self.fields.clone()));
    }
}
