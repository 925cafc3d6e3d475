//! The documents the store keeps for tenants, API keys and users
//! ([`crate::store::AccessRecord::body`]). Secrets are never in them: a key's keyed hash
//! and a user's argon2id hash only.

use serde::{Deserialize, Serialize};

use super::Role;
use super::secret::SecretHash;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    /// At most this many devices; `None`: no limit.
    pub max_devices: Option<u32>,
    pub created_at_ms: i64,
}

/// An API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub role: Role,
    /// `None`: every tenant (only an admin key may have none).
    pub tenant: Option<String>,
    /// `Some`: only these devices.
    pub devices: Option<Vec<String>>,
    pub expires_at_ms: Option<i64>,
    /// The check of the current secret.
    pub secret: SecretHash,
    /// The check of the secret before the last rotation, accepted until `until_ms`.
    pub previous: Option<PreviousSecret>,
    pub created_at_ms: i64,
    /// The actor that made it.
    pub created_by: String,
    pub rotated_at_ms: Option<i64>,
}

/// A rotated-out secret during its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: SecretHash,
    pub until_ms: i64,
}

impl Key {
    /// Whether `secret` opens this key at `now_ms`.
    pub fn accepts(&self, secret: &str, now_ms: i64) -> bool {
        if self.expires_at_ms.is_some_and(|at| now_ms >= at) {
            return false;
        }
        self.secret.matches(secret)
            || self
                .previous
                .as_ref()
                .is_some_and(|p| now_ms < p.until_ms && p.secret.matches(secret))
    }
}

/// A user who logs in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub role: Role,
    /// `None`: an operator (every tenant).
    pub tenant: Option<String>,
    /// argon2id, as a PHC string.
    pub password_hash: String,
    /// Raised by each password change: tokens made before it stop working.
    pub password_version: u32,
    pub locked: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}
