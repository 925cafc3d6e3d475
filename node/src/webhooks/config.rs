//! A device's webhook: what an operator sets ([`WebhookSpec`]), how it is stored with
//! the device ([`StoredWebhook`], the `webhook` field of its record, the secret sealed
//! like credentials), and what the node delivers with ([`Target`], the secret opened).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::api::FleetError;
use crate::events::EventKind;
use crate::seal::Sealer;
use crate::store::SealedBlob;

/// Where a webhook's secret is sealed (namespace and key of its associated data).
const SECRET_NAMESPACE: &str = "webhook";
const SECRET_KEY: &str = "secret";
/// A secret longer than this is refused (HMAC accepts any length; this keeps records small).
pub const MAX_SECRET_LEN: usize = 512;
/// A URL longer than this is refused.
pub const MAX_URL_LEN: usize = 2048;

/// A webhook as an operator sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub url: String,
    pub secret: Option<String>,
    /// The events sent; `None`: all.
    pub events: Option<Vec<String>>,
}

/// A webhook as the API shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookView {
    pub url: String,
    pub secret_set: bool,
    /// `None`: all events.
    pub events: Option<Vec<String>>,
}

/// The `webhook` field of a device record: JSON, the secret sealed for the device.
/// A record written before webhooks had secrets holds a bare URL, read as all events
/// and no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWebhook {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<StoredSecret>,
}

/// A sealed secret in a [`StoredWebhook`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// The master-key version that sealed it.
    pub key_version: u32,
    /// Nonce, ciphertext and tag, standard base64.
    pub sealed: String,
}

/// What a node delivers to: the URL, the events wanted, the secret in clear (in memory
/// only).
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    /// `None`: every event.
    pub events: Option<BTreeSet<EventKind>>,
    pub secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret_set", &self.secret.is_some())
            .finish()
    }
}

impl Target {
    /// Whether this webhook is sent `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.contains(&kind))
    }
}

/// The event names of `events`, checked and each once, in a stable order; `Invalid`
/// names the unknown one.
fn checked_events(events: &[String]) -> Result<Vec<String>, FleetError> {
    if events.is_empty() {
        return Err(FleetError::Invalid(
            "events names at least one event; leave it out to send every event".into(),
        ));
    }
    let mut kinds = BTreeSet::new();
    for name in events {
        let kind = EventKind::parse(name).ok_or_else(|| {
            FleetError::Invalid(format!(
                "unknown event {name:?}; known: {}",
                EventKind::ALL.map(EventKind::as_str).join(", ")
            ))
        })?;
        kinds.insert(kind);
    }
    Ok(kinds.into_iter().map(|k| k.as_str().to_owned()).collect())
}

impl WebhookSpec {
    /// Checks what can be checked without the network (length, events, secret), and
    /// seals the secret for `device_id`: the form stored with the device.
    pub fn seal(&self, device_id: &str, sealer: &Sealer) -> Result<StoredWebhook, FleetError> {
        if self.url.len() > MAX_URL_LEN {
            return Err(FleetError::Invalid(format!(
                "the webhook URL is longer than {MAX_URL_LEN} bytes"
            )));
        }
        let events = self.events.as_deref().map(checked_events).transpose()?;
        let secret = match &self.secret {
            None => None,
            Some(secret) if secret.is_empty() || secret.len() > MAX_SECRET_LEN => {
                return Err(FleetError::Invalid(format!(
                    "a webhook secret has 1 to {MAX_SECRET_LEN} bytes"
                )));
            }
            Some(secret) => {
                let blob = sealer.seal(device_id, SECRET_NAMESPACE, SECRET_KEY, secret.as_bytes());
                Some(StoredSecret {
                    key_version: blob.key_version,
                    sealed: BASE64.encode(&blob.bytes),
                })
            }
        };
        Ok(StoredWebhook {
            url: self.url.clone(),
            events,
            secret,
        })
    }
}

impl StoredWebhook {
    /// Reads the `webhook` field of a device record.
    pub fn parse(field: &str) -> Result<StoredWebhook, FleetError> {
        if !field.trim_start().starts_with('{') {
            return Ok(StoredWebhook {
                url: field.to_owned(),
                events: None,
                secret: None,
            });
        }
        serde_json::from_str(field)
            .map_err(|e| FleetError::Internal(format!("stored webhook is unreadable: {e}")))
    }

    /// The text stored in the device record.
    pub fn to_field(&self) -> String {
        serde_json::to_string(self).expect("a webhook serializes")
    }

    pub fn view(&self) -> WebhookView {
        WebhookView {
            url: self.url.clone(),
            secret_set: self.secret.is_some(),
            events: self.events.clone(),
        }
    }

    /// The target to deliver to, the secret opened with the device's key.
    pub fn open(&self, device_id: &str, sealer: &Sealer) -> Result<Target, FleetError> {
        let secret = match &self.secret {
            None => None,
            Some(stored) => {
                let bytes = BASE64.decode(&stored.sealed).map_err(|e| {
                    FleetError::Internal(format!("stored webhook secret is not base64: {e}"))
                })?;
                let blob = SealedBlob {
                    key_version: stored.key_version,
                    bytes,
                };
                Some(
                    sealer
                        .open(device_id, SECRET_NAMESPACE, SECRET_KEY, &blob)
                        .map_err(|e| {
                            FleetError::Internal(format!(
                                "the webhook secret of {device_id} cannot be opened: {e}"
                            ))
                        })?,
                )
            }
        };
        let events = self
            .events
            .as_ref()
            .map(|names| names.iter().filter_map(|n| EventKind::parse(n)).collect());
        Ok(Target {
            url: self.url.clone(),
            events,
            secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(crate::seal::MasterKey::new(1, [7u8; 32]))
    }

    #[test]
    fn the_secret_is_sealed_for_its_device_and_never_stored_in_clear() {
        let spec = WebhookSpec {
            url: "https://example.test/hook".into(),
            secret: Some("s3cret-value".into()),
            events: Some(vec![
                "status".into(),
                "message.inbound".into(),
                "status".into(),
            ]),
        };
        let stored = spec.seal("dev-1", &sealer()).unwrap();
        let field = stored.to_field();
        assert!(!field.contains("s3cret-value"), "{field}");
        let back = StoredWebhook::parse(&field).unwrap();
        assert_eq!(back, stored);
        assert_eq!(
            back.events.as_deref(),
            Some(&["status".to_owned(), "message.inbound".to_owned()][..]),
            "each once, in event order"
        );
        let target = back.open("dev-1", &sealer()).unwrap();
        assert_eq!(target.secret.as_deref(), Some(&b"s3cret-value"[..]));
        assert!(target.wants(EventKind::Status));
        assert!(!target.wants(EventKind::Qr));
        assert!(
            back.open("dev-2", &sealer()).is_err(),
            "sealed for one device, it does not open for another"
        );
        assert!(back.view().secret_set);
    }

    #[test]
    fn a_bare_url_is_a_webhook_of_every_event_without_secret() {
        let stored = StoredWebhook::parse("https://example.test/old").unwrap();
        let target = stored.open("d", &sealer()).unwrap();
        assert_eq!(target.url, "https://example.test/old");
        assert!(target.secret.is_none());
        assert!(target.wants(EventKind::Qr));
    }

    #[test]
    fn unknown_events_and_bad_secrets_are_refused() {
        let bad_event = WebhookSpec {
            url: "https://example.test".into(),
            secret: None,
            events: Some(vec!["message.sent".into()]),
        };
        assert!(matches!(
            bad_event.seal("d", &sealer()),
            Err(FleetError::Invalid(m)) if m.contains("message.sent")
        ));
        let no_events = WebhookSpec {
            url: "https://example.test".into(),
            secret: None,
            events: Some(Vec::new()),
        };
        assert!(matches!(
            no_events.seal("d", &sealer()),
            Err(FleetError::Invalid(_))
        ));
        let empty_secret = WebhookSpec {
            url: "https://example.test".into(),
            secret: Some(String::new()),
            events: None,
        };
        assert!(matches!(
            empty_secret.seal("d", &sealer()),
            Err(FleetError::Invalid(_))
        ));
    }
}
