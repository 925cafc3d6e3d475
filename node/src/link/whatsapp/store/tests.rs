use std::sync::Arc;

use whatsapp_rust::store::traits::{AppSyncStore, SignalStore};
use whatsapp_rust::wacore::appstate::hash::HashState;

use super::VaultBackend;
use super::records::{envelope, hex, open_envelope};
use crate::link::whatsapp::conformance::create_starting_device;
use crate::seal::{MasterKey, Sealer};
use crate::store::{SqliteStore, Store};
use crate::vault::Vault;

/// A backend on a fresh SQLite store in `dir`.
pub(super) async fn backend(dir: &std::path::Path) -> VaultBackend {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("wafleet.db")).unwrap());
    create_starting_device(store.as_ref(), "dev").await;
    let sealer = Arc::new(Sealer::new(MasterKey::new(1, [7u8; 32])));
    VaultBackend::open(Vault::new(store, sealer).device("dev", None))
        .await
        .unwrap()
}

#[test]
fn an_envelope_opens_to_what_was_sealed_in_it() {
    let sealed = envelope("123@s.whatsapp.net", b"payload");
    assert_eq!(
        open_envelope(&sealed).unwrap(),
        ("123@s.whatsapp.net", &b"payload"[..])
    );
    assert!(open_envelope(&sealed[..3]).is_err());
    assert!(open_envelope(&[0, 0, 0, 9, b'x']).is_err());
}

#[test]
fn hex_is_lowercase_and_two_digits_per_byte() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
}

/// The set-up after pairing is complete once the pre-keys are marked uploaded and each
/// app-state collection has a version; other collections do not count.
#[tokio::test]
async fn the_set_up_after_pairing_needs_the_upload_and_every_collection() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path()).await;
    let setup = b.setup();
    assert!(!setup.borrow().is_complete());
    for name in [
        "critical_block",
        "critical_unblock_low",
        "regular_low",
        "regular_high",
        "unknown",
    ] {
        b.set_version(name, HashState::default()).await.unwrap();
    }
    b.mark_prekeys_uploaded(&[]).await.unwrap();
    assert!(setup.borrow().prekeys_uploaded);
    assert!(!setup.borrow().is_complete(), "regular is missing");
    b.set_version("regular", HashState::default())
        .await
        .unwrap();
    assert!(setup.borrow().is_complete());
}
