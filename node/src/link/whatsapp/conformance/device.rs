//! Round trips of [`DeviceStore`].

use std::sync::Arc;

use whatsapp_rust::store::traits::DeviceStore;

use super::{backend, device, ok};
use crate::store::Store;

pub async fn check_device_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;
    assert!(!ok(b.exists().await, "exists"));
    assert!(ok(b.load().await, "load").is_none());
    ok(b.create().await, "create");
    assert!(ok(b.exists().await, "exists"));
    let mut stored = ok(b.load().await, "load").expect("created device");
    let registration_id = stored.registration_id;
    // Creating again keeps the device (and its identity).
    ok(b.create().await, "create again");
    assert_eq!(
        ok(b.load().await, "load").map(|d| d.registration_id),
        Some(registration_id)
    );
    stored.push_name = "wafleet".into();
    stored.login_counter = 3;
    ok(b.save(&stored).await, "save");
    let loaded = ok(b.load().await, "load").expect("device");
    assert_eq!(
        (loaded.push_name.as_str(), loaded.login_counter),
        ("wafleet", 3)
    );
    assert_eq!(
        loaded.identity_key.public_key.public_key_bytes(),
        stored.identity_key.public_key.public_key_bytes()
    );
}
