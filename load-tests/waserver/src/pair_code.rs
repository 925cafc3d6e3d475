//! Linking by pairing code: the device asks for a code for a phone number
//! (`companion_hello`, its ephemeral key wrapped under the code); the person types the
//! code on the phone (`/sim/pair-code`), and the phone unwraps that key, wraps its own
//! (`primary_hello`); the device answers with its identity sealed to both
//! (`companion_finish`). Both sides then derive the same ADV secret, and the phone
//! links the device as after a QR scan.

use std::time::Duration;

use tokio::sync::oneshot;
use wacore::pair_code::PairCodeUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::{KeyPair, PublicKey};

use crate::network::{Command, Linked, Network, PairingHandle};
use crate::nodes::{self, SERVER};
use crate::pairing::ScanError;

/// How long the phone waits for the device's `companion_finish`.
const FINISH_TIMEOUT: Duration = Duration::from_secs(20);

/// A device waiting for its code to be typed on a phone.
#[derive(Debug, Clone)]
pub(crate) struct CodeFlow {
    pub(crate) pairing_ref: Vec<u8>,
    /// The device's ephemeral key, wrapped under the code.
    pub(crate) wrapped_ephemeral: Vec<u8>,
    pub(crate) handle: PairingHandle,
}

/// What the device sends in `companion_finish`.
#[derive(Debug)]
pub(crate) struct Finish {
    pub(crate) wrapped_bundle: Vec<u8>,
    pub(crate) identity: Vec<u8>,
}

/// The device's `companion_hello` (an IQ on its pairing connection): remember the flow
/// under the phone number it names; the answer carries the flow's ref.
pub(crate) fn hello(network: &Network, handle: &PairingHandle, iq: &Node) -> Node {
    let id = nodes::attr(iq, "id").unwrap_or_default();
    let reg = nodes::child(iq, "link_code_companion_reg");
    let phone = reg
        .and_then(|r| nodes::attr(r, "jid"))
        .and_then(|jid| jid.split('@').next().map(str::to_owned));
    let wrapped = reg
        .and_then(|r| nodes::child(r, "link_code_pairing_wrapped_companion_ephemeral_pub"))
        .and_then(nodes::bytes);
    let (Some(phone), Some(wrapped)) = (phone, wrapped) else {
        return nodes::iq_error(&id, 400, "bad-request");
    };
    let pairing_ref = format!("{:032x}", rand::random::<u128>()).into_bytes();
    network.lock().code_flows.insert(
        phone,
        CodeFlow {
            pairing_ref: pairing_ref.clone(),
            wrapped_ephemeral: wrapped.to_vec(),
            handle: handle.clone(),
        },
    );
    nodes::iq_result(
        &id,
        vec![
            NodeBuilder::new("link_code_companion_reg")
                .children([NodeBuilder::new("link_code_pairing_ref")
                    .bytes(pairing_ref)
                    .build()])
                .build(),
        ],
    )
}

/// The device's `companion_finish`: what the waiting phone needs.
pub(crate) fn finish(iq: &Node) -> Option<Finish> {
    let reg = nodes::child(iq, "link_code_companion_reg")?;
    let field = |tag: &str| {
        nodes::child(reg, tag)
            .and_then(nodes::bytes)
            .map(<[u8]>::to_vec)
    };
    Some(Finish {
        wrapped_bundle: field("link_code_pairing_wrapped_key_bundle")?,
        identity: field("companion_identity_public")?,
    })
}

impl Network {
    /// Someone types `code` on `phone`: the device that asked for a code for this
    /// number is linked to it.
    pub async fn enter_pair_code(&self, phone: &str, code: &str) -> Result<Linked, ScanError> {
        let flow = self
            .lock()
            .code_flows
            .remove(phone)
            .ok_or(ScanError::UnknownCode)?;
        let code = code.replace('-', "");
        let companion_ephemeral =
            PairCodeUtils::decrypt_primary_ephemeral_pub(&flow.wrapped_ephemeral, &code)
                .map_err(|e| ScanError::BadCode(e.to_string()))?;
        let ephemeral = KeyPair::generate(&mut rand::rng());
        let ephemeral_public: [u8; 32] = ephemeral
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("curve25519 keys are 32 bytes");
        let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&ephemeral_public, &code);
        let identity = self.lock().phone(phone).identity.clone();
        let hello = NodeBuilder::new("notification")
            .attr("type", "link_code_companion_reg")
            .attr("from", SERVER)
            .attr("id", format!("{}", rand::random::<u32>()))
            .attr("t", nodes::now().to_string())
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(wrapped.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(identity.public_key.public_key_bytes().to_vec())
                        .build(),
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(flow.pairing_ref.clone())
                        .build(),
                ])
                .build()])
            .build();
        let (done, finished) = oneshot::channel();
        flow.handle
            .commands
            .send(Command::PrimaryHello { hello, done })
            .map_err(|_| ScanError::UnknownCode)?;
        let finish = tokio::time::timeout(FINISH_TIMEOUT, finished)
            .await
            .map_err(|_| ScanError::Refused("the device did not finish in time".into()))?
            .map_err(|_| ScanError::Refused("the device disconnected".into()))?;
        let adv_secret = open_bundle(&ephemeral, &companion_ephemeral, &identity, &finish)
            .map_err(|e| ScanError::Refused(format!("the key bundle does not open: {e}")))?;
        if finish.identity[..] != flow.handle.identity_key[..] {
            return Err(ScanError::KeyMismatch);
        }
        self.link_device(&flow.handle, &adv_secret, phone).await
    }
}

/// Opens the device's key bundle and derives the ADV secret both sides now share.
fn open_bundle(
    ephemeral: &KeyPair,
    companion_ephemeral: &[u8; 32],
    identity: &KeyPair,
    finish: &Finish,
) -> Result<[u8; 32], String> {
    let agree = |ours: &KeyPair, theirs: &[u8]| {
        let theirs = PublicKey::from_djb_public_key_bytes(theirs).map_err(|e| e.to_string())?;
        ours.private_key
            .calculate_agreement(&theirs)
            .map_err(|e| e.to_string())
    };
    let ephemeral_shared = agree(ephemeral, companion_ephemeral)?;
    let wrapped = &finish.wrapped_bundle;
    if wrapped.len() < 32 + 12 + 16 {
        return Err("too short".into());
    }
    let (salt, rest) = wrapped.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|e| format!("{e:?}"))?;
    let mut bundle = Vec::new();
    let iv: [u8; 12] = iv.try_into().expect("12 bytes split off");
    wacore_libsignal::crypto::aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|e| format!("{e:?}"))?;
    if bundle.len() != 96 || bundle[..32] != finish.identity[..] {
        return Err("not the device's identity".into());
    }
    let identity_shared = agree(identity, &bundle[..32])?;
    let secret = [&ephemeral_shared[..], &identity_shared[..], &bundle[64..96]].concat();
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&secret, None, b"adv_secret", &mut adv_secret)
        .map_err(|e| format!("{e:?}"))?;
    Ok(adv_secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phone's side against the client's own: the bundle the device seals with
    /// `PairCodeUtils::prepare_key_bundle` opens, and both derive the same ADV secret.
    #[test]
    fn the_phone_opens_the_devices_key_bundle_and_derives_its_adv_secret() {
        let mut rng = rand::rng();
        let (device_ephemeral, device_identity) =
            (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let (phone_ephemeral, phone_identity) =
            (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let key =
            |pair: &KeyPair| -> [u8; 32] { pair.public_key.public_key_bytes().try_into().unwrap() };
        let (wrapped_bundle, device_secret) = PairCodeUtils::prepare_key_bundle(
            &device_ephemeral,
            &key(&phone_ephemeral),
            &key(&phone_identity),
            &device_identity,
        )
        .unwrap();
        let finish = Finish {
            wrapped_bundle,
            identity: key(&device_identity).to_vec(),
        };
        let phone_secret = open_bundle(
            &phone_ephemeral,
            &key(&device_ephemeral),
            &phone_identity,
            &finish,
        )
        .unwrap();
        assert_eq!(phone_secret, device_secret);

        let forged = Finish {
            identity: key(&KeyPair::generate(&mut rng)).to_vec(),
            ..finish
        };
        assert!(
            open_bundle(
                &phone_ephemeral,
                &key(&device_ephemeral),
                &phone_identity,
                &forged
            )
            .is_err()
        );
    }

    /// What the device wraps under the code, the phone unwraps with it, and not with
    /// another code.
    #[test]
    fn the_code_unwraps_the_devices_ephemeral_key() {
        let ephemeral: [u8; 32] = rand::random();
        let wrapped = PairCodeUtils::encrypt_ephemeral_pub(&ephemeral, "ABCDEFGH");
        let unwrapped = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, "ABCDEFGH").unwrap();
        assert_eq!(unwrapped, ephemeral);
        let wrong = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, "ABCDEFGX").unwrap();
        assert_ne!(wrong, ephemeral);
    }
}
