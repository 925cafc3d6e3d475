//! The server's Noise identity: its static key pair and the certificate chain that
//! vouches for it.
//!
//! The chain has WhatsApp's shape (an intermediate with issuer serial 0, a leaf whose
//! issuer serial is the intermediate's serial and whose key is the static key) and
//! real XEdDSA signatures, but its root is a key of this server, not WhatsApp's
//! (`wacore_noise::WA_CERT_PUB_KEY`). A production client refuses it at the first
//! signature; only a build with the certificate check skipped (wafleet's `test-chain`
//! feature) accepts it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buffa::Message as _;
use wacore_libsignal::protocol::KeyPair;
use waproto::buffa;
use waproto::whatsapp::{self as wa, cert_chain::noise_certificate};

/// How long the chain is valid either side of the server's start.
const CHAIN_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The server's static key and its encoded `CertChain`.
pub(crate) struct ServerKeys {
    pub(crate) static_key: KeyPair,
    pub(crate) chain: Vec<u8>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys").finish_non_exhaustive()
    }
}

impl ServerKeys {
    /// A fresh static key, and a chain signed by a fresh root of this server.
    pub(crate) fn generate() -> ServerKeys {
        let mut rng = rand::rng();
        let static_key = KeyPair::generate(&mut rng);
        let root = KeyPair::generate(&mut rng);
        let intermediate = KeyPair::generate(&mut rng);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let not_before = now.saturating_sub(CHAIN_VALIDITY).as_secs();
        let not_after = (now + CHAIN_VALIDITY).as_secs();
        let intermediate_cert = certificate(
            &root,
            noise_certificate::Details {
                serial: Some(1),
                issuer_serial: Some(0),
                key: Some(intermediate.public_key.public_key_bytes().to_vec()),
                not_before: Some(not_before),
                not_after: Some(not_after),
            },
        );
        let leaf_cert = certificate(
            &intermediate,
            noise_certificate::Details {
                serial: Some(2),
                issuer_serial: Some(1),
                key: Some(static_key.public_key.public_key_bytes().to_vec()),
                not_before: Some(not_before),
                not_after: Some(not_after),
            },
        );
        let chain = wa::CertChain {
            leaf: buffa::MessageField::some(leaf_cert),
            intermediate: buffa::MessageField::some(intermediate_cert),
        }
        .encode_to_vec();
        ServerKeys { static_key, chain }
    }

    pub(crate) fn static_public(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.static_key.public_key.public_key_bytes());
        key
    }
}

/// `details`, signed by `issuer`.
fn certificate(
    issuer: &KeyPair,
    details: noise_certificate::Details,
) -> wa::cert_chain::NoiseCertificate {
    let details = details.encode_to_vec();
    let signature = issuer
        .private_key
        .calculate_signature(&details, &mut rand::rng())
        .expect("a fresh curve25519 key signs");
    wa::cert_chain::NoiseCertificate {
        details: Some(details),
        signature: Some(signature.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_noise::HandshakeUtils;

    #[test]
    fn the_chain_has_whatsapps_shape_but_not_its_root() {
        let keys = ServerKeys::generate();
        let result = HandshakeUtils::verify_server_cert(&keys.chain, &keys.static_public());
        // Unit tests of this crate are built without the bypass: the structural checks
        // pass and the root signature is the one that fails.
        let error = result.expect_err("not signed by WhatsApp").to_string();
        assert!(error.contains("intermediate signature"), "{error}");
    }
}
