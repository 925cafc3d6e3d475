//! The JSON shapes of the API (requests and responses), as documented in OpenAPI.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use wafleet_node::content::{Content, MediaPart};
use wafleet_node::group::is_group_id;
use wafleet_node::store::{DeviceRecord, DeviceStatus, Direction, MessageRecord, TrustLevel};

pub use wafleet_node::clock::rfc3339;

// The rules of `crate::validate` as JSON Schema patterns, so that `/openapi.json` states
// them (literals: the `#[schema]` attributes take nothing else). Keep both in step.
//
// `[^ ...]` below lists every character `char::is_whitespace` (Unicode White_Space)
// matches, spelled out because `\s` differs between regex dialects: a text that is
// "not only spaces" to the server contains one character outside this set.

/// [`crate::validate::device_id`].
pub const DEVICE_ID_PATTERN: &str = "^[a-zA-Z0-9_-]{1,64}$";

/// A time parameter (`since`, `until`): RFC 3339 in UTC, a real calendar date (what
/// [`time_param`] reads), given to every such query parameter by `openapi::complete`.
pub const RFC3339_UTC_PATTERN: &str = r"^(19[7-9][0-9]|[2-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$";

/// A phone number as the API takes it (`validate::phone`), given to the `peer` query
/// parameter and the `chat_id` path parameter by `openapi::complete`.
pub const PHONE_PATTERN: &str = r"^\+?[0-9]{8,15}$";

/// `POST /v1/devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// `[a-zA-Z0-9_-]{1,64}`; generated when absent.
    #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub id: Option<String>,
    /// A label for people, 1 to 128 characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    /// Starting trust level (default `newcomer`).
    #[schema(example = "newcomer")]
    pub trust_level: Option<TrustLevelDto>,
    /// The tenant it belongs to: a tenant's key may only give its own (the default);
    /// an admin of every tenant may give any existing one (default `default`).
    pub tenant: Option<String>,
    /// The device's webhook, as `PUT /v1/devices/{id}/webhook` takes it, or just its
    /// URL (every event, unsigned). Refused like there (the device is then not created).
    pub webhook: Option<CreateWebhook>,
}

/// A webhook in a create body: the object, or a bare URL.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CreateWebhook {
    Url(#[schema(inline)] crate::routes::webhooks::WebhookUrl),
    Full(crate::routes::webhooks::PutWebhook),
}

impl CreateWebhook {
    pub fn into_put(self) -> crate::routes::webhooks::PutWebhook {
        match self {
            CreateWebhook::Url(url) => crate::routes::webhooks::PutWebhook {
                url: url.0,
                secret: None,
                events: None,
            },
            CreateWebhook::Full(put) => put,
        }
    }
}

/// Trust levels as the API spells them.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevelDto {
    Newcomer,
    Trusted,
    Verified,
}

impl From<TrustLevelDto> for TrustLevel {
    fn from(level: TrustLevelDto) -> TrustLevel {
        match level {
            TrustLevelDto::Newcomer => TrustLevel::Newcomer,
            TrustLevelDto::Trusted => TrustLevel::Trusted,
            TrustLevelDto::Verified => TrustLevel::Verified,
        }
    }
}

/// A device as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub name: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// STOPPED, STARTING, SCAN_QR, READY, DISCONNECTED, LOGGED_OUT or FAILED.
    #[schema(example = "READY")]
    pub status: String,
    /// Why the device is in its status, when worth saying (e.g. `qr_timeout`).
    pub status_reason: Option<String>,
    /// newcomer, trusted or verified.
    pub trust_level: String,
    /// The WhatsApp number it is linked to.
    pub phone: Option<String>,
    /// The node that runs it.
    pub node: String,
    /// The webhook's URL, if it has one (`GET /v1/devices/{id}/webhook` for the rest).
    pub webhook: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_connected_at: Option<String>,
}

impl Device {
    pub fn from_record(record: DeviceRecord, node: &str) -> Device {
        Device {
            id: record.id,
            name: record.name,
            tenant: record.tenant,
            status: record.status.as_str().to_owned(),
            status_reason: record.status_reason,
            trust_level: record.trust_level.as_str().to_owned(),
            phone: record.phone,
            node: node.to_owned(),
            webhook: record.webhook.as_deref().and_then(|field| {
                wafleet_node::webhooks::config::StoredWebhook::parse(field)
                    .ok()
                    .map(|stored| stored.url)
            }),
            created_at: rfc3339(record.created_at_ms),
            updated_at: rfc3339(record.updated_at_ms),
            last_connected_at: record.last_connected_at_ms.map(rfc3339),
        }
    }
}

/// `GET /v1/devices`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<Device>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// Devices per status, over all devices (not only this page).
    #[schema(value_type = Object)]
    pub counts: serde_json::Map<String, serde_json::Value>,
}

/// Query of `GET /v1/devices`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub fn counts_json(counts: &[(DeviceStatus, u64)]) -> serde_json::Map<String, serde_json::Value> {
    DeviceStatus::ALL
        .iter()
        .map(|status| {
            let n = counts
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            (status.as_str().to_owned(), serde_json::Value::from(n))
        })
        .collect()
}

/// `POST /v1/devices/{id}/pairing-code`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingCodeRequest {
    /// The number (with country code) of the phone that will enter the code: 8 to 15
    /// digits, a leading `+` allowed.
    #[schema(example = "6281234567890", pattern = r"^\+?[0-9]{8,15}$")]
    pub phone: String,
}

/// A pairing code to type on the phone.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairingCode {
    #[schema(example = "ABCD-EFGH")]
    pub code: String,
    pub expires_at: String,
}

/// `GET /v1/devices/{id}/qr?format=raw`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RawQr {
    /// What the QR image encodes (give it to `POST /sim/scan` in the simulator).
    pub code: String,
    pub expires_at: String,
}

/// `POST /v1/devices/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Recipient: a number with country code (8 to 15 digits, a leading `+` allowed), or
    /// a group id the device is in (`120363041234567890@g.us`).
    #[schema(
        example = "6281234567890",
        pattern = r"^(\+?[0-9]{8,15}|[0-9]{5,24}(-[0-9]{5,24})?@g\.us)$"
    )]
    pub to: String,
    /// Numbers the text mentions (at most 50), each with its country code.
    #[schema(max_items = 50)]
    pub mentions: Option<Vec<crate::routes::number_checks::PhoneNumber>>,
    /// 1 to 65,536 characters, not only spaces. Required without `media`; with it, the
    /// caption (unless `media.caption` gives one).
    #[schema(
        min_length = 1,
        max_length = 65536,
        pattern = r"[^\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub text: Option<String>,
    /// A media file to send: an upload (`id`) or a file to fetch (`url`).
    pub media: Option<SendMedia>,
    /// When to send it (RFC 3339): a time ahead schedules the message (answered at once
    /// with status `scheduled`; sent at that time, or as soon after as the device's
    /// rate limiter allows); now or past sends it now. At most a year ahead (422).
    #[schema(example = "2026-12-24T09:00:00Z")]
    pub send_at: Option<String>,
    /// The message this one replies to (quotes): the `id` of any message of the device's
    /// log (`GET /v1/devices/{id}/messages`), either direction, in any chat. 422
    /// `reply_to_not_found` if the log has no such message.
    #[schema(
        min_length = 1,
        max_length = 128,
        example = "msg_0190f1c2a3b4c5d6e7f8091a2b3c4d5e"
    )]
    pub reply_to: Option<String>,
}

/// The media of a message: exactly one of `id` (`POST /v1/media`) and `url`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMedia {
    /// An uploaded file of the device's tenant.
    #[schema(pattern = "^med_[0-9a-f]{32}$")]
    pub id: Option<String>,
    /// An http(s) URL the gateway fetches (public addresses only, like webhooks).
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// What it is sent as; its size limit applies (413 above it).
    #[serde(rename = "type")]
    #[schema(pattern = "^(image|video|audio|voice|document|sticker)$")]
    pub media_type: String,
    /// The text shown with it (instead of the message's `text`).
    #[schema(max_length = 65536)]
    pub caption: Option<String>,
    /// The file name shown for a document.
    #[schema(min_length = 1, max_length = 255)]
    pub filename: Option<String>,
}

/// The answer to an accepted send.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// `queued` (or `scheduled`, with `send_at` ahead) for a new message; the current
    /// status for an idempotent repeat.
    pub status: String,
    /// The time a scheduled message will be sent at (absent when sent at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// Not sent before this time (rate limits).
    pub not_before: Option<String>,
}

/// A message as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub device_id: String,
    /// outbound or inbound.
    pub direction: String,
    /// Recipient (outbound).
    pub to: Option<String>,
    /// Sender (inbound); in a group, the participant who wrote.
    pub from: Option<String>,
    /// The group it was written in (`120363…@g.us`); absent for a one-to-one message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The numbers it mentions; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// The text; with media, its caption (may be empty).
    pub text: String,
    /// The media file it carries (`GET /v1/media/{id}` has its bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MessageMedia>,
    /// The message it replies to (quotes): the id of a message of this log; for an
    /// inbound reply to a message the device does not have, the network's id of it.
    /// Absent when it is not a reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// scheduled, queued, sent, delivered, read, failed or cancelled.
    pub status: String,
    pub error: Option<String>,
    pub created_at: String,
    /// The time a scheduled message was asked to be sent at; absent for one sent as
    /// soon as accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// Not sent before this time: the slot the device's rate limiter gave it, when
    /// later than its creation.
    pub not_before: Option<String>,
    pub sent_at: Option<String>,
    pub delivered_at: Option<String>,
    pub read_at: Option<String>,
    pub failed_at: Option<String>,
}

/// A message's media file.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageMedia {
    pub id: String,
    /// image, video, audio, voice, document or sticker.
    #[serde(rename = "type")]
    pub media_type: String,
    pub mime: String,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl From<MediaPart> for MessageMedia {
    fn from(part: MediaPart) -> MessageMedia {
        MessageMedia {
            id: part.id,
            media_type: part.media_type.as_str().to_owned(),
            mime: part.mime,
            size: part.size,
            sha256: part.sha256,
            filename: part.filename,
        }
    }
}

impl From<MessageRecord> for Message {
    fn from(m: MessageRecord) -> Message {
        let content = Content::from_stored(&m.text);
        let not_before = later_than_created(&m).map(rfc3339);
        let group = is_group_id(&m.peer_phone).then(|| m.peer_phone.clone());
        let (to, from) = match m.direction {
            Direction::Outbound => (Some(m.peer_phone), None),
            Direction::Inbound if group.is_some() => (None, content.author),
            Direction::Inbound => (None, Some(m.peer_phone)),
        };
        Message {
            id: m.id,
            device_id: m.device_id,
            direction: m.direction.as_str().to_owned(),
            to,
            from,
            group,
            mentions: content.mentions,
            text: content.text,
            media: content.media.map(MessageMedia::from),
            reply_to: content.quote.map(|quote| quote.id),
            status: m.status.as_str().to_owned(),
            error: m.error,
            created_at: rfc3339(m.created_at_ms),
            send_at: m.send_at_ms.map(rfc3339),
            not_before,
            sent_at: m.sent_at_ms.map(rfc3339),
            delivered_at: m.delivered_at_ms.map(rfc3339),
            read_at: m.read_at_ms.map(rfc3339),
            failed_at: m.failed_at_ms.map(rfc3339),
        }
    }
}

/// The message's rate-limit slot when it is later than its creation: a message sent at
/// once has its slot at its creation, which says nothing worth showing.
pub fn later_than_created(m: &MessageRecord) -> Option<i64> {
    m.not_before_ms.filter(|&slot| slot > m.created_at_ms)
}

/// `DELETE /v1/devices/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// `?limit=&cursor=` of the lists of tenants, keys, users and the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size asked for, checked.
    pub fn limit(&self) -> Result<u32, ApiError> {
        page_limit(self.limit)
    }
}

/// A page size: 1 to 500, default 50 (the contract of every new list).
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit is 1 to 500"));
    }
    Ok(limit)
}

/// The cursor of a page of `limit` (`{"<items>": [...], "next_cursor"}`): a full page
/// has one, its last item's `key`.
pub fn next_cursor<T>(items: &[T], limit: u32, key: impl Fn(&T) -> String) -> Option<String> {
    (items.len() == limit as usize)
        .then(|| items.last().map(key))
        .flatten()
}

/// A time query parameter (`since`, `until`): RFC 3339, as Unix ms; `invalid_time`
/// naming the parameter otherwise.
pub fn time_param(text: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        wafleet_node::clock::parse_rfc3339(t)
            .ok_or_else(|| ApiError::invalid("invalid_time", format!("{name} is an RFC 3339 time")))
    })
    .transpose()
}

/// For `Option<Option<T>>` fields: absent is `None`, `null` is `Some(None)`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
