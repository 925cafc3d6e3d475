//! API key secrets and login tokens: how they look, how they are made, and how a
//! presented one is checked without keeping it.
//!
//! An API key is `wfk_<id>.<secret>`: the id (16 hex digits) names the record, the
//! secret is 32 random bytes (base64url). The store keeps `HMAC-SHA256(salt, secret)`
//! with a random salt per key: a fast keyed hash is enough because the secret has 256
//! bits of entropy (nothing to guess, so nothing to slow down), and the check costs
//! microseconds on every request, where a password hash would cost tens of
//! milliseconds. Comparison is in constant time.
//!
//! A login token is `wft_<claims>.<tag>`: base64url JSON claims (user, expiry, the
//! user's password version) and their HMAC-SHA256 under a key derived from the
//! bootstrap admin key, which every gateway of a cluster shares. Tokens are stateless:
//! any gateway checks one, and changing the password (or the admin key) ends them all.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The prefix of API keys.
pub const KEY_PREFIX: &str = "wfk_";
/// The prefix of login tokens.
pub const TOKEN_PREFIX: &str = "wft_";

/// A key's stored check: the salt and the keyed hash of its secret, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash {
    pub salt: String,
    pub hash: String,
}

impl SecretHash {
    /// The check of `secret` under a new random salt.
    pub fn of(secret: &str) -> SecretHash {
        let salt = hex(&random::<16>());
        let hash = hex(&keyed_hash(salt.as_bytes(), secret.as_bytes()));
        SecretHash { salt, hash }
    }

    /// Whether `secret` is the one this check was made of (constant time).
    pub fn matches(&self, secret: &str) -> bool {
        let presented = hex(&keyed_hash(self.salt.as_bytes(), secret.as_bytes()));
        constant_time_eq(presented.as_bytes(), self.hash.as_bytes())
    }
}

/// A new key: its id, its secret and the full text given to the client once.
#[derive(Debug)]
pub struct NewKey {
    pub id: String,
    pub secret: String,
}

impl NewKey {
    /// A fresh random id and secret.
    pub fn generate() -> NewKey {
        NewKey {
            id: hex(&random::<8>()),
            secret: URL_SAFE_NO_PAD.encode(random::<32>()),
        }
    }

    /// A new secret for the key `id` (rotation).
    pub fn rotate(id: &str) -> NewKey {
        NewKey {
            id: id.to_owned(),
            secret: URL_SAFE_NO_PAD.encode(random::<32>()),
        }
    }

    /// `wfk_<id>.<secret>`: what the client presents.
    pub fn text(&self) -> String {
        format!("{KEY_PREFIX}{}.{}", self.id, self.secret)
    }
}

/// A presented `wfk_` key split into id and secret; `None` if it does not have the
/// shape of one.
pub fn parse_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('.')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && !secret.is_empty()).then_some((id, secret))
}

/// What a login token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's name.
    #[serde(rename = "u")]
    pub user: String,
    /// Expiry, Unix milliseconds.
    #[serde(rename = "e")]
    pub expires_at_ms: i64,
    /// The user's password version when the token was made.
    #[serde(rename = "v")]
    pub password_version: u32,
}

/// Makes and checks login tokens under one key.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The token key derived from the bootstrap admin key.
    pub fn derive(admin_key: &str) -> TokenKey {
        TokenKey(keyed_hash(admin_key.as_bytes(), b"wafleet login tokens v1"))
    }

    /// A token carrying `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let tag = URL_SAFE_NO_PAD.encode(keyed_hash(&self.0, body.as_bytes()));
        format!("{TOKEN_PREFIX}{body}.{tag}")
    }

    /// The claims of a token this key issued, whatever their expiry; `None` for
    /// anything else.
    pub fn verify(&self, presented: &str) -> Option<Claims> {
        let (body, tag) = presented.strip_prefix(TOKEN_PREFIX)?.split_once('.')?;
        let expected = URL_SAFE_NO_PAD.encode(keyed_hash(&self.0, body.as_bytes()));
        if !constant_time_eq(expected.as_bytes(), tag.as_bytes()) {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }
}

fn keyed_hash(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_only_its_secret_matches() {
        let key = NewKey::generate();
        let text = key.text();
        let (id, secret) = parse_key(&text).expect("parses");
        assert_eq!((id, secret), (key.id.as_str(), key.secret.as_str()));
        let check = SecretHash::of(&key.secret);
        assert!(check.matches(secret));
        assert!(!check.matches(&NewKey::generate().secret));
        assert_ne!(
            SecretHash::of(&key.secret),
            check,
            "salted: two checks differ"
        );
        assert!(!text.contains(&check.hash));
        for bad in [
            "",
            "wfk_",
            "wfk_abc.def",
            "wfk_0123456789abcdef.",
            "xk_0123456789abcdef.x",
        ] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_verify_under_their_key_only() {
        let key = TokenKey::derive("admin");
        let claims = Claims {
            user: "ana".into(),
            expires_at_ms: 5,
            password_version: 2,
        };
        let token = key.issue(&claims);
        assert_eq!(key.verify(&token), Some(claims));
        assert_eq!(TokenKey::derive("other").verify(&token), None);
        let (body, _) = token.split_once('.').unwrap();
        assert_eq!(key.verify(&format!("{body}.AAAA")), None, "a forged tag");
        assert_eq!(key.verify("wft_garbage"), None);
    }
}
