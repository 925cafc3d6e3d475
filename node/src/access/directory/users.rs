//! Users: create, read, list, change (lock, password, role), delete.

use super::{
    AccessError, Directory, NewUser, UserPatch, UserView, check_id, exists_as, invalid,
    not_found_as, record, user_not_found,
};
use crate::access::records::User;
use crate::access::{Principal, Role, password};
use crate::store::AccessKind;

impl Directory {
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
        let tenant = who.tenant_of_new(new.tenant)?;
        if new.role == Role::User && tenant.is_none() {
            return Err(invalid(
                "tenant_required",
                "a user of role user belongs to a tenant: give \"tenant\"",
            ));
        }
        self.require_tenant(tenant.as_deref()).await?;
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
}
