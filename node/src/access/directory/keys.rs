//! API keys: create (the secret returned once), list, revoke, rotate, and who may
//! manage which key.

use std::time::Duration;

use super::{
    AccessError, Directory, KeyView, MAX_GRACE, NewKeySpec, check_name, invalid, key_not_found,
    not_found_as, record,
};
use crate::access::records::{Key, PreviousSecret};
use crate::access::secret::{NewKey, SecretHash};
use crate::access::{Denied, Principal, Role};
use crate::store::AccessKind;

impl Directory {
    /// Makes a key; the returned text is its secret, shown this once.
    pub async fn create_key(
        &self,
        who: &Principal,
        spec: NewKeySpec,
        now_ms: i64,
    ) -> Result<(KeyView, String), AccessError> {
        check_name(&spec.name)?;
        let tenant = who.tenant_of_new(spec.tenant)?;
        if who.role == Role::User && spec.role != Role::User {
            return Err(Denied::Forbidden("a user key may make user keys only".into()).into());
        }
        if spec.role == Role::User && tenant.is_none() {
            return Err(invalid(
                "tenant_required",
                "a user key belongs to a tenant: give \"tenant\"",
            ));
        }
        self.require_tenant(tenant.as_deref()).await?;
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
}
