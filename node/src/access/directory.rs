//! [`Directory`]: tenants, API keys and users over the store, each operation checking
//! what its caller may do ([`Principal`]), and [`Directory::authenticate`], which
//! turns a presented key or token into a principal.
//!
//! Authentication reads a key's or user's record through a cache of
//! [`CACHE_FOR`]: a revoked key, a locked user or a rotation's ended grace is refused by
//! every gateway within that time (plus the request in flight), and a busy key costs the
//! store one read per gateway per [`CACHE_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::login_limits::LoginLimits;
use super::records::{Key, PreviousSecret, Tenant, User};
use super::secret::{self, Claims, NewKey, SecretHash, TokenKey};
use super::{DEFAULT_TENANT, Denied, Principal, Role, password};
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

    // ---- tenants ----

    /// The tenant, or `None`; [`DEFAULT_TENANT`] always exists (as stored, or with
    /// no limit if never written).
    async fn find_tenant(&self, id: &str) -> Result<Option<Tenant>, AccessError> {
        let tenant = self.get(AccessKind::Tenant, id).await?;
        Ok(tenant.or_else(|| {
            (id == DEFAULT_TENANT).then(|| Tenant {
                name: "Default".to_owned(),
                max_devices: None,
                created_at_ms: 0,
            })
        }))
    }

    pub async fn create_tenant(
        &self,
        who: &Principal,
        new: NewTenant,
        now_ms: i64,
    ) -> Result<TenantView, AccessError> {
        who.require_operator()?;
        let id = match new.id {
            Some(id) => id,
            None => format!("t-{}", NewKey::generate().id),
        };
        check_id("tenant", &id)?;
        check_name(&new.name)?;
        if id == DEFAULT_TENANT && self.get::<Tenant>(AccessKind::Tenant, &id).await?.is_none() {
            // The implicit default tenant may be written once, to name or limit it.
        } else if self.find_tenant(&id).await?.is_some() {
            return Err(conflict("tenant_exists", format!("tenant {id} exists")));
        }
        let tenant = Tenant {
            name: new.name,
            max_devices: new.max_devices,
            created_at_ms: now_ms,
        };
        self.create(AccessKind::Tenant, &id, None, &tenant, now_ms)
            .await
            .map_err(|e| exists_as(e, "tenant_exists", &id))?;
        Ok(TenantView { id, tenant })
    }

    pub async fn tenant(&self, who: &Principal, id: &str) -> Result<TenantView, AccessError> {
        if !who.sees_tenant(id) {
            return Err(tenant_not_found(id));
        }
        let tenant = self
            .find_tenant(id)
            .await?
            .ok_or_else(|| tenant_not_found(id))?;
        Ok(TenantView {
            id: id.to_owned(),
            tenant,
        })
    }

    pub async fn list_tenants(
        &self,
        who: &Principal,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<TenantView>, AccessError> {
        if let Some(own) = &who.tenant {
            let own = self.tenant(who, own).await?;
            return Ok(after
                .is_none_or(|a| own.id > a)
                .then_some(own)
                .into_iter()
                .collect());
        }
        let mut listed: Vec<TenantView> = self
            .list(AccessKind::Tenant, None, after.clone(), limit)
            .await?
            .into_iter()
            .map(|(id, tenant)| TenantView { id, tenant })
            .collect();
        let default_listed = listed.iter().any(|t| t.id == DEFAULT_TENANT);
        let default_in_page = after.as_deref().is_none_or(|a| DEFAULT_TENANT > a)
            && (listed.len() < limit as usize
                || listed
                    .last()
                    .is_some_and(|t| t.id.as_str() > DEFAULT_TENANT));
        if !default_listed
            && default_in_page
            && let Some(tenant) = self.find_tenant(DEFAULT_TENANT).await?
        {
            listed.push(TenantView {
                id: DEFAULT_TENANT.to_owned(),
                tenant,
            });
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            listed.truncate(limit as usize);
        }
        Ok(listed)
    }

    pub async fn patch_tenant(
        &self,
        who: &Principal,
        id: &str,
        patch: TenantPatch,
        now_ms: i64,
    ) -> Result<TenantView, AccessError> {
        who.require_operator()?;
        let mut tenant = self
            .find_tenant(id)
            .await?
            .ok_or_else(|| tenant_not_found(id))?;
        if let Some(name) = patch.name {
            check_name(&name)?;
            tenant.name = name;
        }
        if let Some(max) = patch.max_devices {
            tenant.max_devices = max;
        }
        let record = record(AccessKind::Tenant, id, None, &tenant, now_ms);
        match self.store.update_access(&record).await {
            Err(StoreError::NotFound { .. }) if id == DEFAULT_TENANT => {
                self.store.create_access(&record).await?;
            }
            other => other?,
        }
        Ok(TenantView {
            id: id.to_owned(),
            tenant,
        })
    }

    /// Deletes a tenant that has no devices, keys or users left.
    pub async fn delete_tenant(&self, who: &Principal, id: &str) -> Result<(), AccessError> {
        who.require_operator()?;
        if id == DEFAULT_TENANT {
            return Err(conflict(
                "tenant_not_empty",
                "the default tenant cannot be deleted",
            ));
        }
        if self.find_tenant(id).await?.is_none() {
            return Err(tenant_not_found(id));
        }
        let devices: u64 = self
            .store
            .count_tenant_devices_by_status(id)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
        let keys = self.list::<Key>(AccessKind::Key, Some(id), None, 1).await?;
        let users = self
            .list::<User>(AccessKind::User, Some(id), None, 1)
            .await?;
        if devices > 0 || !keys.is_empty() || !users.is_empty() {
            return Err(conflict(
                "tenant_not_empty",
                format!("tenant {id} still has devices, keys or users: delete them first"),
            ));
        }
        self.store.delete_access(AccessKind::Tenant, id).await?;
        Ok(())
    }

    /// The tenant a new device of `who`'s goes to (asked for, or the caller's own),
    /// checked to exist and to have room for one more device.
    pub async fn tenant_for_new_device(
        &self,
        who: &Principal,
        asked: Option<&str>,
    ) -> Result<String, AccessError> {
        if who.devices.is_some() {
            return Err(Denied::Forbidden(
                "a key limited to some devices cannot create devices".into(),
            )
            .into());
        }
        let tenant_id = who.tenant_for_new(asked)?;
        let tenant = self
            .find_tenant(&tenant_id)
            .await?
            .ok_or_else(|| invalid("unknown_tenant", format!("there is no tenant {tenant_id}")))?;
        if let Some(max) = tenant.max_devices {
            let devices: u64 = self
                .store
                .count_tenant_devices_by_status(&tenant_id)
                .await?
                .iter()
                .map(|(_, n)| n)
                .sum();
            if devices >= u64::from(max) {
                return Err(conflict(
                    "tenant_device_limit",
                    format!("tenant {tenant_id} has its maximum of {max} devices"),
                ));
            }
        }
        Ok(tenant_id)
    }

    // ---- keys ----

    /// Makes a key; the returned text is its secret, shown this once.
    pub async fn create_key(
        &self,
        who: &Principal,
        spec: NewKeySpec,
        now_ms: i64,
    ) -> Result<(KeyView, String), AccessError> {
        check_name(&spec.name)?;
        let tenant = match (&who.tenant, spec.tenant) {
            (None, asked) => asked,
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(asked)) if asked == *own => Some(asked),
            (Some(_), Some(_)) => {
                return Err(Denied::Forbidden(
                    "a key of one tenant cannot make keys for another".into(),
                )
                .into());
            }
        };
        if who.role == Role::User && spec.role != Role::User {
            return Err(Denied::Forbidden("a user key may make user keys only".into()).into());
        }
        if spec.role == Role::User && tenant.is_none() {
            return Err(invalid(
                "tenant_required",
                "a user key belongs to a tenant: give \"tenant\"",
            ));
        }
        if let Some(tenant) = &tenant
            && self.find_tenant(tenant).await?.is_none()
        {
            return Err(invalid(
                "unknown_tenant",
                format!("there is no tenant {tenant}"),
            ));
        }
        // A key never sees more than the key that made it.
        let devices = match (&who.devices, spec.devices) {
            (None, asked) => asked,
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(asked)) => {
                if asked.iter().any(|d| !own.contains(d)) {
                    return Err(Denied::Forbidden(
                        "a key may not name devices its maker does not see".into(),
                    )
                    .into());
                }
                Some(asked)
            }
        };
        if let Some(devices) = &devices
            && (devices.is_empty() || devices.len() > 1000)
        {
            return Err(invalid(
                "invalid_devices",
                "\"devices\" lists 1 to 1000 ids",
            ));
        }
        if spec.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(invalid("invalid_expiry", "\"expires_at\" is in the past"));
        }
        let new = NewKey::generate();
        let key = Key {
            name: spec.name,
            role: spec.role,
            tenant: tenant.clone(),
            devices,
            expires_at_ms: spec.expires_at_ms,
            secret: SecretHash::of(&new.secret),
            previous: None,
            created_at_ms: now_ms,
            created_by: who.actor.clone(),
            rotated_at_ms: None,
        };
        self.create(AccessKind::Key, &new.id, tenant.as_deref(), &key, now_ms)
            .await?;
        Ok((
            KeyView {
                id: new.id.clone(),
                key,
            },
            new.text(),
        ))
    }

    /// The keys `who` may see: an operator's all (or one tenant's), a tenant admin's its
    /// tenant's, a user's those it made.
    pub async fn list_keys(
        &self,
        who: &Principal,
        tenant: Option<String>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<KeyView>, AccessError> {
        let tenant = match &who.tenant {
            None => tenant,
            Some(own) => Some(own.clone()),
        };
        let mut keys = Vec::new();
        let mut after = after;
        // A user's keys are a subset of its tenant's: read on until the page is full.
        loop {
            let page: Vec<(String, Key)> = self
                .list(AccessKind::Key, tenant.as_deref(), after.clone(), limit)
                .await?;
            let full = page.len() == limit as usize;
            after = page.last().map(|(id, _)| id.clone());
            keys.extend(
                page.into_iter()
                    .filter(|(id, key)| self.may_manage_key(who, id, key))
                    .map(|(id, key)| KeyView { id, key }),
            );
            if !full || keys.len() >= limit as usize {
                keys.truncate(limit as usize);
                return Ok(keys);
            }
        }
    }

    fn may_manage_key(&self, who: &Principal, id: &str, key: &Key) -> bool {
        let of_tenant = key
            .tenant
            .as_deref()
            .map_or(who.is_operator(), |t| who.sees_tenant(t));
        of_tenant
            && (who.role == Role::Admin
                || key.created_by == who.actor
                || who.actor == format!("key:{id}"))
    }

    async fn manageable_key(&self, who: &Principal, id: &str) -> Result<Key, AccessError> {
        let key: Key = self
            .get(AccessKind::Key, id)
            .await?
            .ok_or_else(|| key_not_found(id))?;
        if !self.may_manage_key(who, id, &key) {
            return Err(key_not_found(id));
        }
        Ok(key)
    }

    /// Revokes a key: every gateway refuses it within [`CACHE_FOR`].
    pub async fn revoke_key(&self, who: &Principal, id: &str) -> Result<(), AccessError> {
        self.manageable_key(who, id).await?;
        if !self.store.delete_access(AccessKind::Key, id).await? {
            return Err(key_not_found(id));
        }
        self.forget(AccessKind::Key, id);
        Ok(())
    }

    /// Gives a key a new secret; the old one keeps working for `grace`.
    pub async fn rotate_key(
        &self,
        who: &Principal,
        id: &str,
        grace: Duration,
        now_ms: i64,
    ) -> Result<(KeyView, String), AccessError> {
        if grace > MAX_GRACE {
            return Err(invalid(
                "invalid_grace",
                format!("grace_seconds is at most {}", MAX_GRACE.as_secs()),
            ));
        }
        let mut key = self.manageable_key(who, id).await?;
        let new = NewKey::rotate(id);
        let old = std::mem::replace(&mut key.secret, SecretHash::of(&new.secret));
        key.previous = (!grace.is_zero()).then(|| PreviousSecret {
            secret: old,
            until_ms: now_ms + grace.as_millis() as i64,
        });
        key.rotated_at_ms = Some(now_ms);
        self.store
            .update_access(&record(
                AccessKind::Key,
                id,
                key.tenant.as_deref(),
                &key,
                now_ms,
            ))
            .await
            .map_err(|e| not_found_as(e, key_not_found(id)))?;
        self.forget(AccessKind::Key, id);
        Ok((
            KeyView {
                id: id.to_owned(),
                key,
            },
            new.text(),
        ))
    }

    // ---- users ----

    fn may_manage_user(who: &Principal, user: &User) -> bool {
        who.role == Role::Admin
            && user
                .tenant
                .as_deref()
                .map_or(who.is_operator(), |t| who.sees_tenant(t))
    }

    pub async fn create_user(
        &self,
        who: &Principal,
        new: NewUser,
        now_ms: i64,
    ) -> Result<UserView, AccessError> {
        who.require_admin()?;
        check_id("username", &new.username)?;
        password::check(&new.password).map_err(|e| invalid("weak_password", e.0))?;
        let tenant = match (&who.tenant, new.tenant) {
            (None, asked) => asked,
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(asked)) if asked == *own => Some(asked),
            (Some(_), Some(_)) => {
                return Err(Denied::Forbidden(
                    "an admin of one tenant cannot make users for another".into(),
                )
                .into());
            }
        };
        if new.role == Role::User && tenant.is_none() {
            return Err(invalid(
                "tenant_required",
                "a user of role user belongs to a tenant: give \"tenant\"",
            ));
        }
        if let Some(tenant) = &tenant
            && self.find_tenant(tenant).await?.is_none()
        {
            return Err(invalid(
                "unknown_tenant",
                format!("there is no tenant {tenant}"),
            ));
        }
        let user = User {
            role: new.role,
            tenant: tenant.clone(),
            password_hash: password::hash(new.password).await,
            password_version: 1,
            locked: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        self.create(
            AccessKind::User,
            &new.username,
            tenant.as_deref(),
            &user,
            now_ms,
        )
        .await
        .map_err(|e| exists_as(e, "user_exists", &new.username))?;
        Ok(UserView {
            username: new.username,
            user,
        })
    }

    pub async fn list_users(
        &self,
        who: &Principal,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<UserView>, AccessError> {
        who.require_admin()?;
        Ok(self
            .list(AccessKind::User, who.tenant.as_deref(), after, limit)
            .await?
            .into_iter()
            .filter(|(_, user)| Self::may_manage_user(who, user))
            .map(|(username, user)| UserView { username, user })
            .collect())
    }

    async fn manageable_user(&self, who: &Principal, name: &str) -> Result<User, AccessError> {
        who.require_admin()?;
        let user: User = self
            .get(AccessKind::User, name)
            .await?
            .ok_or_else(|| user_not_found(name))?;
        if !Self::may_manage_user(who, &user) {
            return Err(user_not_found(name));
        }
        Ok(user)
    }

    pub async fn user(&self, who: &Principal, name: &str) -> Result<UserView, AccessError> {
        let user = self.manageable_user(who, name).await?;
        Ok(UserView {
            username: name.to_owned(),
            user,
        })
    }

    pub async fn patch_user(
        &self,
        who: &Principal,
        name: &str,
        patch: UserPatch,
        now_ms: i64,
    ) -> Result<UserView, AccessError> {
        let mut user = self.manageable_user(who, name).await?;
        if let Some(role) = patch.role {
            if role == Role::User && user.tenant.is_none() {
                return Err(invalid(
                    "tenant_required",
                    "a user without a tenant is an admin of every tenant",
                ));
            }
            user.role = role;
        }
        if let Some(locked) = patch.locked {
            user.locked = locked;
        }
        if let Some(password) = patch.password {
            password::check(&password).map_err(|e| invalid("weak_password", e.0))?;
            user.password_hash = password::hash(password).await;
            user.password_version += 1;
        }
        user.updated_at_ms = now_ms;
        self.store
            .update_access(&record(
                AccessKind::User,
                name,
                user.tenant.as_deref(),
                &user,
                now_ms,
            ))
            .await
            .map_err(|e| not_found_as(e, user_not_found(name)))?;
        self.forget(AccessKind::User, name);
        Ok(UserView {
            username: name.to_owned(),
            user,
        })
    }

    pub async fn delete_user(&self, who: &Principal, name: &str) -> Result<(), AccessError> {
        self.manageable_user(who, name).await?;
        if !self.store.delete_access(AccessKind::User, name).await? {
            return Err(user_not_found(name));
        }
        self.forget(AccessKind::User, name);
        Ok(())
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
