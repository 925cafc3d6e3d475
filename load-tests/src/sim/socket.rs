//! `GET /ws`: a device's connection over a WebSocket. Each binary message carries one
//! prost-encoded frame; this module only decodes and encodes them and pumps them
//! through the same connection logic as [`Network::attach`](super::Network::attach),
//! in the same task. A malformed message closes the connection (logged at debug).

use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    response::Response,
};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tracing::debug;
use wafleet_protocol::sim::{ClientFrame, ServerFrame};

use super::{Network, connection, server::AppState};

/// Frames are small; anything bigger is not a device speaking the protocol.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The socket's read buffer: small, since 10,000 idle sockets must stay cheap.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Frames waiting between the socket and the connection logic, each way.
const PUMP_CAPACITY: usize = 8;

/// Upgrade the request and serve the socket.
pub(crate) async fn upgrade(State(app): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(app.network, socket, app.shutdown))
}

/// Run the connection logic and the socket pump side by side until both end.
async fn serve(network: Network, socket: WebSocket, shutdown: Option<watch::Receiver<bool>>) {
    let (frames_tx, frames_rx) = mpsc::channel(PUMP_CAPACITY);
    let (outbox_tx, outbox_rx) = mpsc::channel(PUMP_CAPACITY);
    tokio::join!(
        connection::run(network, frames_rx, outbox_tx),
        pump(socket, frames_tx, outbox_rx, shutdown),
    );
}

/// Move frames between the socket and the connection logic. A frame read from the
/// socket is held until the logic takes it, while frames to the device keep flowing,
/// so that neither side can wait on the other forever.
async fn pump(
    mut socket: WebSocket,
    frames: mpsc::Sender<ClientFrame>,
    mut outbox: mpsc::Receiver<ServerFrame>,
    mut shutdown: Option<watch::Receiver<bool>>,
) {
    let mut held: Option<ClientFrame> = None;
    loop {
        tokio::select! {
            permit = frames.reserve(), if held.is_some() => {
                // If the logic ended, the frame is dropped: its last frames still go out.
                if let (Ok(permit), Some(frame)) = (permit, held.take()) {
                    permit.send(frame);
                }
            }
            message = socket.recv(), if held.is_none() => match message {
                Some(Ok(Message::Binary(bytes))) => match ClientFrame::decode(bytes) {
                    Ok(frame) => held = Some(frame),
                    Err(error) => {
                        debug!(%error, "malformed frame on the websocket, closing");
                        close(&mut socket, close_code::INVALID, "malformed frame").await;
                        break;
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    debug!("text message on the websocket, closing");
                    close(&mut socket, close_code::UNSUPPORTED, "frames are binary").await;
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(error)) => {
                    debug!(%error, "websocket error, closing");
                    break;
                }
            },
            frame = outbox.recv() => match frame {
                Some(frame) => {
                    let bytes = frame.encode_to_vec();
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    close(&mut socket, close_code::NORMAL, "").await;
                    break;
                }
            },
            () = shut_down(&mut shutdown) => {
                close(&mut socket, close_code::AWAY, "the simulator is shutting down").await;
                break;
            }
        }
    }
    // Let the logic see the device gone (and any send it waits on fail).
    drop(frames);
    drop(outbox);
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Resolves when the server shuts down; never without a shutdown signal.
async fn shut_down(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(receiver) => {
            if receiver.wait_for(|stopping| *stopping).await.is_err() {
                // The server is gone without saying so: treat it as shutting down.
            }
        }
        None => std::future::pending().await,
    }
}
