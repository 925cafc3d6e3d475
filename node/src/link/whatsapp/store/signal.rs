//! [`SignalStore`]: identities, sessions, pre-keys, signed pre-keys and sender keys.

use std::collections::HashMap;

use async_trait::async_trait;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::SignalStore;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::types::jid::JidExt;
use whatsapp_rust::{Jid, Server};

use super::{VaultBackend, ns};

/// The device ids whatsapp-rust looks through when it moves a contact's Signal state
/// from its phone number to its LID (`MIGRATION_DEVICE_RANGE` in its `client/lid_pn.rs`):
/// state under a device id past these is never moved, so it need not be found.
const MIGRATION_DEVICE_IDS: u16 = 100;

/// The servers a contact's Signal addresses are under.
const SIGNAL_SERVERS: [Server; 4] = [Server::Pn, Server::Lid, Server::Hosted, Server::HostedLid];

/// Every Signal address `user` can have state under, as whatsapp-rust keys its records
/// (`ProtocolAddress::as_str`: `user[:device]@server.0`).
fn signal_addresses_of(user: &str) -> Vec<String> {
    SIGNAL_SERVERS
        .iter()
        .flat_map(|server| {
            (0..MIGRATION_DEVICE_IDS).map(move |device| {
                Jid::new(user, *server)
                    .with_device(device)
                    .to_protocol_address()
                    .as_str()
                    .to_owned()
            })
        })
        .collect()
}

fn prekey_key(id: u32) -> String {
    format!("{id:010}")
}

fn prekey_keys(ids: &[u32]) -> Vec<String> {
    ids.iter().map(|id| prekey_key(*id)).collect()
}

/// The natural key, among the pre-keys, of the highest pre-key id stored (`u32`
/// big-endian): kept with every write of pre-keys, in the same write, so that
/// [`SignalStore::get_max_prekey_id`] reads one record instead of opening every
/// pre-key (812 a device after pairing). Not a number, so no pre-key's key.
const PREKEY_MAX: &str = "max";

/// A pre-key record: whether it was uploaded, then the record.
fn prekey_payload(record: &[u8], uploaded: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + record.len());
    out.push(u8::from(uploaded));
    out.extend_from_slice(record);
    out
}

/// The record of a pre-key payload (what follows its uploaded flag).
fn prekey_record(payload: &[u8]) -> Option<Bytes> {
    (!payload.is_empty()).then(|| Bytes::copy_from_slice(&payload[1..]))
}

impl VaultBackend {
    /// The highest pre-key id stored: its record, or, for a device whose pre-keys were
    /// stored before that record existed, every pre-key opened.
    async fn max_prekey_id(&self) -> Result<u32> {
        match self.recorded_max_prekey_id().await? {
            Some(max) => Ok(max),
            None => self.scan_max_prekey_id().await,
        }
    }

    /// The record of the highest pre-key id, if there is one.
    async fn recorded_max_prekey_id(&self) -> Result<Option<u32>> {
        self.get(ns::PREKEY, PREKEY_MAX)
            .await?
            .map(|bytes| {
                <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Validation("malformed highest pre-key id".into()))
            })
            .transpose()
    }

    async fn scan_max_prekey_id(&self) -> Result<u32> {
        Ok(self
            .list(ns::PREKEY)
            .await?
            .iter()
            .filter_map(|(key, _)| key.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
    }

    /// Stores `keys` (id, record) and, if one is higher, the new highest id: one write.
    async fn store_prekeys(&self, keys: &[(u32, &[u8])], uploaded: bool) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let max = self.max_prekey_id().await?;
        let mut records: Vec<(String, Vec<u8>)> = keys
            .iter()
            .map(|(id, record)| (prekey_key(*id), prekey_payload(record, uploaded)))
            .collect();
        let highest = keys.iter().map(|(id, _)| *id).max().unwrap_or(0);
        if highest > max {
            records.push((PREKEY_MAX.to_owned(), highest.to_be_bytes().to_vec()));
        }
        self.put_many(ns::PREKEY, &records).await
    }
}

#[async_trait]
impl SignalStore for VaultBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put(ns::IDENTITY, address, &key).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        Ok(self
            .get(ns::IDENTITY, address)
            .await?
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok()))
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.delete(ns::IDENTITY, address).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get(ns::SESSION, address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put(ns::SESSION, address, session).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete(ns::SESSION, address).await
    }

    /// Whether any session or identity is stored for `user`: asked before whatsapp-rust
    /// moves a contact's state from its number to its LID (and, at pairing, the own
    /// account's). Its default answer is "yes", and then it looks through 100 device
    /// ids on two servers one at a time, leaving a lock and a cached "none" for each
    /// address behind: about 140 KB per newly paired device that stayed in memory
    /// (BENCHMARKS.md, "Issue 18"). Two indexed questions to the store instead.
    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        let addresses = signal_addresses_of(user);
        for namespace in [ns::SESSION, ns::IDENTITY] {
            if self.any(namespace, &addresses).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.store_prekeys(&[(id, record)], uploaded).await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let keys: Vec<(u32, &[u8])> = keys.iter().map(|(id, r)| (*id, r.as_ref())).collect();
        self.store_prekeys(&keys, uploaded).await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self
            .get(ns::PREKEY, &prekey_key(id))
            .await?
            .and_then(|payload| prekey_record(&payload)))
    }

    /// One question to the store for all of `ids`; the records in the order asked.
    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let keys = prekey_keys(ids);
        let found: HashMap<String, Vec<u8>> = self
            .get_many(ns::PREKEY, &keys)
            .await?
            .into_iter()
            .collect();
        Ok(ids
            .iter()
            .zip(&keys)
            .filter_map(|(id, key)| Some((*id, prekey_record(found.get(key)?)?)))
            .collect())
    }

    /// One read and one write for all of `ids` (whatsapp-rust marks the 812 it just
    /// uploaded).
    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let keys = prekey_keys(ids);
        // Update only: a key consumed since the upload snapshot is not read, so it
        // stays deleted.
        let marked: Vec<(String, Vec<u8>)> = self
            .get_many(ns::PREKEY, &keys)
            .await?
            .into_iter()
            .filter_map(|(key, mut payload)| {
                let flag = payload.first_mut().filter(|flag| **flag == 0)?;
                *flag = 1;
                Some((key, payload))
            })
            .collect();
        if !marked.is_empty() {
            self.put_many(ns::PREKEY, &marked).await?;
        }
        self.prekeys_were_uploaded();
        Ok(())
    }

    /// Removes the key; when it was the highest, the highest id is found again.
    async fn remove_prekey(&self, id: u32) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.delete(ns::PREKEY, &prekey_key(id)).await?;
        if self.recorded_max_prekey_id().await? == Some(id) {
            let max = self.scan_max_prekey_id().await?;
            self.put(ns::PREKEY, PREKEY_MAX, &max.to_be_bytes()).await?;
        }
        Ok(())
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        self.max_prekey_id().await
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put(ns::SIGNED_PREKEY, &prekey_key(id), record).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get(ns::SIGNED_PREKEY, &prekey_key(id)).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        Ok(self
            .list(ns::SIGNED_PREKEY)
            .await?
            .into_iter()
            .filter_map(|(key, record)| key.parse::<u32>().ok().map(|id| (id, record)))
            .collect())
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete(ns::SIGNED_PREKEY, &prekey_key(id)).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put(ns::SENDER_KEY, address, record).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get(ns::SENDER_KEY, address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete(ns::SENDER_KEY, address).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::backend;
    use super::*;

    async fn uploaded(b: &VaultBackend, id: u32) -> Option<bool> {
        let payload = b.get(ns::PREKEY, &prekey_key(id)).await.unwrap()?;
        Some(payload[0] == 1)
    }

    /// Pre-keys stored before the record of the highest id existed: the highest is
    /// found by opening them, and the next write records it.
    #[tokio::test]
    async fn the_highest_pre_key_id_of_keys_stored_without_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path()).await;
        b.store_prekeys_batch(
            &[
                (40, Bytes::from_static(b"a")),
                (41, Bytes::from_static(b"b")),
            ],
            false,
        )
        .await
        .unwrap();
        b.delete(ns::PREKEY, PREKEY_MAX).await.unwrap();
        assert_eq!(b.get_max_prekey_id().await.unwrap(), 41, "found by a scan");
        b.store_prekey(3, b"low", false).await.unwrap();
        assert_eq!(
            b.recorded_max_prekey_id().await.unwrap(),
            None,
            "nothing higher"
        );
        b.store_prekey(42, b"c", false).await.unwrap();
        assert_eq!(b.recorded_max_prekey_id().await.unwrap(), Some(42));
        assert_eq!(b.get_max_prekey_id().await.unwrap(), 42);
    }

    /// Marking keys uploaded sets their flag and leaves the others, and a key removed
    /// meanwhile stays removed.
    #[tokio::test]
    async fn marking_pre_keys_uploaded_sets_their_flag_only() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path()).await;
        let keys: Vec<(u32, Bytes)> = (1..=812)
            .map(|id| (id, Bytes::from(vec![id as u8; 33])))
            .collect();
        b.store_prekeys_batch(&keys, false).await.unwrap();
        b.remove_prekey(2).await.unwrap();
        let marked: Vec<u32> = (1..=700).collect();
        b.mark_prekeys_uploaded(&marked).await.unwrap();
        assert_eq!(uploaded(&b, 1).await, Some(true));
        assert_eq!(uploaded(&b, 2).await, None, "a removed key stays removed");
        assert_eq!(uploaded(&b, 700).await, Some(true));
        assert_eq!(uploaded(&b, 701).await, Some(false));
        assert_eq!(
            b.load_prekey(700).await.unwrap().as_deref(),
            Some(&[700u32 as u8; 33][..]),
            "the record is kept"
        );
        assert_eq!(b.get_max_prekey_id().await.unwrap(), 812);
    }
}
