//! [`MsgSecretStore`]: message secrets (polls, reactions, edits).

use async_trait::async_trait;
use whatsapp_rust::store::traits::{
    MsgSecretEntry, MsgSecretStore, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};
use whatsapp_rust::wacore::store::error::Result;

use super::records::{from_json, joined};
use super::{VaultBackend, ns};

/// A message secret row: the secret, its expiry and its parent message's time.
#[derive(serde::Serialize, serde::Deserialize)]
struct MsgSecretRow {
    secret: Vec<u8>,
    expires_at: i64,
    message_ts: i64,
}

#[async_trait]
impl MsgSecretStore for VaultBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let _guard = self.rmw.lock().await;
        let stored = entries.len();
        for entry in entries {
            let key = joined(&[&entry.chat, &entry.sender, &entry.msg_id]);
            let row = match self.get_json::<MsgSecretRow>(ns::MSG_SECRET, &key).await? {
                Some(existing) => MsgSecretRow {
                    secret: entry.secret.to_vec(),
                    expires_at: merge_msg_secret_expiry(existing.expires_at, entry.expires_at),
                    message_ts: merge_msg_secret_message_ts(existing.message_ts, entry.message_ts),
                },
                None => MsgSecretRow {
                    secret: entry.secret.to_vec(),
                    expires_at: entry.expires_at,
                    message_ts: entry.message_ts,
                },
            };
            self.put_json(ns::MSG_SECRET, &key, &row).await?;
        }
        Ok(stored)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .get_json::<MsgSecretRow>(ns::MSG_SECRET, &joined(&[chat, sender, msg_id]))
            .await?
            .map(|row| (row.secret, row.message_ts)))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let _guard = self.rmw.lock().await;
        let mut deleted = 0;
        for (key, bytes) in self.list(ns::MSG_SECRET).await? {
            let row: MsgSecretRow = from_json(&bytes)?;
            if row.expires_at != 0 && row.expires_at <= cutoff_timestamp {
                self.delete(ns::MSG_SECRET, &key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
