//! What can go wrong in a control operation (scan, pair code, phone actions).
//! `routes` turns each variant into an HTTP status in one place.

/// A control operation on the network failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The phone number is not 8 to 15 digits.
    #[error("{0:?} is not a phone number: use 8 to 15 digits, country code first, no '+'")]
    InvalidPhone(String),
    /// No connection shows this QR code, and none did recently.
    #[error("no device is showing this qr code")]
    QrNotFound,
    /// The QR code was shown, but has been replaced, used, or its device went away.
    #[error("this qr code is no longer valid: scan the one the device shows now")]
    QrExpired,
    /// No pairing code like this was requested for this phone.
    #[error("no pairing code like this was requested for this phone")]
    PairCodeNotFound,
    /// The pairing code was requested, but has expired, been used or replaced.
    #[error("this pairing code is no longer valid: request a new one")]
    PairCodeExpired,
    /// No device is linked to this number.
    #[error("no device is linked to {0}")]
    NoLinkedDevice(String),
    /// The request body is not JSON.
    #[error("the request body is not valid json: {0}")]
    InvalidJson(String),
    /// The request body is JSON, but not the expected fields.
    #[error("the request is not valid: {0}")]
    InvalidRequest(String),
    /// No media file has this handle.
    #[error("no media file has this handle")]
    MediaNotFound,
    /// No group has this id.
    #[error("no group {0:?}")]
    GroupNotFound(String),
    /// The phone is not a participant of the group it writes to.
    #[error("{0} is not a participant of this group")]
    NotInGroup(String),
    /// The phone has no message with this id (in its inbox or among those it sent).
    #[error("the phone has no message {0:?} to reply to")]
    MessageNotFound(String),
    /// The media folder failed.
    #[error("the media folder failed: {0}")]
    Storage(String),
}

impl SimError {
    /// A stable snake_case code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            SimError::InvalidPhone(_) => "invalid_phone",
            SimError::QrNotFound => "qr_not_found",
            SimError::QrExpired => "qr_expired",
            SimError::PairCodeNotFound => "pair_code_not_found",
            SimError::PairCodeExpired => "pair_code_expired",
            SimError::NoLinkedDevice(_) => "no_linked_device",
            SimError::InvalidJson(_) => "invalid_json",
            SimError::InvalidRequest(_) => "invalid_request",
            SimError::MediaNotFound => "media_not_found",
            SimError::Storage(_) => "storage_failed",
            SimError::GroupNotFound(_) => "group_not_found",
            SimError::NotInGroup(_) => "not_participant",
            SimError::MessageNotFound(_) => "message_not_found",
        }
    }

    /// An [`InvalidPhone`](SimError::InvalidPhone) that quotes at most the start of
    /// what was given.
    pub(crate) fn invalid_phone(given: &str) -> SimError {
        SimError::InvalidPhone(given.chars().take(32).collect())
    }
}
