//! Records: how a natural key becomes a vault key, the envelope a payload travels in,
//! and the reads and writes every trait goes through (a write refused as fenced closes
//! the backend).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use whatsapp_rust::wacore::store::error::{Result, StoreError};

use super::VaultBackend;
use crate::vault::VaultError;

impl VaultBackend {
    /// The vault key of `natural` in `namespace`: 128 bits of a salted SHA-256, hex.
    fn vault_key(&self, namespace: &str, natural: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(self.salt);
        hash.update(namespace.as_bytes());
        hash.update([0u8]);
        hash.update(natural.as_bytes());
        hex(&hash.finalize()[..16])
    }

    pub(super) async fn get(&self, namespace: &str, natural: &str) -> Result<Option<Vec<u8>>> {
        let key = self.vault_key(namespace, natural);
        let Some(sealed) = self.vault.get(namespace, &key).await.map_err(read_error)? else {
            return Ok(None);
        };
        let (stored, payload) = open_envelope(&sealed)?;
        Ok((stored == natural).then(|| payload.to_vec()))
    }

    /// Whether a record of `namespace` exists under any of the natural keys `naturals`:
    /// one question to the store, nothing opened. (A hit is a vault key's hash, not
    /// the natural key read back as [`Self::get`] does: 128 bits of it.)
    pub(super) async fn any(&self, namespace: &str, naturals: &[String]) -> Result<bool> {
        let keys = self.vault_keys(namespace, naturals);
        self.vault.any(namespace, &keys).await.map_err(read_error)
    }

    /// [`Self::vault_key`] of each of `naturals`.
    fn vault_keys(&self, namespace: &str, naturals: &[String]) -> Vec<String> {
        naturals
            .iter()
            .map(|natural| self.vault_key(namespace, natural))
            .collect()
    }

    /// [`Self::get`] of each of `naturals`, in one question to the store: the records
    /// found, as (natural key, payload), in no particular order.
    pub(super) async fn get_many(
        &self,
        namespace: &str,
        naturals: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let keys = self.vault_keys(namespace, naturals);
        let wanted: HashSet<&str> = naturals.iter().map(String::as_str).collect();
        let records = self
            .vault
            .get_many(namespace, &keys)
            .await
            .map_err(read_error)?;
        let mut found = Vec::with_capacity(records.len());
        for (_, sealed) in &records {
            let (stored, payload) = open_envelope(sealed)?;
            if wanted.contains(stored) {
                found.push((stored.to_owned(), payload.to_vec()));
            }
        }
        Ok(found)
    }

    pub(super) async fn put(&self, namespace: &str, natural: &str, payload: &[u8]) -> Result<()> {
        self.check_open()?;
        let key = self.vault_key(namespace, natural);
        let result = self
            .vault
            .put(namespace, &key, &envelope(natural, payload))
            .await;
        self.written(result)
    }

    /// [`Self::put`] of each (natural key, payload), in one write where the store can.
    pub(super) async fn put_many(
        &self,
        namespace: &str,
        records: &[(String, Vec<u8>)],
    ) -> Result<()> {
        self.check_open()?;
        let sealed: Vec<(String, Vec<u8>)> = records
            .iter()
            .map(|(natural, payload)| {
                (
                    self.vault_key(namespace, natural),
                    envelope(natural, payload),
                )
            })
            .collect();
        let result = self.vault.put_many(namespace, &sealed).await;
        self.written(result)
    }

    pub(super) async fn delete(&self, namespace: &str, natural: &str) -> Result<()> {
        self.check_open()?;
        let key = self.vault_key(namespace, natural);
        let result = self.vault.delete(namespace, &key).await.map(|_| ());
        self.written(result)
    }

    /// Every record of `namespace` as (natural key, payload).
    pub(super) async fn list(&self, namespace: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let records = self.vault.list(namespace).await.map_err(read_error)?;
        records
            .iter()
            .map(|(_, sealed)| {
                let (natural, payload) = open_envelope(sealed)?;
                Ok((natural.to_owned(), payload.to_vec()))
            })
            .collect()
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        namespace: &str,
        natural: &str,
    ) -> Result<Option<T>> {
        self.get(namespace, natural)
            .await?
            .map(|bytes| from_json(&bytes))
            .transpose()
    }

    pub(super) async fn put_json<T: Serialize>(
        &self,
        namespace: &str,
        natural: &str,
        value: &T,
    ) -> Result<()> {
        self.put(namespace, natural, &to_json(value)?).await
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Validation(
                "the link session is closed, writes are refused".into(),
            ));
        }
        Ok(())
    }

    /// Maps a write's outcome; a fenced write closes the backend and tells the session.
    fn written(&self, result: std::result::Result<(), VaultError>) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.is_fenced() => {
                self.close();
                let reason = error.to_string();
                self.fenced.send_if_modified(|slot| {
                    let first = slot.is_none();
                    if first {
                        *slot = Some(reason.clone());
                    }
                    first
                });
                Err(StoreError::Database(Box::new(error)))
            }
            Err(error) => Err(StoreError::Database(Box::new(error))),
        }
    }

    /// Deletes the timestamped records of `namespace` older than `cutoff` (unix s).
    pub(super) async fn delete_stamped_before(&self, namespace: &str, cutoff: i64) -> Result<u32> {
        let mut deleted = 0;
        for (key, record) in self.list(namespace).await? {
            if unstamp(&record)?.0 < cutoff {
                self.delete(namespace, &key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

fn read_error(error: VaultError) -> StoreError {
    StoreError::Database(Box::new(error))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Serialization(Box::new(e)))
}

pub(super) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Serialization(Box::new(e)))
}

pub(super) fn envelope(natural: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + natural.len() + payload.len());
    out.extend_from_slice(&(natural.len() as u32).to_be_bytes());
    out.extend_from_slice(natural.as_bytes());
    out.extend_from_slice(payload);
    out
}

pub(super) fn open_envelope(bytes: &[u8]) -> Result<(&str, &[u8])> {
    let malformed = || StoreError::Validation("malformed link-state record".into());
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(malformed());
    }
    let (natural, payload) = rest.split_at(len);
    let natural = std::str::from_utf8(natural).map_err(|_| malformed())?;
    Ok((natural, payload))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Natural key of a record addressed by several parts (`\0` cannot occur in a JID or
/// a message id).
pub(super) fn joined(parts: &[&str]) -> String {
    parts.join("\0")
}

/// A timestamped payload (sent messages, pending inbound): unix seconds, then bytes.
pub(super) fn stamped(at_secs: i64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&at_secs.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub(super) fn unstamp(bytes: &[u8]) -> Result<(i64, &[u8])> {
    let (at, payload) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Validation("malformed timestamped record".into()))?;
    Ok((i64::from_be_bytes(*at), payload))
}

pub(super) fn now_secs() -> i64 {
    crate::clock::now_ms() / 1000
}
