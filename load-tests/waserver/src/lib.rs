//! A WhatsApp Web protocol test server: what the real whatsapp-rust client (wafleet's
//! `--link whatsapp=ws://…`) pairs with, logs in to and talks to, with no network.
//!
//! It speaks the server's side of the protocol with the primitives the client itself
//! uses (`wacore-noise`, `wacore-binary`, `wacore-libsignal`, `waproto`): a WebSocket,
//! the Noise handshakes ([`noise`]) with a certificate chain of its own ([`keys`]),
//! binary nodes, QR pairing with simulated phones ([`pairing`]), logins, and the answers
//! a device needs ([`iq`]). A control API on the simulator's paths (`/sim/scan`,
//! `/sim/stats`, …) lets the same tests drive it.
//!
//! Its chain is not signed by WhatsApp: only a wafleet built with the `test-chain`
//! feature accepts it. This crate never enables that bypass itself.

mod bundles;
mod iq;
mod keys;
mod messages;
mod network;
mod nodes;
mod noise;
mod pair_code;
mod pairing;
mod phones;
mod prekeys;
mod routes;
mod session;
mod signal;
mod usync;
mod wire;

use std::net::SocketAddr;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;

pub use messages::{InboxMessage, SendError, SentMessage};
pub use network::{Linked, Network, Stats};
pub use pairing::ScanError;

/// A server bound to an address, serving until dropped.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub network: Network,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The WebSocket URL a client dials: `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The control API's base: `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `network` on `listen` (`127.0.0.1:0` picks a port).
pub async fn serve(listen: &str, network: Network) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = routes::routes()
        .route("/ws", get(upgrade))
        // WhatsApp's own path, for a URL copied from it.
        .route("/ws/chat", get(upgrade))
        .with_state(network.clone());
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the test server stopped");
        }
    });
    Ok(Running {
        addr,
        network,
        task,
    })
}

async fn upgrade(State(network): State<Network>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session::serve(network, socket))
}
