use std::sync::Arc;
use std::time::Duration;

use super::directory::{AccessError, Directory, NewKeySpec, NewTenant, NewUser, UserPatch};
use super::*;
use crate::store::SqliteStore;

fn device(id: &str, tenant: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        name: id.into(),
        tenant: tenant.into(),
        status: crate::store::DeviceStatus::Stopped,
        status_reason: None,
        trust_level: crate::store::TrustLevel::Newcomer,
        phone: None,
        webhook: None,
        desired_running: false,
        created_at_ms: 0,
        updated_at_ms: 0,
        last_connected_at_ms: None,
    }
}

fn user_of(tenant: &str, devices: Option<Vec<String>>) -> Principal {
    Principal {
        actor: "key:u".into(),
        role: Role::User,
        tenant: Some(tenant.into()),
        devices,
    }
}

#[test]
fn principals_see_their_tenant_and_devices_only() {
    let op = Principal::bootstrap();
    let a = user_of("a", None);
    let a1 = user_of("a", Some(vec!["d1".into()]));
    assert!(op.sees_device(&device("x", "b")));
    assert!(a.sees_device(&device("d2", "a")));
    assert!(!a.sees_device(&device("d2", "b")));
    assert!(a1.sees_device(&device("d1", "a")));
    assert!(!a1.sees_device(&device("d2", "a")));
    assert!(
        !a1.sees_device(&device("d1", "b")),
        "a listed id of another tenant"
    );
    assert!(op.require_operator().is_ok());
    assert!(a.require_operator().is_err());
    assert!(a.require_admin().is_err());
    assert_eq!(op.tenant_for_new(None).unwrap(), DEFAULT_TENANT);
    assert_eq!(op.tenant_for_new(Some("b")).unwrap(), "b");
    assert_eq!(a.tenant_for_new(None).unwrap(), "a");
    assert!(a.tenant_for_new(Some("b")).is_err());
}

async fn directory() -> (tempfile::TempDir, Directory) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    (dir, Directory::new(Arc::new(store), "bootstrap-secret"))
}

#[tokio::test]
async fn keys_authenticate_rotate_with_grace_and_revoke() {
    let (_dir, d) = directory().await;
    let op = Principal::bootstrap();
    assert_eq!(d.authenticate("bootstrap-secret", 0).await.unwrap(), op);
    assert!(matches!(
        d.authenticate("nope", 0).await,
        Err(AccessError::Unauthorized)
    ));
    d.create_tenant(
        &op,
        NewTenant {
            id: Some("acme".into()),
            name: "Acme".into(),
            max_devices: Some(2),
        },
        0,
    )
    .await
    .unwrap();
    let spec = NewKeySpec {
        name: "ci".into(),
        role: Role::User,
        tenant: Some("acme".into()),
        devices: None,
        expires_at_ms: Some(10_000),
    };
    let (view, secret) = d.create_key(&op, spec.clone(), 0).await.unwrap();
    let who = d.authenticate(&secret, 1).await.unwrap();
    assert_eq!(who.tenant.as_deref(), Some("acme"));
    assert_eq!(who.actor, format!("key:{}", view.id));
    assert!(d.authenticate(&secret, 10_000).await.is_err(), "expired");

    // A user key makes user keys of its own tenant only.
    let mut admin_spec = spec.clone();
    admin_spec.role = Role::Admin;
    assert!(matches!(
        d.create_key(&who, admin_spec, 1).await,
        Err(AccessError::Denied(_))
    ));
    let mut other = spec.clone();
    other.tenant = Some("default".into());
    assert!(d.create_key(&who, other, 1).await.is_err());

    let (_, rotated) = d
        .rotate_key(&op, &view.id, Duration::from_secs(5), 100)
        .await
        .unwrap();
    assert!(d.authenticate(&rotated, 200).await.is_ok());
    assert!(
        d.authenticate(&secret, 200).await.is_ok(),
        "old secret in grace"
    );
    assert!(d.authenticate(&secret, 5_100).await.is_err(), "grace over");
    d.revoke_key(&op, &view.id).await.unwrap();
    assert!(d.authenticate(&rotated, 300).await.is_err(), "revoked");
    assert!(matches!(
        d.revoke_key(&op, &view.id).await,
        Err(AccessError::NotFound { .. })
    ));
}

#[tokio::test]
async fn users_log_in_unless_locked_and_tokens_end_with_the_password() {
    let (_dir, d) = directory().await;
    let op = Principal::bootstrap();
    d.create_user(
        &op,
        NewUser {
            username: "ana".into(),
            password: "correct horse".into(),
            role: Role::User,
            tenant: Some("default".into()),
        },
        0,
    )
    .await
    .unwrap();
    let login = d.login("ana", "correct horse", "1.2.3.4", 0).await.unwrap();
    let who = d.authenticate(&login.token, 1).await.unwrap();
    assert_eq!(who.actor, "user:ana");
    assert!(
        d.authenticate(&login.token, login.expires_at_ms)
            .await
            .is_err()
    );
    assert!(matches!(
        d.login("ana", "wrong password", "1.2.3.4", 0).await,
        Err(AccessError::Unauthorized)
    ));
    assert!(matches!(
        d.login("nobody", "whatever it is", "1.2.3.5", 0).await,
        Err(AccessError::Unauthorized)
    ));
    let patch = UserPatch {
        password: Some("another horse".into()),
        ..UserPatch::default()
    };
    d.patch_user(&op, "ana", patch, 2).await.unwrap();
    assert!(
        d.authenticate(&login.token, 3).await.is_err(),
        "old password's token"
    );
    let lock = UserPatch {
        locked: Some(true),
        ..UserPatch::default()
    };
    d.patch_user(&op, "ana", lock, 4).await.unwrap();
    assert!(matches!(
        d.login("ana", "another horse", "1.2.3.6", 5).await,
        Err(AccessError::Unauthorized)
    ));
}
