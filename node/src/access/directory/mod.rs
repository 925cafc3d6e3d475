//! [`Directory`]: tenants, API keys and users over the store, each operation checking
//! what its caller may do ([`Principal`]), and [`Directory::authenticate`], which
//! turns a presented key or token into a principal.
//!
//! Authentication reads a key's or user's record through a cache of
//! [`CACHE_FOR`]: a revoked key, a locked user or a rotation's ended grace is refused by
//! every gateway within that time (plus the request in flight), and a busy key costs the
//! store one read per gateway per [`CACHE_FOR`].
//!
//! This file: the directory, its errors and views, authentication and login; the
//! operations on each kind of record in `tenants`, `keys` and `users`.

mod keys;
mod tenants;
mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::login_limits::LoginLimits;
use super::records::{Key, Tenant, User};
use super::secret::{self, Claims, TokenKey};
use super::{Denied, Principal, Role, password};
use crate::store::{AccessKind, AccessQuery, AccessRecord, Store, StoreError};

/// How long an authentication read of a record is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// How long a login token works.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest grace a rotation may give the old secret.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most records remembered by the authentication cache (then it starts over).
const CACHE_ENTRIES: usize = 50_000;

/// Why a directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No valid credentials: 401.
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("{what} not found")]
    NotFound { code: &'static str, what: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// Too many failed logins: try again after this long.
    #[error("too many failed logins; try again later")]
    TooManyAttempts { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(code: &'static str, message: impl Into<String>) -> AccessError {
    AccessError::Invalid {
        code,
        message: message.into(),
    }
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantView {
    pub id: String,
    pub tenant: Tenant,
}

/// A key as the API shows it (never its secret, but once at creation or rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    pub id: String,
    pub key: Key,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub username: String,
    pub user: User,
}

/// What creating a tenant asks for.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: Option<String>,
    pub name: String,
    pub max_devices: Option<u32>,
}

/// A change to a tenant: `Some` fields are written (`Some(None)` removes the limit).
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub max_devices: Option<Option<u32>>,
}

/// What creating a key asks for.
#[derive(Debug, Clone)]
pub struct NewKeySpec {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub devices: Option<Vec<String>>,
    pub expires_at_ms: Option<i64>,
}

/// What creating a user asks for.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// A change to a user: `Some` fields are written.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub locked: Option<bool>,
    pub password: Option<String>,
    pub role: Option<Role>,
}

/// A login's result.
#[derive(Debug, Clone)]
pub struct Login {
    pub token: String,
    pub expires_at_ms: i64,
}

/// A record as read for authentication, and when.
type Cached = (Instant, Option<AccessRecord>);

/// Tenants, keys and users; authentication.
pub struct Directory {
    store: Arc<dyn Store>,
    bootstrap: String,
    tokens: TokenKey,
    cache: Mutex<HashMap<(AccessKind, String), Cached>>,
    logins: LoginLimits,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").finish_non_exhaustive()
    }
}

impl Directory {
    /// The directory over `store`, with the bootstrap admin key (`WAFLEET_ADMIN_KEY`),
    /// which also keys login tokens.
    pub fn new(store: Arc<dyn Store>, bootstrap_key: impl Into<String>) -> Directory {
        let bootstrap = bootstrap_key.into();
        Directory {
            store,
            tokens: TokenKey::derive(&bootstrap),
            bootstrap,
            cache: Mutex::new(HashMap::new()),
            logins: LoginLimits::new(),
        }
    }

    // ---- authentication ----

    /// Who presents `presented` (a key or a login token) at `now_ms`.
    pub async fn authenticate(
        &self,
        presented: &str,
        now_ms: i64,
    ) -> Result<Principal, AccessError> {
        if secret::constant_time_eq(presented.as_bytes(), self.bootstrap.as_bytes()) {
            return Ok(Principal::bootstrap());
        }
        if let Some((id, secret)) = secret::parse_key(presented) {
            let key: Key = self
                .cached(AccessKind::Key, id)
                .await?
                .ok_or(AccessError::Unauthorized)?;
            if !key.accepts(secret, now_ms) {
                return Err(AccessError::Unauthorized);
            }
            return Ok(Principal {
                actor: format!("key:{id}"),
                role: key.role,
                tenant: key.tenant,
                devices: key.devices,
            });
        }
        let claims = self
            .tokens
            .verify(presented)
            .ok_or(AccessError::Unauthorized)?;
        if now_ms >= claims.expires_at_ms {
            return Err(AccessError::Unauthorized);
        }
        let user: User = self
            .cached(AccessKind::User, &claims.user)
            .await?
            .ok_or(AccessError::Unauthorized)?;
        if user.locked || user.password_version != claims.password_version {
            return Err(AccessError::Unauthorized);
        }
        Ok(Principal {
            actor: format!("user:{}", claims.user),
            role: user.role,
            tenant: user.tenant,
            devices: None,
        })
    }

    /// A record read for authentication, reused for [`CACHE_FOR`].
    async fn cached<T: DeserializeOwned>(
        &self,
        kind: AccessKind,
        id: &str,
    ) -> Result<Option<T>, AccessError> {
        let key = (kind, id.to_owned());
        let hit = {
            let cache = self.cache.lock().expect("directory cache lock");
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < CACHE_FOR)
                .map(|(_, record)| record.clone())
        };
        let record = match hit {
            Some(record) => record,
            None => {
                let record = self.store.get_access(kind, id).await?;
                let mut cache = self.cache.lock().expect("directory cache lock");
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(key, (Instant::now(), record.clone()));
                record
            }
        };
        record.map(|r| decode(&r)).transpose()
    }

    /// Logs a user in from `source` (the client's address).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<Login, AccessError> {
        if let Err(wait) = self.logins.check(username, source, Instant::now()) {
            return Err(AccessError::TooManyAttempts { retry_after: wait });
        }
        let user: Option<User> = self.get(AccessKind::User, username).await?;
        let ok = match &user {
            Some(user) => {
                password::verify(password.to_owned(), user.password_hash.clone()).await
                    && !user.locked
            }
            None => {
                // As slow as a real check, so that timing does not tell which names exist.
                let _ = password::verify(password.to_owned(), DUMMY_HASH.to_owned()).await;
                false
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            self.logins.failed(username, source, Instant::now());
            return Err(AccessError::Unauthorized);
        };
        self.logins.succeeded(username, source);
        let expires_at_ms = now_ms + TOKEN_LIFETIME.as_millis() as i64;
        let token = self.tokens.issue(&Claims {
            user: username.to_owned(),
            expires_at_ms,
            password_version: user.password_version,
        });
        Ok(Login {
            token,
            expires_at_ms,
        })
    }

    // ---- store helpers ----

    async fn get<T: DeserializeOwned>(
        &self,
        kind: AccessKind,
        id: &str,
    ) -> Result<Option<T>, AccessError> {
        self.store
            .get_access(kind, id)
            .await?
            .map(|r| decode(&r))
            .transpose()
    }

    async fn list<T: DeserializeOwned>(
        &self,
        kind: AccessKind,
        tenant: Option<&str>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, T)>, AccessError> {
        let query = AccessQuery {
            kind,
            tenant: tenant.map(str::to_owned),
            after,
            limit,
        };
        self.store
            .list_access(&query)
            .await?
            .into_iter()
            .map(|r| Ok((r.id.clone(), decode(&r)?)))
            .collect()
    }

    async fn create<T: Serialize>(
        &self,
        kind: AccessKind,
        id: &str,
        tenant: Option<&str>,
        body: &T,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.store
            .create_access(&record(kind, id, tenant, body, now_ms))
            .await?;
        self.forget(kind, id);
        Ok(())
    }

    /// Drops a record from this process's cache (other gateways' expire by themselves).
    fn forget(&self, kind: AccessKind, id: &str) {
        self.cache
            .lock()
            .expect("directory cache lock")
            .remove(&(kind, id.to_owned()));
    }
}

/// An argon2id hash of nothing anyone knows, checked when the user does not exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3i5ykdvOsO6UCD2WUu5Ue6A8DDtqbLI3z7Ah1Tnc8aQ";

fn record<T: Serialize>(
    kind: AccessKind,
    id: &str,
    tenant: Option<&str>,
    body: &T,
    now_ms: i64,
) -> AccessRecord {
    AccessRecord {
        kind,
        id: id.to_owned(),
        tenant: tenant.map(str::to_owned),
        body: serde_json::to_string(body).expect("access records serialize"),
        updated_at_ms: now_ms,
    }
}

fn decode<T: DeserializeOwned>(record: &AccessRecord) -> Result<T, AccessError> {
    serde_json::from_str(&record.body).map_err(|e| {
        AccessError::Store(StoreError::Corrupt(format!(
            "{} {}: {e}",
            record.kind.as_str(),
            record.id
        )))
    })
}

/// A tenant id's rule (`[a-zA-Z0-9_.@-]{1,64}`), for callers outside the directory.
pub fn check_tenant_id(id: &str) -> Result<(), AccessError> {
    check_id("tenant", id)
}

/// Ids of tenants and user names: `[a-zA-Z0-9_.@-]{1,64}`.
fn check_id(what: &str, id: &str) -> Result<(), AccessError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "invalid_id",
            format!("a {what} is 1 to 64 of a-z, A-Z, 0-9, _ . @ -"),
        ))
    }
}

fn check_name(name: &str) -> Result<(), AccessError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(invalid("invalid_name", "a name has 1 to 200 characters"));
    }
    Ok(())
}

fn conflict(code: &'static str, message: impl Into<String>) -> AccessError {
    AccessError::Conflict {
        code,
        message: message.into(),
    }
}

fn exists_as(error: StoreError, code: &'static str, id: &str) -> AccessError {
    match error {
        StoreError::Conflict { .. } => conflict(code, format!("{id} exists")),
        other => other.into(),
    }
}

fn not_found_as(error: StoreError, not_found: AccessError) -> AccessError {
    match error {
        StoreError::NotFound { .. } => not_found,
        other => other.into(),
    }
}

fn tenant_not_found(id: &str) -> AccessError {
    AccessError::NotFound {
        code: "tenant_not_found",
        what: format!("tenant {id}"),
    }
}

fn key_not_found(id: &str) -> AccessError {
    AccessError::NotFound {
        code: "key_not_found",
        what: format!("key {id}"),
    }
}

fn user_not_found(name: &str) -> AccessError {
    AccessError::NotFound {
        code: "user_not_found",
        what: format!("user {name}"),
    }
}
