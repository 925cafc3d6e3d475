//! WhatsApp groups as wafleet takes them from clients: the one rule for a group id
//! (the gateway's checks, sends and chats all call [`group_id`] or [`is_group_id`]), the
//! bounds of a subject, of a participant list and of a message's mentions.
//!
//! A group id is what WhatsApp calls the group's JID: digits, or an older
//! `creator-timestamp` pair of digit runs, then `@g.us` (`120363041234567890@g.us`,
//! `6281234567890-1580000000@g.us`).

/// What every group id ends with.
pub const ID_SUFFIX: &str = "@g.us";
/// The group-id rule as a regular expression (for the OpenAPI document).
pub const ID_PATTERN: &str = r"^[0-9]{5,24}(-[0-9]{5,24})?@g\.us$";
/// The longest group id the rule allows.
pub const MAX_ID_LEN: usize = 24 + 1 + 24 + ID_SUFFIX.len();
/// The longest subject, in characters (WhatsApp's limit).
pub const MAX_SUBJECT_CHARS: usize = 100;
/// The most numbers one request may add to (or create) a group with.
pub const MAX_PARTICIPANTS: usize = 256;
/// The most numbers one message may mention.
pub const MAX_MENTIONS: usize = 50;

/// Why a text is not a group id (the sentence a client is shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a group id: use the id a group listing gives, like 120363041234567890@g.us")]
pub struct InvalidGroupId(pub String);

/// `text` as a group id, if it is one.
pub fn group_id(text: &str) -> Result<String, InvalidGroupId> {
    if is_group_id(text) {
        Ok(text.to_owned())
    } else {
        Err(InvalidGroupId(text.chars().take(64).collect()))
    }
}

/// Whether `text` is a group id (see the module docs).
pub fn is_group_id(text: &str) -> bool {
    let Some(local) = text.strip_suffix(ID_SUFFIX) else {
        return false;
    };
    let run =
        |part: &str| (5..=24).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    match local.split_once('-') {
        None => run(local),
        Some((creator, stamp)) => run(creator) && run(stamp),
    }
}

/// Why a subject is not one: 1 to [`MAX_SUBJECT_CHARS`] characters, not only spaces.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.trim().is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(format!(
            "subject must have 1 to {MAX_SUBJECT_CHARS} characters, not only spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_digits_or_two_digit_runs_then_g_us() {
        for good in [
            "120363041234567890@g.us",
            "6281234567890-1580000000@g.us",
            "12345@g.us",
        ] {
            assert!(is_group_id(good), "{good}");
            assert_eq!(group_id(good).unwrap(), good);
            assert!(good.len() <= MAX_ID_LEN);
        }
        for bad in [
            "",
            "@g.us",
            "1234@g.us",
            "120363041234567890",
            "120363041234567890@s.whatsapp.net",
            "6281234567890@g.us.evil",
            "12345-@g.us",
            "12345-6789a@g.us",
            "1234567890123456789012345@g.us",
            "+120363041234567890@g.us",
        ] {
            assert!(!is_group_id(bad), "{bad}");
            assert!(group_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pattern_says_what_the_rule_does() {
        // The OpenAPI pattern is written by hand: keep its run lengths in step.
        assert!(ID_PATTERN.contains("{5,24}"));
        assert!(ID_PATTERN.ends_with(r"@g\.us$"));
    }

    #[test]
    fn subjects_have_1_to_100_characters() {
        assert!(check_subject("Tim").is_ok());
        assert!(check_subject(&"ü".repeat(MAX_SUBJECT_CHARS)).is_ok());
        assert!(check_subject(&"ü".repeat(MAX_SUBJECT_CHARS + 1)).is_err());
        assert!(check_subject(" ").is_err());
        assert!(check_subject("").is_err());
    }
}
