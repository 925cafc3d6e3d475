use super::*;
use crate::seal::MasterKey;
use crate::store::SqliteStore;

fn master(version: u32, byte: u8) -> Arc<Sealer> {
    Arc::new(Sealer::new(MasterKey::new(version, [byte; 32])))
}

fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("open"))
}

const PLACE: Place<'static> = Place {
    device_id: "shop-1",
    what: "message",
    id: "msg_1",
};

#[tokio::test]
async fn a_text_round_trips_and_is_not_readable_in_its_stored_form() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DataKeys::new(store(&dir), master(1, 1));
    let sealed = keys.seal("acme", &PLACE, "halo rahasia 👋").await.unwrap();
    assert!(!sealed.as_str().contains("halo"), "{}", sealed.as_str());
    assert_eq!(sealed.tenant(), "acme");
    assert_eq!(sealed.version(), 1);
    assert_eq!(
        keys.open(&PLACE, sealed.as_str()).await.unwrap(),
        "halo rahasia 👋"
    );
    // Another process (its own cache) opens it from the store.
    let other = DataKeys::new(keys.store.clone(), master(1, 1));
    assert_eq!(
        other.open(&PLACE, sealed.as_str()).await.unwrap(),
        "halo rahasia 👋"
    );
}

#[tokio::test]
async fn plain_texts_from_before_sealing_read_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DataKeys::new(store(&dir), master(1, 1));
    assert_eq!(keys.open(&PLACE, "old text").await.unwrap(), "old text");
    assert_eq!(keys.open(&PLACE, "").await.unwrap(), "");
}

#[tokio::test]
async fn a_text_opens_only_at_its_own_place() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DataKeys::new(store(&dir), master(1, 1));
    let sealed = keys.seal("acme", &PLACE, "secret").await.unwrap();
    for place in [
        Place::message("shop-2", "msg_1"),
        Place::message("shop-1", "msg_2"),
        Place::delivery("shop-1", "msg_1"),
    ] {
        let error = keys.open(&place, sealed.as_str()).await.unwrap_err();
        assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    }
    // Claiming another tenant picks that tenant's key, which does not open it.
    keys.seal("other", &PLACE, "x").await.unwrap();
    let moved = sealed.as_str().replace(":acme:", ":other:");
    assert!(keys.open(&PLACE, &moved).await.is_err());
}

#[tokio::test]
async fn tenants_have_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DataKeys::new(store(&dir), master(1, 1));
    let a = keys.current("a").await.unwrap();
    let b = keys.current("b").await.unwrap();
    let sealed = a.seal(&PLACE, "x");
    assert!(b.open(&PLACE, &sealed).is_err());
    assert!(a.open(&PLACE, &sealed).is_ok());
}

#[tokio::test]
async fn malformed_sealed_texts_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DataKeys::new(store(&dir), master(1, 1));
    let sealed = keys.seal("acme", &PLACE, "secret").await.unwrap();
    let text = sealed.as_str();
    for broken in [
        "\u{1}wfs1:",
        "\u{1}wfs1:x:acme:AAAA",
        "\u{1}wfs1:1:acme",
        &text[..text.len() - 4],
        &format!("{text}!"),
    ] {
        assert!(keys.open(&PLACE, broken).await.is_err(), "{broken:?}");
    }
    // A version that was never made.
    let unknown = text.replacen(":1:", ":7:", 1);
    assert!(keys.open(&PLACE, &unknown).await.is_err());
}

#[tokio::test]
async fn two_processes_making_a_tenants_first_key_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let a = DataKeys::new(store.clone(), master(1, 1));
    let b = DataKeys::new(store.clone(), master(1, 1));
    let (ka, kb) = tokio::join!(a.current("t"), b.current("t"));
    let (ka, kb) = (ka.unwrap(), kb.unwrap());
    assert_eq!((ka.version, kb.version), (1, 1));
    // Whichever lost the race uses the stored key, not its own.
    let fresh = DataKeys::new(store, master(1, 1));
    let sealed_a = ka.seal(&PLACE, "from a");
    let sealed_b = kb.seal(&PLACE, "from b");
    assert_eq!(
        fresh.open(&PLACE, sealed_a.as_str()).await.unwrap(),
        "from a"
    );
    assert_eq!(
        fresh.open(&PLACE, sealed_b.as_str()).await.unwrap(),
        "from b"
    );
}

#[tokio::test]
async fn rotation_seals_with_the_new_version_and_opens_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DataKeys::new(store(&dir), master(1, 1));
    let old = keys.seal("acme", &PLACE, "old").await.unwrap();
    assert_eq!(keys.rotate("acme").await.unwrap(), 2);
    let new = keys.seal("acme", &PLACE, "new").await.unwrap();
    assert_eq!(new.version(), 2);
    assert_eq!(keys.open(&PLACE, old.as_str()).await.unwrap(), "old");
    assert_eq!(keys.open(&PLACE, new.as_str()).await.unwrap(), "new");
    // A process that read the current version before the rotation learns of it from
    // the store once its cache is stale; a fresh one at once.
    let fresh = DataKeys::new(keys.store.clone(), master(1, 1));
    assert_eq!(fresh.current("acme").await.unwrap().version, 2);
}

#[tokio::test]
async fn rewrapping_moves_every_data_key_to_the_new_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let before = DataKeys::new(store.clone(), master(1, 1));
    let mut sealed = Vec::new();
    for tenant in ["a", "b", "c"] {
        sealed.push(before.seal(tenant, &PLACE, tenant).await.unwrap());
    }
    before.rotate("a").await.unwrap();
    sealed.push(before.seal("a", &PLACE, "a2").await.unwrap());

    // During the rotation: the new master key is current, the old one still known.
    let both = Arc::new(Sealer::with_previous(
        MasterKey::new(2, [2; 32]),
        vec![MasterKey::new(1, [1; 32])],
    ));
    let rotating = DataKeys::new(store.clone(), both);
    assert_eq!(
        rotating.rewrap_all().await.unwrap(),
        Rewrapped {
            rewrapped: 4,
            current: 0
        }
    );
    assert_eq!(
        rotating.rewrap_all().await.unwrap(),
        Rewrapped {
            rewrapped: 0,
            current: 4
        }
    );

    // After it: the new master key alone opens everything sealed before.
    let after = DataKeys::new(store.clone(), master(2, 2));
    let texts: Vec<String> = {
        let mut out = Vec::new();
        for s in &sealed {
            out.push(after.open(&PLACE, s.as_str()).await.unwrap());
        }
        out
    };
    assert_eq!(texts, ["a", "b", "c", "a2"]);
    // And the old one alone no longer does.
    let old_only = DataKeys::new(store, master(1, 1));
    assert!(old_only.open(&PLACE, sealed[0].as_str()).await.is_err());
}

#[tokio::test]
async fn data_keys_are_stored_only_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let keys = DataKeys::new(store.clone(), master(1, 1));
    assert_eq!(keys.current("acme").await.unwrap().version, 1);
    let record = store
        .get_access(AccessKind::DataKey, "acme/0000000001")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(record.tenant.as_deref(), Some("acme"));
    let stored: StoredDataKey = serde_json::from_str(&record.body).unwrap();
    assert_eq!(stored.master_version, 1);
    // The wrapped bytes are nonce + 32 + tag, and do not open under another master key.
    assert_eq!(BASE64.decode(&stored.wrapped).unwrap().len(), 12 + 32 + 16);
    let other = DataKeys::new(store, master(1, 9));
    assert!(other.current("acme").await.is_err());
}
