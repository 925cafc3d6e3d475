//! Where a connection's frames come from and go to. The connection logic is written
//! once against [`Port`]; an in-process connection plugs in its two channels
//! ([`ChannelPort`]), a WebSocket plugs in the socket itself (`socket::SocketPort`), so
//! the socket path needs no extra channels or tasks.

use std::future::Future;

use tokio::sync::mpsc;
use wafleet_protocol::sim::{ClientFrame, ServerFrame};

/// A device's end of the wire, as the connection logic sees it.
pub(crate) trait Port: Send {
    /// The device's next frame; `None` once it is gone or spoke nonsense. Must be
    /// cancel-safe: it is raced against timers and commands.
    fn recv(&mut self) -> impl Future<Output = Option<ClientFrame>> + Send;

    /// Give the device a frame; false once it is gone.
    fn send(&mut self, frame: ServerFrame) -> impl Future<Output = bool> + Send;
}

/// The network's end of an in-process connection.
#[derive(Debug)]
pub(crate) struct ChannelPort {
    pub(crate) frames: mpsc::Receiver<ClientFrame>,
    pub(crate) outbox: mpsc::Sender<ServerFrame>,
}

impl Port for ChannelPort {
    async fn recv(&mut self) -> Option<ClientFrame> {
        self.frames.recv().await
    }

    async fn send(&mut self, frame: ServerFrame) -> bool {
        self.outbox.send(frame).await.is_ok()
    }
}
