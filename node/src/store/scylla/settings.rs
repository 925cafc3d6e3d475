//! Settings: small named documents, last writer wins.

use super::statements as st;
use super::{ScyllaStore, rows};
use crate::store::{Setting, StoreError};

pub(super) async fn get(store: &ScyllaStore, key: &str) -> Result<Option<Setting>, StoreError> {
    let s = &st::GET_SETTING;
    let row = store.first(s, s.bind(vec![("key", st::text(key))])).await?;
    row.map(|row| {
        Ok(Setting {
            value: rows::text(&row, 0, "setting value")?,
            updated_at_ms: rows::big(&row, 1, "setting time")?,
        })
    })
    .transpose()
}

pub(super) async fn put(
    store: &ScyllaStore,
    key: &str,
    value: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let s = &st::PUT_SETTING;
    store
        .execute(
            s,
            s.bind(vec![
                ("key", st::text(key)),
                ("value", st::text(value)),
                ("updated_at_ms", st::big(now_ms)),
            ]),
        )
        .await
        .map(drop)
}
