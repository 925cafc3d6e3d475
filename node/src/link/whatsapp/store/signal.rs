//! [`SignalStore`]: identities, sessions, pre-keys, signed pre-keys and sender keys.

use async_trait::async_trait;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::SignalStore;
use whatsapp_rust::wacore::store::error::Result;
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

/// A pre-key record: whether it was uploaded, then the record.
fn prekey_payload(record: &[u8], uploaded: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + record.len());
    out.push(u8::from(uploaded));
    out.extend_from_slice(record);
    out
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
        self.put(
            ns::PREKEY,
            &prekey_key(id),
            &prekey_payload(record, uploaded),
        )
        .await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self
            .get(ns::PREKEY, &prekey_key(id))
            .await?
            .filter(|payload| !payload.is_empty())
            .map(|payload| Bytes::copy_from_slice(&payload[1..])))
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        for &id in ids {
            let key = prekey_key(id);
            // Update only: a key consumed since the upload snapshot stays deleted.
            if let Some(mut payload) = self.get(ns::PREKEY, &key).await?
                && let Some(flag) = payload.first_mut()
                && *flag == 0
            {
                *flag = 1;
                self.put(ns::PREKEY, &key, &payload).await?;
            }
        }
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.delete(ns::PREKEY, &prekey_key(id)).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        Ok(self
            .list(ns::PREKEY)
            .await?
            .iter()
            .filter_map(|(key, _)| key.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
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
