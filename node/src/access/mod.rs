//! Access control: who is calling (a [`Principal`]), what they may see and do, and the
//! records behind it (tenants, API keys, users), written once here for the gateway to
//! call.
//!
//! # Who may do what
//! - The **operator**: the bootstrap key (`WAFLEET_ADMIN_KEY`), and `admin` keys and
//!   users without a tenant. Everything, every tenant.
//! - A **tenant admin**: an `admin` key or user of a tenant. Everything within that
//!   tenant (its devices, keys, users, audit), nothing outside it, and none of what
//!   belongs to the whole installation (tenants, shared settings).
//! - A **user**: a `user` key or user of a tenant. Its tenant's devices (or only the
//!   key's `devices`), and keys of role `user` for its tenant that it made itself.
//!
//! Another tenant's device is "not found" (its existence is not revealed); an action
//! the role does not allow is "forbidden".
//!
//! # Layout
//! - this file: [`Principal`], [`Role`], the rules.
//! - [`records`]: the JSON documents the store keeps for tenants, keys and users.
//! - [`secret`]: key secrets and login tokens. [`password`]: argon2id.
//! - [`directory`]: [`directory::Directory`], the operations (create, revoke, rotate,
//!   login, authenticate) over the store, with a short cache for authentication.
//! - [`login_limits`]: failed logins slow further attempts.
//! - [`audit`]: the audit log's writer.

pub mod audit;
pub mod directory;
pub mod login_limits;
pub mod password;
pub mod records;
pub mod secret;

use serde::{Deserialize, Serialize};

use crate::store::DeviceRecord;

/// The tenant devices belong to when none is given.
pub const DEFAULT_TENANT: &str = "default";

/// A key's or user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// As the audit log names it: `bootstrap`, `key:<id>` or `user:<name>`.
    pub actor: String,
    pub role: Role,
    /// `None`: every tenant (an operator).
    pub tenant: Option<String>,
    /// `Some`: only these devices (a key limited to some devices).
    pub devices: Option<Vec<String>>,
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The thing is outside what the caller may see: answer as if it did not exist.
    #[error("not found")]
    Hidden,
    /// The caller sees it but its role may not do this.
    #[error("{0}")]
    Forbidden(String),
}

impl Principal {
    /// The bootstrap admin key's principal.
    pub fn bootstrap() -> Principal {
        Principal {
            actor: "bootstrap".to_owned(),
            role: Role::Admin,
            tenant: None,
            devices: None,
        }
    }

    /// An admin of every tenant.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Admin && self.tenant.is_none()
    }

    /// Whether the caller sees everything of `tenant`'s (its devices limits aside).
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant)
    }

    /// Whether the caller sees the device.
    pub fn sees_device(&self, device: &DeviceRecord) -> bool {
        self.sees_tenant(&device.tenant)
            && self
                .devices
                .as_ref()
                .is_none_or(|ids| ids.contains(&device.id))
    }

    /// Whether the caller sees every device it could (no device list limits it):
    /// `false` means its checks must read the device.
    pub fn sees_all_devices(&self) -> bool {
        self.is_operator()
    }

    /// Only an operator: tenants, installation-wide settings.
    pub fn require_operator(&self) -> Result<(), Denied> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Denied::Forbidden(
                "only an admin of every tenant may do this".into(),
            ))
        }
    }

    /// An admin, of every tenant or of its own.
    pub fn require_admin(&self) -> Result<(), Denied> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Denied::Forbidden("only an admin may do this".into()))
        }
    }

    /// The tenant a new key or user the caller makes belongs to: the caller's own, or
    /// for an operator the one asked for (`None`: every tenant).
    pub fn tenant_of_new(&self, asked: Option<String>) -> Result<Option<String>, Denied> {
        match (&self.tenant, asked) {
            (None, asked) => Ok(asked),
            (Some(own), None) => Ok(Some(own.clone())),
            (Some(own), Some(asked)) if asked == *own => Ok(Some(asked)),
            (Some(_), Some(_)) => Err(Denied::Forbidden(
                "a key or user of one tenant cannot act for another".into(),
            )),
        }
    }

    /// The tenant a new device of the caller's goes to: [`Principal::tenant_of_new`],
    /// [`DEFAULT_TENANT`] when that is none.
    pub fn tenant_for_new(&self, asked: Option<&str>) -> Result<String, Denied> {
        Ok(self
            .tenant_of_new(asked.map(str::to_owned))?
            .unwrap_or_else(|| DEFAULT_TENANT.to_owned()))
    }
}

#[cfg(test)]
mod tests;
