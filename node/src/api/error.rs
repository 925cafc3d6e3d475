//! [`FleetError`]: why a device operation failed, each variant meaning one thing to an
//! API client (the gateway maps them to statuses in one place), and the rule codes of
//! [`FleetError::WrongState`].

use crate::store::StoreError;

/// Failures of fleet operations, each meaning one thing to an API client.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("device {0} not found")]
    DeviceNotFound(String),
    #[error("message {0} not found")]
    MessageNotFound(String),
    /// A send's `reply_to` names no message of the device's log (the id).
    #[error("reply_to: the device has no message {0:?} to reply to")]
    ReplyToNotFound(String),
    #[error("device {0} already exists")]
    DeviceExists(String),
    /// The device is not in a state that allows this; `code` names the rule.
    #[error("{message}")]
    WrongState { code: &'static str, message: String },
    #[error("this Idempotency-Key was used for a different message")]
    IdempotencyKeyReused,
    #[error("the device did not answer in time")]
    Timeout,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The device's node cannot be reached, or this process runs no devices; the same
    /// call may succeed later (a gateway says 503, retryable).
    #[error("{0}")]
    Unavailable(String),
    /// The rate limiter refused the send (429 with `Retry-After`); `code` is one of
    /// [`Refusal::code`](crate::limits::policy::Refusal::code).
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        retry_after_ms: i64,
    },
    /// The request is malformed in a way only the node can tell (e.g. a quota table
    /// that does not hold together).
    #[error("{0}")]
    Invalid(String),
    /// A webhook URL whose target is not allowed (loopback, private, link-local,
    /// metadata) while private targets are not allowed; the sentence says why.
    #[error("{0}")]
    WebhookUrlNotAllowed(String),
    /// No recorded webhook delivery has this event id (for this device).
    #[error("webhook delivery {0} not found")]
    DeliveryNotFound(String),
    /// No such group, or the device's number is not in it (WhatsApp does not tell the
    /// two apart for a stranger).
    #[error("group {0} not found")]
    GroupNotFound(String),
    /// The network refused a group operation; `code` is one of [`group_code`].
    #[error("{message}")]
    GroupRefused { code: &'static str, message: String },
}

/// The rules a [`FleetError::GroupRefused`] names, as API clients see them.
pub mod group_code {
    /// Only a group's admins add, remove, promote or demote.
    pub const NOT_ADMIN: &str = "not_group_admin";
    /// A number to add is not on WhatsApp.
    pub const NOT_ON_WHATSAPP: &str = "not_on_whatsapp";
    /// A number to remove, promote or demote is not in the group.
    pub const NOT_PARTICIPANT: &str = "not_group_participant";
    /// The network refused the subject.
    pub const INVALID_SUBJECT: &str = "invalid_subject";
    /// The device's link has no groups (see the README).
    pub const UNSUPPORTED: &str = "groups_unsupported";
    /// Any other refusal (a code this build does not know).
    pub const OTHER: &str = "group_refused";
    /// Every code above.
    pub const ALL: [&str; 6] = [
        NOT_ADMIN,
        NOT_ON_WHATSAPP,
        NOT_PARTICIPANT,
        INVALID_SUBJECT,
        UNSUPPORTED,
        OTHER,
    ];
}

/// The `&'static str` of a group refusal code received as text ([`group_code::OTHER`]
/// for one this build does not know).
pub fn known_group_code(code: &str) -> &'static str {
    group_code::ALL
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or(group_code::OTHER)
}

/// The rules a [`FleetError::WrongState`] names, as API clients see them. Every code the
/// fleet uses is here, so that a code that crossed a process boundary as text finds its
/// `&'static str` again ([`known_state_code`]).
pub mod state_code {
    /// The device was never linked (logout).
    pub const DEVICE_NOT_LINKED: &str = "device_not_linked";
    /// QR and pairing codes exist only in `SCAN_QR`.
    pub const DEVICE_NOT_IN_SCAN_QR: &str = "device_not_in_scan_qr";
    /// The link could not give a pairing code.
    pub const LINK_UNAVAILABLE: &str = "link_unavailable";
    /// Messages are accepted only while the device is linked and running.
    pub const DEVICE_NOT_READY: &str = "device_not_ready";
    /// The device stopped while handling the request.
    pub const DEVICE_STOPPING: &str = "device_stopping";
    /// A message that has left (or may have: handed to the link) cannot be cancelled.
    pub const MESSAGE_NOT_CANCELLABLE: &str = "message_not_cancellable";
    /// A code this build does not know (sent by a newer peer).
    pub const OTHER: &str = "wrong_state";

    /// Every code above.
    pub const ALL: [&str; 7] = [
        DEVICE_NOT_LINKED,
        DEVICE_NOT_IN_SCAN_QR,
        LINK_UNAVAILABLE,
        DEVICE_NOT_READY,
        DEVICE_STOPPING,
        MESSAGE_NOT_CANCELLABLE,
        OTHER,
    ];
}

/// The `&'static str` of a wrong-state code received as text; [`state_code::OTHER`] for
/// one this build does not know.
pub fn known_state_code(code: &str) -> &'static str {
    state_code::ALL
        .into_iter()
        .find(|known| *known == code)
        .unwrap_or(state_code::OTHER)
}
