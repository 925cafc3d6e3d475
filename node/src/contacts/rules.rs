//! What a contact's values must be, checked once here for every caller: its phone
//! ([`crate::phone`]), its name and its tags, and how many contacts one import takes.
//!
//! Tags: 1 to [`TAG_MAX_CHARS`] of `a-z`, `A-Z`, `0-9`, `_` and `-` ([`TAG_PATTERN`]),
//! kept in lower case (so `VIP` and `vip` are one tag); at most [`MAX_TAGS`] given for a
//! contact (repeats count, and are kept once).

use super::ContactError;

/// Most tags given for one contact.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const TAG_MAX_CHARS: usize = 32;
/// A tag as clients may give it (kept lower-cased).
pub const TAG_PATTERN: &str = "^[a-zA-Z0-9_-]{1,32}$";
/// Longest contact name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// Most contacts one import takes.
pub const MAX_IMPORT: usize = 1000;
/// Longest search (`q`), in characters.
pub const SEARCH_MAX_CHARS: usize = 64;

/// The tag as stored (lower case), if `text` is one.
pub fn tag(text: &str) -> Result<String, ContactError> {
    let valid = (1..=TAG_MAX_CHARS).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(ContactError::invalid(
            "invalid_tag",
            format!(
                "{text:?} is not a tag: use 1 to {TAG_MAX_CHARS} of a-z, A-Z, 0-9, _ and - \
                 (kept in lower case)"
            ),
        ))
    }
}

/// The tags as stored, if every one is a tag and there are at most [`MAX_TAGS`].
pub fn tags(given: &[String]) -> Result<Vec<String>, ContactError> {
    if given.len() > MAX_TAGS {
        return Err(ContactError::invalid(
            "too_many_tags",
            format!(
                "{} tags given; a contact has at most {MAX_TAGS}",
                given.len()
            ),
        ));
    }
    given.iter().map(|t| tag(t)).collect()
}

/// A name: 1 to [`NAME_MAX_CHARS`] characters, not only spaces.
pub fn name(name: &str) -> Result<(), ContactError> {
    let chars = name.chars().count();
    if (1..=NAME_MAX_CHARS).contains(&chars) && !name.trim().is_empty() {
        Ok(())
    } else {
        Err(ContactError::invalid(
            "invalid_name",
            format!("a contact's name is 1 to {NAME_MAX_CHARS} characters, not only spaces"),
        ))
    }
}

/// A search of the contacts (a phone or name prefix, see
/// [`crate::store::contact::matches`]): 1 to [`SEARCH_MAX_CHARS`] characters, not only
/// spaces.
pub fn search(q: &str) -> Result<(), ContactError> {
    let chars = q.chars().count();
    if (1..=SEARCH_MAX_CHARS).contains(&chars) && !q.trim().is_empty() {
        Ok(())
    } else {
        Err(ContactError::invalid(
            "invalid_search",
            format!("q is 1 to {SEARCH_MAX_CHARS} characters, not only spaces"),
        ))
    }
}

/// A phone's digits ([`crate::phone::digits`]).
pub fn phone(text: &str) -> Result<String, ContactError> {
    crate::phone::digits(text).map_err(|e| ContactError::invalid("invalid_phone", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: ContactError) -> &'static str {
        match error {
            ContactError::Invalid { code, .. } => code,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn tags_are_short_words_kept_in_lower_case() {
        assert_eq!(tag("VIP_2026-a").unwrap(), "vip_2026-a");
        assert_eq!(
            tag(&"a".repeat(TAG_MAX_CHARS)).unwrap().len(),
            TAG_MAX_CHARS
        );
        for bad in [
            "",
            " vip",
            "vip ",
            "a b",
            "é",
            "a,b",
            &"a".repeat(TAG_MAX_CHARS + 1),
        ] {
            assert_eq!(code(tag(bad).unwrap_err()), "invalid_tag", "{bad:?}");
        }
        let twenty: Vec<String> = (0..MAX_TAGS).map(|n| format!("t{n}")).collect();
        assert_eq!(tags(&twenty).unwrap().len(), MAX_TAGS);
        let more = [twenty, vec!["one-more".to_owned()]].concat();
        assert_eq!(code(tags(&more).unwrap_err()), "too_many_tags");
        assert_eq!(
            tags(&["A".to_owned(), "a".to_owned()]).unwrap(),
            ["a", "a"],
            "repeats are the store's to keep once"
        );
    }

    #[test]
    fn names_and_phones() {
        assert!(name("Ani").is_ok());
        assert!(name(&"é".repeat(NAME_MAX_CHARS)).is_ok());
        assert_eq!(
            code(name(&"é".repeat(NAME_MAX_CHARS + 1)).unwrap_err()),
            "invalid_name"
        );
        assert_eq!(code(name(" \t").unwrap_err()), "invalid_name");
        assert_eq!(phone("+6281234567890").unwrap(), "6281234567890");
        assert_eq!(code(phone("0812-345").unwrap_err()), "invalid_phone");
        assert!(search("an").is_ok() && search("+62").is_ok());
        assert_eq!(code(search(" ").unwrap_err()), "invalid_search");
        assert_eq!(
            code(search(&"a".repeat(SEARCH_MAX_CHARS + 1)).unwrap_err()),
            "invalid_search"
        );
    }
}
