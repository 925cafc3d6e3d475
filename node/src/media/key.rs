//! [`MediaKey`]: the name a media object is stored under.

use std::fmt;

use uuid::Uuid;

/// The name of one stored object: 1 to 128 of `A-Z a-z 0-9 _ - .`, not starting with
/// `.`. The rule makes a key safe as a file name (no `/`, no `..`) and as an S3 key
/// without escaping, so both backends store it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaKey(String);

impl MediaKey {
    /// `key` if it follows the rule.
    pub fn parse(key: &str) -> Option<MediaKey> {
        let ok = (1..=128).contains(&key.len())
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        ok.then(|| MediaKey(key.to_owned()))
    }

    /// A new random key (a UUID v4 without dashes): what an upload is stored under.
    pub fn random() -> MediaKey {
        MediaKey(Uuid::new_v4().simple().to_string())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_names_that_cannot_leave_a_folder() {
        for good in ["a", "0123abcd", "photo_1.jpg", "x-y.z", &"k".repeat(128)] {
            assert!(MediaKey::parse(good).is_some(), "{good}");
        }
        let long = "k".repeat(129);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "../x", "a b", "é", "a\0", &long,
        ] {
            assert!(MediaKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn random_keys_follow_the_rule_and_differ() {
        let (a, b) = (MediaKey::random(), MediaKey::random());
        assert_ne!(a, b);
        assert_eq!(MediaKey::parse(a.as_str()), Some(a));
    }
}
