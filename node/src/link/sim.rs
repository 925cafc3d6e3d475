//! The device side of the simulated network's protocol (`protocol/proto/sim.proto`).
//!
//! A new device pairs: it sends a fresh X25519 public key, shows the QR codes the
//! simulator sends, and on `Paired` stores `{link_id, phone, secret}` sealed in its
//! vault. A returning device proves that secret against the simulator's challenge.
//! Credentials that are missing, unreadable or refused send the device back to pairing;
//! nothing loops.
//!
//! Every vault write carries the device's fence. A write fenced off (another node owns
//! the device now) ends the session with [`LinkEvent::Fenced`]: the stale owner stops,
//! and nothing it does afterwards reaches the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};
use wafleet_protocol::sim::{self, ClientFrame, ServerFrame, client_frame, refused, server_frame};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{
    GroupAnswer, LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession,
    NumberCheck, PairCode, ReceiptStatus, sim_groups, sim_media,
};
use crate::media::ByteStream;
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
    /// A connection for `device_id`'s session. The id picks the simulator when the
    /// network runs as several processes ([`SimSpread`](super::SimSpread)); a dialer
    /// of one simulator ignores it.
    async fn dial(&self, device_id: &str) -> Result<FramePipe, LinkError>;

    /// Stores a media file on the media servers of `device_id`'s simulator (`POST
    /// /sim/media`) before a message names it. By default there are none.
    async fn upload_media(
        &self,
        _device_id: &str,
        _mime: &str,
        _body: ByteStream,
    ) -> Result<SimBlob, LinkError> {
        Err(no_media_servers())
    }

    /// The bytes of a media file on the media servers of `device_id`'s simulator (`GET
    /// /sim/media/{handle}`).
    async fn download_media(
        &self,
        _device_id: &str,
        _handle: &str,
    ) -> Result<ByteStream, LinkError> {
        Err(no_media_servers())
    }
}

fn no_media_servers() -> LinkError {
    LinkError::WrongState("this simulator connection has no media servers".into())
}

/// A file on a simulator's media servers, as its upload answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SimBlob {
    pub handle: String,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
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

/// The answer owed to a number check.
type NumbersReply = oneshot::Sender<Result<Vec<NumberCheck>, LinkError>>;
/// The answer owed to a group request.
type GroupReply = oneshot::Sender<Result<GroupAnswer, LinkError>>;

/// Replies a session owes: to a pairing-code request (answered by the sim's `PairCode`),
/// to number checks (by `NumberChecks` with their request id), and to a logout
/// (answered when the connection ends).
#[derive(Default)]
struct Waiting {
    pair_code: Option<oneshot::Sender<Result<PairCode, LinkError>>>,
    logout: Option<oneshot::Sender<()>>,
    /// By request id; a check whose asker gave up is dropped at the next check.
    numbers: HashMap<u64, NumbersReply>,
    /// Group requests by request id, dropped like number checks.
    groups: HashMap<u64, GroupReply>,
    /// The request id of the next number check or group request.
    next_request: u64,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("pair_code", &self.pair_code.is_some())
            .field("logout", &self.logout.is_some())
            .field("numbers", &self.numbers.len())
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl Waiting {
    /// Keeps `reply` for the answer to a new number check; its request id.
    fn number_check(&mut self, reply: NumbersReply) -> u64 {
        self.numbers.retain(|_, waiting| !waiting.is_closed());
        self.next_request += 1;
        self.numbers.insert(self.next_request, reply);
        self.next_request
    }

    /// Keeps `reply` for the answer to a new group request; its request id.
    fn group_request(&mut self, reply: GroupReply) -> u64 {
        self.groups.retain(|_, waiting| !waiting.is_closed());
        self.next_request += 1;
        self.groups.insert(self.next_request, reply);
        self.next_request
    }
}

/// The sim's answer to a number check, as the link reports it (an empty JID: none).
fn number_checks(answer: sim::NumberChecks) -> Vec<NumberCheck> {
    answer
        .results
        .into_iter()
        .map(|check| NumberCheck {
            phone: check.phone,
            on_whatsapp: check.on_whatsapp,
            jid: (!check.jid.is_empty()).then_some(check.jid),
        })
        .collect()
}

type PendingReplies = Arc<Mutex<Waiting>>;

#[async_trait]
impl LinkFactory for SimLinkFactory {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        let stored = load_credentials(&ctx.vault).await?;
        let pipe = self.dialer.dial(&ctx.device_id).await?;
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
        let pending: PendingReplies = Arc::default();
        let task = tokio::spawn(run(
            ctx.clone(),
            self.dialer.clone(),
            pipe.rx,
            pipe.tx.clone(),
            secret,
            pending.clone(),
        ));
        Ok(Box::new(SimSession {
            tx: pipe.tx,
            task,
            pending,
            ctx,
            dialer: self.dialer.clone(),
            uploads: JoinSet::new(),
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
                wipe(vault).await.map_err(storage_error)?;
                Ok(None)
            }
        },
        Err(VaultError::Corrupt { .. }) => {
            warn!(
                device_id = vault.device_id(),
                "stored credentials cannot be decrypted, pairing again"
            );
            wipe(vault).await.map_err(storage_error)?;
            Ok(None)
        }
        Err(VaultError::Store(error)) => Err(LinkError::Storage(error.to_string())),
    }
}

async fn wipe(vault: &DeviceVault) -> Result<(), VaultError> {
    vault.clear().await.map(|_| ())
}

fn storage_error(error: VaultError) -> LinkError {
    LinkError::Storage(error.to_string())
}

/// How a session ends when a vault write fails while `doing` something: fenced off
/// means another node owns the device (stop); anything else is worth a reconnect.
fn write_failed(doing: &str, error: &VaultError) -> LinkEvent {
    let reason = format!("{doing}: {error}");
    if error.is_fenced() {
        LinkEvent::Fenced { reason }
    } else {
        LinkEvent::Disconnected { reason }
    }
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
    pending: PendingReplies,
    ctx: LinkContext,
    dialer: Arc<dyn SimDialer>,
    /// Media sends uploading their file (aborted with the session).
    uploads: JoinSet<()>,
}

impl Drop for SimSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LinkSession for SimSession {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError> {
        // Answered as soon as the frame is on its way: the sim does not answer it.
        let mut sent_reply = None;
        let kind = match command {
            // The simulated network knows every message by its wafleet id (ours) or by the
            // id it gave the device (received ones, stored under it): a quote's id is
            // its network id.
            LinkCommand::SendText {
                message_id,
                to_phone,
                text,
                media: None,
                mentions,
                quote,
            } => client_frame::Kind::Send(sim::SendMessage {
                message_id,
                to_phone,
                text,
                media: None,
                mentions,
                reply_to: quote.map(|quote| quote.id),
            }),
            LinkCommand::SendText {
                message_id,
                to_phone,
                text,
                media: Some(media),
                mentions,
                quote,
            } => {
                // Uploaded first, then sent: a text handed meanwhile may arrive before
                // it, as with WhatsApp's own clients.
                while self.uploads.try_join_next().is_some() {}
                let (tx, ctx, dialer) = (self.tx.clone(), self.ctx.clone(), self.dialer.clone());
                self.uploads.spawn(async move {
                    match sim_media::upload(&ctx, dialer.as_ref(), &media).await {
                        Ok(info) => {
                            let frame = client_frame::Kind::Send(sim::SendMessage {
                                message_id,
                                to_phone,
                                text,
                                media: Some(info),
                                mentions,
                                reply_to: quote.map(|quote| quote.id),
                            });
                            // A closed connection: the session's end says so.
                            let _ = send(&tx, frame).await;
                        }
                        Err(failure) => ctx.events.emit(failure.event(message_id)),
                    }
                });
                return Ok(());
            }
            LinkCommand::RequestPairCode { phone, reply } => {
                let previous = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pair_code
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
            LinkCommand::AckReceipt { message_id, status } => {
                let status = match status {
                    ReceiptStatus::Sent => sim::receipt::Status::Sent,
                    ReceiptStatus::Delivered => sim::receipt::Status::Delivered,
                    ReceiptStatus::Read => sim::receipt::Status::Read,
                    ReceiptStatus::Failed => sim::receipt::Status::Failed,
                };
                client_frame::Kind::ReceiptAck(sim::ReceiptAck {
                    message_id,
                    status: status as i32,
                })
            }
            // Answered when the sim has unlinked the device and closed the connection.
            LinkCommand::Logout { reply } => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .logout = Some(reply);
                client_frame::Kind::Logout(sim::Logout {})
            }
            LinkCommand::CheckNumbers { phones, reply } => {
                let request_id = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .number_check(reply);
                client_frame::Kind::CheckNumbers(sim::CheckNumbers { request_id, phones })
            }
            LinkCommand::MarkRead {
                peer_phone,
                group,
                message_ids,
                reply,
            } => {
                sent_reply = Some(reply);
                client_frame::Kind::MarkRead(sim::MarkRead {
                    peer_phone,
                    message_ids,
                    group_id: group,
                })
            }
            LinkCommand::Group { command, reply } => {
                let request_id = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .group_request(reply);
                client_frame::Kind::Group(sim_groups::request(request_id, command))
            }
        };
        self.tx
            .try_send(ClientFrame { kind: Some(kind) })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LinkError::WrongState("link busy".into()),
                mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
            })?;
        if let Some(reply) = sent_reply {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }
}

/// Reads the simulator's frames until the connection ends, turning them into events.
async fn run(
    ctx: LinkContext,
    dialer: Arc<dyn SimDialer>,
    mut rx: mpsc::Receiver<ServerFrame>,
    tx: mpsc::Sender<ClientFrame>,
    secret: StaticSecret,
    pending: PendingReplies,
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
                let waiting = pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pair_code
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
                let bytes = match serde_json::to_vec(&credentials) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        break LinkEvent::Disconnected {
                            reason: format!("cannot encode credentials: {error}"),
                        };
                    }
                };
                if let Err(error) = ctx.vault.put(NAMESPACE, CREDENTIALS_KEY, &bytes).await {
                    break write_failed("cannot store credentials", &error);
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
            server_frame::Kind::Inbound(inbound) => {
                let media = match inbound.media {
                    None => None,
                    Some(info) => {
                        match sim_media::receive(&ctx, dialer.as_ref(), &inbound.message_id, info)
                            .await
                        {
                            Ok(media) => media,
                            Err(reason) => {
                                // Not acknowledged: the network brings it again on the
                                // next connection.
                                warn!(device_id = %ctx.device_id, message_id = %inbound.message_id, %reason, "cannot store an inbound message's media yet");
                                continue;
                            }
                        }
                    }
                };
                events.emit(LinkEvent::Inbound {
                    message_id: inbound.message_id,
                    from_phone: inbound.from_phone,
                    text: inbound.text,
                    at_ms: inbound.at_ms,
                    media,
                    group: inbound.group_id,
                    reply_to: inbound.reply_to,
                })
            }
            server_frame::Kind::LoggedOut(_) => break logged_out(&ctx.vault).await,
            server_frame::Kind::Banned(banned) => events.emit(LinkEvent::Banned {
                until_ms: banned.until_ms,
            }),
            server_frame::Kind::Replaced(_) => break LinkEvent::Replaced,
            server_frame::Kind::Error(error) => {
                debug!(device_id = %ctx.device_id, message = %error.message, "simulator error");
            }
            server_frame::Kind::NumberChecks(answer) => {
                let waiting = pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .numbers
                    .remove(&answer.request_id);
                if let Some(reply) = waiting {
                    let _ = reply.send(Ok(number_checks(answer)));
                }
            }
            server_frame::Kind::Group(answer) => {
                let waiting = pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .groups
                    .remove(&answer.request_id);
                if let Some(reply) = waiting {
                    let _ = reply.send(Ok(sim_groups::answer(answer)));
                }
            }
        }
    };
    let owed = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(reply) = owed.pair_code {
        let _ = reply.send(Err(LinkError::Closed));
    }
    for (_, reply) in owed.numbers {
        let _ = reply.send(Err(LinkError::Closed));
    }
    for (_, reply) in owed.groups {
        let _ = reply.send(Err(LinkError::Closed));
    }
    events.emit(end);
    if let Some(reply) = owed.logout {
        let _ = reply.send(());
    }
}

async fn refused_event(vault: &DeviceVault, refusal: sim::Refused) -> LinkEvent {
    match refusal.reason() {
        refused::Reason::UnknownLink | refused::Reason::BadProof => {
            if let Err(error) = wipe(vault).await {
                return write_failed("credentials refused, and wiping them failed", &error);
            }
            LinkEvent::CredentialsRejected {
                reason: format!("{}: {}", refusal.reason().as_str_name(), refusal.detail),
            }
        }
        refused::Reason::LoggedOut => logged_out(vault).await,
        refused::Reason::QrTimeout => LinkEvent::QrTimeout,
        refused::Reason::Protocol | refused::Reason::Unspecified => LinkEvent::Disconnected {
            reason: format!("refused by the network: {}", refusal.detail),
        },
    }
}

/// The phone unlinked the device: wipe its credentials. A wipe that fails for a storage
/// reason still ends in `LoggedOut` (the link is dead either way); a fenced one means
/// this node is no longer the owner, so it says nothing about the device.
async fn logged_out(vault: &DeviceVault) -> LinkEvent {
    match wipe(vault).await {
        Ok(()) => LinkEvent::LoggedOut,
        Err(error) if error.is_fenced() => write_failed("cannot wipe credentials", &error),
        Err(error) => {
            warn!(device_id = vault.device_id(), %error, "cannot wipe credentials after logout");
            LinkEvent::LoggedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::link::LinkEvents;
    use crate::seal::{MasterKey, Sealer};
    use crate::store::{
        DeviceRecord, DeviceStatus, Fence, SqliteStore, Store, StoreError, TrustLevel,
    };
    use crate::vault::Vault;

    /// Hands out one pipe whose simulator side the test holds.
    #[derive(Debug)]
    struct OnePipe(Mutex<Option<FramePipe>>);

    #[async_trait]
    impl SimDialer for OnePipe {
        async fn dial(&self, _device_id: &str) -> Result<FramePipe, LinkError> {
            self.0.lock().unwrap().take().ok_or(LinkError::Closed)
        }
    }

    /// The simulator's side of a session, and what the link reported.
    struct Session {
        _session: Box<dyn LinkSession>,
        to_link: mpsc::Sender<ServerFrame>,
        _from_link: mpsc::Receiver<ClientFrame>,
        events: mpsc::UnboundedReceiver<LinkEvent>,
    }

    impl Session {
        async fn frame(&self, kind: server_frame::Kind) {
            self.to_link
                .send(ServerFrame { kind: Some(kind) })
                .await
                .expect("link is reading");
        }

        async fn event(&mut self) -> LinkEvent {
            tokio::time::timeout(Duration::from_secs(5), self.events.recv())
                .await
                .expect("an event in time")
                .expect("events open")
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        vault: Vault,
    }

    const SHARD: u32 = 4;
    const TTL: u64 = 1_000;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).expect("open"));
        store
            .create_device(&DeviceRecord {
                id: "d1".into(),
                name: "d1".into(),
                tenant: "default".into(),
                status: DeviceStatus::Starting,
                status_reason: None,
                trust_level: TrustLevel::Newcomer,
                phone: None,
                webhook: None,
                desired_running: true,
                created_at_ms: 0,
                updated_at_ms: 0,
                last_connected_at_ms: None,
            })
            .await
            .expect("create");
        let vault = Vault::new(
            store.clone(),
            Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32]))),
        );
        Fixture {
            _dir: dir,
            store,
            vault,
        }
    }

    /// Node `a` leases the shard (epoch 1); with `taken_over`, node `b` then takes it
    /// after expiry (epoch 2). Returns `a`'s fence.
    async fn lease(store: &dyn Store, taken_over: bool) -> Fence {
        let a = store
            .acquire_lease("a", SHARD, 0, TTL)
            .await
            .expect("acquire");
        if taken_over {
            let b = store
                .acquire_lease("b", SHARD, TTL as i64, TTL)
                .await
                .expect("takeover");
            assert_eq!(b.granted().map(|l| l.epoch), Some(2));
        }
        a.granted().expect("granted").fence()
    }

    async fn open(vault: DeviceVault) -> Session {
        let (to_link, rx) = mpsc::channel(8);
        let (tx, from_link) = mpsc::channel(8);
        let dialer = OnePipe(Mutex::new(Some(FramePipe { tx, rx })));
        let (events_tx, events) = mpsc::unbounded_channel();
        let ctx = LinkContext {
            device_id: vault.device_id().to_owned(),
            tenant: "default".into(),
            media: Arc::new(crate::media::MediaLibrary::new(
                Arc::new(crate::media::NoMediaStore),
                Arc::new(crate::seal::data_keys::DataKeys::new(
                    vault.store().clone(),
                    Arc::new(Sealer::new(MasterKey::new(1, [3u8; 32]))),
                )),
                Default::default(),
            )),
            vault,
            events: LinkEvents::new(
                1,
                Arc::new(move |_, event| {
                    let _ = events_tx.send(event);
                }),
            ),
        };
        let session = SimLinkFactory::new(Arc::new(dialer))
            .open(ctx)
            .await
            .expect("open");
        Session {
            _session: session,
            to_link,
            _from_link: from_link,
            events,
        }
    }

    fn paired() -> server_frame::Kind {
        server_frame::Kind::Paired(sim::Paired {
            link_id: "link-1".into(),
            phone: "+100".into(),
        })
    }

    /// The next frame the link sent the simulator.
    async fn sent_frame(session: &mut Session) -> client_frame::Kind {
        tokio::time::timeout(Duration::from_secs(5), session._from_link.recv())
            .await
            .expect("a frame in time")
            .expect("link open")
            .kind
            .expect("a frame kind")
    }

    fn check_numbers(session: &mut Session, phones: &[&str]) -> NumbersAnswer {
        let (reply, answer) = oneshot::channel();
        let phones = phones.iter().map(|p| p.to_string()).collect();
        session
            ._session
            .command(LinkCommand::CheckNumbers { phones, reply })
            .expect("command taken");
        answer
    }

    type NumbersAnswer = oneshot::Receiver<Result<Vec<NumberCheck>, LinkError>>;

    async fn asked(session: &mut Session) -> sim::CheckNumbers {
        match sent_frame(session).await {
            client_frame::Kind::CheckNumbers(check) => check,
            other => panic!("expected CheckNumbers, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn number_checks_are_answered_by_their_request_id() {
        let f = fixture().await;
        let mut session = open(f.vault.device("d1", None)).await;
        assert!(matches!(
            sent_frame(&mut session).await,
            client_frame::Kind::Hello(_)
        ));
        let first = check_numbers(&mut session, &["6281111111111"]);
        let second = check_numbers(&mut session, &["6282222222222", "6283333333333"]);
        let (first_asked, second_asked) = (asked(&mut session).await, asked(&mut session).await);
        assert_ne!(first_asked.request_id, second_asked.request_id);
        assert_eq!(second_asked.phones, ["6282222222222", "6283333333333"]);

        // Answered out of order: each asker gets its own answer.
        let check = |phone: &str, on: bool| sim::NumberCheck {
            phone: phone.into(),
            on_whatsapp: on,
            jid: if on {
                format!("{phone}@s.whatsapp.net")
            } else {
                String::new()
            },
        };
        session
            .frame(server_frame::Kind::NumberChecks(sim::NumberChecks {
                request_id: second_asked.request_id,
                results: vec![check("6282222222222", true), check("6283333333333", false)],
            }))
            .await;
        let answer = second.await.expect("answered").expect("checks");
        assert_eq!(
            answer,
            [
                NumberCheck {
                    phone: "6282222222222".into(),
                    on_whatsapp: true,
                    jid: Some("6282222222222@s.whatsapp.net".into()),
                },
                NumberCheck {
                    phone: "6283333333333".into(),
                    on_whatsapp: false,
                    jid: None,
                },
            ]
        );

        // The connection ends before the first is answered: its asker hears so.
        drop(session.to_link);
        assert_eq!(first.await.expect("answered"), Err(LinkError::Closed));
    }

    #[tokio::test]
    async fn mark_read_sends_read_receipts_and_answers_once_sent() {
        let f = fixture().await;
        let mut session = open(f.vault.device("d1", None)).await;
        sent_frame(&mut session).await;
        for group in [None, Some("120363041234567890@g.us".to_owned())] {
            let (reply, answer) = oneshot::channel();
            session
                ._session
                .command(LinkCommand::MarkRead {
                    peer_phone: "6281111111111".into(),
                    group: group.clone(),
                    message_ids: vec!["in-1".into(), "in-2".into()],
                    reply,
                })
                .expect("command taken");
            assert_eq!(answer.await.expect("answered"), Ok(()));
            match sent_frame(&mut session).await {
                client_frame::Kind::MarkRead(read) => {
                    assert_eq!(read.peer_phone, "6281111111111");
                    assert_eq!(read.message_ids, ["in-1", "in-2"]);
                    assert_eq!(read.group_id, group);
                }
                other => panic!("expected MarkRead, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn pairing_under_the_current_fence_stores_credentials() {
        let f = fixture().await;
        let fence = lease(f.store.as_ref(), false).await;
        let vault = f.vault.device("d1", Some(fence));
        let mut session = open(vault.clone()).await;
        session.frame(paired()).await;
        assert_eq!(
            session.event().await,
            LinkEvent::Paired {
                phone: "+100".into()
            }
        );
        assert!(
            vault
                .get(NAMESPACE, CREDENTIALS_KEY)
                .await
                .expect("get")
                .is_some()
        );
    }

    #[tokio::test]
    async fn pairing_under_a_stale_fence_ends_the_session_as_fenced() {
        let f = fixture().await;
        let stale = lease(f.store.as_ref(), true).await;
        let vault = f.vault.device("d1", Some(stale));
        let mut session = open(vault.clone()).await;
        session.frame(paired()).await;
        match session.event().await {
            LinkEvent::Fenced { reason } => assert!(reason.contains("fenced"), "{reason}"),
            other => panic!("expected Fenced, got {other:?}"),
        }
        assert_eq!(
            vault.get(NAMESPACE, CREDENTIALS_KEY).await.expect("get"),
            None,
            "a stale owner stored credentials"
        );
    }

    #[tokio::test]
    async fn a_logout_seen_by_a_stale_owner_keeps_the_new_owners_credentials() {
        let f = fixture().await;
        let stale = lease(f.store.as_ref(), true).await;
        let owner = f.vault.device(
            "d1",
            Some(Fence {
                shard: SHARD,
                epoch: 2,
            }),
        );
        let credentials = serde_json::to_vec(&Credentials {
            link_id: "link-1".into(),
            phone: "+100".into(),
            secret: [9; 32],
        })
        .expect("encode");
        owner
            .put(NAMESPACE, CREDENTIALS_KEY, &credentials)
            .await
            .expect("the new owner stores credentials");
        let mut session = open(f.vault.device("d1", Some(stale))).await;
        session
            .frame(server_frame::Kind::LoggedOut(sim::LoggedOut {}))
            .await;
        assert!(
            matches!(session.event().await, LinkEvent::Fenced { .. }),
            "expected Fenced"
        );
        assert!(
            owner
                .get(NAMESPACE, CREDENTIALS_KEY)
                .await
                .expect("get")
                .is_some(),
            "a stale owner wiped the new owner's credentials"
        );
        let err = f
            .vault
            .device("d1", Some(stale))
            .clear()
            .await
            .expect_err("stale clear");
        assert!(
            matches!(
                err,
                VaultError::Store(StoreError::Fenced {
                    current: Some(2),
                    ..
                })
            ),
            "{err}"
        );
    }
}
