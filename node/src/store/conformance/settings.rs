//! Conformance of settings: absent until put, then the last value put.

use super::{fresh_prefix, ok};
use crate::store::Store;

/// Settings: absent until put, then the last value put, with its time.
pub async fn check_settings(store: &dyn Store) {
    let key = format!("conformance-{}", fresh_prefix());
    assert_eq!(ok(store.get_setting(&key).await, "get_setting"), None);
    ok(
        store.put_setting(&key, r#"{"a":1}"#, 1_000).await,
        "put_setting",
    );
    let got = ok(store.get_setting(&key).await, "get_setting").expect("setting");
    assert_eq!(got.value, r#"{"a":1}"#);
    assert_eq!(got.updated_at_ms, 1_000);
    ok(
        store.put_setting(&key, r#"{"a":2}"#, 2_000).await,
        "put_setting",
    );
    let got = ok(store.get_setting(&key).await, "get_setting").expect("setting");
    assert_eq!(
        (got.value.as_str(), got.updated_at_ms),
        (r#"{"a":2}"#, 2_000)
    );
    let other = format!("{key}-other");
    assert_eq!(
        ok(store.get_setting(&other).await, "get_setting"),
        None,
        "keys are independent"
    );
}
