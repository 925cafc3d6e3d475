//! Round trips of [`MsgSecretStore`].

use std::sync::Arc;

use whatsapp_rust::store::traits::{MsgSecretEntry, MsgSecretStore};

use super::{backend, device, ok};
use crate::store::Store;

pub async fn check_msg_secret_store(store: Arc<dyn Store>) {
    let b = backend(device(&store).await).await;
    let chat = "15550000001@s.whatsapp.net";
    let me = "15550000009@s.whatsapp.net";

    assert_eq!(
        ok(b.get_msg_secret(chat, me, "M1").await, "get_msg_secret"),
        None
    );
    ok(
        b.put_msg_secret(chat, me, "M1", &[1; 32]).await,
        "put_msg_secret",
    );
    let entry = |id: &str, secret: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
        chat: Arc::from(chat),
        sender: Arc::from(me),
        msg_id: Arc::from(id),
        secret: [secret; 32],
        expires_at,
        message_ts,
    };
    assert_eq!(
        ok(
            b.put_msg_secrets(vec![entry("M2", 2, 1_000, 500), entry("M3", 3, 2_000, 0)])
                .await,
            "put_msg_secrets"
        ),
        2
    );
    // On conflict the later deadline and the known parent time win.
    ok(
        b.put_msg_secrets(vec![entry("M2", 4, 900, 0)]).await,
        "put_msg_secrets (merge)",
    );
    assert_eq!(
        ok(
            b.get_msg_secret_with_ts(chat, me, "M2").await,
            "get_msg_secret_with_ts"
        ),
        Some((vec![4; 32], 500))
    );
    assert_eq!(
        ok(b.get_msg_secret(chat, me, "M1").await, "get_msg_secret"),
        Some(vec![1; 32])
    );
    assert_eq!(
        ok(
            b.delete_expired_msg_secrets(1_500).await,
            "delete_expired_msg_secrets"
        ),
        1,
        "M2 expired; M1 never expires; M3 is still valid"
    );
    assert_eq!(ok(b.get_msg_secret(chat, me, "M2").await, "get"), None);
    assert!(ok(b.get_msg_secret(chat, me, "M1").await, "get").is_some());
    assert!(ok(b.get_msg_secret(chat, me, "M3").await, "get").is_some());
}
