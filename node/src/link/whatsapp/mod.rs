//! The link to real WhatsApp (WhatsApp Web multi-device), on the `whatsapp-rust` crate.
//!
//! One [`LinkSession`] is one whatsapp-rust `Client` making **one** connection
//! attempt: auto-reconnect is off, so when the connection fails or ends the session
//! reports [`LinkEvent::Disconnected`] with the reason and stops, and the device actor
//! decides when to try again (with its capped backoff). The only reconnect a session
//! makes itself is the one WhatsApp demands right after pairing (stream error 515,
//! "restart required"), once.
//!
//! All protocol state (noise key, identity, Signal sessions, pre-keys, sender keys,
//! app-state keys, ...) lives in the device's vault through [`VaultBackend`]: sealed,
//! fenced, and restorable on any node without a new scan.
//!
//! # Events
//! | whatsapp-rust                        | wafleet                                          |
//! |--------------------------------------|--------------------------------------------------|
//! | `PairingQrCode { code, timeout }`    | [`LinkEvent::Qr`] expiring after `timeout`        |
//! | `PairingQrCodesExhausted`            | [`LinkEvent::QrTimeout`]                          |
//! | `PairSuccess`, then `Connected`      | [`LinkEvent::Paired`] (once the restart is logged in) |
//! | `Connected` (stored credentials)     | [`LinkEvent::Connected`]                          |
//! | `LoggedOut`                          | credentials wiped, [`LinkEvent::LoggedOut`]        |
//! | `StreamReplaced`                     | [`LinkEvent::Replaced`] (no reconnect)            |
//! | `TemporaryBan { expire }`            | [`LinkEvent::Banned`], then `Disconnected`        |
//! | `Receipt` (delivered / read, played) | [`LinkEvent::Receipt`] for the wafleet message    |
//! | `Messages` (1:1 text)                | [`LinkEvent::Inbound`]                            |
//! | `ContextInfo.stanza_id` of a message | its `reply_to` (wafleet's id when known)          |
//! | a send timed out or lost its connection | [`LinkEvent::Unsent`] (sent again, same id)    |
//! | anything ending the connection       | [`LinkEvent::Disconnected`] with the reason       |
//!
//! Number checks ([`LinkCommand::CheckNumbers`]) are WhatsApp's usync "exists" query
//! (`Contacts::is_on_whatsapp`); read receipts ([`LinkCommand::MarkRead`]) go with
//! `Client::mark_as_read` to the 1:1 chat of the sender's phone number.
//!
//! Pairing codes ([`LinkCommand::RequestPairCode`]) are WhatsApp's: 8 characters of
//! its Crockford-style Base32 alphabet (`123456789ABCDEFGHJKLMNPQRSTVWXYZ`: no `0`,
//! `I`, `O` or `U`), valid about 3 minutes, typed on the phone under *Linked devices →
//! Link with phone number instead*.
//!
//! # Layout
//! - [`client`]: building a client on the vault, and the probe of a connection attempt.
//! - [`conformance`]: the storage suite any [`Store`](crate::store::Store) must pass.
//! - `groups`: group operations (`w:g2` through whatsapp-rust's `Groups`); group sends
//!   and mentions are refused on this link for now.
//! - `number_checks`: which numbers are on WhatsApp, in the order asked.
//! - `quotes`: replies: the quote a reply carries in its `ContextInfo`, and the quoted
//!   message of an inbound reply mapped back to wafleet's id.
//! - `read_receipts`: telling WhatsApp a chat's messages were read.
//! - [`send`]: sending a text under one WhatsApp id per message, whatever the attempts.
//! - [`session`]: one session's task: whatsapp-rust events in, wafleet events out.
//! - [`store`]: whatsapp-rust's storage traits on the device vault.
//! - [`test_chain`]: whether this is a `test-chain` build (WhatsApp's certificate check
//!   skipped, for a protocol test server), and the rule that such a build never dials
//!   WhatsApp.

pub mod client;
pub mod conformance;
mod durable;
mod groups;
mod incoming;
mod media;
mod mentions;
mod number_checks;
mod quotes;
mod read_receipts;
mod send;
mod session;
pub mod store;
pub mod test_chain;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use client::{Connectors, Probe, WHATSAPP_WS_URL, WhatsAppConfig};
pub use store::VaultBackend;
pub use test_chain::chain_verification_bypassed;

use super::{LinkCommand, LinkContext, LinkError, LinkFactory, LinkSession};
use std::sync::Arc;

/// Commands buffered per session before [`LinkSession::command`] says "busy".
const COMMAND_CAPACITY: usize = 256;

/// Opens WhatsApp links. One per node: the sessions share its TLS roots and HTTP pool.
#[derive(Debug, Clone)]
pub struct WhatsAppLinkFactory {
    connectors: Connectors,
}

impl WhatsAppLinkFactory {
    /// The factory of `config`'s links; refused as [`Connectors::new`] refuses.
    pub fn new(config: WhatsAppConfig) -> Result<WhatsAppLinkFactory, LinkError> {
        Ok(WhatsAppLinkFactory {
            connectors: Connectors::new(config)?,
        })
    }
}

#[async_trait]
impl LinkFactory for WhatsAppLinkFactory {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        let backend = Arc::new(
            VaultBackend::open(ctx.vault.clone())
                .await
                .map_err(|e| LinkError::Storage(e.to_string()))?,
        );
        let probe = Probe::new(self.connectors.config().url());
        let unstored = Arc::new(durable::Unstored::default());
        let hook = durable::StoreFirst::new(&ctx, unstored.clone(), backend.clone());
        let client = self
            .connectors
            .client(backend.clone(), probe.clone(), Some(Arc::new(hook)))
            .await?;
        let (commands, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(session::run(
            ctx,
            client,
            backend,
            probe,
            unstored,
            commands_rx,
            stop_rx,
        ));
        Ok(Box::new(WhatsAppSession {
            commands,
            stop: Some(stop),
            _task: task,
        }))
    }
}

/// One open WhatsApp connection. Dropping it disconnects the client (flushing its
/// state, bounded in time) without reporting anything more.
#[derive(Debug)]
struct WhatsAppSession {
    commands: mpsc::Sender<LinkCommand>,
    stop: Option<oneshot::Sender<()>>,
    _task: JoinHandle<()>,
}

impl Drop for WhatsAppSession {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl LinkSession for WhatsAppSession {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::WrongState("link busy".into()),
            mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
        })
    }
}
