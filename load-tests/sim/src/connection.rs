//! One device's connection to the network, and the task that serves it.
//!
//! The same logic serves in-process connections ([`Network::attach`]) and WebSocket ones
//! (the socket only turns frames into bytes and back), through a [`Port`]. It is a
//! small state machine:
//!
//! ```text
//! AwaitHello ──Hello{link_id: ""}──▶ Pairing ──QR scanned / pairing code entered──▶ Ready
//!      └──────Hello{link_id}───────▶ Challenged ──Proof matches──────────────────▶ Ready
//! ```
//!
//! A frame out of place is answered with `Refused{PROTOCOL}`, and every `Refused` closes
//! the connection. Timers run only before `Ready`: the QR rotation while pairing, and a
//! 30 s limit on waiting for `Hello` or `Proof`. A ready connection costs its task, its
//! port (two small channels, or the socket) and a command queue, nothing more.
//!
//! The rest of the network reaches a connection through its [`ConnHandle`]: an
//! unbounded queue of [`Command`]s (pushing never blocks while the state lock is held;
//! only control-API actions push, so the queue stays short).

use std::time::Duration;

use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};
use tracing::debug;
use wafleet_protocol::sim::{CheckNumbers, MarkRead, NumberChecks};
use wafleet_protocol::{
    sim::{
        Banned, Challenge, ClientFrame, Error as ErrorFrame, Hello, InboundAck, LoggedOut,
        PairCode, PairCodeRequest, Paired, Proof, QrCode, Receipt, Refused, Replaced, SendMessage,
        ServerFrame, Welcome, client_frame, receipt, refused::Reason, server_frame::Kind,
    },
    sim_proof_mac,
};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{Network, clock, ids::random_bytes, phone, port::Port};

/// Capacity of each frame channel of a connection (device → sim and sim → device).
pub(crate) const CHANNEL_CAPACITY: usize = 16;
/// How long a connection may wait for `Hello`, or for `Proof` after a `Challenge`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A device's end of an in-process connection to the network.
#[derive(Debug)]
pub struct SimConnection {
    /// Frames to the network. Dropping it closes the connection.
    pub tx: mpsc::Sender<ClientFrame>,
    /// Frames from the network; `None` once the network closed the connection.
    pub rx: mpsc::Receiver<ServerFrame>,
}

/// Identifies a connection for the life of the process.
pub(crate) type ConnId = u64;

/// How the network reaches one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) id: ConnId,
    commands: mpsc::UnboundedSender<Command>,
}

impl ConnHandle {
    /// A handle and the queue its commands arrive on.
    pub(crate) fn channel(id: ConnId) -> (ConnHandle, mpsc::UnboundedReceiver<Command>) {
        let (commands, queue) = mpsc::unbounded_channel();
        (ConnHandle { id, commands }, queue)
    }

    /// Push a command; false if the connection is gone.
    pub(crate) fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }
}

/// What the rest of the network tells a connection. Payloads are boxed so that the
/// queue of an idle connection stays small.
#[derive(Debug)]
pub(crate) enum Command {
    /// A phone scanned this connection's QR code or entered its pairing code.
    Paired(Box<Paired>),
    /// Pass a frame on to a ready device (inbound message, read receipt, ban).
    Frame(Box<Kind>),
    /// The phone unlinked this device: say so and close.
    LoggedOut,
    /// The link resumed on another connection: say so and close.
    Replaced,
}

/// Whether the connection goes on after handling something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
enum Flow {
    Continue,
    Close,
}

/// Where a connection is in its life.
enum Stage {
    AwaitHello {
        deadline: Instant,
    },
    Pairing {
        /// When the QR code shown now expires.
        qr_expires: Instant,
        /// How many QR codes this connection was shown.
        qr_issued: u32,
        /// When the pairing code handed out, if any, expires: the connection waits for
        /// it even after the last QR code expired.
        pair_code_expires: Option<Instant>,
    },
    Challenged {
        deadline: Instant,
        link_id: String,
        nonce: [u8; 32],
        /// This connection's ephemeral X25519 secret.
        ephemeral: StaticSecret,
        /// The key recorded at pairing, which the proof must match.
        identity_public: [u8; 32],
    },
    Ready {
        link_id: String,
    },
}

/// Serve one connection until either side closes it.
pub(crate) async fn run<P: Port>(network: Network, port: &mut P) {
    let mut conn = Connection::new(network, port);
    debug!(conn = conn.id, "connection open");
    loop {
        let deadline = conn.deadline();
        let flow = tokio::select! {
            biased;
            Some(command) = conn.commands.recv() => conn.on_command(command).await,
            frame = conn.port.recv() => match frame {
                Some(frame) => conn.on_frame(frame).await,
                None => Flow::Close,
            },
            () = sleep_until_some(deadline) => conn.on_deadline().await,
        };
        if flow == Flow::Close {
            break;
        }
    }
    debug!(conn = conn.id, device_id = %conn.device_id, "connection closed");
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The state of one connection. Dropping it releases what the network holds for it.
struct Connection<'p, P> {
    network: Network,
    id: ConnId,
    /// The device id from `Hello`, for logs.
    device_id: String,
    /// Given to the network so that it can reach this connection.
    handle: ConnHandle,
    commands: mpsc::UnboundedReceiver<Command>,
    port: &'p mut P,
    stage: Stage,
}

impl<'p, P: Port> Connection<'p, P> {
    fn new(network: Network, port: &'p mut P) -> Self {
        let id = network.connection_opened();
        let (handle, commands) = ConnHandle::channel(id);
        Connection {
            network,
            id,
            device_id: String::new(),
            handle,
            commands,
            port,
            stage: Stage::AwaitHello {
                deadline: Instant::now() + HANDSHAKE_TIMEOUT,
            },
        }
    }

    /// When [`on_deadline`](Self::on_deadline) must run; `None` once ready.
    fn deadline(&self) -> Option<Instant> {
        match &self.stage {
            Stage::AwaitHello { deadline } | Stage::Challenged { deadline, .. } => Some(*deadline),
            Stage::Pairing {
                qr_expires,
                qr_issued,
                pair_code_expires,
            } => {
                if *qr_issued < self.network.config().qr_codes {
                    Some(*qr_expires)
                } else {
                    Some((*qr_expires).max(pair_code_expires.unwrap_or(*qr_expires)))
                }
            }
            Stage::Ready { .. } => None,
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Flow {
        use client_frame::Kind as In;
        match (frame.kind, self.stage_name()) {
            (Some(In::Hello(hello)), "awaiting hello") => self.on_hello(hello).await,
            (Some(In::Proof(proof)), "challenged") => self.on_proof(proof).await,
            (Some(In::PairCodeRequest(request)), "pairing") => {
                self.on_pair_code_request(request).await
            }
            (Some(In::Send(message)), "ready") => self.on_send(message).await,
            (Some(In::InboundAck(ack)), "ready") => self.on_ack(ack),
            (Some(In::Logout(_)), "ready") => self.on_logout().await,
            (Some(In::CheckNumbers(check)), "ready") => self.on_check_numbers(check).await,
            (Some(In::MarkRead(read)), "ready") => self.on_mark_read(read),
            (Some(In::Group(request)), "ready") => self.on_group(request).await,
            (Some(In::ReceiptAck(ack)), "ready") => {
                if let Stage::Ready { link_id } = &self.stage {
                    self.network
                        .state()
                        .ack_receipt(link_id, &ack.message_id, ack.status);
                }
                Flow::Continue
            }
            (kind, stage) => {
                let detail = format!(
                    "{} is not expected while {stage}",
                    frame_name(kind.as_ref())
                );
                self.refuse(Reason::Protocol, &detail).await
            }
        }
    }

    async fn on_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Paired(paired) => {
                if !matches!(self.stage, Stage::Pairing { .. }) {
                    return Flow::Continue;
                }
                let link_id = paired.link_id.clone();
                debug!(conn = self.id, device_id = %self.device_id, %link_id, "paired");
                self.stage = Stage::Ready { link_id };
                self.send(Kind::Paired(*paired)).await
            }
            Command::Frame(kind) if matches!(self.stage, Stage::Ready { .. }) => {
                self.send(*kind).await
            }
            Command::Frame(_) => Flow::Continue,
            Command::LoggedOut => {
                let _ = self.send(Kind::LoggedOut(LoggedOut {})).await;
                Flow::Close
            }
            Command::Replaced => {
                let _ = self.send(Kind::Replaced(Replaced {})).await;
                Flow::Close
            }
        }
    }

    async fn on_deadline(&mut self) -> Flow {
        match self.stage {
            Stage::AwaitHello { .. } | Stage::Challenged { .. } => {
                self.refuse(Reason::Protocol, "handshake timed out").await
            }
            Stage::Pairing { qr_issued, .. } if qr_issued < self.network.config().qr_codes => {
                self.rotate_qr().await
            }
            Stage::Pairing { .. } => {
                let still_pairing = self.network.state().end_pairing(self.id);
                if still_pairing {
                    self.refuse(Reason::QrTimeout, "no qr code was scanned in time")
                        .await
                } else {
                    Flow::Continue // paired meanwhile: the Paired command is queued
                }
            }
            Stage::Ready { .. } => Flow::Continue,
        }
    }

    async fn on_hello(&mut self, hello: Hello) -> Flow {
        self.device_id = hello.device_id.chars().take(128).collect();
        if hello.link_id.is_empty() {
            self.start_pairing(&hello.identity_public).await
        } else {
            self.challenge(hello.link_id).await
        }
    }

    async fn start_pairing(&mut self, identity_public: &[u8]) -> Flow {
        let Some(identity_public) = usable_key(identity_public) else {
            let detail = "identity_public must be a 32-byte x25519 public key";
            return self.refuse(Reason::Protocol, detail).await;
        };
        let ttl = self.network.config().qr_ttl;
        let issued = self.network.state().start_pairing(
            self.handle.clone(),
            self.device_id.clone(),
            identity_public,
            ttl,
            Instant::now(),
        );
        debug!(conn = self.id, device_id = %self.device_id, "pairing started");
        self.stage = Stage::Pairing {
            qr_expires: issued.expires,
            qr_issued: 1,
            pair_code_expires: None,
        };
        let qr = QrCode {
            code: issued.code,
            expires_at_ms: clock::ms_after(ttl),
        };
        self.send(Kind::Qr(qr)).await
    }

    async fn rotate_qr(&mut self) -> Flow {
        let ttl = self.network.config().qr_ttl;
        let now = Instant::now();
        let issued = self.network.state().rotate_qr(self.id, ttl, now);
        let Stage::Pairing {
            qr_expires,
            qr_issued,
            ..
        } = &mut self.stage
        else {
            return Flow::Continue;
        };
        let Some(issued) = issued else {
            // Paired meanwhile: the Paired command is queued. Do not spin on the deadline.
            *qr_expires = now + ttl;
            return Flow::Continue;
        };
        *qr_expires = issued.expires;
        *qr_issued += 1;
        let qr = QrCode {
            code: issued.code,
            expires_at_ms: clock::ms_after(ttl),
        };
        self.send(Kind::Qr(qr)).await
    }

    async fn on_pair_code_request(&mut self, request: PairCodeRequest) -> Flow {
        if let Err(error) = phone::validate(&request.phone) {
            let message = error.to_string();
            return self.send(Kind::Error(ErrorFrame { message })).await;
        }
        let ttl = self.network.config().pair_code_ttl;
        let issued =
            self.network
                .state()
                .issue_pair_code(self.id, request.phone, ttl, Instant::now());
        let Some(issued) = issued else {
            return Flow::Continue; // paired meanwhile
        };
        if let Stage::Pairing {
            pair_code_expires, ..
        } = &mut self.stage
        {
            *pair_code_expires = Some(issued.expires);
        }
        let code = PairCode {
            code: issued.code,
            expires_at_ms: clock::ms_after(ttl),
        };
        self.send(Kind::PairCode(code)).await
    }

    async fn challenge(&mut self, link_id: String) -> Flow {
        let identity = self.network.state().identity_of(&link_id);
        let identity_public = match identity {
            Ok(key) => key,
            Err(refusal) => return self.refuse(refusal.reason, refusal.detail).await,
        };
        let nonce = random_bytes::<32>();
        let ephemeral = StaticSecret::from(random_bytes::<32>());
        let challenge = Challenge {
            nonce: nonce.to_vec(),
            ephemeral_public: PublicKey::from(&ephemeral).to_bytes().to_vec(),
        };
        self.stage = Stage::Challenged {
            deadline: Instant::now() + HANDSHAKE_TIMEOUT,
            link_id,
            nonce,
            ephemeral,
            identity_public,
        };
        self.send(Kind::Challenge(challenge)).await
    }

    async fn on_proof(&mut self, proof: Proof) -> Flow {
        let Stage::Challenged {
            link_id,
            nonce,
            ephemeral,
            identity_public,
            ..
        } = &self.stage
        else {
            return Flow::Continue;
        };
        if !proof_matches(ephemeral, identity_public, nonce, &proof.mac) {
            let detail = "the proof does not match the key recorded at pairing";
            return self.refuse(Reason::BadProof, detail).await;
        }
        let link_id = link_id.clone();
        let resumed = self.network.state().resume(&link_id, self.handle.clone());
        let resumed = match resumed {
            Ok(resumed) => resumed,
            Err(refusal) => return self.refuse(refusal.reason, refusal.detail).await,
        };
        debug!(conn = self.id, device_id = %self.device_id, %link_id, "resumed");
        self.stage = Stage::Ready { link_id };
        let mut frames = vec![Kind::Welcome(Welcome {
            phone: resumed.phone,
        })];
        if let Some(until_ms) = resumed.banned_until_ms {
            frames.push(Kind::Banned(Banned { until_ms }));
        }
        frames.extend(resumed.pending.into_iter().map(Kind::Inbound));
        frames.extend(resumed.receipts.into_iter().map(Kind::Receipt));
        for frame in frames {
            if self.send(frame).await == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    async fn on_send(&mut self, message: SendMessage) -> Flow {
        let Stage::Ready { link_id } = &self.stage else {
            return Flow::Continue;
        };
        if message.message_id.is_empty() {
            let message = "send without message_id ignored".to_owned();
            return self.send(Kind::Error(ErrorFrame { message })).await;
        }
        if let Some(media) = &message.media
            && let Some(error) = self.network.check_media(media).await
        {
            let failed = Receipt {
                message_id: message.message_id,
                status: receipt::Status::Failed as i32,
                error: error.to_owned(),
                at_ms: clock::now_ms(),
            };
            return self.send(Kind::Receipt(failed)).await;
        }
        let receipts =
            self.network
                .state()
                .send_message(link_id, self.id, &message, clock::now_ms());
        // Stale: replaced or unlinked meanwhile; the command queue holds the news.
        let Ok(receipts) = receipts else {
            return Flow::Continue;
        };
        for receipt in receipts {
            if self.send(Kind::Receipt(receipt)).await == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    async fn on_logout(&mut self) -> Flow {
        if let Stage::Ready { link_id } = &self.stage {
            self.network.state().logout(link_id);
        }
        let _ = self.send(Kind::LoggedOut(LoggedOut {})).await;
        Flow::Close
    }

    async fn on_check_numbers(&mut self, check: CheckNumbers) -> Flow {
        let results = self.network.state().check_numbers(&check.phones);
        let answer = NumberChecks {
            request_id: check.request_id,
            results,
        };
        self.send(Kind::NumberChecks(answer)).await
    }

    async fn on_group(&mut self, request: wafleet_protocol::sim::GroupRequest) -> Flow {
        let Stage::Ready { link_id } = &self.stage else {
            return Flow::Continue;
        };
        let answer = self.network.state().group_request(link_id, request);
        self.send(Kind::Group(answer)).await
    }

    fn on_mark_read(&mut self, read: MarkRead) -> Flow {
        if let Stage::Ready { link_id } = &self.stage {
            self.network.state().mark_read(
                link_id,
                &read.peer_phone,
                read.group_id.as_deref(),
                &read.message_ids,
            );
        }
        Flow::Continue
    }

    fn on_ack(&mut self, ack: InboundAck) -> Flow {
        if let Stage::Ready { link_id } = &self.stage {
            self.network.state().ack_inbound(link_id, &ack.message_id);
        }
        Flow::Continue
    }

    /// Send `Refused` (counted) and close.
    async fn refuse(&mut self, reason: Reason, detail: &str) -> Flow {
        self.network.state().count_refusal();
        debug!(
            conn = self.id,
            device_id = %self.device_id,
            reason = reason.as_str_name(),
            detail,
            "handshake refused"
        );
        let refused = Refused {
            reason: reason as i32,
            detail: detail.to_owned(),
        };
        let _ = self.send(Kind::Refused(refused)).await;
        Flow::Close
    }

    /// Send a frame to the device; `Close` if the device is gone.
    async fn send(&mut self, kind: Kind) -> Flow {
        let frame = ServerFrame { kind: Some(kind) };
        if self.port.send(frame).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    fn stage_name(&self) -> &'static str {
        match self.stage {
            Stage::AwaitHello { .. } => "awaiting hello",
            Stage::Pairing { .. } => "pairing",
            Stage::Challenged { .. } => "challenged",
            Stage::Ready { .. } => "ready",
        }
    }
}

impl<P> Drop for Connection<'_, P> {
    fn drop(&mut self) {
        let mut state = self.network.state();
        let mut link_id = match &mut self.stage {
            Stage::Ready { link_id } => Some(std::mem::take(link_id)),
            _ => None,
        };
        // Paired is pushed under the state lock, so with the lock held nothing new can
        // arrive: a Paired still queued means this connection became its link's.
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Paired(paired) = command {
                link_id = Some(paired.link_id);
            }
        }
        state.disconnect(self.id, link_id.as_deref());
        drop(state);
        self.network.connection_closed();
    }
}

fn frame_name(kind: Option<&client_frame::Kind>) -> &'static str {
    use client_frame::Kind as In;
    match kind {
        None => "an empty frame",
        Some(In::Hello(_)) => "Hello",
        Some(In::Proof(_)) => "Proof",
        Some(In::PairCodeRequest(_)) => "PairCodeRequest",
        Some(In::Send(_)) => "SendMessage",
        Some(In::InboundAck(_)) => "InboundAck",
        Some(In::Logout(_)) => "Logout",
        Some(In::ReceiptAck(_)) => "ReceiptAck",
        Some(In::CheckNumbers(_)) => "CheckNumbers",
        Some(In::MarkRead(_)) => "MarkRead",
        Some(In::Group(_)) => "GroupRequest",
    }
}

/// The key, if it is 32 bytes and a point that gives a real shared secret (not one of
/// the low-order points that make every proof trivial).
fn usable_key(bytes: &[u8]) -> Option<[u8; 32]> {
    let key = <[u8; 32]>::try_from(bytes).ok()?;
    let probe = StaticSecret::from(random_bytes::<32>());
    probe
        .diffie_hellman(&PublicKey::from(key))
        .was_contributory()
        .then_some(key)
}

/// Check a device's proof: `sim_proof_mac(X25519(ephemeral, identity), nonce)`,
/// compared in constant time.
fn proof_matches(
    ephemeral: &StaticSecret,
    identity_public: &[u8; 32],
    nonce: &[u8; 32],
    mac: &[u8],
) -> bool {
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*identity_public));
    if !shared.was_contributory() {
        return false;
    }
    let expected = sim_proof_mac(shared.as_bytes(), nonce);
    mac.len() == expected.len()
        && expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_from_the_device_side_matches() {
        let identity = StaticSecret::from(random_bytes::<32>());
        let identity_public = PublicKey::from(&identity).to_bytes();
        let ephemeral = StaticSecret::from(random_bytes::<32>());
        let nonce = random_bytes::<32>();
        // What the device computes: X25519(identity_secret, ephemeral_public).
        let shared = identity.diffie_hellman(&PublicKey::from(&ephemeral));
        let mac = sim_proof_mac(shared.as_bytes(), &nonce);
        assert!(proof_matches(&ephemeral, &identity_public, &nonce, &mac));

        let mut wrong = mac;
        wrong[0] ^= 1;
        assert!(!proof_matches(&ephemeral, &identity_public, &nonce, &wrong));
        assert!(!proof_matches(
            &ephemeral,
            &identity_public,
            &nonce,
            &mac[..31]
        ));
        let other = PublicKey::from(&StaticSecret::from(random_bytes::<32>())).to_bytes();
        assert!(!proof_matches(&ephemeral, &other, &nonce, &mac));
    }

    #[test]
    fn low_order_keys_are_not_usable() {
        assert!(usable_key(&[0; 32]).is_none());
        assert!(usable_key(&[1; 31]).is_none());
        let key = PublicKey::from(&StaticSecret::from(random_bytes::<32>())).to_bytes();
        assert_eq!(usable_key(&key), Some(key));
    }
}
