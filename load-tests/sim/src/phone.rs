//! A phone of the simulated network: its number, the messages that reached it and
//! those it sent, whether it is banned, whether it is on WhatsApp at all, and whether
//! sends to it fail for now. Any valid
//! number exists (and is on WhatsApp unless made absent); records are created on first
//! use.

use super::{error::SimError, failing::Failing, inbox::InboxEntry, sent::SentEntry};

/// What the network remembers about one phone number.
#[derive(Debug, Default)]
pub(crate) struct Phone {
    /// Messages linked devices sent to this phone, in arrival order.
    pub(crate) inbox: Vec<InboxEntry>,
    /// Unix ms until which the number is banned (sends from its links fail); 0 = never.
    pub(crate) banned_until_ms: i64,
    /// Messages this phone sent to linked devices, oldest first.
    pub(crate) sent: Vec<SentEntry>,
    /// The number has no WhatsApp account (`POST /sim/phones/{phone}/absent`): number
    /// checks say so and sends to it fail.
    pub(crate) absent: bool,
    /// Sends to it refused for a while (`POST /sim/phones/{phone}/fail`).
    pub(crate) failing: Failing,
}

impl Phone {
    /// The end of the ban in force at `now_ms`, if any.
    pub(crate) fn ban(&self, now_ms: i64) -> Option<i64> {
        (self.banned_until_ms > now_ms).then_some(self.banned_until_ms)
    }

    /// Whether the phone has message `id`: one that reached it, or one it sent (what it
    /// can quote in a reply).
    pub(crate) fn has(&self, id: &str) -> bool {
        self.inbox.iter().any(|entry| entry.message_id == id)
            || self.sent.iter().any(|entry| entry.message_id == id)
    }
}

/// The JID of a number's WhatsApp account.
pub(crate) fn jid(phone: &str) -> String {
    format!("{phone}@s.whatsapp.net")
}

/// Check a phone number: digits only, country code first, 8 to 15 digits.
pub(crate) fn validate(phone: &str) -> Result<(), SimError> {
    if (8..=15).contains(&phone.len()) && phone.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(SimError::invalid_phone(phone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_8_to_15_digits() {
        assert!(validate("62812345").is_ok());
        assert!(validate("628123456789012").is_ok());
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "6281234",
            "6281234567890123",
            "+6281234567",
            "62812 3456",
            "62812345a",
            "６２８１２３４５６",
        ] {
            assert!(
                matches!(validate(bad), Err(SimError::InvalidPhone(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ban_is_in_force_until_its_end() {
        let phone = Phone {
            banned_until_ms: 1_000,
            ..Phone::default()
        };
        assert_eq!(phone.ban(999), Some(1_000));
        assert_eq!(phone.ban(1_000), None);
    }
}
