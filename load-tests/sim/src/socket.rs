//! `GET /ws`: a device's connection over a WebSocket. Each binary message carries one
//! prost-encoded frame; this module only decodes and encodes them: the socket is the
//! connection's [`Port`], served by the same logic as [`Network::attach`](super::Network::attach)
//! in the socket's own task. A malformed message closes the connection (logged at debug).

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    response::Response,
};
use prost::Message as _;
use tokio::sync::watch;
use tracing::debug;
use wafleet_protocol::sim::{ClientFrame, ServerFrame};

use super::{Network, connection, port::Port, server::AppState};

/// Frames are small; anything bigger is not a device speaking the protocol.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The socket's read buffer: small, since 10,000 idle sockets must stay cheap (it
/// grows for the rare larger message).
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Upgrade the request and serve the socket.
pub(crate) async fn upgrade(State(app): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(app.network, socket, app.shutdown))
}

/// Run the connection over the socket, then close the socket saying why.
async fn serve(network: Network, socket: WebSocket, shutdown: Option<watch::Receiver<bool>>) {
    let mut port = SocketPort {
        socket,
        shutdown,
        close: (close_code::NORMAL, ""),
    };
    connection::run(network, &mut port).await;
    let (code, reason) = port.close;
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // Fails when the device closed first; nothing to do then.
    let _ = port.socket.send(Message::Close(Some(frame))).await;
}

/// A WebSocket as a connection's port.
#[derive(Debug)]
struct SocketPort {
    socket: WebSocket,
    /// Set when the server shuts down (only under `serve`).
    shutdown: Option<watch::Receiver<bool>>,
    /// The close code and reason to end the socket with.
    close: (u16, &'static str),
}

impl Port for SocketPort {
    async fn recv(&mut self) -> Option<ClientFrame> {
        loop {
            let message = tokio::select! {
                message = self.socket.recv() => message,
                () = shut_down(&mut self.shutdown) => {
                    self.close = (close_code::AWAY, "the simulator is shutting down");
                    return None;
                }
            };
            match message {
                Some(Ok(Message::Binary(bytes))) => match ClientFrame::decode(bytes) {
                    Ok(frame) => return Some(frame),
                    Err(error) => {
                        debug!(%error, "malformed frame on the websocket, closing");
                        self.close = (close_code::INVALID, "malformed frame");
                        return None;
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    debug!("text message on the websocket, closing");
                    self.close = (close_code::UNSUPPORTED, "frames are binary");
                    return None;
                }
                // Pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Err(error)) => {
                    debug!(%error, "websocket error, closing");
                    return None;
                }
            }
        }
    }

    async fn send(&mut self, frame: ServerFrame) -> bool {
        let bytes = frame.encode_to_vec();
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .is_ok()
    }
}

/// Resolves when the server shuts down; never without a shutdown signal.
async fn shut_down(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        // An error means the server is gone without saying so: shutting down too.
        Some(receiver) => {
            let _ = receiver.wait_for(|stopping| *stopping).await;
        }
        None => std::future::pending().await,
    }
}
