//! A WebSocket as WhatsApp's transport: the `WA` header the client opens with, frames
//! of a 3-byte length and a payload, and, once the handshake is done, each frame's
//! payload encrypted with the Noise transport keys (a counter as nonce per direction)
//! around one binary node.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::BytesMut;
use wacore_binary::Node;
use wacore_binary::consts::WA_CONN_HEADER;
use wacore_noise::NoiseCipher;
use wacore_noise::framing::{FrameDecoder, encode_frame};

/// Why the connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client sent no frame in time")]
    Timeout,
    #[error("the client did not open with WhatsApp's header")]
    NoHeader,
    #[error("a frame does not decrypt or decode: {0}")]
    Corrupt(String),
    #[error("websocket: {0}")]
    Socket(#[from] axum::Error),
}

/// Frames over a WebSocket.
pub(crate) struct Wire {
    socket: WebSocket,
    decoder: FrameDecoder,
    /// Bytes of the connection header not yet seen.
    header: Vec<u8>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").finish_non_exhaustive()
    }
}

impl Wire {
    pub(crate) fn new(socket: WebSocket) -> Wire {
        Wire {
            socket,
            decoder: FrameDecoder::new(),
            header: WA_CONN_HEADER.to_vec(),
        }
    }

    /// The next frame's payload, within `deadline`.
    pub(crate) async fn frame_within(&mut self, deadline: Duration) -> Result<BytesMut, WireError> {
        tokio::time::timeout(deadline, self.frame())
            .await
            .map_err(|_| WireError::Timeout)?
    }

    /// The next frame's payload. Cancel-safe: what was read stays in the decoder.
    pub(crate) async fn frame(&mut self) -> Result<BytesMut, WireError> {
        loop {
            if let Some(frame) = self.decoder.decode_frame() {
                return Ok(frame);
            }
            let data = match self.socket.recv().await {
                None | Some(Ok(Message::Close(_))) => return Err(WireError::Closed),
                Some(Err(error)) => return Err(WireError::Socket(error)),
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(_)) => continue,
            };
            let mut data: &[u8] = &data;
            if !self.header.is_empty() {
                let n = self.header.len().min(data.len());
                if data[..n] != self.header[..n] {
                    return Err(WireError::NoHeader);
                }
                self.header.drain(..n);
                data = &data[n..];
            }
            self.decoder.feed(data);
        }
    }

    pub(crate) async fn send_frame(&mut self, payload: &[u8]) -> Result<(), WireError> {
        let framed = encode_frame(payload, None).map_err(|e| WireError::Corrupt(e.to_string()))?;
        self.socket.send(Message::Binary(framed.into())).await?;
        Ok(())
    }

    /// Closes the WebSocket (the client sees its transport disconnect).
    pub(crate) async fn close(mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
    }
}

/// The encrypted transport after the handshake.
pub(crate) struct Secure {
    pub(crate) wire: Wire,
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("read_counter", &self.read_counter)
            .field("write_counter", &self.write_counter)
            .finish_non_exhaustive()
    }
}

impl Secure {
    pub(crate) fn new(wire: Wire, read: NoiseCipher, write: NoiseCipher) -> Secure {
        Secure {
            wire,
            read,
            write,
            read_counter: 0,
            write_counter: 0,
        }
    }

    pub(crate) async fn send(&mut self, node: &Node) -> Result<(), WireError> {
        tracing::trace!(?node, "send");
        let mut plain =
            wacore_binary::marshal(node).map_err(|e| WireError::Corrupt(e.to_string()))?;
        self.write
            .encrypt_in_place_with_counter(self.write_counter, &mut plain)
            .map_err(|e| WireError::Corrupt(e.to_string()))?;
        self.write_counter += 1;
        self.wire.send_frame(&plain).await
    }

    /// Decrypts and decodes a frame read from [`Wire::frame`].
    pub(crate) fn open(&mut self, mut frame: BytesMut) -> Result<Node, WireError> {
        self.read
            .decrypt_in_place_with_counter(self.read_counter, &mut frame)
            .map_err(|e| WireError::Corrupt(e.to_string()))?;
        self.read_counter += 1;
        let plain =
            wacore_binary::util::unpack(&frame).map_err(|e| WireError::Corrupt(e.to_string()))?;
        let node = wacore_binary::marshal::unmarshal_ref(&plain)
            .map_err(|e| WireError::Corrupt(e.to_string()))?
            .to_owned();
        tracing::trace!(?node, "received");
        Ok(node)
    }
}
