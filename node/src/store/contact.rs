//! The rows of the contact book: each tenant's saved contacts, keyed by phone, with
//! their tags, and what a write makes of a stored contact (one rule for every backend).
//!
//! A store keeps what it is given: phones as digits, tags already checked and
//! lowercased ([`crate::contacts`] holds the rules a client's values must pass). A
//! contact's tags are a set: stored sorted and without repeats, which
//! [`ContactRecord::tags`] always is.

use std::collections::BTreeSet;

use super::StoreError;

/// One saved contact of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    pub tenant: String,
    /// Digits with the country code: the contact's id within its tenant.
    pub phone: String,
    pub name: String,
    /// Sorted, each once.
    pub tags: Vec<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One contact to create or update ([`super::Store::upsert_contacts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpsert {
    pub phone: String,
    pub name: String,
    /// `None` keeps the tags of a contact that exists (a new one has none).
    pub tags: Option<Vec<String>>,
}

/// What an upsert wrote: the contact after it, and whether it was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub contact: ContactRecord,
    pub created: bool,
}

/// A page request for [`super::Store::list_contacts`]: a tenant's contacts in phone
/// order (byte order of the digits), after `after` (exclusive), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactQuery {
    pub tenant: String,
    /// Only contacts with this tag.
    pub tag: Option<String>,
    /// Only contacts that [`matches`] this search.
    pub search: Option<String>,
    /// The previous page's last phone.
    pub after: Option<String>,
    pub limit: u32,
}

/// A tag of a tenant's contacts and how many have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCount {
    pub tag: String,
    pub count: u64,
}

/// A set of tags as stored: sorted, each once.
pub fn tag_set(tags: &[String]) -> Vec<String> {
    tags.iter()
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}

/// The contact `upsert` makes of `existing` (`None`: there is none) in `tenant` at
/// `now_ms`: name replaced, tags replaced when given (kept otherwise), `created_at_ms`
/// kept, `updated_at_ms` now.
pub fn upserted(
    tenant: &str,
    existing: Option<&ContactRecord>,
    upsert: &ContactUpsert,
    now_ms: i64,
) -> Upserted {
    let tags = match (&upsert.tags, existing) {
        (Some(tags), _) => tag_set(tags),
        (None, Some(existing)) => existing.tags.clone(),
        (None, None) => Vec::new(),
    };
    Upserted {
        contact: ContactRecord {
            tenant: tenant.to_owned(),
            phone: upsert.phone.clone(),
            name: upsert.name.clone(),
            tags,
            created_at_ms: existing.map_or(now_ms, |e| e.created_at_ms),
            updated_at_ms: now_ms,
        },
        created: existing.is_none(),
    }
}

/// `existing` with its tags replaced by `tags` at `now_ms`.
pub fn retagged(existing: &ContactRecord, tags: &[String], now_ms: i64) -> ContactRecord {
    ContactRecord {
        tags: tag_set(tags),
        updated_at_ms: now_ms,
        ..existing.clone()
    }
}

/// Whether `contact` matches the search `q`: its phone starts with `q`'s digits (a
/// leading `+` dropped), or its name starts with `q`, case aside (Unicode lower case).
pub fn matches(q: &str, contact: &ContactRecord) -> bool {
    let digits = q.strip_prefix('+').unwrap_or(q);
    let by_phone = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && contact.phone.starts_with(digits);
    by_phone || contact.name.to_lowercase().starts_with(&q.to_lowercase())
}

/// A contact's tags as both stores keep them in its row: a JSON array of strings.
pub(crate) fn tags_text(tags: &[String]) -> String {
    serde_json::Value::from(tags.to_vec()).to_string()
}

/// The tags of [`tags_text`].
pub(crate) fn tags_of_text(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("contact tags {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn an_upsert_keeps_the_creation_time_and_the_tags_unless_given() {
        let first = upserted(
            "t",
            None,
            &ContactUpsert {
                phone: "6281".into(),
                name: "Ani".into(),
                tags: Some(tags(&["vip", "b", "vip"])),
            },
            10,
        );
        assert!(first.created);
        assert_eq!(first.contact.tags, tags(&["b", "vip"]), "sorted, once each");
        assert_eq!(
            (first.contact.created_at_ms, first.contact.updated_at_ms),
            (10, 10)
        );

        let renamed = upserted(
            "t",
            Some(&first.contact),
            &ContactUpsert {
                phone: "6281".into(),
                name: "Ani S".into(),
                tags: None,
            },
            20,
        );
        assert!(!renamed.created);
        assert_eq!(renamed.contact.tags, tags(&["b", "vip"]), "kept");
        assert_eq!(renamed.contact.name, "Ani S");
        assert_eq!(
            (renamed.contact.created_at_ms, renamed.contact.updated_at_ms),
            (10, 20)
        );

        let found = |q: &str| matches(q, &renamed.contact);
        assert!(found("628") && found("+6281") && found("ani") && found("ANI S"));
        assert!(!found("6282") && !found("ni") && !found("+ani"));

        let text = tags_text(&renamed.contact.tags);
        assert_eq!(text, r#"["b","vip"]"#);
        assert_eq!(tags_of_text(&text).unwrap(), renamed.contact.tags);
        assert!(tags_of_text("b,vip").is_err());

        let cleared = retagged(&renamed.contact, &[], 30);
        assert!(cleared.tags.is_empty());
        assert_eq!((cleared.created_at_ms, cleared.updated_at_ms), (10, 30));
    }
}
