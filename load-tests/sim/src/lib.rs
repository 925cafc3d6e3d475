//! `wafleet-sim`: a simulated WhatsApp network: phones, QR scans, pairing codes, delivery
//! receipts, inbound messages, unlinks and bans. `wafleet sim` serves it on its own;
//! `wafleet standalone --link sim` runs it in process and merges [`router`] into its
//! server. It is a crate of its own so that the `wafleet` binary links the simulator
//! without the load driver (`wafleet-load`), which reaches it only over HTTP.
//!
//! Devices speak the frames of `protocol/proto/sim.proto` (its header describes the
//! handshake), over a WebSocket at `GET /ws` (one prost-encoded frame per binary
//! message) or in process through [`Network::attach`]; both run the same connection
//! logic. People (tests, demos, the load driver) act as phones through the control API:
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | POST | `/sim/scan` | `{"qr", "phone"}` → 200 `{"device_id", "link_id", "phone"}`; 404 `qr_not_found`, 410 `qr_expired` |
//! | POST | `/sim/pair-code` | `{"phone", "code"}` (dash and case optional) → 200 as scan; 404 `pair_code_not_found` (also when requested for another phone), 410 `pair_code_expired` |
//! | GET | `/sim/phones/{phone}/inbox` | → 200 `[{"from_phone", "text", "at", "message_id", "status": "delivered"\|"read", "group"?, "mentions"?, "reply_to"?}]`, arrival order (`group` for a message written in a group, `mentions` when it names numbers, `reply_to` for a reply: the id of the quoted message as the phone knows it) |
//! | POST | `/sim/phones/{phone}/send` | `{"to_phone" \| "group", "text", "reply_to"?}` → 202 `{"message_id"}`: an `Inbound` for every device linked to `to_phone`, or (with `group`) to every other participant of the group, the `Inbound` naming the group (and with `reply_to`, the message it replies to: one the phone received or sent); 404 `no_linked_device`, 404 `group_not_found`, 404 `message_not_found` (a `reply_to` the phone does not have), 403 `not_participant` |
//! | GET | `/sim/groups/{id}` | → 200 `{"id", "subject", "creator", "participants": [{"phone", "admin"}]}`; 404 `group_not_found` |
//! | POST | `/sim/phones/{phone}/read` | → 200 `{"read": n}` (extension, see below) |
//! | GET | `/sim/phones/{phone}/sent` | → 200 `[{"to_phone", "text", "message_id", "at", "status": "sent"\|"delivered"\|"read"}]`: what the phone sent to linked devices, oldest first; `delivered` once a device acknowledged storing it, `read` once a device sent `MarkRead` for it |
//! | POST | `/sim/phones/{phone}/absent` | optional `{"absent": bool}` (default `true`) → 200 `{"phone", "absent"}`: the number is not on WhatsApp (`CheckNumbers` says so; sends to it fail `not_on_whatsapp`); `false` undoes it |
//! | DELETE | `/sim/phones/{phone}/absent` | → 200 `{"phone", "absent": false}`: on WhatsApp again |
//! | POST | `/sim/phones/{phone}/fail` | `{"times": N, "error"?}` → 200 `{"phone", "times", "error"}`: the next N sends from linked devices to the number fail with `Receipt{FAILED, error}` (`unavailable` by default: a transient failure, the sender may try again; 0 stops refusing). In memory only |
//! | GET | `/sim/phones/{phone}/fail` | → 200 `{"phone", "left", "error", "failed_at": [RFC 3339]}`: refusals still to make, and when each refusal was made, oldest first |
//! | POST | `/sim/phones/{phone}/unlink` | → 200 `{"unlinked": n}`; 404 `no_linked_device` |
//! | POST | `/sim/phones/{phone}/ban` | optional `{"seconds": N}` (0 lifts a ban) → 200 `{"phone", "until"}` |
//! | GET | `/sim/stats` | → 200 [`SimStats`] |
//!
//! Errors are `{"error": {"code", "message", "retryable": false}}`: 400 for an invalid
//! phone (`invalid_phone`: 8 to 15 digits only) or a body that is not JSON
//! (`invalid_json`), 422 for JSON without the expected fields (`invalid_request`).
//! Bodies are read as JSON whatever their content type.
//!
//! # Behaviour worth knowing
//! - **Read receipts** (extension): `POST /sim/phones/{phone}/read` marks the phone's
//!   whole inbox read and sends `Receipt{READ}` to the sending links that are connected
//!   at that moment. Read receipts are not queued for links that are offline; the read
//!   state is kept with the message instead, and a device that resends the same
//!   `message_id` later gets SENT, DELIVERED and READ again.
//! - **Number checks**: every valid number is on WhatsApp (phones exist implicitly)
//!   unless made absent; `CheckNumbers` answers `NumberChecks` in the order asked, with
//!   the JID `<digits>@s.whatsapp.net`. An invalid number is simply not on WhatsApp.
//! - **Read receipts from devices**: `MarkRead{peer_phone, message_ids}` marks those of
//!   the phone's messages to the device's number read in the phone's sent view; ids
//!   of other numbers' messages are ignored. With `group_id` (a group's receipts name
//!   the author), it marks those the phone wrote in that group, if the device's number
//!   is in it; a 1:1 receipt never reads a group message, nor the reverse. There is no
//!   answer frame.
//! - **Groups**: devices create and change them with `GroupRequest` (ids `120363` and
//!   12 digits `@g.us`; subjects of 1 to 100 characters). The creator is the first
//!   admin; participants must be valid numbers on WhatsApp (not absent); only admins add,
//!   remove, promote or demote (`not_admin`), and a number not in a group gets
//!   `not_found` for it. A `SendMessage` to a group id lands in every other
//!   participant's inbox (one entry each, with the group and `mentions`); a sender not
//!   in the group gets `Receipt{FAILED, not_participant}`. A resend is found in the
//!   first of those inboxes.
//! - **Replies**: the network knows a message by one id everywhere: a device's own
//!   `message_id`, or the id it gave a phone's message. A `SendMessage{reply_to}` is kept
//!   with the inbox entries as `reply_to` (not checked: a device may quote what the
//!   network never carried); a phone's reply must name a message of its inbox or of its
//!   sent list, and reaches devices as `Inbound{reply_to}`.
//! - **Deduplication**: on (link, `message_id`), kept for as long as the message is in
//!   the inbox (forever). A FAILED send is not remembered, so it may be retried.
//! - **Bans** use the wall clock (they are persisted); `Banned{until_ms}` goes to the
//!   number's connected links, and to a link that resumes or pairs while the ban lasts.
//! - **Pairing** ends with `Refused{QR_TIMEOUT}` once the last of `qr_codes` QR codes
//!   expired, but not while a pairing code handed out is still valid.
//! - **Handshake limit**: a connection that sends no `Hello` within 30 s, or no `Proof`
//!   within 30 s of its `Challenge`, is refused with `PROTOCOL`.
//! - A new device's `identity_public` must be a 32-byte X25519 key of full order,
//!   otherwise `Refused{PROTOCOL}`.
//! - A `SendMessage` with an empty `message_id`, or a `PairCodeRequest` with an invalid
//!   phone, gets an `Error` frame and the connection goes on.
//!
//! # Persistence
//! With [`SimConfig::data_path`] set, links (with their identity keys, and tombstones of
//! unlinked ones), inboxes, phones' sent lists, absent numbers, groups, unacknowledged inbound
//! messages, bans and the counters (all
//! but `links_connected`, `connections_open`, `pairing_now`) are kept in a SQLite file
//! (WAL). Changes are queued while the state lock is held and written by one thread, in
//! batches of one transaction each; [`Network::flush`] waits for them, and dropping the
//! last [`Network`] clone writes what is queued. Pairing sessions are not persisted: a
//! restart ends them, as it closes every connection.
//!
//! # Layout
//! - `network`: [`Network`], the handle: attach devices, act as phones, read stats.
//! - `state`: everything behind the network's one lock, as short synchronous methods.
//! - `connection`: [`SimConnection`] and the logic that serves one device's connection.
//! - `port`: where a connection's frames come from and go to (channels or a socket).
//! - `pairing`: QR codes and pairing codes being shown, and recently retired ones.
//! - `link`: linked devices and their index by phone.
//! - `groups`: groups, their participants and admins, and who may change them.
//! - `phone`, `inbox`, `sent`: phone numbers, what reached a phone, what a phone sent.
//! - `failing`: sends to a number made to fail for a while.
//! - `journal`: the SQLite file and its writer thread.
//! - `server`, `routes`, `socket`: [`router`] / [`serve`], the `/sim/` routes, `GET /ws`.
//! - `config`, `error`, `stats`, `clock`, `ids`: [`SimConfig`], [`SimError`], [`SimStats`],
//!   time and random ids.

mod clock;
mod config;
mod connection;
mod error;
mod failing;
mod groups;
mod ids;
mod inbox;
mod journal;
mod link;
mod media;
mod network;
mod pairing;
mod phone;
mod port;
mod routes;
mod seal;
mod sent;
mod server;
mod socket;
mod state;
mod stats;

pub use config::SimConfig;
pub use connection::SimConnection;
pub use error::SimError;
pub use failing::FailingView;
pub use groups::{GroupView, Participant};
pub use inbox::{InboxMedia, InboxMessage, MessageStatus};
pub use media::Blob;
pub use network::Network;
pub use seal::StateSeal;
pub use sent::{SentMessage, SentStatus};
pub use server::{router, serve};
pub use stats::SimStats;

/// A link created by a QR scan or a pairing code, as `POST /sim/scan` and
/// `POST /sim/pair-code` answer it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewLink {
    /// The wafleet device id the device gave in its `Hello`.
    pub device_id: String,
    /// The new link's id, also sent to the device in `Paired`.
    pub link_id: String,
    /// The phone number the device is now linked to.
    pub phone: String,
}
