//! Refusing a master key that is not the store's.
//!
//! A process given the wrong master key (a typo in `WAFLEET_MASTER_KEY`, another
//! cluster's key file) cannot open the credentials sealed before; each device would take
//! them for corrupt, wipe them and ask for a new QR — every number unlinked by one bad
//! setting. So the store keeps a check: a constant sealed with the master key (the
//! setting [`SETTING`]), written by the first process to start. Every process opens it
//! at start and refuses to run if it cannot, before any device starts. A check sealed
//! with an older key version that opens (the old key is still known as a previous key)
//! is sealed again with the current one, so that the old key can later be retired.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{SealError, Sealer};
use crate::clock::now_ms;
use crate::store::{SealedBlob, Store, StoreError};

/// The setting that holds the check: `VERSION:BASE64(nonce || ciphertext || tag)`.
pub const SETTING: &str = "master_key_check";
/// What is sealed.
const CONSTANT: &[u8] = b"wafleet master key check v1";
/// Its place (the associated data).
const PLACE: (&str, &str, &str) = ("", "master-key", "check");

/// Why a process must not start with its master key.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(
        "the master key does not open this store's data (it was sealed with master key version {version}): \
refusing to start, because every device would lose its credentials and need a new QR. Give this process \
the store's master key (WAFLEET_MASTER_KEY or the key file); after a rotation, keep the old key in \
WAFLEET_MASTER_KEY_PREVIOUS (or after the current one in the key file) until every process has run with both"
    )]
    WrongKey { version: u32 },
    #[error("the store's master key check is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that `sealer` opens what this store was sealed with (see the module docs);
/// writes the check on first use, and seals it again under the current key version.
pub async fn verify(store: &dyn Store, sealer: &Sealer) -> Result<(), KeyCheckError> {
    let (device, namespace, key) = PLACE;
    let Some(setting) = store.get_setting(SETTING).await? else {
        return write(store, sealer).await;
    };
    let blob = parse(&setting.value)?;
    match sealer.open(device, namespace, key, &blob) {
        Ok(plain) if plain == CONSTANT => {
            if blob.key_version != sealer.current_version() {
                write(store, sealer).await?;
            }
            Ok(())
        }
        Ok(_) | Err(SealError::Unauthentic | SealError::UnknownKeyVersion(_)) => {
            Err(KeyCheckError::WrongKey {
                version: blob.key_version,
            })
        }
        Err(other) => Err(KeyCheckError::Malformed(other.to_string())),
    }
}

async fn write(store: &dyn Store, sealer: &Sealer) -> Result<(), KeyCheckError> {
    let (device, namespace, key) = PLACE;
    let blob = sealer.seal(device, namespace, key, CONSTANT);
    let value = format!("{}:{}", blob.key_version, BASE64.encode(&blob.bytes));
    store.put_setting(SETTING, &value, now_ms()).await?;
    Ok(())
}

fn parse(value: &str) -> Result<SealedBlob, KeyCheckError> {
    let malformed = || KeyCheckError::Malformed("not VERSION:BASE64".into());
    let (version, bytes) = value.split_once(':').ok_or_else(malformed)?;
    Ok(SealedBlob {
        key_version: version.parse().map_err(|_| malformed())?,
        bytes: BASE64.decode(bytes).map_err(|_| malformed())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::MasterKey;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn only_the_store_s_key_and_its_successors_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        let v1 = MasterKey::new(1, [1; 32]);
        let v2 = MasterKey::new(2, [2; 32]);
        // First start: the check is written; the same key opens it again.
        verify(&store, &Sealer::new(v1.clone())).await.unwrap();
        verify(&store, &Sealer::new(v1.clone())).await.unwrap();
        // Another key is refused, whatever its version.
        for wrong in [MasterKey::new(1, [9; 32]), MasterKey::new(3, [9; 32])] {
            let refused = verify(&store, &Sealer::new(wrong)).await;
            assert!(
                matches!(refused, Err(KeyCheckError::WrongKey { version: 1 })),
                "{refused:?}"
            );
        }
        // A rotation: the new key with the old one as previous opens it and reseals it…
        verify(&store, &Sealer::with_previous(v2.clone(), vec![v1.clone()]))
            .await
            .unwrap();
        // …so the new key alone starts, and the retired one no longer does.
        verify(&store, &Sealer::new(v2)).await.unwrap();
        assert!(matches!(
            verify(&store, &Sealer::new(v1)).await,
            Err(KeyCheckError::WrongKey { version: 2 })
        ));
    }
}
