//! `[http]`: the rules every HTTP listener of a process applies to its connections
//! (gateway and standalone API, metrics listener, node HTTP, simulator), so that slow
//! or idle clients cannot hold the process's connections and file descriptors.

use std::time::Duration;

use serde::Deserialize;

use super::check::{self, Invalid};

/// The `[http]` section (nodes, gateways, and standalone and `wafleet sim` through the
/// environment: `WAFLEET__HTTP__*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// A request's head (request line and headers) must be complete this long after
    /// its first byte, or after the connection opened for its first request; else the
    /// connection is closed (`header_read_timeout_ms`, default 10,000, 100 to 300,000).
    /// This is what closes a slowloris connection, one that sends half a request head
    /// and then trickles or nothing.
    #[serde(
        rename = "header_read_timeout_ms",
        default = "default_header_read_timeout",
        deserialize_with = "check::millis"
    )]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed when no byte of a
    /// next request has come this long after the last response ended
    /// (`idle_timeout_ms`, default 75,000, 100 to 3,600,000). Longer than the usual
    /// load balancer's idle timeout (60 s), so that the balancer, not wafleet, closes
    /// the connections it pools: a backend that closes first makes the balancer answer
    /// 502 now and then.
    #[serde(
        rename = "idle_timeout_ms",
        default = "default_idle_timeout",
        deserialize_with = "check::millis"
    )]
    pub idle_timeout: Duration,
    /// An ordinary request must have its response head within this long, or it is
    /// answered 503 `request_timeout` (`request_timeout_ms`, default 30,000, 100 to
    /// 3,600,000), counted from the request's start or from the last bytes of its body
    /// that arrived, whichever is later (an upload that keeps sending is not cut).
    /// Streams are not cut: an SSE stream or a WebSocket has its response head at once
    /// and then lasts as long as it lasts. On a gateway it must be at least
    /// `gateway.request_timeout_ms`, so that a device call that a node does not answer
    /// ends as the 504 that says so.
    #[serde(
        rename = "request_timeout_ms",
        default = "default_request_timeout",
        deserialize_with = "check::millis"
    )]
    pub request_timeout: Duration,
    /// Open connections one listener holds at most (default 16,384, 1 to 1,000,000).
    /// Past it, a new connection is accepted and closed at once, and counted in
    /// `wafleet_http_connections_refused_total`. Each SSE client holds a connection
    /// (a gateway is measured holding 10,000 streams), hence a default well above that;
    /// keep it below the process's open-files limit, which devices' links share.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            request_timeout: default_request_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

impl HttpSection {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check::millis_in(
            "http.header_read_timeout_ms",
            self.header_read_timeout,
            100,
            300_000,
        )?;
        check::millis_in("http.idle_timeout_ms", self.idle_timeout, 100, 3_600_000)?;
        check::millis_in(
            "http.request_timeout_ms",
            self.request_timeout,
            100,
            3_600_000,
        )?;
        check::within("http.max_connections", self.max_connections, 1, 1_000_000)
    }
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(75)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_connections() -> usize {
    16_384
}
