//! Sealing secrets at rest: AES-256-GCM under a versioned master key.
//!
//! Credentials and link state reach a [`crate::store::Store`] only as [`SealedBlob`]s.
//! A blob is `nonce (12 bytes) || ciphertext || tag (16 bytes)`, sealed with a fresh random
//! nonce, and carries the version of the master key that sealed it so the key can be
//! rotated: a [`Sealer`] seals with its current key and opens with any key it knows.
//!
//! The associated data binds a blob to its place (device id, namespace and key), so a
//! blob copied to another device or another key fails to open instead of being accepted.
//!
//! The master key comes from `WAFLEET_MASTER_KEY` (standard base64 of 32 bytes) or from
//! `master.key` in the data folder, created on first start by
//! [`load_or_create_master_key`]. Losing or replacing that file locks every device out,
//! so a corrupt file is an error, never a reason to make a new key. A cluster node on a
//! shared store takes it from the environment ([`master_key_from_env`]) or from a file
//! that must already exist ([`load_master_key_file`]): every node needs the same key.

pub mod data_keys;
pub mod key_check;
pub mod master_keys;
pub mod stream;
pub mod text;

pub use master_keys::MasterKeys;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::store::SealedBlob;

/// Length of the AES-GCM nonce at the start of every blob.
const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag at the end of every blob.
const TAG_LEN: usize = 16;
/// Name of the key file inside the data folder.
const KEY_FILE: &str = "master.key";
/// Version given to keys read from the environment or the key file.
const DEFAULT_KEY_VERSION: u32 = 1;
/// Domain separation for the associated data; bump if its layout ever changes.
const AAD_DOMAIN: &[u8] = b"wafleet/seal/v1\0";

/// Why a key could not be loaded or a blob could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key material is not standard base64 of exactly 32 bytes.
    #[error("bad master key: {0}")]
    BadKey(String),
    /// `master.key` exists but does not hold a key. It is left as is: replacing it would
    /// make every sealed secret unreadable.
    #[error("master key file {path} is corrupt ({reason}); refusing to replace it")]
    CorruptKeyFile { path: PathBuf, reason: String },
    /// The blob was sealed with a key version this sealer does not hold.
    #[error("no master key with version {0}")]
    UnknownKeyVersion(u32),
    /// The blob cannot even hold a nonce and a tag.
    #[error("sealed blob is truncated ({len} bytes)")]
    Truncated { len: usize },
    /// Authentication failed: the blob is corrupt, forged, or belongs to another
    /// device, namespace or key.
    #[error("sealed blob failed authentication (corrupt, forged or moved)")]
    Unauthentic,
    /// Reading or writing the key file failed.
    #[error("master key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("os random source failed: {0}")]
    Random(String),
}

/// A 32-byte AES-256 master key and its version. `Debug` never shows the key bytes.
#[derive(Clone)]
pub struct MasterKey {
    /// Stored in every blob sealed with this key, to pick the key again on open.
    version: u32,
    key: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("version", &self.version)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MasterKey {
    /// A key from raw bytes.
    pub fn new(version: u32, key: [u8; 32]) -> MasterKey {
        MasterKey { version, key }
    }

    /// A key from standard base64 (surrounding whitespace is ignored) that must decode
    /// to exactly 32 bytes.
    pub fn from_base64(version: u32, text: &str) -> Result<MasterKey, SealError> {
        decode_key(text)
            .map(|key| MasterKey::new(version, key))
            .map_err(SealError::BadKey)
    }

    /// A new random key from the operating system's random source.
    pub fn generate(version: u32) -> Result<MasterKey, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(MasterKey::new(version, key))
    }

    /// The version stored in blobs sealed with this key.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key as standard base64, the format of `master.key` and `WAFLEET_MASTER_KEY`.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.key)
    }
}

/// Decodes a base64 key; the reason never quotes the input (it is a secret).
fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| "not valid standard base64".to_owned())?;
    let len = bytes.len();
    <[u8; 32]>::try_from(bytes).map_err(|_| format!("decodes to {len} bytes, expected 32"))
}

/// The master keys to use: `env_value` (the content of `WAFLEET_MASTER_KEY`) when set,
/// else `data_dir/master.key`, else a new key written to `data_dir/master.key` (mode
/// 0600), version 1. A key without a version (`[VERSION:]BASE64`) is version 1.
///
/// Several processes may share a data folder: the file is written to a temporary name
/// and then linked into place only if no other process got there first, in which case
/// that process's key is read and used.
pub fn load_or_create_master_key(
    data_dir: &Path,
    env_value: Option<&str>,
) -> Result<MasterKeys, SealError> {
    if let Some(value) = env_value {
        return master_key_from_env(value).map(MasterKeys::single);
    }
    let path = key_file_path(data_dir);
    if let Some(keys) = read_key_file(&path)? {
        return Ok(keys);
    }
    let key = MasterKeys::single(MasterKey::generate(DEFAULT_KEY_VERSION)?);
    if write_key_file(data_dir, &path, &key)? {
        tracing::info!(path = %path.display(), "created a new master key");
        Ok(key)
    } else {
        // Another process created the file between our read and our link: use its key.
        read_key_file(&path)?.ok_or_else(|| SealError::Io {
            path: path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "key file vanished after another process created it",
            ),
        })
    }
}

/// Where a data folder keeps its master keys.
pub fn key_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// The key that `WAFLEET_MASTER_KEY` holds (`value`, `[VERSION:]BASE64`).
pub fn master_key_from_env(value: &str) -> Result<MasterKey, SealError> {
    master_keys::parse_entry(value)
        .map_err(|reason| SealError::BadKey(format!("WAFLEET_MASTER_KEY {reason}")))
}

/// The keys `WAFLEET_MASTER_KEY` (`current`) and `WAFLEET_MASTER_KEY_PREVIOUS`
/// (`previous`: keys that still open what they sealed, during a rotation) hold.
pub fn master_keys_from_env(
    current: &str,
    previous: Option<&str>,
) -> Result<MasterKeys, SealError> {
    MasterKeys::from_parts(current, previous).map_err(|reason| {
        SealError::BadKey(format!(
            "WAFLEET_MASTER_KEY / WAFLEET_MASTER_KEY_PREVIOUS: {reason}"
        ))
    })
}

/// The keys in the file `path` (as in `master.key`: one `[VERSION:]BASE64` per line,
/// the current one first). The file must exist: unlike [`load_or_create_master_key`],
/// this never creates a key, for a store that several machines share.
pub fn load_master_key_file(path: &Path) -> Result<MasterKeys, SealError> {
    read_key_file(path)?.ok_or_else(|| SealError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file (a key file given in the settings is never created)",
        ),
    })
}

/// Writes `keys` to the existing key file `path`, replacing it atomically (a new file
/// renamed over it), for a master key rotation. A process reading it meanwhile sees the
/// old keys or the new ones, never part of either.
pub fn replace_key_file(path: &Path, keys: &MasterKeys) -> Result<(), SealError> {
    let io = |source| SealError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", random_suffix()?));
    let written = write_private_file(&tmp, keys.to_text().as_bytes())
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_dir(dir));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

fn random_suffix() -> Result<String, SealError> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(suffix.iter().map(|b| format!("{b:02x}")).collect())
}

/// The keys in `path`, `None` if there is no such file.
fn read_key_file(path: &Path) -> Result<Option<MasterKeys>, SealError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(SealError::CorruptKeyFile {
                path: path.to_owned(),
                reason: "not utf-8 text".to_owned(),
            });
        }
        Err(source) => {
            return Err(SealError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    warn_if_readable_by_others(path);
    MasterKeys::parse(&text)
        .map(Some)
        .map_err(|reason| SealError::CorruptKeyFile {
            path: path.to_owned(),
            reason,
        })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "master key file is readable by other users"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes `key` to `path` atomically unless the file already exists. Returns whether
/// this call created it.
fn write_key_file(data_dir: &Path, path: &Path, key: &MasterKeys) -> Result<bool, SealError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SealError::Io { path, source }
    };
    create_private_dir(data_dir).map_err(io_err(data_dir))?;

    let tmp = data_dir.join(format!(".{KEY_FILE}.{}.tmp", random_suffix()?));

    let written = write_private_file(&tmp, key.to_text().as_bytes())
        .map_err(io_err(&tmp))
        // A hard link never replaces an existing file, unlike a rename: two processes
        // starting at once cannot each believe their own key is the one on disk.
        .and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(SealError::Io {
                path: path.to_owned(),
                source,
            }),
        });
    if let Err(e) = std::fs::remove_file(&tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove temporary key file");
    }
    let created = written?;
    if created {
        sync_dir(data_dir).map_err(io_err(data_dir))?;
    }
    Ok(created)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Where a [`Sealer`] reads its keys again when a blob names a version it does not
/// know: the key file, after a rotation made while the process runs.
pub type KeySource = Arc<dyn Fn() -> Result<MasterKeys, SealError> + Send + Sync>;

/// How often a [`Sealer`] may read its [`KeySource`] again when it meets a version it
/// does not know.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How often a [`Sealer`] that seals reads its [`KeySource`] again anyway, so that a key
/// rotated in the file becomes the one it seals with even if it never meets it.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Seals with the current master key and opens with the current or any previous one.
pub struct Sealer {
    ring: RwLock<Arc<KeyRing>>,
    source: Option<KeySource>,
    /// When the source was last read because of the refresh interval, and because of a
    /// version not known.
    refreshed: Mutex<Option<Instant>>,
    missed: Mutex<Option<Instant>>,
}

/// The keys a sealer holds.
struct KeyRing {
    current_version: u32,
    /// Every known key by version, current first.
    ciphers: Vec<(u32, Aes256Gcm)>,
}

impl KeyRing {
    fn new(keys: MasterKeys) -> KeyRing {
        let current_version = keys.current.version;
        let mut ciphers: Vec<(u32, Aes256Gcm)> = Vec::with_capacity(1 + keys.previous.len());
        for key in std::iter::once(keys.current).chain(keys.previous) {
            if ciphers.iter().any(|(v, _)| *v == key.version) {
                tracing::warn!(
                    key_version = key.version,
                    "ignoring a second master key with the same version"
                );
                continue;
            }
            let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key.key));
            ciphers.push((key.version, cipher));
        }
        KeyRing {
            current_version,
            ciphers,
        }
    }

    fn cipher(&self, version: u32) -> Option<&Aes256Gcm> {
        self.ciphers
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, cipher)| cipher)
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("Sealer")
            .field("current_version", &ring.current_version)
            .field(
                "versions",
                &ring.ciphers.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Sealer {
    /// A sealer with a single key.
    pub fn new(current: MasterKey) -> Sealer {
        Sealer::with_previous(current, Vec::new())
    }

    /// A sealer that seals with `current` and still opens blobs sealed with `previous`
    /// keys (key rotation). If two keys share a version, the current one, then the
    /// earliest in `previous`, wins.
    pub fn with_previous(current: MasterKey, previous: Vec<MasterKey>) -> Sealer {
        Sealer::from_keys(MasterKeys { current, previous })
    }

    /// A sealer with these keys.
    pub fn from_keys(keys: MasterKeys) -> Sealer {
        Sealer {
            ring: RwLock::new(Arc::new(KeyRing::new(keys))),
            source: None,
            refreshed: Mutex::new(None),
            missed: Mutex::new(None),
        }
    }

    /// A sealer with these keys that reads `source` again when it meets a version it
    /// does not know (at most once a second) and, while it seals, every
    /// [`REFRESH_INTERVAL`]; from then on it seals with the current key the source
    /// names: a master key rotated in the key file while the process runs reaches it
    /// without a restart.
    pub fn reloading(keys: MasterKeys, source: KeySource) -> Sealer {
        Sealer {
            source: Some(source),
            refreshed: Mutex::new(Some(Instant::now())),
            ..Sealer::from_keys(keys)
        }
    }

    fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The version new blobs are sealed with.
    pub fn current_version(&self) -> u32 {
        self.ring().current_version
    }

    /// Reads the key source again if there is one and `last` (the time of the last read
    /// for the same cause) is older than `interval`; whether the keys were read.
    fn reload(&self, last: &Mutex<Option<Instant>>, interval: Duration) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        {
            let mut reloaded = last.lock().unwrap_or_else(|e| e.into_inner());
            if reloaded.is_some_and(|at| at.elapsed() < interval) {
                return false;
            }
            *reloaded = Some(Instant::now());
        }
        match source() {
            Ok(keys) => {
                let ring = KeyRing::new(keys);
                if ring.current_version != self.current_version() {
                    tracing::info!(
                        current_version = ring.current_version,
                        "the master key file names a new current key"
                    );
                }
                *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the master keys again");
                false
            }
        }
    }

    /// Encrypts `plaintext` for one place (device, namespace, key) under the current key,
    /// with a fresh random nonce.
    ///
    /// # Panics
    /// If the operating system's random source fails (the signature has no error to
    /// report it with, and sealing without a fresh nonce would be unsafe).
    pub fn seal(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        plaintext: &[u8],
    ) -> SealedBlob {
        self.reload(&self.refreshed, REFRESH_INTERVAL);
        let ring = self.ring();
        let (version, cipher) = &ring.ciphers[0];
        let aad = associated_data(device_id, namespace, key);
        SealedBlob {
            key_version: *version,
            bytes: encrypt(cipher, &aad, plaintext),
        }
    }

    /// Decrypts a blob sealed for this exact place by [`Sealer::seal`], with whichever
    /// known key its version names.
    pub fn open(
        &self,
        device_id: &str,
        namespace: &str,
        key: &str,
        blob: &SealedBlob,
    ) -> Result<Vec<u8>, SealError> {
        let mut ring = self.ring();
        if ring.cipher(blob.key_version).is_none() && self.reload(&self.missed, RELOAD_INTERVAL) {
            ring = self.ring();
        }
        let cipher = ring
            .cipher(blob.key_version)
            .ok_or(SealError::UnknownKeyVersion(blob.key_version))?;
        decrypt(
            cipher,
            &associated_data(device_id, namespace, key),
            &blob.bytes,
        )
    }
}

/// `nonce || ciphertext || tag`: `plaintext` under `cipher` with `aad`, with a fresh
/// random nonce. The one encryption of every sealed form (blobs and texts).
///
/// # Panics
/// If the operating system's random source fails (sealing without a fresh nonce would
/// be unsafe).
fn encrypt(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("os random source failed while sealing");
    let ciphertext = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Only fails for plaintexts beyond AES-GCM's 64 GiB limit.
        .unwrap_or_else(|e| panic!("aes-gcm refused to seal {} bytes: {e}", plaintext.len()));
    let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&ciphertext);
    bytes
}

/// The plaintext of what [`encrypt`] made with the same `cipher` and `aad`.
fn decrypt(cipher: &Aes256Gcm, aad: &[u8], bytes: &[u8]) -> Result<Vec<u8>, SealError> {
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Truncated { len: bytes.len() });
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| SealError::Truncated { len: bytes.len() })?;
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::Unauthentic)
}

/// `domain || len(device_id) || device_id || len(namespace) || namespace || len(key) || key`
/// with big-endian u32 lengths, so no two places share associated data whatever bytes
/// their names contain.
fn associated_data(device_id: &str, namespace: &str, key: &str) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(AAD_DOMAIN.len() + 12 + device_id.len() + namespace.len() + key.len());
    aad.extend_from_slice(AAD_DOMAIN);
    for part in [device_id, namespace, key] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests;
