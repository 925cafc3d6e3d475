//! Linking a companion device, as the phone and the server do it: the device shows QR
//! codes (refs from the server), the phone scans one, signs the device's identity with
//! the account's key and the server sends that as `pair-success`; the device checks it,
//! signs it back, and the server links it and restarts the stream (code 515).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use buffa::Message as _;
use hmac::{KeyInit, Mac};
use tokio::sync::oneshot;
use wacore::pair::PairUtils;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use wacore_libsignal::protocol::PublicKey;
use waproto::buffa;
use waproto::whatsapp as wa;

use crate::network::{Command, Companion, Linked, Network, NewCompanion, PairingHandle};
use crate::nodes::{self, SERVER};

/// How long a scan waits for the device to sign.
const SIGN_TIMEOUT: Duration = Duration::from_secs(15);
/// `ADV_PREFIX_ACCOUNT_SIGNATURE` and `..._DEVICE_SIGNATURE_GENERATE` of WhatsApp.
const ACCOUNT_PREFIX: &[u8] = &[6, 0];
const DEVICE_PREFIX: &[u8] = &[6, 1];

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("not a WhatsApp QR code: {0}")]
    BadCode(String),
    #[error("no device shows this QR code (it expired, or the device disconnected)")]
    UnknownCode,
    #[error("the QR code does not match the keys of the device that shows it")]
    KeyMismatch,
    #[error("the device did not complete the pairing: {0}")]
    Refused(String),
}

impl Network {
    /// `phone` scans `qr`: links the device showing it, once the device has signed.
    pub async fn scan(&self, qr: &str, phone: &str) -> Result<Linked, ScanError> {
        let (pairing_ref, noise_key, identity_key) =
            PairUtils::parse_qr_code(qr).map_err(|e| ScanError::BadCode(e.to_string()))?;
        let adv_secret = qr
            .split(',')
            .nth(3)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or_else(|| ScanError::BadCode("no ADV secret".into()))?;
        let handle = self
            .lock()
            .pairing
            .get(&pairing_ref)
            .cloned()
            .ok_or(ScanError::UnknownCode)?;
        if handle.noise_key != noise_key || handle.identity_key != identity_key {
            return Err(ScanError::KeyMismatch);
        }
        self.link_device(&handle, &adv_secret, phone).await
    }

    /// `phone` links the device behind `handle`, whose ADV secret (from its QR code, or
    /// derived during pairing by code) is `adv_secret`: the phone signs the device's
    /// identity, the server sends it as `pair-success`, and the device signs it back.
    pub(crate) async fn link_device(
        &self,
        handle: &PairingHandle,
        adv_secret: &[u8],
        phone: &str,
    ) -> Result<Linked, ScanError> {
        let (noise_key, identity_key) = (handle.noise_key, handle.identity_key);
        let (commands, link, iq, id) = {
            let mut state = self.lock();
            let account = state.phone(phone);
            let device = account.next_device;
            account.next_device += 1;
            let lid = account.lid.clone();
            let account_key: [u8; 32] = account
                .identity
                .public_key
                .public_key_bytes()
                .try_into()
                .expect("curve25519 keys are 32 bytes");
            let details = wa::ADVDeviceIdentity {
                raw_id: Some(rand::random()),
                timestamp: Some(nodes::now()),
                key_index: Some(device),
                ..Default::default()
            }
            .encode_to_vec();
            let signed = [ACCOUNT_PREFIX, &details, &identity_key].concat();
            let account_signature = account
                .identity
                .private_key
                .calculate_signature(&signed, &mut rand::rng())
                .expect("a curve25519 key signs");
            let identity = wa::ADVSignedDeviceIdentity {
                details: Some(details.clone()),
                account_signature_key: Some(account_key.to_vec()),
                account_signature: Some(account_signature.to_vec()),
                ..Default::default()
            }
            .encode_to_vec();
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(adv_secret)
                .expect("HMAC takes any key length");
            mac.update(&identity);
            let container = wa::ADVSignedDeviceIdentityHMAC {
                details: Some(identity),
                hmac: Some(mac.finalize().into_bytes().to_vec()),
                ..Default::default()
            }
            .encode_to_vec();
            let id = format!("pair-success-{device}-{}", rand::random::<u32>());
            let link = NewCompanion {
                phone: phone.to_owned(),
                device,
                lid: lid.clone(),
                details,
                account_key,
                companion: Companion {
                    device_identity: Vec::new(),
                    noise_key,
                    identity_key,
                    lid,
                },
            };
            let iq = pair_success(&id, &link, container);
            (handle.commands.clone(), link, iq, id)
        };
        let (done, result) = oneshot::channel();
        commands
            .send(Command::PairSuccess {
                iq,
                id,
                link: Box::new(link),
                done,
            })
            .map_err(|_| ScanError::UnknownCode)?;
        match tokio::time::timeout(SIGN_TIMEOUT, result).await {
            Ok(Ok(result)) => result.map_err(ScanError::Refused),
            Ok(Err(_)) => Err(ScanError::Refused("the device disconnected".into())),
            Err(_) => Err(ScanError::Refused("it did not sign in time".into())),
        }
    }

    /// The device signed `link`'s identity (`reply`, its `pair-device-sign`): checks the
    /// signature and links it.
    pub(crate) fn complete_pairing(
        &self,
        link: &NewCompanion,
        reply: &Node,
    ) -> Result<Linked, String> {
        let identity = nodes::child(reply, "pair-device-sign")
            .and_then(|sign| nodes::child(sign, "device-identity"))
            .and_then(nodes::bytes)
            .ok_or("no device-identity in pair-device-sign")?;
        let signed_identity = identity.to_vec();
        let identity = waproto::codec::adv_signed_device_identity_decode(identity)
            .map_err(|e| format!("device-identity does not decode: {e}"))?;
        if identity.details.as_deref() != Some(&link.details[..]) {
            return Err("the device signed other details".into());
        }
        let signature = identity
            .device_signature
            .as_deref()
            .ok_or("no device signature")?;
        let signed = [
            DEVICE_PREFIX,
            &link.details,
            &link.companion.identity_key,
            &link.account_key,
        ]
        .concat();
        let key = PublicKey::from_djb_public_key_bytes(&link.companion.identity_key)
            .map_err(|e| format!("bad identity key: {e}"))?;
        if !key.verify_signature(&signed, signature) {
            return Err("the device's signature does not verify".into());
        }
        let mut state = self.lock();
        state.stats.pairings += 1;
        let mut companion = link.companion.clone();
        companion.device_identity = signed_identity;
        state
            .companions
            .insert((link.phone.clone(), link.device), companion);
        Ok(Linked {
            phone: link.phone.clone(),
            jid: device_jid(&link.phone, link.device, "s.whatsapp.net"),
            lid: device_jid(&link.lid, link.device, "lid"),
        })
    }
}

/// `user:device@server`.
pub(crate) fn device_jid(user: &str, device: u32, server: &str) -> String {
    format!("{user}:{device}@{server}")
}

/// `<iq type="set" xmlns="md"><pair-success>…`.
fn pair_success(id: &str, link: &NewCompanion, device_identity: Vec<u8>) -> Node {
    let jid: Jid = device_jid(&link.phone, link.device, "s.whatsapp.net")
        .parse()
        .expect("a phone JID parses");
    let lid: Jid = device_jid(&link.lid, link.device, "lid")
        .parse()
        .expect("a LID parses");
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("xmlns", "md")
        .attr("id", id)
        .attr("t", nodes::now().to_string())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity")
                    .bytes(device_identity)
                    .build(),
                NodeBuilder::new("device")
                    .attr("jid", jid)
                    .attr("lid", lid)
                    .build(),
                // The account's name, which the device keeps as its push name.
                NodeBuilder::new("biz")
                    .attr("name", format!("Phone {}", link.phone))
                    .build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
            ])
            .build()])
        .build()
}
