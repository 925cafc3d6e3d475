//! Tenants: create, read, list, change, delete, and where a new device goes (its
//! tenant must exist and have room).

use super::{
    AccessError, Directory, NewTenant, TenantPatch, TenantView, check_id, check_name, conflict,
    exists_as, invalid, record, tenant_not_found,
};
use crate::access::records::{Key, Tenant, User};
use crate::access::secret::NewKey;
use crate::access::{DEFAULT_TENANT, Denied, Principal};
use crate::store::{AccessKind, StoreError};

impl Directory {
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

    /// `unknown_tenant` unless `tenant` (when given) exists.
    pub(super) async fn require_tenant(&self, tenant: Option<&str>) -> Result<(), AccessError> {
        match tenant {
            Some(tenant) if self.find_tenant(tenant).await?.is_none() => Err(invalid(
                "unknown_tenant",
                format!("there is no tenant {tenant}"),
            )),
            _ => Ok(()),
        }
    }

    /// How many devices `tenant` has.
    async fn device_count(&self, tenant: &str) -> Result<u64, AccessError> {
        Ok(self
            .store
            .count_tenant_devices_by_status(tenant)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum())
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
        let devices = self.device_count(id).await?;
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
            let devices = self.device_count(&tenant_id).await?;
            if devices >= u64::from(max) {
                return Err(conflict(
                    "tenant_device_limit",
                    format!("tenant {tenant_id} has its maximum of {max} devices"),
                ));
            }
        }
        Ok(tenant_id)
    }
}
