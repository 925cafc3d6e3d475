use super::*;
use crate::seal::{MasterKey, Sealer};
use crate::store::SqliteStore;

fn book(dir: &tempfile::TempDir) -> TemplateBook {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("open"));
    let master = Arc::new(Sealer::new(MasterKey::new(1, [7; 32])));
    TemplateBook::new(store.clone(), Arc::new(DataKeys::new(store, master)))
}

#[tokio::test]
async fn templates_are_kept_per_tenant_with_their_text_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let book = book(&dir);
    let made = book
        .create("acme", "welcome", "Halo {{name}}, kode {{code}}")
        .await
        .unwrap();
    assert!(
        made.id.starts_with("tpl_") && made.id.len() == 36,
        "{}",
        made.id
    );
    assert_eq!(book.get("acme", &made.id).await.unwrap(), made);
    assert!(matches!(
        book.get("globex", &made.id).await,
        Err(TemplateError::NotFound(_))
    ));
    let stored = book
        .store
        .get_access(AccessKind::Template, &made.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.body.contains("Halo"), "{}", stored.body);
    assert!(stored.body.contains("welcome"), "names are not secret");

    let other = book.create("acme", "bye", "Sampai jumpa").await.unwrap();
    book.create("globex", "theirs", "x").await.unwrap();
    let listed = book.list("acme", None, 10).await.unwrap();
    let mut expected = vec![made.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(
        listed.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        expected
    );
    let page = book.list("acme", Some(&expected[0]), 10).await.unwrap();
    assert_eq!(page.len(), 1);

    let changed = book
        .update("acme", &made.id, "welcome-2", "Hi {{name}}")
        .await
        .unwrap();
    assert_eq!(changed.created_at_ms, made.created_at_ms);
    assert_eq!(
        book.get("acme", &made.id).await.unwrap().text,
        "Hi {{name}}"
    );
    assert!(matches!(
        book.update("globex", &made.id, "x", "y").await,
        Err(TemplateError::NotFound(_))
    ));
    assert!(!book.delete("globex", &made.id).await.unwrap());
    assert!(book.delete("acme", &made.id).await.unwrap());
    assert!(!book.delete("acme", &made.id).await.unwrap());
}

#[tokio::test]
async fn names_texts_and_placeholders_are_checked_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let book = book(&dir);
    for (name, text, code) in [
        ("  ", "x", "invalid_name"),
        (&*"n".repeat(101), "x", "invalid_name"),
        ("n", " ", "invalid_text"),
        ("n", &*"x".repeat(MAX_TEXT_CHARS + 1), "invalid_text"),
        ("n", "Hi {{name", "invalid_template"),
        ("n", "Hi {{9}}", "invalid_template"),
    ] {
        match book.create("acme", name, text).await {
            Err(TemplateError::Invalid { code: got, .. }) => assert_eq!(got, code, "{name:?}"),
            other => panic!("{name:?} {text:?}: {other:?}"),
        }
    }
    assert!(book.list("acme", None, 10).await.unwrap().is_empty());
}
