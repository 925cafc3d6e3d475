//! Dials an external simulator (`wafleet sim`) over WebSocket: one connection per
//! device session, one prost-encoded frame per binary message. A dial that fails for
//! want of file descriptors is reported once per episode ([`open_files`]), not once
//! per device.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::debug;
use wafleet_protocol::sim::{ClientFrame, ServerFrame};

use super::{FramePipe, LinkError, SimBlob, SimDialer};
use crate::media::ByteStream;
use crate::open_files;

/// Frames buffered per direction and connection.
const PIPE_CAPACITY: usize = 16;
/// The socket's read buffer. Frames are small; tungstenite's default (128 KiB) is
/// allocated per connection and zero-filled on every read, which made a takeover of
/// thousands of devices spend a third of its CPU clearing memory. It grows for the rare
/// larger frame.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// The largest frame accepted from the simulator (a text message is far smaller).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How each connection is configured: a small read buffer, every frame written at
/// once (no write buffering, no Nagle delay on the small frames of receipts).
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Connects to `ws://HOST:PORT/ws`, and reaches the same simulator's media servers
/// over HTTP (`http://HOST:PORT/sim/media`; `https` for `wss`).
#[derive(Debug, Clone)]
pub struct WsDialer {
    url: String,
    /// `http://HOST:PORT` of the simulator.
    http_base: String,
    http: reqwest::Client,
}

/// How long connecting to the simulator's media servers may take, and how long a
/// media transfer may go without a byte.
const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MEDIA_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl WsDialer {
    pub fn new(url: impl Into<String>) -> WsDialer {
        let url = url.into();
        let http_base = http_base(&url);
        let http = reqwest::Client::builder()
            .connect_timeout(MEDIA_CONNECT_TIMEOUT)
            .read_timeout(MEDIA_READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        WsDialer {
            url,
            http_base,
            http,
        }
    }
}

/// `ws://HOST:PORT/PATH` → `http://HOST:PORT` (`wss` → `https`).
fn http_base(ws_url: &str) -> String {
    let (scheme, rest) = match ws_url.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some((_, rest)) => ("http", rest),
        None => ("http", ws_url),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

fn media_error(doing: &str, error: impl std::fmt::Display) -> LinkError {
    LinkError::Connect(format!("{doing} the simulator's media servers: {error}"))
}

#[async_trait]
impl SimDialer for WsDialer {
    async fn dial(&self, _device_id: &str) -> Result<FramePipe, LinkError> {
        let connecting = tokio_tungstenite::connect_async_with_config(
            self.url.as_str(),
            Some(socket_config()),
            true,
        );
        let (socket, _) = match connecting.await {
            Ok(connected) => {
                open_files::available();
                connected
            }
            Err(error) => {
                if let WsError::Io(io) = &error
                    && open_files::is_out_of_files(io)
                {
                    open_files::ran_out("dialing the simulator", io);
                }
                return Err(LinkError::Connect(error.to_string()));
            }
        };
        let (mut sink, mut stream) = socket.split();
        let (client_tx, mut client_rx) = mpsc::channel::<ClientFrame>(PIPE_CAPACITY);
        let (server_tx, server_rx) = mpsc::channel::<ServerFrame>(PIPE_CAPACITY);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    outgoing = client_rx.recv() => {
                        let Some(frame) = outgoing else { break };
                        if sink.send(Message::Binary(frame.encode_to_vec().into())).await.is_err() {
                            break;
                        }
                    }
                    incoming = stream.next() => {
                        match incoming {
                            Some(Ok(Message::Binary(bytes))) => match ServerFrame::decode(bytes) {
                                Ok(frame) => {
                                    if server_tx.send(frame).await.is_err() {
                                        break;
                                    }
                                }
                                Err(error) => {
                                    debug!(%error, "undecodable frame from simulator");
                                    break;
                                }
                            },
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                            Some(Ok(_)) => {}
                        }
                    }
                }
            }
            let _ = sink.close().await;
        });
        Ok(FramePipe {
            tx: client_tx,
            rx: server_rx,
        })
    }

    async fn upload_media(
        &self,
        _device_id: &str,
        mime: &str,
        body: ByteStream,
    ) -> Result<SimBlob, LinkError> {
        let response = self
            .http
            .post(format!("{}/sim/media", self.http_base))
            .header(reqwest::header::CONTENT_TYPE, mime)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| media_error("uploading to", e))?;
        if !response.status().is_success() {
            return Err(media_error("uploading to", response.status()));
        }
        response
            .json::<SimBlob>()
            .await
            .map_err(|e| media_error("reading the answer of", e))
    }

    async fn download_media(
        &self,
        _device_id: &str,
        handle: &str,
    ) -> Result<ByteStream, LinkError> {
        let response = self
            .http
            .get(format!("{}/sim/media/{handle}", self.http_base))
            .send()
            .await
            .map_err(|e| media_error("downloading from", e))?;
        if !response.status().is_success() {
            return Err(media_error("downloading from", response.status()));
        }
        Ok(response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other))
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_media_servers_are_the_simulator_s_http_side() {
        assert_eq!(http_base("ws://127.0.0.1:8090/ws"), "http://127.0.0.1:8090");
        assert_eq!(http_base("wss://sim.example/ws"), "https://sim.example");
    }
}
