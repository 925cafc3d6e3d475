//! Checks of the values clients send, each with its own error code.

use crate::error::ApiError;

/// Device ids: `[a-zA-Z0-9_-]{1,64}`.
pub fn device_id(id: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_device_id",
            "a device id is 1 to 64 characters of a-z, A-Z, 0-9, _ and -",
        ))
    }
}

/// Phone numbers: [`wafleet_node::phone::digits`] (digits with the country code, 8 to 15
/// of them; a leading `+` is dropped). Returns the digits.
pub fn phone(phone: &str) -> Result<String, ApiError> {
    wafleet_node::phone::digits(phone)
        .map_err(|e| ApiError::invalid("invalid_phone", e.to_string()))
}

/// Group ids: [`wafleet_node::group::group_id`] (`120363041234567890@g.us`).
pub fn group_id(id: &str) -> Result<String, ApiError> {
    wafleet_node::group::group_id(id)
        .map_err(|e| ApiError::invalid("invalid_group_id", e.to_string()))
}

/// A message's recipient: a group id ([`group_id`]) or a phone number ([`phone`]).
pub fn recipient(to: &str) -> Result<String, ApiError> {
    if to.ends_with(wafleet_node::group::ID_SUFFIX) {
        group_id(to)
    } else {
        phone(to)
    }
}

/// The numbers a message mentions: at most [`wafleet_node::group::MAX_MENTIONS`], each a
/// phone number; their digits, in the order given, each once.
pub fn mentions<'a>(
    given: impl ExactSizeIterator<Item = &'a str>,
) -> Result<Vec<String>, ApiError> {
    let max = wafleet_node::group::MAX_MENTIONS;
    if given.len() > max {
        return Err(ApiError::invalid(
            "invalid_mentions",
            format!(
                "a message mentions at most {max} numbers, not {}",
                given.len()
            ),
        ));
    }
    let mut digits: Vec<String> = Vec::with_capacity(given.len());
    for number in given {
        let number = phone(number)?;
        if !digits.contains(&number) {
            digits.push(number);
        }
    }
    Ok(digits)
}

/// Device names: 1 to 128 characters.
pub fn name(name: &str) -> Result<(), ApiError> {
    let len = name.chars().count();
    if (1..=128).contains(&len) && !name.trim().is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_name",
            "a device name is 1 to 128 characters, not only spaces",
        ))
    }
}

pub use wafleet_node::content::MAX_TEXT_CHARS;

pub fn text(text: &str) -> Result<(), ApiError> {
    let len = text.chars().count();
    if text.trim().is_empty() {
        Err(ApiError::invalid("invalid_text", "the text is empty"))
    } else if len > MAX_TEXT_CHARS {
        Err(ApiError::invalid(
            "invalid_text",
            format!("the text has {len} characters; at most {MAX_TEXT_CHARS} are allowed"),
        ))
    } else {
        Ok(())
    }
}

/// Webhook URLs: http or https, at most 2048 characters.
pub fn webhook(url: &str) -> Result<(), ApiError> {
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let host_ok = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    if scheme_ok && host_ok && url.len() <= 2048 && !url.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_webhook",
            "the webhook must be an http:// or https:// URL",
        ))
    }
}

/// Idempotency keys: 1 to 255 visible ASCII characters.
pub fn idempotency_key(key: &str) -> Result<(), ApiError> {
    if key.starts_with(wafleet_node::jobs::follow::JOB_KEY_PREFIX) {
        return Err(ApiError::invalid(
            "invalid_idempotency_key",
            "Idempotency-Keys starting with `job:` are the campaigns' own",
        ));
    }
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_idempotency_key",
            "an Idempotency-Key is 1 to 255 visible ASCII characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(device_id("shop-1_A").is_ok());
        assert!(device_id(&"a".repeat(64)).is_ok());
        assert!(device_id(&"a".repeat(65)).is_err());
        assert!(device_id("").is_err());
        assert!(device_id("a b").is_err());
        assert!(device_id("é").is_err());
    }

    #[test]
    fn phones() {
        assert_eq!(phone("6281234567890").unwrap(), "6281234567890");
        assert_eq!(phone("+6281234567890").unwrap(), "6281234567890");
        assert!(phone("0812-345").is_err());
        assert!(phone("1234567").is_err());
        assert!(phone("1234567890123456").is_err());
        assert!(phone("62 812345678").is_err());
    }

    #[test]
    fn texts_and_webhooks() {
        assert!(text("hi").is_ok());
        assert!(text("  ").is_err());
        assert!(text(&"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
        assert!(webhook("https://example.com/hook").is_ok());
        assert!(webhook("ftp://example.com").is_err());
        assert!(webhook("http:///nohost").is_err());
    }
}
