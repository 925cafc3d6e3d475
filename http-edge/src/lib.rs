//! The edge of every wafleet HTTP listener (the gateway's and standalone's API, a
//! gateway's metrics listener, a node's HTTP, the simulator's control API and device
//! WebSockets): one [`serve`] that applies the `[http]` rules
//! ([`HttpSection`]) to each connection.
//!
//! - **Header-read timeout**: a request's head must be complete within
//!   `header_read_timeout` of its first byte, or of the connection's opening for its
//!   first request. A slowloris client (half a head, then a trickle or nothing) is
//!   closed then, and never holds a descriptor for long.
//! - **Idle timeout**: a kept-alive connection with nothing in flight is closed after
//!   `idle_timeout` without a byte of a next request.
//! - **Request timeout**: a handler without its response head after
//!   `request_timeout` is answered 503 `request_timeout`; streams (SSE, WebSockets)
//!   have their head at once and are never cut.
//! - **Connection cap**: at most `max_connections` open connections per listener; past
//!   it a new one is closed at once and counted.
//!
//! `axum::serve` sets none of these (it gives hyper no timer, and its protocol
//! detection read has no timeout at all: hyper issue 3962), so connections are served
//! here with hyper's HTTP/1.1 server directly, with upgrades (WebSockets). HTTP/1.1
//! only: no wafleet client speaks cleartext HTTP/2, and its prior-knowledge detection
//! is the read that cannot be bounded.
//!
//! # Layout
//! - [`activity`]: a connection's phase (head, busy, idle) and its watchdog.
//! - [`watched_io`]: the socket, which tells the activity of reads and holds the slot.
//! - [`requests`]: the per-request service: router, request timeout, in-flight guard.
//! - [`slots`]: the connection cap. [`metrics`]: what the edge counts.

mod activity;
pub mod metrics;
mod requests;
mod slots;
mod watched_io;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Instant;
pub use wafleet_cluster_config::HttpSection;

use crate::activity::{Activity, Limits};
use crate::requests::Requests;
use crate::slots::Slots;
use crate::watched_io::WatchedIo;

/// A listener's name (the `listener` label of the metrics) and its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// `api`, `metrics`, `node` or `sim`.
    pub listener: &'static str,
    pub rules: HttpSection,
}

impl Edge {
    pub fn new(listener: &'static str, rules: HttpSection) -> Edge {
        Edge { listener, rules }
    }
}

/// Serves `router` on `listener` under `edge`'s rules until `shutdown` completes, then
/// stops accepting, lets each connection finish its request in flight (hyper's graceful
/// shutdown) and returns when every connection has closed. A connection stuck in a
/// head or idle still closes at its timeout, so a slow client cannot hold a shutdown.
///
/// The router is turned into its routes once (`with_state(())`) and each connection
/// gets a clone that shares them: served as a plain `Router`, axum rebuilds the route
/// table for every connection, about 18 KB per connection with the API's routes, which
/// was most of what an SSE stream cost.
///
/// Any axum listener: wafleet processes pass `wafleet_node::open_files::Listener`, the
/// accept loop that says once when the process runs out of open files.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let router: Router = router.with_state(());
    let slots = Slots::new(edge.listener, edge.rules.max_connections);
    metrics::register(edge.listener);
    // `stop` tells the connections to shut down gracefully; each holds a clone of
    // `open` until it has closed, so `open_tx.closed()` is "every connection closed".
    let (stop, stopping) = watch::channel(false);
    let (open_tx, open) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Some(slot) = slots.take() else {
            drop(io);
            continue;
        };
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(WatchedIo::new(io, activity.clone(), slot));
        let requests = Requests {
            router: router.clone(),
            peer,
            activity: activity.clone(),
            timeout: edge.rules.request_timeout,
            listener: edge.listener,
        };
        tokio::spawn(connection(
            io,
            requests,
            activity,
            edge,
            stopping.clone(),
            open.clone(),
        ));
    }
    drop(listener);
    drop(open);
    let _ = stop.send(true);
    open_tx.closed().await;
    Ok(())
}

/// Serves one connection until it closes, upgrades (the WebSocket then owns the
/// socket), times out, or has shut down gracefully after `stopping`.
async fn connection<I, A>(
    io: TokioIo<WatchedIo<I>>,
    requests: Requests<A>,
    activity: Arc<Activity>,
    edge: Edge,
    mut stopping: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let limits = Limits {
        head: edge.rules.header_read_timeout,
        idle: edge.rules.idle_timeout,
    };
    // hyper's own header timer is off: [`activity`] keeps two limits where hyper has
    // one timer for both (see there).
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, requests)
            .with_upgrades()
    );
    let mut expired = pin!(activity.expired(limits));
    let mut stop = pin!(async move {
        // A dropped sender (the server gone) is a stop too.
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    let mut stopped = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(listener = edge.listener, %error, "connection ended");
                }
                return;
            }
            why = &mut expired => {
                // Dropping the connection closes the socket.
                metrics::timed_out(edge.listener, why);
                return;
            }
            () = &mut stop, if !stopped => {
                stopped = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
