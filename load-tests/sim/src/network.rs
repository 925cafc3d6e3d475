//! [`Network`]: the handle to one simulated WhatsApp network. Devices attach to it;
//! the control API (and tests) act on its phones through it.

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::Context;
use tokio::sync::mpsc;

use super::{
    FailingView, InboxMessage, NewLink, SentMessage, SimConfig, SimError, SimStats, clock,
    connection::{self, CHANNEL_CAPACITY, ConnId, SimConnection},
    journal::{Journal, Snapshot},
    media::{Blob, MediaShelf},
    port::ChannelPort,
    state::State,
};

/// A simulated WhatsApp network. Cheap to clone: clones share the same network.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

struct Shared {
    config: SimConfig,
    /// The media servers: files devices upload and phones send.
    media: MediaShelf,
    /// Everything mutable, behind one lock held only for short synchronous work.
    state: Mutex<State>,
    /// The id of the next connection.
    next_conn: AtomicU64,
    /// Connections whose task is running.
    connections_open: AtomicU64,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.shared.config)
            .field(
                "connections_open",
                &self.shared.connections_open.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Start a network. With `config.data_path` set, the state kept in that file is
    /// loaded (and created if missing) and every change is written back.
    pub fn open(config: SimConfig) -> anyhow::Result<Network> {
        if let Some(problem) = config.problem() {
            anyhow::bail!("invalid sim configuration: {problem}");
        }
        let (journal, snapshot) = match &config.data_path {
            Some(path) => Journal::open(path, config.state_seal.clone())
                .with_context(|| format!("cannot open sim state file {}", path.display()))?,
            None => (Journal::disabled(), Snapshot::default()),
        };
        let state = State::restore(snapshot, journal);
        let media = MediaShelf::open(config.data_path.as_deref())
            .context("cannot open the simulator's media folder")?;
        Ok(Network {
            shared: Arc::new(Shared {
                media,
                config,
                state: Mutex::new(state),
                next_conn: AtomicU64::new(1),
                connections_open: AtomicU64::new(0),
            }),
        })
    }

    /// Connect a device in process: the same protocol as `GET /ws`, without a socket.
    /// Must be called within a tokio runtime (the connection runs on a task).
    pub fn attach(&self) -> SimConnection {
        let (tx, frames) = mpsc::channel(CHANNEL_CAPACITY);
        let (outbox, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let network = self.clone();
        tokio::spawn(async move {
            let mut port = ChannelPort { frames, outbox };
            connection::run(network, &mut port).await;
        });
        SimConnection { tx, rx }
    }

    /// The counters now.
    pub fn stats(&self) -> SimStats {
        let mut stats = self.state().stats();
        stats.connections_open = self.shared.connections_open.load(Ordering::Relaxed);
        stats
    }

    /// The configuration the network runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A phone scans a QR code (`POST /sim/scan`): the device showing it is linked to
    /// `phone` and told `Paired`.
    pub fn scan(&self, qr: &str, phone: &str) -> Result<NewLink, SimError> {
        self.state().scan(qr, phone, tokio::time::Instant::now())
    }

    /// A phone enters a pairing code (`POST /sim/pair-code`), with or without its dash,
    /// in any case. The code must have been requested for this phone.
    pub fn enter_pair_code(&self, phone: &str, code: &str) -> Result<NewLink, SimError> {
        self.state()
            .enter_pair_code(phone, code, tokio::time::Instant::now())
    }

    /// What reached a phone from linked devices, in arrival order.
    pub fn inbox(&self, phone: &str) -> Result<Vec<InboxMessage>, SimError> {
        self.state().inbox(phone)
    }

    /// What a phone sent to linked devices, oldest first, each `sent`, `delivered` (a
    /// device stored it) or `read` (a device sent a read receipt).
    pub fn sent(&self, phone: &str) -> Result<Vec<SentMessage>, SimError> {
        self.state().sent(phone)
    }

    /// Makes a number not on WhatsApp (`absent`: number checks answer `false`, sends
    /// to it fail with `not_on_whatsapp`), or on WhatsApp again.
    pub fn set_absent(&self, phone: &str, absent: bool) -> Result<(), SimError> {
        self.state().set_absent(phone, absent)
    }

    /// Makes the next `times` sends from linked devices to `phone` fail with `error` (a
    /// transient failure: the sender may try again), remembering when each was refused.
    pub fn fail(&self, phone: &str, times: u32, error: &str) -> Result<(), SimError> {
        self.state().fail(phone, times, error)
    }

    /// The refusals asked for `phone` (`GET /sim/phones/{phone}/fail`) and those made.
    pub fn failing(&self, phone: &str) -> Result<FailingView, SimError> {
        self.state().failing(phone)
    }

    /// A group as `GET /sim/groups/{id}` shows it.
    pub fn group(&self, id: &str) -> Result<crate::GroupView, SimError> {
        self.state().group(id)
    }

    /// Phone `from` writes `text` to number `to`: every device linked to `to` gets an
    /// `Inbound`, redelivered on each resume until acknowledged. `to` may be a group id
    /// (`120363…@g.us`) that `from` is in: then the devices of every other participant
    /// get it, with the group. Returns its message id.
    pub fn send_from_phone(&self, from: &str, to: &str, text: &str) -> Result<String, SimError> {
        self.state().phone_send(from, to, text, None, None)
    }

    /// [`Network::send_from_phone`] with a media file stored first ([`Network::put_media`]);
    /// `text` is its caption.
    pub fn send_media_from_phone(
        &self,
        from: &str,
        to: &str,
        text: &str,
        media: wafleet_protocol::sim::MediaInfo,
    ) -> Result<String, SimError> {
        self.state().phone_send(from, to, text, Some(media), None)
    }

    /// [`Network::send_from_phone`] (with media: [`Network::send_media_from_phone`]) as a
    /// reply to message `reply_to`: the id of a message the phone received (an inbox
    /// entry's) or sent; 404 `message_not_found` otherwise. The devices' `Inbound` carries
    /// it.
    pub fn reply_from_phone(
        &self,
        from: &str,
        to: &str,
        text: &str,
        media: Option<wafleet_protocol::sim::MediaInfo>,
        reply_to: &str,
    ) -> Result<String, SimError> {
        self.state()
            .phone_send(from, to, text, media, Some(reply_to))
    }

    /// Stores a file on the network's media servers (what `POST /sim/media` does, and
    /// what a device's link does before it sends media in process).
    pub async fn put_media(
        &self,
        mime: &str,
        body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Unpin,
    ) -> std::io::Result<Blob> {
        self.shared.media.put(mime, body).await
    }

    /// A stored file and its bytes, opened for reading; `None` if `handle` holds none.
    pub async fn media_file(&self, handle: &str) -> Option<(Blob, tokio::fs::File)> {
        self.shared.media.open_file(handle).await
    }

    /// Why the media a device sends cannot be delivered (`media_not_found`,
    /// `media_mismatch`: not the size and SHA-256 its handle holds), or `None`.
    pub(crate) async fn check_media(
        &self,
        media: &wafleet_protocol::sim::MediaInfo,
    ) -> Option<&'static str> {
        match self.shared.media.blob(&media.handle).await {
            None => Some("media_not_found"),
            Some(blob) if blob.size != media.size || blob.sha256 != media.sha256 => {
                Some("media_mismatch")
            }
            Some(_) => None,
        }
    }

    /// The phone reads its inbox; connected senders get `Receipt{READ}`. Returns how
    /// many messages were newly read.
    pub fn read(&self, phone: &str) -> Result<usize, SimError> {
        self.state().read(phone)
    }

    /// The phone removes all its linked devices (they get `LoggedOut`, and later
    /// resumes `Refused{LOGGED_OUT}`). Returns how many.
    pub fn unlink(&self, phone: &str) -> Result<usize, SimError> {
        self.state().unlink(phone)
    }

    /// Ban a number for `duration` (default: the configured `ban_duration`; zero lifts
    /// a ban). Returns when the ban ends.
    pub fn ban(&self, phone: &str, duration: Option<Duration>) -> Result<SystemTime, SimError> {
        let duration = duration.unwrap_or(self.shared.config.ban_duration);
        let until_ms = self.state().ban(phone, duration)?;
        Ok(clock::system_time(until_ms))
    }

    /// Wait until every change made so far is written to the state file (immediate in
    /// memory-only mode).
    pub async fn flush(&self) {
        let written = self.state().flush();
        if let Some(written) = written {
            let _ = written.await;
        }
    }

    /// The state, locked. Hold it briefly and never across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Count a new connection and give it an id.
    pub(crate) fn connection_opened(&self) -> ConnId {
        self.shared.connections_open.fetch_add(1, Ordering::Relaxed);
        self.shared.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn connection_closed(&self) {
        self.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}
