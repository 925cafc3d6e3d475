//! The stored form of a sealed text, and the place it is sealed for.
//!
//! A sealed text is one string, so that it fits every column and field a plain text
//! did: `"\u{1}wfs1:" VERSION ":" TENANT ":" BASE64(nonce || ciphertext || tag)`
//! (standard base64 without padding). It names the tenant and the version of the data
//! key that sealed it, so it opens without knowing whose it is. A stored string without
//! the leading `\u{1}wfs1:` is a text stored before texts were sealed, and reads as it
//! is. Tenant ids cannot contain `:` (`[a-zA-Z0-9_.@-]`), so the fields split cleanly.
//!
//! The associated data binds a text to its place (tenant, device, what, id): a sealed
//! text copied to another message, event or device fails to open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;

use super::SealError;

/// What every sealed text starts with.
const MARKER: &str = "\u{1}wfs1:";
/// Domain separation for the associated data.
const AAD_DOMAIN: &[u8] = b"wafleet/text/v1\0";

/// Where a text is kept: one field of one record of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub device_id: &'a str,
    /// What the record is (`message`, `delivery`, `event`).
    pub what: &'static str,
    /// Its id (a message id, an event id, ...).
    pub id: &'a str,
}

impl<'a> Place<'a> {
    /// A message's text.
    pub fn message(device_id: &'a str, message_id: &'a str) -> Place<'a> {
        Place {
            device_id,
            what: "message",
            id: message_id,
        }
    }

    /// A webhook delivery's payload.
    pub fn delivery(device_id: &'a str, event_id: &'a str) -> Place<'a> {
        Place {
            device_id,
            what: "delivery",
            id: event_id,
        }
    }

    /// A media file's record (media belong to a tenant, not to one device).
    pub fn media(media_id: &'a str) -> Place<'a> {
        Place {
            device_id: "",
            what: "media",
            id: media_id,
        }
    }

    /// A message template's text (templates belong to a tenant, not to one device).
    pub fn template(template_id: &'a str) -> Place<'a> {
        Place {
            device_id: "",
            what: "template",
            id: template_id,
        }
    }

    /// A job's content (jobs belong to a tenant, not to one device).
    pub fn job(job_id: &'a str) -> Place<'a> {
        Place {
            device_id: "",
            what: "job",
            id: job_id,
        }
    }

    /// A job recipient's own text (filled from a template); `id` is `<job id>/<seq>`.
    pub fn job_recipient(id: &'a str) -> Place<'a> {
        Place {
            device_id: "",
            what: "job_recipient",
            id,
        }
    }

    /// An event's payload on the Redis bus; `id` names the event (its kind and time:
    /// the entry's id is only known once Redis has it).
    pub fn bus_event(device_id: &'a str, id: &'a str) -> Place<'a> {
        Place {
            device_id,
            what: "event",
            id,
        }
    }

    /// `domain || (len || part)*` over tenant, device, what and id (big-endian u32
    /// lengths), so that no two places share associated data.
    pub(super) fn associated_data(&self, tenant: &str) -> Vec<u8> {
        let parts = [tenant, self.device_id, self.what, self.id];
        let mut aad =
            Vec::with_capacity(AAD_DOMAIN.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
        aad.extend_from_slice(AAD_DOMAIN);
        for part in parts {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} of device {}", self.what, self.id, self.device_id)
    }
}

/// A sealed text in its stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedText {
    stored: String,
    version: u32,
    /// Where the tenant and the base64 payload are in `stored`.
    tenant: std::ops::Range<usize>,
    payload: usize,
}

impl SealedText {
    /// The stored form of `sealed` (nonce, ciphertext and tag).
    pub(super) fn new(tenant: &str, version: u32, sealed: &[u8]) -> SealedText {
        let head = format!("{MARKER}{version}:");
        let stored = format!("{head}{tenant}:{}", BASE64.encode(sealed));
        SealedText {
            tenant: head.len()..head.len() + tenant.len(),
            payload: head.len() + tenant.len() + 1,
            version,
            stored,
        }
    }

    /// `Some` for a sealed text, `None` for a plain one (stored before texts were
    /// sealed); an error for a string that claims to be sealed but is malformed.
    pub fn parse(stored: &str) -> Result<Option<SealedText>, SealError> {
        let Some(rest) = stored.strip_prefix(MARKER) else {
            return Ok(None);
        };
        let malformed = || SealError::Truncated { len: stored.len() };
        let (version_text, rest) = rest.split_once(':').ok_or_else(malformed)?;
        let (tenant, _) = rest.split_once(':').ok_or_else(malformed)?;
        let version: u32 = version_text.parse().map_err(|_| malformed())?;
        let tenant_start = MARKER.len() + version_text.len() + 1;
        Ok(Some(SealedText {
            stored: stored.to_owned(),
            version,
            tenant: tenant_start..tenant_start + tenant.len(),
            payload: tenant_start + tenant.len() + 1,
        }))
    }

    /// The tenant whose data key sealed it.
    pub fn tenant(&self) -> &str {
        &self.stored[self.tenant.clone()]
    }

    /// The version of that data key.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.stored
    }

    pub fn into_string(self) -> String {
        self.stored
    }

    /// The nonce, ciphertext and tag it holds.
    pub(super) fn bytes(&self) -> Result<Vec<u8>, SealError> {
        BASE64
            .decode(&self.stored[self.payload..])
            .map_err(|_| SealError::Unauthentic)
    }
}

impl From<SealedText> for String {
    fn from(sealed: SealedText) -> String {
        sealed.stored
    }
}
