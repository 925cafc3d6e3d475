//! The device side of the protocol, as a test plays it: an X25519 identity, the
//! handshake, and frames over either an in-process connection or a real WebSocket.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};
use wafleet_protocol::{
    sim::{
        ClientFrame, Hello, InboundAck, MediaInfo, PairCodeRequest, Proof, QrCode, ReceiptAck,
        SendMessage, ServerFrame, client_frame::Kind as Out, server_frame::Kind as In,
    },
    sim_proof_mac,
};
use wafleet_sim::{Network, SimConnection};
use x25519_dalek::{PublicKey, StaticSecret};

/// Longer than any timer the tests wait through (the 30 s QR rotation), so that with
/// paused time the awaited frame always comes first.
const FRAME_LIMIT: Duration = Duration::from_secs(120);
/// Bound on messages skipped while waiting for one frame (pings and the like).
const SKIP_LIMIT: usize = 100;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the device reaches the network.
pub(crate) enum Transport {
    InProcess(SimConnection),
    Socket(Box<Socket>),
    /// Hung up, waiting for a reconnect.
    Closed,
}

impl Transport {
    pub(crate) fn attach(network: &Network) -> Transport {
        Transport::InProcess(network.attach())
    }

    pub(crate) async fn dial(addr: SocketAddr) -> Transport {
        let (socket, _) = connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("websocket connects");
        Transport::Socket(Box::new(socket))
    }

    async fn send(&mut self, kind: Out) {
        let frame = ClientFrame { kind: Some(kind) };
        match self {
            Transport::InProcess(conn) => {
                conn.tx.send(frame).await.expect("the sim takes the frame")
            }
            Transport::Socket(socket) => {
                let bytes = frame.encode_to_vec();
                socket
                    .send(Message::Binary(bytes.into()))
                    .await
                    .expect("the socket takes the frame");
            }
            Transport::Closed => panic!("send on a closed connection"),
        }
    }

    /// Bytes that are not a frame (WebSocket only).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        let Transport::Socket(socket) = self else {
            panic!("raw bytes need a socket");
        };
        socket
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("the socket takes the bytes");
    }

    /// The next frame from the network; `None` once it closed the connection.
    async fn recv(&mut self) -> Option<In> {
        let next = async {
            match self {
                Transport::InProcess(conn) => conn.rx.recv().await,
                Transport::Socket(socket) => {
                    for _ in 0..SKIP_LIMIT {
                        match socket.next().await {
                            Some(Ok(Message::Binary(bytes))) => {
                                return Some(ServerFrame::decode(bytes).expect("a server frame"));
                            }
                            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                            Some(Ok(_)) => continue,
                        }
                    }
                    panic!("no frame among {SKIP_LIMIT} messages");
                }
                Transport::Closed => panic!("receive on a closed connection"),
            }
        };
        let frame = tokio::time::timeout(FRAME_LIMIT, next)
            .await
            .expect("a frame or a close in time");
        frame.map(|frame| frame.kind.expect("a frame with a kind"))
    }
}

/// A device: its identity key, its link once paired, and its current connection.
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) identity: StaticSecret,
    pub(crate) link_id: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) transport: Transport,
}

impl Device {
    pub(crate) fn new(id: &str, transport: Transport) -> Device {
        Device {
            id: id.to_owned(),
            identity: StaticSecret::random(),
            link_id: None,
            phone: None,
            transport,
        }
    }

    /// Connect a new device in process, show its QR code, have `phone` scan it.
    pub(crate) async fn paired(network: &Network, id: &str, phone: &str) -> Device {
        let mut device = Device::new(id, Transport::attach(network));
        let qr = device.start_pairing().await;
        network.scan(&qr.code, phone).expect("the scan pairs");
        device.expect_paired().await;
        device
    }

    pub(crate) fn identity_public(&self) -> Vec<u8> {
        PublicKey::from(&self.identity).to_bytes().to_vec()
    }

    pub(crate) async fn send(&mut self, kind: Out) {
        self.transport.send(kind).await;
    }

    pub(crate) async fn next(&mut self) -> In {
        self.transport.recv().await.expect("a frame, not a close")
    }

    pub(crate) async fn expect_closed(&mut self) {
        if let Some(frame) = self.transport.recv().await {
            panic!("expected the sim to close, got {frame:?}");
        }
    }

    /// `Hello` without link: the first QR code.
    pub(crate) async fn start_pairing(&mut self) -> QrCode {
        let hello = Hello {
            device_id: self.id.clone(),
            link_id: String::new(),
            identity_public: self.identity_public(),
        };
        self.send(Out::Hello(hello)).await;
        match self.next().await {
            In::Qr(qr) => qr,
            other => panic!("expected a QR code, got {other:?}"),
        }
    }

    pub(crate) async fn request_pair_code(&mut self, phone: &str) {
        let request = PairCodeRequest {
            phone: phone.to_owned(),
        };
        self.send(Out::PairCodeRequest(request)).await;
    }

    /// Wait for `Paired` and keep the link.
    pub(crate) async fn expect_paired(&mut self) {
        match self.next().await {
            In::Paired(paired) => {
                self.link_id = Some(paired.link_id);
                self.phone = Some(paired.phone);
            }
            other => panic!("expected Paired, got {other:?}"),
        }
    }

    /// `Hello` with the link, answer the challenge with this device's key; returns the
    /// frame after the proof (`Welcome` or `Refused`).
    pub(crate) async fn resume(&mut self) -> In {
        let hello = Hello {
            device_id: self.id.clone(),
            link_id: self.link_id.clone().expect("a paired device"),
            identity_public: self.identity_public(),
        };
        self.send(Out::Hello(hello)).await;
        let challenge = match self.next().await {
            In::Challenge(challenge) => challenge,
            other => return other,
        };
        let ephemeral: [u8; 32] = challenge
            .ephemeral_public
            .try_into()
            .expect("a 32-byte key");
        let shared = self.identity.diffie_hellman(&PublicKey::from(ephemeral));
        let mac = sim_proof_mac(shared.as_bytes(), &challenge.nonce).to_vec();
        self.send(Out::Proof(Proof { mac })).await;
        self.next().await
    }

    /// Resume and expect `Welcome`; returns the phone it names.
    pub(crate) async fn resume_ok(&mut self) -> String {
        match self.resume().await {
            In::Welcome(welcome) => welcome.phone,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Switch to a new connection, closing the old one first.
    pub(crate) async fn reconnect(&mut self, transport: Transport) {
        let old = std::mem::replace(&mut self.transport, transport);
        shut(old).await;
    }

    /// Close the connection (until a reconnect).
    pub(crate) async fn hang_up(&mut self) {
        let old = std::mem::replace(&mut self.transport, Transport::Closed);
        shut(old).await;
    }

    pub(crate) async fn send_text(&mut self, message_id: &str, to_phone: &str, text: &str) {
        self.send_media(message_id, to_phone, text, None).await;
    }

    /// A message with `media` (uploaded first), `text` its caption.
    pub(crate) async fn send_media(
        &mut self,
        message_id: &str,
        to_phone: &str,
        text: &str,
        media: Option<MediaInfo>,
    ) {
        let message = SendMessage {
            message_id: message_id.to_owned(),
            to_phone: to_phone.to_owned(),
            text: text.to_owned(),
            media,
            mentions: Vec::new(),
            reply_to: None,
        };
        self.send(Out::Send(message)).await;
    }

    /// The device stored `status` of a message it sent.
    pub(crate) async fn ack_receipt(
        &mut self,
        message_id: &str,
        status: wafleet_protocol::sim::receipt::Status,
    ) {
        let ack = ReceiptAck {
            message_id: message_id.to_owned(),
            status: status as i32,
        };
        self.send(Out::ReceiptAck(ack)).await;
    }

    pub(crate) async fn ack(&mut self, message_id: &str) {
        let ack = InboundAck {
            message_id: message_id.to_owned(),
        };
        self.send(Out::InboundAck(ack)).await;
    }
}

/// Close our side; in process, wait until the sim has closed its side too.
async fn shut(transport: Transport) {
    match transport {
        Transport::InProcess(SimConnection { tx, mut rx }) => {
            drop(tx);
            for _ in 0..SKIP_LIMIT {
                if rx.recv().await.is_none() {
                    return;
                }
            }
            panic!("the sim kept sending after the device hung up");
        }
        Transport::Socket(mut socket) => {
            let _ = Socket::close(&mut socket, None).await;
        }
        Transport::Closed => {}
    }
}
