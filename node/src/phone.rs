//! Phone numbers as wafleet takes them from clients: digits with the country code, 8 to
//! 15 of them (E.164 without its `+`, which may be given and is dropped). The one rule:
//! the gateway's checks and the contact book both call [`digits`].

/// Why a text is not a phone number (the sentence a client is shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a phone number: use 8 to 15 digits with the country code, like 6281234567890"
)]
pub struct InvalidPhone(pub String);

/// The digits of `text`, a phone number with its country code and an optional leading
/// `+`.
pub fn digits(text: &str) -> Result<String, InvalidPhone> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits.to_owned())
    } else {
        Err(InvalidPhone(text.to_owned()))
    }
}
