//! One WhatsApp session's task: runs the client's connection, turns its events into
//! [`LinkEvent`]s, carries out [`LinkCommand`]s, and ends the session with exactly one
//! final event (or none, when the device dropped the session itself).
//!
//! The task never loops on a dead connection: the client's run loop makes one attempt
//! (auto-reconnect is off) and returns; the task then reports `Disconnected` with the
//! most specific reason it saw and stops. Only two reconnects are made here, each once:
//! the restart WhatsApp asks for right after pairing, and a fresh connection once the
//! new device's pre-keys are uploaded and its app state synced (see [`SETUP_TIMEOUT`]).
//! Every wait is bounded: sends and pairing-code requests time out, and closing the
//! client is cut off after [`CLOSE_TIMEOUT`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, warn};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::types::events::{
    Event, EventHandler, EventInterest, EventKind, InboundMessage, Receipt,
};
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore::proto_helpers::{MessageBuilderExt, MessageExt};
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, Jid};

use super::client::Probe;
use super::durable::Unstored;
use super::store::{Setup, VaultBackend};
use super::{groups, media, mentions, number_checks, quotes, read_receipts, send};
use crate::clock::now_ms;
use crate::link::{LinkCommand, LinkContext, LinkError, LinkEvent, PairCode, ReceiptStatus};

/// Closing the client (flushing its state) is abandoned after this long.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pairing-code request waits for the connection to WhatsApp.
const PAIR_CODE_SOCKET_WAIT: Duration = Duration::from_secs(10);
/// How long a request for a pairing code may take once connected.
const PAIR_CODE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an operator's logout waits for WhatsApp to unlink the device.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(10);
/// WhatsApp's pairing codes are valid about 180 s.
const PAIR_CODE_TTL_MS: i64 = 180_000;
/// How long a newly paired device waits for the work of its first connection before it
/// is announced anyway, on that connection.
///
/// A new device uploads 812 one-time pre-keys in one frame on its first connection, and
/// whatsapp-rust keeps the buffers that frame grew (its Noise write buffer, the
/// WebSocket's) for the connection's life. So once the upload and the first app-state
/// sync are stored ([`Setup`]), the session connects again (a login with the stored
/// keys, as after a restart) and announces the device then, before anything can be
/// sent on it (BENCHMARKS.md, "Issue 18").
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The whatsapp-rust events a session acts on.
fn interest() -> EventInterest {
    EventInterest::of(&[
        EventKind::Connected,
        EventKind::Disconnected,
        EventKind::PairSuccess,
        EventKind::PairError,
        EventKind::LoggedOut,
        EventKind::PairingQrCode,
        EventKind::PairingQrCodesExhausted,
        EventKind::QrScannedWithoutMultidevice,
        EventKind::ClientOutdated,
        EventKind::Messages,
        EventKind::Receipt,
        EventKind::StreamReplaced,
        EventKind::TemporaryBan,
        EventKind::ConnectFailure,
        EventKind::StreamError,
    ])
}

/// Hands the client's events (dispatched synchronously, from its tasks) to the session.
struct Forward(mpsc::UnboundedSender<Arc<Event>>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(event);
    }

    fn interest(&self) -> EventInterest {
        interest()
    }
}

/// How one pass of the client's run loop ended.
enum Outcome {
    /// The device dropped the session: close quietly.
    Stopped,
    /// A final event, while the run loop may still be going (boxed: an event is large).
    End(Box<LinkEvent>),
    /// The run loop returned on its own (connection failed or ended).
    RunEnded,
}

struct Session {
    ctx: LinkContext,
    client: Arc<Client>,
    backend: Arc<VaultBackend>,
    probe: Arc<Probe>,
    /// The phone of a pairing that succeeded in this session, announced as `Paired`
    /// once the connection WhatsApp restarts after pairing is logged in.
    just_paired: Option<String>,
    /// The run loop is ending for a reconnect made on purpose: WhatsApp's restart after
    /// pairing (515), or the fresh connection after the set-up.
    restart_pending: bool,
    /// While a newly paired device waits for its set-up ([`Setup`]): until when.
    settling_until: Option<tokio::time::Instant>,
    /// Whether this session's pairing is past that wait (reconnected or timed out).
    settled: bool,
    /// The most specific reason seen for the connection ending.
    failure: Option<String>,
    /// Sends and pairing-code requests in flight; aborted when the session ends.
    tasks: JoinSet<()>,
    /// Inbound messages the durability hook waits to see stored.
    unstored: Arc<Unstored>,
}

/// Runs a session until it ends, then reports how (unless the device stopped it).
pub(super) async fn run(
    ctx: LinkContext,
    client: Arc<Client>,
    backend: Arc<VaultBackend>,
    probe: Arc<Probe>,
    unstored: Arc<Unstored>,
    commands: mpsc::Receiver<LinkCommand>,
    stop: oneshot::Receiver<()>,
) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let subscription = client.subscribe(interest(), Arc::new(Forward(events_tx)));
    let mut session = Session {
        ctx,
        client,
        backend,
        probe,
        just_paired: None,
        restart_pending: false,
        settling_until: None,
        settled: false,
        failure: None,
        tasks: JoinSet::new(),
        unstored,
    };
    let end = session.drive(events, commands, stop).await;
    drop(subscription);
    session.tasks.abort_all();
    if let Some(end) = end {
        debug!(device_id = %session.ctx.device_id, event = ?end, "whatsapp session ended");
        session.ctx.events.emit(end);
    }
}

impl Session {
    async fn drive(
        &mut self,
        mut events: mpsc::UnboundedReceiver<Arc<Event>>,
        mut commands: mpsc::Receiver<LinkCommand>,
        mut stop: oneshot::Receiver<()>,
    ) -> Option<LinkEvent> {
        let mut fenced = self.backend.fenced();
        let mut setup = self.backend.setup();
        // The restart after pairing, and the fresh connection after the set-up.
        let mut restarts_left = 2u8;
        loop {
            let client = self.client.clone();
            let mut run = std::pin::pin!(client.run());
            let outcome = loop {
                let settling_until = self.settling_until;
                tokio::select! {
                    biased;
                    _ = &mut stop => break Outcome::Stopped,
                    Ok(()) = fenced.changed() => {
                        let reason = fenced.borrow().clone().unwrap_or_default();
                        break Outcome::End(Box::new(LinkEvent::Fenced { reason }));
                    }
                    Some(event) = events.recv() => {
                        if let Some(end) = self.on_event(&event).await {
                            break Outcome::End(Box::new(end));
                        }
                    }
                    true = async { setup.wait_for(Setup::is_complete).await.is_ok() },
                        if settling_until.is_some() => {
                        self.reconnect_after_setup().await;
                    }
                    () = sleep_until_some(settling_until), if settling_until.is_some() => {
                        self.announce_without_reconnect();
                    }
                    Some(command) = commands.recv() => self.on_command(command),
                    () = &mut run => break Outcome::RunEnded,
                }
            };
            match outcome {
                Outcome::Stopped => {
                    self.close(run).await;
                    match self.backend.rewipe_if_cleared().await {
                        Ok(true) => {
                            debug!(device_id = %self.ctx.device_id, "logged out while closing, wiped again")
                        }
                        Ok(false) => {}
                        Err(error) => {
                            debug!(device_id = %self.ctx.device_id, %error, "cannot check for a wipe after closing")
                        }
                    }
                    return None;
                }
                Outcome::End(end) => {
                    self.close(run).await;
                    return Some(self.finish(*end).await);
                }
                Outcome::RunEnded => {
                    // What the client dispatched before its run loop returned is queued.
                    while let Ok(event) = events.try_recv() {
                        if let Some(end) = self.on_event(&event).await {
                            self.close(std::future::ready(())).await;
                            return Some(self.finish(end).await);
                        }
                    }
                    if std::mem::take(&mut self.restart_pending) && restarts_left > 0 {
                        debug!(device_id = %self.ctx.device_id, "reconnecting after pairing");
                        restarts_left -= 1;
                        continue;
                    }
                    self.close(std::future::ready(())).await;
                    let reason = self.failure.take().unwrap_or_else(|| self.probe.failure());
                    return Some(LinkEvent::Disconnected { reason });
                }
            }
        }
    }

    /// The newly paired device's first connection did its work: connect again, so that
    /// the buffers the pre-key upload grew go with it ([`SETUP_TIMEOUT`]). The device is
    /// announced once the new connection is logged in.
    async fn reconnect_after_setup(&mut self) {
        debug!(device_id = %self.ctx.device_id, "set up after pairing, connecting afresh");
        self.settling_until = None;
        self.settled = true;
        self.restart_pending = true;
        self.client.reconnect_immediately().await;
    }

    /// The set-up was not seen complete in time: the device is announced on its current
    /// connection.
    fn announce_without_reconnect(&mut self) {
        debug!(device_id = %self.ctx.device_id, setup = ?*self.backend.setup().borrow(), "set-up after pairing incomplete, announcing the device");
        self.settling_until = None;
        self.settled = true;
        self.announce_connected();
    }

    /// Announces the connection: `Paired` for a pairing of this session, else
    /// `Connected`.
    fn announce_connected(&mut self) {
        let phone = self.client.pn().map(|jid| phone_of(&jid));
        let ready = match self.just_paired.take() {
            Some(paired) => LinkEvent::Paired { phone: paired },
            None => LinkEvent::Connected {
                phone: phone.unwrap_or_default(),
            },
        };
        self.emit(ready);
    }

    /// Disconnects the client (its shutdown signal stops its background tasks; it
    /// flushes its state) while finishing its run loop, both bounded in time, then
    /// refuses any later write.
    /// `run` is the client's run loop if it is still going (else a ready future).
    async fn close(&self, run: impl Future<Output = ()>) {
        let closing = async {
            tokio::join!(run, self.client.disconnect());
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            debug!(device_id = %self.ctx.device_id, "closing the whatsapp client timed out");
        }
        self.backend.close();
    }

    /// The final event, once the client is closed: a logout wipes the credentials.
    async fn finish(&self, end: LinkEvent) -> LinkEvent {
        if end != LinkEvent::LoggedOut {
            return end;
        }
        match self.backend.wipe().await {
            Ok(()) => LinkEvent::LoggedOut,
            Err(error) if error.is_fenced() => LinkEvent::Fenced {
                reason: format!("cannot wipe credentials: {error}"),
            },
            Err(error) => {
                warn!(device_id = %self.ctx.device_id, %error, "cannot wipe credentials after logout");
                LinkEvent::LoggedOut
            }
        }
    }

    fn emit(&self, event: LinkEvent) {
        self.ctx.events.emit(event);
    }

    /// Acts on one client event; `Some` ends the session with that event.
    async fn on_event(&mut self, event: &Event) -> Option<LinkEvent> {
        match event {
            Event::PairingQrCode(qr) => {
                let ttl = i64::try_from(qr.timeout.as_millis()).unwrap_or(i64::MAX);
                self.emit(LinkEvent::Qr {
                    code: qr.code.clone(),
                    expires_at_ms: now_ms().saturating_add(ttl),
                });
            }
            Event::PairingQrCodesExhausted(_) => return Some(LinkEvent::QrTimeout),
            Event::PairSuccess(paired) => {
                // The new credentials are stored now, not at the next periodic save.
                if let Err(error) = self.client.persistence_manager().flush().await {
                    let reason = format!("cannot store the new credentials: {error}");
                    return Some(match self.backend.fenced().borrow().clone() {
                        Some(fenced) => LinkEvent::Fenced { reason: fenced },
                        None => LinkEvent::Disconnected { reason },
                    });
                }
                self.just_paired = Some(phone_of(&paired.id));
                self.restart_pending = true;
            }
            Event::PairError(error) => {
                self.failure = Some(format!("pairing failed: {}", error.error));
            }
            Event::Connected(_) => {
                self.restart_pending = false;
                if self.just_paired.is_some() && !self.settled {
                    // The first connection of a new device: it sets itself up.
                    self.settling_until = Some(tokio::time::Instant::now() + SETUP_TIMEOUT);
                } else {
                    self.announce_connected();
                }
            }
            Event::LoggedOut(_) => return Some(LinkEvent::LoggedOut),
            Event::StreamReplaced(_) => return Some(LinkEvent::Replaced),
            Event::TemporaryBan(ban) => {
                let ttl = ban.expire.num_milliseconds();
                self.emit(LinkEvent::Banned {
                    until_ms: now_ms().saturating_add(ttl),
                });
                self.failure = Some(format!("temporarily banned by WhatsApp ({})", ban.code));
            }
            Event::ConnectFailure(failure) => {
                let message = failure.message.as_deref().unwrap_or("no message");
                self.failure = Some(format!(
                    "refused by WhatsApp: {:?} ({message})",
                    failure.reason
                ));
            }
            Event::ClientOutdated(_) => {
                self.failure = Some("refused by WhatsApp: client version outdated".into());
            }
            Event::QrScannedWithoutMultidevice(_) => {
                self.failure = Some("the phone that scanned has multi-device disabled".into());
            }
            Event::StreamError(error) => {
                self.failure = Some(format!("stream error from WhatsApp (code {})", error.code));
            }
            Event::Disconnected(lost) => {
                self.failure = Some(format!("connection to WhatsApp lost: {}", lost.reason));
            }
            Event::Messages(batch) => {
                // The durability hook relayed the others before they were acknowledged;
                // a recovered message (the phone resent what did not decrypt) skips it.
                for message in batch.iter() {
                    if message.info.unavailable_request_id.is_some()
                        && let Some(mut event) = relayed(&self.ctx.device_id, message)
                    {
                        quotes::known_reply_to(&self.backend, &mut event).await;
                        self.emit(event);
                    }
                }
            }
            Event::Receipt(receipt) => self.on_receipt(receipt).await,
            _ => {}
        }
        None
    }

    /// Receipts for messages this device sent, mapped back to wafleet's message ids.
    async fn on_receipt(&self, receipt: &Receipt) {
        let status = match receipt.r#type {
            ReceiptType::Delivered => ReceiptStatus::Delivered,
            ReceiptType::Read | ReceiptType::Played => ReceiptStatus::Read,
            ReceiptType::ServerError => ReceiptStatus::Failed,
            _ => return,
        };
        if receipt.source.is_from_me {
            return;
        }
        for wa_id in &receipt.message_ids {
            match self.backend.outbound(wa_id.as_ref()).await {
                Ok(Some(message_id)) => self.emit(LinkEvent::Receipt {
                    message_id,
                    status,
                    error: (status == ReceiptStatus::Failed)
                        .then(|| "WhatsApp reported a server error".to_owned()),
                    at_ms: receipt.timestamp.timestamp_millis(),
                }),
                Ok(None) => {}
                Err(error) => {
                    warn!(device_id = %self.ctx.device_id, %error, "cannot map a receipt to its message")
                }
            }
        }
    }

    fn on_command(&mut self, command: LinkCommand) {
        while self.tasks.try_join_next().is_some() {}
        match command {
            LinkCommand::Group { command, reply } => {
                let client = self.client.clone();
                self.tasks.spawn(async move {
                    let _ = reply.send(groups::run(client.as_ref(), command).await);
                });
            }
            LinkCommand::SendText {
                message_id,
                to_phone,
                text,
                media,
                mentions,
                quote,
            } => {
                let (client, backend) = (self.client.clone(), self.backend.clone());
                let (events, library) = (self.ctx.events.clone(), self.ctx.media.clone());
                self.tasks.spawn(async move {
                    let message = match media {
                        None => wa::Message::text(text),
                        // Uploaded first (WhatsApp's media encryption), then sent.
                        Some(part) => match media::upload(client.as_ref(), &library, &part).await {
                            Ok(uploaded) => media::message(&part, &text, uploaded),
                            Err(failure) => {
                                events.emit(failure.event(message_id));
                                return;
                            }
                        },
                    };
                    // Mentions and the quote share the message's context.
                    let message = mentions::with_mentions(message, &mentions).and_then(|message| {
                        let Some(quote) = &quote else {
                            return Ok(message);
                        };
                        let own = client.pn();
                        quotes::quote_context(backend.device_id(), own.as_ref(), &to_phone, quote)
                            .map(|context| quotes::with_quote(message, context))
                    });
                    let message = match message {
                        Ok(message) => message,
                        Err(error) => {
                            events.emit(LinkEvent::Receipt {
                                message_id,
                                status: ReceiptStatus::Failed,
                                error: Some(error),
                                at_ms: now_ms(),
                            });
                            return;
                        }
                    };
                    let sent = send::send(client.as_ref(), &backend, message_id, to_phone, message);
                    if let Some(outcome) = sent.await {
                        events.emit(outcome);
                    }
                });
            }
            LinkCommand::RequestPairCode { phone, reply } => {
                let client = self.client.clone();
                self.tasks.spawn(async move {
                    let _ = reply.send(pair_code(client, phone).await);
                });
            }
            // Stored: the durability hook may let whatsapp-rust acknowledge it.
            LinkCommand::AckInbound { message_id } => self.unstored.stored(&message_id),
            // whatsapp-rust acknowledges receipts to WhatsApp itself.
            LinkCommand::AckReceipt { .. } => {}
            LinkCommand::Logout { reply } => {
                let client = self.client.clone();
                self.tasks.spawn(async move {
                    // Removes this companion device from the phone's linked devices
                    // (best effort: whatsapp-rust logs a failure), then disconnects.
                    if tokio::time::timeout(LOGOUT_TIMEOUT, client.logout())
                        .await
                        .is_err()
                    {
                        warn!("WhatsApp did not confirm the logout in time");
                    }
                    let _ = reply.send(());
                });
            }
            LinkCommand::CheckNumbers { phones, reply } => {
                let client = self.client.clone();
                self.tasks.spawn(async move {
                    let checks = number_checks::check_numbers(client.as_ref(), phones);
                    let _ = reply.send(checks.await);
                });
            }
            LinkCommand::MarkRead {
                peer_phone,
                group,
                message_ids,
                reply,
            } => {
                let client = self.client.clone();
                self.tasks.spawn(async move {
                    let read = read_receipts::mark_read(
                        client.as_ref(),
                        &peer_phone,
                        group.as_deref(),
                        message_ids,
                    );
                    let _ = reply.send(read.await);
                });
            }
        }
    }
}

/// Asks WhatsApp for a pairing code for `phone` (the device must be connected, not
/// yet paired).
async fn pair_code(client: Arc<Client>, phone: String) -> Result<PairCode, LinkError> {
    let digits = digits_of(&phone).map_err(LinkError::WrongState)?;
    client
        .wait_for_socket(PAIR_CODE_SOCKET_WAIT)
        .await
        .map_err(|e| LinkError::WrongState(format!("not connected to WhatsApp: {e}")))?;
    if client.is_logged_in() {
        return Err(LinkError::WrongState("the device is paired already".into()));
    }
    let options = PairCodeOptions {
        phone_number: digits,
        ..PairCodeOptions::default()
    };
    let code = tokio::time::timeout(PAIR_CODE_TIMEOUT, client.pair_with_code(options))
        .await
        .map_err(|_| LinkError::WrongState("WhatsApp did not answer in time".into()))?
        .map_err(|e| LinkError::WrongState(format!("WhatsApp refused a pairing code: {e}")))?;
    Ok(PairCode {
        code: dashed(&code),
        expires_at_ms: now_ms() + PAIR_CODE_TTL_MS,
    })
}

/// `ABCDEFGH` → `ABCD-EFGH`: how WhatsApp shows a pairing code, and what the API
/// promises (whatsapp-rust returns the eight characters bare).
fn dashed(code: &str) -> String {
    if code.len() == 8 && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// `+62 812-3456-789` → `628123456789`; anything but digits, spaces, dashes, dots and
/// parentheses after an optional `+` is refused.
pub(super) fn digits_of(phone: &str) -> Result<String, String> {
    let rest = phone.trim().strip_prefix('+').unwrap_or(phone.trim());
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        return Err(format!("not a phone number: {phone}"));
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if !(6..=15).contains(&digits.len()) {
        return Err(format!("not a phone number: {phone}"));
    }
    Ok(digits)
}

pub(super) fn jid_of_phone(phone: &str) -> Result<Jid, String> {
    digits_of(phone).map(Jid::pn)
}

/// A phone-number JID's phone, digits only (`628123456789`): what the API takes in
/// `to` and what the simulated link reports, so an operator sees one format whichever
/// link a device uses.
fn phone_of(jid: &Jid) -> String {
    jid.user.to_string()
}

/// Who wrote a message a device relays: the sender's phone (digits), and the group it was
/// written in, if any (its id, `…@g.us`); `None` for the rest (status updates,
/// newsletters, our own messages echoed from the phone).
pub(super) fn relayed_sender(message: &InboundMessage) -> Option<(String, Option<String>)> {
    let source = &message.info.source;
    if source.is_from_me {
        return None;
    }
    let group = if source.is_group {
        let id = source.chat.to_string();
        if !crate::group::is_group_id(&id) {
            return None;
        }
        Some(id)
    } else if source.chat.is_pn() || source.chat.is_lid() {
        None
    } else {
        return None;
    };
    let from = match &source.sender_alt {
        Some(alt) if !source.sender.is_pn() && alt.is_pn() => phone_of(alt),
        _ if source.sender.is_pn() => phone_of(&source.sender),
        _ => source.sender.to_string(),
    };
    Some((from, group))
}

/// What a device relays of an inbound message as a text: a text from a contact, 1:1 or
/// in a group, becomes `Inbound` (media: `incoming`, from the durability hook); the rest
/// is not relayed.
pub(super) fn relayed(device_id: &str, message: &InboundMessage) -> Option<LinkEvent> {
    let (from, group) = relayed_sender(message)?;
    let Some(text) = message.message.text_content() else {
        debug!(
            device_id,
            "inbound message without text, not relayed as a text"
        );
        return None;
    };
    Some(LinkEvent::Inbound {
        message_id: message.info.id.to_string(),
        from_phone: from,
        text: text.to_owned(),
        at_ms: message.info.timestamp.timestamp_millis(),
        media: None,
        group,
        reply_to: quotes::quoted_id(&message.message),
    })
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pairing_code_reads_as_two_groups_of_four() {
        assert_eq!(dashed("NFS4LVRY"), "NFS4-LVRY");
        assert_eq!(dashed("ABCD-EFGH"), "ABCD-EFGH");
    }

    #[test]
    fn phone_numbers_become_digits_and_back() {
        assert_eq!(digits_of("+62 812-3456-789").unwrap(), "628123456789");
        assert_eq!(digits_of("15551234567").unwrap(), "15551234567");
        assert!(digits_of("+1 555 CALL NOW").is_err());
        assert!(digits_of("+12").is_err());
        assert_eq!(
            phone_of(&jid_of_phone("+15551234567").unwrap()),
            "15551234567"
        );
    }
}
