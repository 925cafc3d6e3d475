//! A set of master keys: the current one, which seals, and previous ones, which still
//! open what they sealed (during and after a master key rotation).
//!
//! Written as text (the key file, `WAFLEET_MASTER_KEY` and
//! `WAFLEET_MASTER_KEY_PREVIOUS`), one key per line or comma-separated, each
//! `[VERSION:]BASE64` (standard base64 of 32 bytes; no version means version 1, the
//! form every key had before rotation existed). The first key of a file is the current
//! one.

use super::{MasterKey, SealError, decode_key};

/// The current master key and the previous ones still known.
#[derive(Clone)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("current", &self.current.version())
            .field(
                "previous",
                &self
                    .previous
                    .iter()
                    .map(MasterKey::version)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MasterKeys {
    /// Only `current`.
    pub fn single(current: MasterKey) -> MasterKeys {
        MasterKeys {
            current,
            previous: Vec::new(),
        }
    }

    /// Parses keys written as [`MasterKeys::to_text`] writes them (the first one is
    /// current). The reason of an error never quotes the input (it is a secret).
    pub fn parse(text: &str) -> Result<MasterKeys, String> {
        let mut keys = parse_list(text)?.into_iter();
        let current = keys.next().ok_or_else(|| "holds no key".to_owned())?;
        let previous: Vec<MasterKey> = keys.collect();
        let mut versions: Vec<u32> = std::iter::once(current.version())
            .chain(previous.iter().map(MasterKey::version))
            .collect();
        versions.sort_unstable();
        if versions.windows(2).any(|w| w[0] == w[1]) {
            return Err("two keys have the same version (write each as VERSION:BASE64)".into());
        }
        Ok(MasterKeys { current, previous })
    }

    /// `current` from one entry and `previous` from a list, as the environment gives
    /// them.
    pub fn from_parts(current: &str, previous: Option<&str>) -> Result<MasterKeys, String> {
        let current = parse_entry(current)?;
        let text = match previous {
            Some(previous) if !previous.trim().is_empty() => {
                format!("{}:{}\n{previous}", current.version(), current.to_base64())
            }
            _ => return Ok(MasterKeys::single(current)),
        };
        MasterKeys::parse(&text)
    }

    /// The highest version among the keys.
    pub fn highest_version(&self) -> u32 {
        self.previous
            .iter()
            .map(MasterKey::version)
            .fold(self.current.version(), u32::max)
    }

    /// The text of a key file: one key per line, the current one first. A single
    /// version-1 key is written as plain base64 (the form of files made before
    /// rotation existed).
    pub fn to_text(&self) -> String {
        if self.previous.is_empty() && self.current.version() == 1 {
            return format!("{}\n", self.current.to_base64());
        }
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|key| format!("{}:{}\n", key.version(), key.to_base64()))
            .collect()
    }

    /// A new random key with the next version becomes current; every key known now
    /// becomes previous.
    pub fn rotated(&self) -> Result<MasterKeys, SealError> {
        let next = MasterKey::generate(self.highest_version() + 1)?;
        let mut previous = vec![self.current.clone()];
        previous.extend(self.previous.iter().cloned());
        Ok(MasterKeys {
            current: next,
            previous,
        })
    }
}

/// One `[VERSION:]BASE64` entry.
pub(super) fn parse_entry(entry: &str) -> Result<MasterKey, String> {
    let entry = entry.trim();
    let (version, key) = match entry.split_once(':') {
        Some((version, key)) => {
            let version: u32 = version
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| "a key's version is not a positive number".to_owned())?;
            (version, key)
        }
        None => (1, entry),
    };
    Ok(MasterKey::new(version, decode_key(key)?))
}

fn parse_list(text: &str) -> Result<Vec<MasterKey>, String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            parse_entry(entry).map_err(|reason| format!("key {}: {reason}", index + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;

    fn b64(byte: u8) -> String {
        BASE64.encode([byte; 32])
    }

    #[test]
    fn a_plain_key_is_version_one() {
        let keys = MasterKeys::parse(&format!("  {}\n", b64(1))).unwrap();
        assert_eq!(keys.current.version(), 1);
        assert!(keys.previous.is_empty());
        assert_eq!(keys.to_text(), format!("{}\n", b64(1)));
    }

    #[test]
    fn versions_and_previous_keys_round_trip() {
        let text = format!("3:{}\n2:{}, 1:{}", b64(3), b64(2), b64(1));
        let keys = MasterKeys::parse(&text).unwrap();
        assert_eq!(keys.current.version(), 3);
        assert_eq!(
            keys.previous
                .iter()
                .map(MasterKey::version)
                .collect::<Vec<_>>(),
            [2, 1]
        );
        let again = MasterKeys::parse(&keys.to_text()).unwrap();
        assert_eq!(again.to_text(), keys.to_text());
        assert_eq!(keys.highest_version(), 3);
    }

    #[test]
    fn rotation_adds_the_next_version_in_front() {
        let keys = MasterKeys::parse(&b64(1)).unwrap();
        let rotated = keys.rotated().unwrap();
        assert_eq!(rotated.current.version(), 2);
        assert_eq!(rotated.previous[0].to_base64(), b64(1));
        let text = rotated.to_text();
        assert!(text.starts_with("2:"), "{text}");
        assert!(text.contains(&format!("1:{}", b64(1))), "{text}");
    }

    #[test]
    fn bad_lists_are_errors_that_do_not_quote_the_keys() {
        for text in [
            String::new(),
            "\n , \n".to_owned(),
            format!("{},{}", b64(1), b64(2)),
            format!("0:{}", b64(1)),
            format!("x:{}", b64(1)),
            format!("2:{}\n2:{}", b64(1), b64(2)),
            format!("2:{}", BASE64.encode([1u8; 16])),
        ] {
            let error = MasterKeys::parse(&text).expect_err(&text);
            assert!(
                !error.contains(&b64(1)) && !error.contains(&b64(2)),
                "{error}"
            );
        }
    }

    #[test]
    fn the_environment_gives_current_and_previous_apart() {
        let keys = MasterKeys::from_parts(&format!("2:{}", b64(2)), Some(&b64(1))).unwrap();
        assert_eq!(keys.current.version(), 2);
        assert_eq!(keys.previous[0].version(), 1);
        let alone = MasterKeys::from_parts(&b64(1), Some("  ")).unwrap();
        assert!(alone.previous.is_empty());
        assert!(MasterKeys::from_parts(&b64(1), Some(&b64(2))).is_err());
    }
}
