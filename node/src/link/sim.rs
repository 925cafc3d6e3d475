//! The device side of the simulated network's protocol (`protocol/proto/sim.proto`).
//!
//! A new device pairs: it sends a fresh X25519 public key, shows the QR codes the
//! simulator sends, and on `Paired` stores `{link_id, phone, secret}` sealed in its
//! vault. A returning device proves that secret against the simulator's challenge.
//! Credentials that are missing, unreadable or refused send the device back to pairing;
//! nothing loops.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use wafleet_protocol::sim::{self, ClientFrame, ServerFrame, client_frame, refused, server_frame};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession, PairCode,
    ReceiptStatus,
};
use crate::vault::{DeviceVault, VaultError};

/// Vault namespace and key of the simulated link's credentials.
const NAMESPACE: &str = "sim";
const CREDENTIALS_KEY: &str = "identity";

/// A bidirectional channel of frames to the simulator, over whatever transport.
/// Dropping `tx` closes the connection; `rx` ends when the simulator closes it.
#[derive(Debug)]
pub struct FramePipe {
    pub tx: mpsc::Sender<ClientFrame>,
    pub rx: mpsc::Receiver<ServerFrame>,
}

/// Opens connections to a simulator (WebSocket, or in-process in standalone).
#[async_trait]
pub trait SimDialer: Send + Sync + std::fmt::Debug + 'static {
    async fn dial(&self) -> Result<FramePipe, LinkError>;
}

/// Opens simulated links.
#[derive(Debug, Clone)]
pub struct SimLinkFactory {
    dialer: Arc<dyn SimDialer>,
}

impl SimLinkFactory {
    pub fn new(dialer: Arc<dyn SimDialer>) -> SimLinkFactory {
        SimLinkFactory { dialer }
    }
}

/// What a paired device keeps to reconnect without a scan.
#[derive(Serialize, Deserialize)]
struct Credentials {
    link_id: String,
    phone: String,
    secret: [u8; 32],
}

type PendingPairCode = Arc<Mutex<Option<oneshot::Sender<Result<PairCode, LinkError>>>>>;

#[async_trait]
impl LinkFactory for SimLinkFactory {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        let stored = load_credentials(&ctx.vault).await?;
        let pipe = self.dialer.dial().await?;
        let (secret, link_id) = match &stored {
            Some(credentials) => (
                StaticSecret::from(credentials.secret),
                credentials.link_id.clone(),
            ),
            None => (StaticSecret::random(), String::new()),
        };
        let hello = client_frame::Kind::Hello(sim::Hello {
            device_id: ctx.device_id.clone(),
            link_id,
            identity_public: PublicKey::from(&secret).as_bytes().to_vec(),
        });
        send(&pipe.tx, hello).await?;
        let pending_pair: PendingPairCode = Arc::default();
        let task = tokio::spawn(run(
            ctx,
            pipe.rx,
            pipe.tx.clone(),
            secret,
            pending_pair.clone(),
        ));
        Ok(Box::new(SimSession {
            tx: pipe.tx,
            task,
            pending_pair,
        }))
    }
}

/// Reads the stored credentials; unreadable ones are wiped (the device pairs again).
async fn load_credentials(vault: &DeviceVault) -> Result<Option<Credentials>, LinkError> {
    match vault.get(NAMESPACE, CREDENTIALS_KEY).await {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => match serde_json::from_slice::<Credentials>(&bytes) {
            Ok(credentials) => Ok(Some(credentials)),
            Err(error) => {
                warn!(device_id = vault.device_id(), %error, "stored credentials malformed, pairing again");
                wipe(vault).await?;
                Ok(None)
            }
        },
        Err(VaultError::Corrupt { .. }) => {
            warn!(
                device_id = vault.device_id(),
                "stored credentials cannot be decrypted, pairing again"
            );
            wipe(vault).await?;
            Ok(None)
        }
        Err(VaultError::Store(error)) => Err(LinkError::Storage(error.to_string())),
    }
}

async fn wipe(vault: &DeviceVault) -> Result<(), LinkError> {
    vault
        .clear()
        .await
        .map(|_| ())
        .map_err(|e| LinkError::Storage(e.to_string()))
}

async fn send(tx: &mpsc::Sender<ClientFrame>, kind: client_frame::Kind) -> Result<(), LinkError> {
    tx.send(ClientFrame { kind: Some(kind) })
        .await
        .map_err(|_| LinkError::Closed)
}

/// One open simulated connection.
#[derive(Debug)]
struct SimSession {
    tx: mpsc::Sender<ClientFrame>,
    task: JoinHandle<()>,
    pending_pair: PendingPairCode,
}

impl Drop for SimSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkSession for SimSession {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError> {
        let kind = match command {
            LinkCommand::SendText {
                message_id,
                to_phone,
                text,
            } => client_frame::Kind::Send(sim::SendMessage {
                message_id,
                to_phone,
                text,
            }),
            LinkCommand::RequestPairCode { phone, reply } => {
                let previous = self
                    .pending_pair
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(reply);
                if let Some(previous) = previous {
                    let _ = previous.send(Err(LinkError::WrongState(
                        "superseded by a newer pairing-code request".into(),
                    )));
                }
                client_frame::Kind::PairCodeRequest(sim::PairCodeRequest { phone })
            }
            LinkCommand::AckInbound { message_id } => {
                client_frame::Kind::InboundAck(sim::InboundAck { message_id })
            }
        };
        self.tx
            .try_send(ClientFrame { kind: Some(kind) })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LinkError::WrongState("link busy".into()),
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
            })
    }
}

/// Reads the simulator's frames until the connection ends, turning them into events.
async fn run(
    ctx: LinkContext,
    mut rx: mpsc::Receiver<ServerFrame>,
    tx: mpsc::Sender<ClientFrame>,
    secret: StaticSecret,
    pending_pair: PendingPairCode,
) {
    let events = &ctx.events;
    let end = loop {
        let Some(frame) = rx.recv().await else {
            break LinkEvent::Disconnected {
                reason: "connection closed".into(),
            };
        };
        let Some(kind) = frame.kind else { continue };
        match kind {
            server_frame::Kind::Qr(qr) => events.emit(LinkEvent::Qr {
                code: qr.code,
                expires_at_ms: qr.expires_at_ms,
            }),
            server_frame::Kind::PairCode(code) => {
                let waiting = pending_pair
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(reply) = waiting {
                    let _ = reply.send(Ok(PairCode {
                        code: code.code,
                        expires_at_ms: code.expires_at_ms,
                    }));
                }
            }
            server_frame::Kind::Paired(paired) => {
                let credentials = Credentials {
                    link_id: paired.link_id,
                    phone: paired.phone.clone(),
                    secret: secret.to_bytes(),
                };
                let stored = match serde_json::to_vec(&credentials) {
                    Ok(bytes) => ctx
                        .vault
                        .put(NAMESPACE, CREDENTIALS_KEY, &bytes)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(error) = stored {
                    break LinkEvent::Disconnected {
                        reason: format!("cannot store credentials: {error}"),
                    };
                }
                events.emit(LinkEvent::Paired {
                    phone: paired.phone,
                });
            }
            server_frame::Kind::Challenge(challenge) => {
                let Ok(ephemeral) = <[u8; 32]>::try_from(challenge.ephemeral_public.as_slice())
                else {
                    break LinkEvent::Disconnected {
                        reason: "malformed challenge".into(),
                    };
                };
                let shared = secret.diffie_hellman(&PublicKey::from(ephemeral));
                let mac = wafleet_protocol::sim_proof_mac(shared.as_bytes(), &challenge.nonce);
                let proof = client_frame::Kind::Proof(sim::Proof { mac: mac.to_vec() });
                if send(&tx, proof).await.is_err() {
                    break LinkEvent::Disconnected {
                        reason: "connection closed".into(),
                    };
                }
            }
            server_frame::Kind::Welcome(welcome) => events.emit(LinkEvent::Connected {
                phone: welcome.phone,
            }),
            server_frame::Kind::Refused(refusal) => {
                break refused_event(&ctx.vault, refusal).await;
            }
            server_frame::Kind::Receipt(receipt) => {
                let status = match receipt.status() {
                    sim::receipt::Status::Sent => ReceiptStatus::Sent,
                    sim::receipt::Status::Delivered => ReceiptStatus::Delivered,
                    sim::receipt::Status::Read => ReceiptStatus::Read,
                    sim::receipt::Status::Failed => ReceiptStatus::Failed,
                    sim::receipt::Status::Unspecified => continue,
                };
                events.emit(LinkEvent::Receipt {
                    message_id: receipt.message_id,
                    status,
                    error: (!receipt.error.is_empty()).then_some(receipt.error),
                    at_ms: receipt.at_ms,
                });
            }
            server_frame::Kind::Inbound(inbound) => events.emit(LinkEvent::Inbound {
                message_id: inbound.message_id,
                from_phone: inbound.from_phone,
                text: inbound.text,
                at_ms: inbound.at_ms,
            }),
            server_frame::Kind::LoggedOut(_) => {
                if let Err(error) = wipe(&ctx.vault).await {
                    warn!(device_id = %ctx.device_id, %error, "cannot wipe credentials after logout");
                }
                break LinkEvent::LoggedOut;
            }
            server_frame::Kind::Banned(banned) => events.emit(LinkEvent::Banned {
                until_ms: banned.until_ms,
            }),
            server_frame::Kind::Replaced(_) => break LinkEvent::Replaced,
            server_frame::Kind::Error(error) => {
                debug!(device_id = %ctx.device_id, message = %error.message, "simulator error");
            }
        }
    };
    fail_pending_pair(&pending_pair);
    events.emit(end);
}

async fn refused_event(vault: &DeviceVault, refusal: sim::Refused) -> LinkEvent {
    match refusal.reason() {
        refused::Reason::UnknownLink | refused::Reason::BadProof => {
            if let Err(error) = wipe(vault).await {
                return LinkEvent::Disconnected {
                    reason: format!("credentials refused, and wiping them failed: {error}"),
                };
            }
            LinkEvent::CredentialsRejected {
                reason: format!("{}: {}", refusal.reason().as_str_name(), refusal.detail),
            }
        }
        refused::Reason::LoggedOut => {
            if let Err(error) = wipe(vault).await {
                warn!(device_id = vault.device_id(), %error, "cannot wipe credentials after logout");
            }
            LinkEvent::LoggedOut
        }
        refused::Reason::QrTimeout => LinkEvent::QrTimeout,
        refused::Reason::Protocol | refused::Reason::Unspecified => LinkEvent::Disconnected {
            reason: format!("refused by the network: {}", refusal.detail),
        },
    }
}

fn fail_pending_pair(pending_pair: &PendingPairCode) {
    if let Some(reply) = pending_pair
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        let _ = reply.send(Err(LinkError::Closed));
    }
}
