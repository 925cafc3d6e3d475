//! A simulated phone's Signal state: its identity (the account key), a signed pre-key,
//! one-time pre-keys, and the sessions and identities of the devices it talks to; kept
//! in memory. The phone decrypts what devices send it and encrypts what it sends them
//! with wacore-libsignal, the library the devices themselves use.

use std::collections::HashMap;

use async_trait::async_trait;
use wacore_libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySignalMessage, PreKeyStore, ProtocolAddress, PublicKey, SessionRecord, SessionStore,
    SignalMessage, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore,
    Timestamp, UsePQRatchet,
};

type Result<T> = std::result::Result<T, SignalProtocolError>;

/// The signed pre-key's id (a phone has one).
const SIGNED_PRE_KEY_ID: u32 = 1;
/// One-time pre-keys a phone keeps (more are made as they are used).
const PRE_KEYS: usize = 16;

/// One phone's Signal store, in the four parts the cipher borrows separately.
pub(crate) struct SignalParty {
    identity: Identities,
    sessions: Sessions,
    pre_keys: PreKeys,
    signed: SignedPreKey,
}

impl std::fmt::Debug for SignalParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalParty")
            .field("registration_id", &self.identity.registration_id)
            .field("sessions", &self.sessions.0.len())
            .finish_non_exhaustive()
    }
}

struct Identities {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<String, IdentityKey>,
}

struct Sessions(HashMap<String, SessionRecord>);

struct PreKeys {
    keys: HashMap<u32, (PreKeyRecord, PublicKey)>,
    next: u32,
    /// Keys below this id were handed out in a bundle: as WhatsApp's server does, a
    /// one-time pre-key is given to one fetch only (two devices starting sessions at
    /// once would otherwise both use the same, and the second's message could not be
    /// decrypted once the first used it up). The phone keeps them until used.
    offered: u32,
}

struct SignedPreKey {
    record: SignedPreKeyRecord,
    public: PublicKey,
    signature: Vec<u8>,
}

/// What a bundle fetch answers for a phone or a device.
#[derive(Debug, Clone)]
pub(crate) struct PublicBundle {
    pub(crate) registration_id: u32,
    pub(crate) identity: [u8; 32],
    pub(crate) signed_id: u32,
    pub(crate) signed_public: [u8; 32],
    pub(crate) signed_signature: Vec<u8>,
    pub(crate) pre_key: Option<(u32, [u8; 32])>,
}

impl SignalParty {
    /// A phone whose Signal identity is its account key.
    pub(crate) fn new(identity: &KeyPair) -> SignalParty {
        let mut rng = rand::rng();
        let signed = KeyPair::generate(&mut rng);
        let signature = identity
            .private_key
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .expect("a curve25519 key signs")
            .to_vec();
        let mut pre_keys = PreKeys {
            keys: HashMap::new(),
            next: 1,
            offered: 1,
        };
        pre_keys.refill();
        SignalParty {
            identity: Identities {
                pair: IdentityKeyPair::from(identity.clone()),
                registration_id: rand::random::<u32>() % 16_380 + 1,
                known: HashMap::new(),
            },
            sessions: Sessions(HashMap::new()),
            pre_keys,
            signed: SignedPreKey {
                record: SignedPreKeyRecord::new(
                    SignedPreKeyId::from(SIGNED_PRE_KEY_ID),
                    Timestamp::from_epoch_millis(crate::nodes::now() * 1000),
                    &signed,
                    &signature,
                ),
                public: signed.public_key,
                signature,
            },
        }
    }

    /// The bundle a device fetches to write to this phone first, with a one-time
    /// pre-key no other fetch was given.
    pub(crate) fn bundle(&mut self) -> PublicBundle {
        self.pre_keys.refill();
        let offered = self.pre_keys.offered;
        let pre_key = self
            .pre_keys
            .keys
            .keys()
            .filter(|id| **id >= offered)
            .min()
            .map(|id| (*id, key32(&self.pre_keys.keys[id].1)));
        if let Some((id, _)) = pre_key {
            self.pre_keys.offered = id + 1;
        }
        PublicBundle {
            registration_id: self.identity.registration_id,
            identity: key32(self.identity.pair.public_key()),
            signed_id: SIGNED_PRE_KEY_ID,
            signed_public: key32(&self.signed.public),
            signed_signature: self.signed.signature.clone(),
            pre_key,
        }
    }

    /// Decrypts what `from` sent: a `pkmsg` (which starts a session) or a `msg`.
    pub(crate) async fn decrypt(
        &mut self,
        from: &ProtocolAddress,
        kind: &str,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>> {
        let message = match kind {
            "pkmsg" => {
                CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(ciphertext)?)
            }
            "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(ciphertext)?),
            other => {
                return Err(SignalProtocolError::InvalidArgument(format!(
                    "cannot decrypt an enc of type {other}"
                )));
            }
        };
        let result = wacore_libsignal::protocol::message_decrypt(
            &message,
            from,
            &mut self.sessions,
            &mut self.identity,
            &mut self.pre_keys,
            &self.signed,
            &mut rand::make_rng::<rand::rngs::StdRng>(),
            UsePQRatchet::No,
        )
        .await?;
        if let Some(used) = result.consumed_prekey_id {
            self.pre_keys.keys.remove(&u32::from(used));
        }
        Ok(result.plaintext)
    }

    /// Encrypts `plaintext` to `to`, starting a session from `bundle` if there is none:
    /// the `enc` type (`pkmsg` or `msg`) and the ciphertext.
    pub(crate) async fn encrypt(
        &mut self,
        to: &ProtocolAddress,
        bundle: impl FnOnce() -> Option<PublicBundle>,
        plaintext: &[u8],
    ) -> Result<(&'static str, Vec<u8>)> {
        if !self.sessions.0.contains_key(&to.to_string()) {
            let bundle =
                bundle().ok_or_else(|| SignalProtocolError::SessionNotFound(to.clone()))?;
            let bundle = PreKeyBundle::new(
                bundle.registration_id,
                to.device_id(),
                bundle
                    .pre_key
                    .map(|(id, key)| {
                        Ok::<_, SignalProtocolError>((PreKeyId::from(id), public(&key)?))
                    })
                    .transpose()?,
                SignedPreKeyId::from(bundle.signed_id),
                public(&bundle.signed_public)?,
                bundle.signed_signature,
                IdentityKey::new(public(&bundle.identity)?),
            )?;
            wacore_libsignal::protocol::process_prekey_bundle(
                to,
                &mut self.sessions,
                &mut self.identity,
                &bundle,
                &mut rand::make_rng::<rand::rngs::StdRng>(),
                UsePQRatchet::No,
            )
            .await?;
        }
        let message = wacore_libsignal::protocol::message_encrypt(
            plaintext,
            to,
            &mut self.sessions,
            &mut self.identity,
        )
        .await?;
        let kind = match &message {
            CiphertextMessage::PreKeySignalMessage(_) => "pkmsg",
            _ => "msg",
        };
        Ok((kind, message.serialize().to_vec()))
    }
}

impl PreKeys {
    /// Keeps [`PRE_KEYS`] that were not handed out yet.
    fn refill(&mut self) {
        let mut left = self.keys.keys().filter(|id| **id >= self.offered).count();
        while left < PRE_KEYS {
            left += 1;
            let key = KeyPair::generate(&mut rand::rng());
            let id = self.next;
            self.next += 1;
            self.keys.insert(
                id,
                (PreKeyRecord::new(PreKeyId::from(id), &key), key.public_key),
            );
        }
    }
}

fn key32(key: &PublicKey) -> [u8; 32] {
    key.public_key_bytes()
        .try_into()
        .expect("curve25519 keys are 32 bytes")
}

fn public(bytes: &[u8; 32]) -> Result<PublicKey> {
    PublicKey::from_djb_public_key_bytes(bytes).map_err(SignalProtocolError::from)
}

#[async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> Result<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> Result<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> Result<IdentityChange> {
        let previous = self.known.insert(address.to_string(), *identity);
        Ok(IdentityChange::from_changed(
            previous.is_some_and(|p| p != *identity),
        ))
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> Result<bool> {
        // A phone trusts on first use and accepts a changed key (a relinked device).
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> Result<Option<IdentityKey>> {
        Ok(self.known.get(&address.to_string()).copied())
    }
}

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> Result<Option<SessionRecord>> {
        Ok(self.0.get(&address.to_string()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> Result<bool> {
        Ok(self.0.contains_key(&address.to_string()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> Result<()> {
        self.0.insert(address.to_string(), record);
        Ok(())
    }
}

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> Result<PreKeyRecord> {
        self.keys
            .get(&u32::from(id))
            .map(|(record, _)| record.clone())
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(&mut self, id: PreKeyId, record: &PreKeyRecord) -> Result<()> {
        let public = record.public_key()?;
        self.keys.insert(u32::from(id), (record.clone(), public));
        Ok(())
    }

    async fn remove_pre_key(&mut self, id: PreKeyId) -> Result<()> {
        self.keys.remove(&u32::from(id));
        Ok(())
    }
}

#[async_trait]
impl SignedPreKeyStore for SignedPreKey {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> Result<SignedPreKeyRecord> {
        if u32::from(id) == SIGNED_PRE_KEY_ID {
            Ok(self.record.clone())
        } else {
            Err(SignalProtocolError::InvalidSignedPreKeyId)
        }
    }

    async fn save_signed_pre_key(
        &mut self,
        _id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> Result<()> {
        self.record = record.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_libsignal::protocol::DeviceId;

    /// Two phones' stores talk: a pkmsg from a bundle, answered by a msg, in both
    /// directions; one-time pre-keys are used up.
    #[tokio::test]
    async fn two_parties_start_a_session_from_a_bundle_and_answer_each_other() {
        let (a_key, b_key) = (
            KeyPair::generate(&mut rand::rng()),
            KeyPair::generate(&mut rand::rng()),
        );
        let (mut a, mut b) = (SignalParty::new(&a_key), SignalParty::new(&b_key));
        let (a_addr, b_addr) = (
            ProtocolAddress::new("628111", DeviceId::from(0)),
            ProtocolAddress::new("628222", DeviceId::from(0)),
        );
        let b_bundle = b.bundle();
        let used = b_bundle.pre_key.expect("a one-time pre-key").0;
        let (kind, first) = a
            .encrypt(&b_addr, || Some(b_bundle), b"halo")
            .await
            .unwrap();
        assert_eq!(kind, "pkmsg");
        assert_eq!(b.decrypt(&a_addr, kind, &first).await.unwrap(), b"halo");
        assert!(
            !b.pre_keys.keys.contains_key(&used),
            "the pre-key is used up"
        );
        let (kind, reply) = b.encrypt(&a_addr, || None, b"apa kabar").await.unwrap();
        assert_eq!(kind, "msg", "b has a session from the pkmsg");
        assert_eq!(
            a.decrypt(&b_addr, kind, &reply).await.unwrap(),
            b"apa kabar"
        );
        let (kind, second) = a.encrypt(&b_addr, || None, b"baik").await.unwrap();
        assert_eq!(kind, "msg");
        assert_eq!(b.decrypt(&a_addr, kind, &second).await.unwrap(), b"baik");
    }

    /// Two devices fetch the phone's bundle before either writes: each gets its own
    /// one-time pre-key, and the phone decrypts both first messages.
    #[tokio::test]
    async fn a_one_time_pre_key_goes_to_one_fetch_only() {
        let phone_key = KeyPair::generate(&mut rand::rng());
        let mut phone = SignalParty::new(&phone_key);
        let phone_addr = ProtocolAddress::new("628444", DeviceId::from(0));
        let (first, second) = (phone.bundle(), phone.bundle());
        assert_ne!(first.pre_key.unwrap().0, second.pre_key.unwrap().0);
        for (i, bundle) in [first, second].into_iter().enumerate() {
            let mut device = SignalParty::new(&KeyPair::generate(&mut rand::rng()));
            let (kind, message) = device
                .encrypt(&phone_addr, || Some(bundle), b"halo")
                .await
                .unwrap();
            let from = ProtocolAddress::new(&format!("62855{i}"), DeviceId::from(1));
            assert_eq!(phone.decrypt(&from, kind, &message).await.unwrap(), b"halo");
        }
        // More fetches than the phone keeps at once still get keys of their own.
        let ids: std::collections::HashSet<u32> = (0..PRE_KEYS * 2)
            .map(|_| phone.bundle().pre_key.unwrap().0)
            .collect();
        assert_eq!(ids.len(), PRE_KEYS * 2);
    }

    #[tokio::test]
    async fn no_session_and_no_bundle_is_an_error() {
        let mut a = SignalParty::new(&KeyPair::generate(&mut rand::rng()));
        let to = ProtocolAddress::new("628333", DeviceId::from(1));
        assert!(a.encrypt(&to, || None, b"x").await.is_err());
    }
}
