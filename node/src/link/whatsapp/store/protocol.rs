//! [`ProtocolStore`]: sender-key devices, LID mappings, base keys, device lists, group
//! metadata, privacy tokens, sent messages and pending inbound messages.

use std::collections::BTreeMap;

use async_trait::async_trait;
use whatsapp_rust::store::traits::{
    DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow, ProtocolStore,
    TcTokenEntry,
};
use whatsapp_rust::wacore::store::error::{Result, StoreError};

use super::records::{from_json, joined, now_secs, stamped, unstamp};
use super::{VaultBackend, ns};

impl VaultBackend {
    /// The sender-key status of every device of every group, by group.
    async fn all_sender_key_devices(&self) -> Result<Vec<(String, BTreeMap<String, bool>)>> {
        self.list(ns::SENDER_KEY_DEVICES)
            .await?
            .into_iter()
            .map(|(group, bytes)| Ok((group, from_json(&bytes)?)))
            .collect()
    }
}

#[async_trait]
impl ProtocolStore for VaultBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let devices: BTreeMap<String, bool> = self
            .get_json(ns::SENDER_KEY_DEVICES, group_jid)
            .await?
            .unwrap_or_default();
        Ok(devices.into_iter().collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let mut devices: BTreeMap<String, bool> = self
            .get_json(ns::SENDER_KEY_DEVICES, group_jid)
            .await?
            .unwrap_or_default();
        for (device, has_key) in entries {
            devices.insert((*device).to_owned(), *has_key);
        }
        self.put_json(ns::SENDER_KEY_DEVICES, group_jid, &devices)
            .await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.delete(ns::SENDER_KEY_DEVICES, group_jid).await
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let _guard = self.rmw.lock().await;
        for (group, mut devices) in self.all_sender_key_devices().await? {
            let before = devices.len();
            devices.retain(|device, _| !device_jids.contains(&device.as_str()));
            if devices.len() != before {
                self.put_json(ns::SENDER_KEY_DEVICES, &group, &devices)
                    .await?;
            }
        }
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        let _guard = self.rmw.lock().await;
        for (group, _) in self.list(ns::SENDER_KEY_DEVICES).await? {
            self.delete(ns::SENDER_KEY_DEVICES, &group).await?;
        }
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get_json(ns::LID, lid).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get(ns::PN, phone).await? else {
            return Ok(None);
        };
        let lid = String::from_utf8(lid).map_err(|e| StoreError::Serialization(Box::new(e)))?;
        self.get_lid_mapping(&lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _guard = self.rmw.lock().await;
        // A LID that moved to another number leaves no stale reverse entry behind.
        if let Some(old) = self.get_lid_mapping(&entry.lid).await?
            && old.phone_number != entry.phone_number
        {
            self.delete(ns::PN, &old.phone_number).await?;
        }
        self.put_json(ns::LID, &entry.lid, entry).await?;
        self.put(ns::PN, &entry.phone_number, entry.lid.as_bytes())
            .await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        for entry in entries {
            self.put_lid_mapping(entry).await?;
        }
        Ok(())
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.list(ns::LID)
            .await?
            .iter()
            .map(|(_, bytes)| from_json(bytes))
            .collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.put(ns::BASE_KEY, &joined(&[address, message_id]), base_key)
            .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        Ok(self
            .get(ns::BASE_KEY, &joined(&[address, message_id]))
            .await?
            .is_some_and(|saved| saved == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.delete(ns::BASE_KEY, &joined(&[address, message_id]))
            .await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.put_json(ns::DEVICE_LIST, &record.user, &record).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get_json(ns::DEVICE_LIST, user).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete(ns::DEVICE_LIST, user).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.get(ns::GROUP, group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.put(ns::GROUP, group_jid, blob).await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.delete(ns::GROUP, group_jid).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get_json(ns::TC_TOKEN, jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.put_json(ns::TC_TOKEN, jid, entry).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.delete(ns::TC_TOKEN, jid).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self
            .list(ns::TC_TOKEN)
            .await?
            .into_iter()
            .map(|(jid, _)| jid)
            .collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let _guard = self.rmw.lock().await;
        let mut deleted = 0;
        for (jid, bytes) in self.list(ns::TC_TOKEN).await? {
            let entry: TcTokenEntry = from_json(&bytes)?;
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
            if !token_live && !sender_live {
                self.delete(ns::TC_TOKEN, &jid).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let entry = match self.get_tc_token(jid).await? {
            Some(existing) => TcTokenEntry {
                sender_timestamp: Some(
                    existing
                        .sender_timestamp
                        .map_or(sender_timestamp, |e| e.max(sender_timestamp)),
                ),
                ..existing
            },
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        };
        self.put_tc_token(jid, &entry).await
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let existing = self.get_tc_token(jid).await?;
        if let Some(existing) = &existing
            && !existing.token.is_empty()
            && token_timestamp < existing.token_timestamp
        {
            return Ok(());
        }
        let sender_timestamp = existing.and_then(|existing| existing.sender_timestamp);
        self.put_tc_token(
            jid,
            &TcTokenEntry {
                token: token.to_vec(),
                token_timestamp,
                sender_timestamp,
            },
        )
        .await
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.put(
            ns::SENT,
            &joined(&[chat_jid, message_id]),
            &stamped(now_secs(), payload),
        )
        .await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let _guard = self.rmw.lock().await;
        let key = joined(&[chat_jid, message_id]);
        let Some(record) = self.get(ns::SENT, &key).await? else {
            return Ok(None);
        };
        self.delete(ns::SENT, &key).await?;
        Ok(Some(unstamp(&record)?.1.to_vec()))
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        // wafleet's own map of sent ids rides on whatsapp-rust's retention sweep.
        if let Err(error) = self.prune_outbound().await {
            tracing::debug!(device_id = self.device_id(), %error, "cannot prune the outbound ids");
        }
        self.delete_stamped_before(ns::SENT, cutoff_timestamp).await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.put(
            ns::PENDING_INBOUND,
            &joined(&[chat, sender, id]),
            &stamped(now_secs(), message),
        )
        .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.get(ns::PENDING_INBOUND, &joined(&[chat, sender, id]))
            .await?
            .map(|record| Ok(unstamp(&record)?.1.to_vec()))
            .transpose()
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete(ns::PENDING_INBOUND, &joined(&[chat, sender, id]))
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_stamped_before(ns::PENDING_INBOUND, cutoff_timestamp)
            .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        for row in rows {
            self.store_pending_inbound(row.chat, row.sender, row.id, row.message)
                .await?;
        }
        Ok(())
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        for key in keys {
            self.delete_pending_inbound(key.chat, key.sender, key.id)
                .await?;
        }
        Ok(())
    }
}
