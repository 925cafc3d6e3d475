//! The HTTP face of the network: [`router`] (the device socket and the control API,
//! for merging into another server) and [`serve`] (a server of its own).

use std::future::Future;

use axum::{Router, routing::get, serve::Listener};
use tokio::sync::watch;
use wafleet_http_edge::Edge;

use super::{Network, routes, socket};

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) network: Network,
    /// Tells open WebSockets that the server is shutting down (only under [`serve`]).
    pub(crate) shutdown: Option<watch::Receiver<bool>>,
}

/// `GET /ws` (devices) and the control API under `/sim/`, with no fallback, ready to
/// merge into another router.
pub fn router(network: Network) -> Router {
    app(network, None)
}

fn app(network: Network, shutdown: Option<watch::Receiver<bool>>) -> Router {
    routes::routes()
        .route("/ws", get(socket::upgrade))
        .with_state(AppState { network, shutdown })
}

/// Serve the network on `listener` under `edge`'s rules (timeouts, connection cap: see
/// `wafleet_http_edge`) until `shutdown` resolves; then close the open WebSockets and
/// wait for the state file to be written.
///
/// Any axum listener: `wafleet sim` passes one that says once when the process runs
/// out of open files (`wafleet_node::open_files::Listener`); tests pass a
/// [`TcpListener`](tokio::net::TcpListener).
pub async fn serve<L>(
    listener: L,
    network: Network,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let (stop, stopping) = watch::channel(false);
    let result = wafleet_http_edge::serve(
        listener,
        app(network.clone(), Some(stopping)),
        edge,
        async move {
            shutdown.await;
            let _ = stop.send(true);
        },
    )
    .await;
    network.flush().await;
    result
}
