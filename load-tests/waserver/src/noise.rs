//! The responder side of WhatsApp's Noise handshakes: XX (a first connection), IK (a
//! device that kept the server's static key) and XX-fallback (IK with a key this server
//! does not hold). wacore-noise has only the initiator's state machines; the messages
//! and the symmetric state ([`NoiseHandshake`]) are its.

use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::{NoiseCipher, NoiseHandshake};
use waproto::buffa;
use waproto::whatsapp::{self as wa, HandshakeMessage};

use crate::keys::ServerKeys;

/// A handshake that went wrong: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoiseError {
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    #[error("handshake crypto failed: {0}")]
    Crypto(String),
}

impl From<wacore_noise::HandshakeError> for NoiseError {
    fn from(error: wacore_noise::HandshakeError) -> NoiseError {
        NoiseError::Crypto(error.to_string())
    }
}

impl From<buffa::DecodeError> for NoiseError {
    fn from(_: buffa::DecodeError) -> NoiseError {
        NoiseError::Malformed("not a HandshakeMessage")
    }
}

/// Which pattern a connection used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    Xx,
    Ik,
    XxFallback,
}

/// After the server's hello: what the client's finish (XX, XX-fallback) completes, or
/// the finished handshake (IK, whose client hello carried everything).
pub(crate) enum AfterHello {
    AwaitFinish(Box<PendingFinish>),
    Done(Box<Established>),
}

/// An XX (or XX-fallback) handshake waiting for the client's finish.
pub(crate) struct PendingFinish {
    noise: NoiseHandshake,
    ephemeral: KeyPair,
    pattern: Pattern,
}

/// A finished handshake: the transport ciphers and who the client is.
pub(crate) struct Established {
    pub(crate) read: NoiseCipher,
    pub(crate) write: NoiseCipher,
    /// The client's static Noise key.
    pub(crate) client_static: [u8; 32],
    /// The encoded `ClientPayload` (registration or login).
    pub(crate) payload: Vec<u8>,
    pub(crate) pattern: Pattern,
}

/// Answers a client hello. Returns the server hello to send and what comes next.
pub(crate) fn respond(
    keys: &ServerKeys,
    client_hello: &[u8],
) -> Result<(Vec<u8>, AfterHello), NoiseError> {
    let message = waproto::codec::handshake_message_decode(client_hello)?;
    let hello = message
        .client_hello
        .into_option()
        .ok_or(NoiseError::Malformed("no client hello"))?;
    let client_ephemeral = key32(hello.ephemeral.as_deref(), "client ephemeral")?;
    match (hello.r#static, hello.payload) {
        (Some(encrypted_static), Some(encrypted_payload)) => {
            match ik(
                keys,
                client_ephemeral,
                &encrypted_static,
                &encrypted_payload,
            ) {
                Ok(done) => done,
                // A static key this server does not hold (the client cached another
                // server's): answer XX-shaped, the client falls back.
                Err(_) => xx(keys, client_ephemeral, Pattern::XxFallback),
            }
        }
        (None, None) => xx(keys, client_ephemeral, Pattern::Xx),
        _ => Err(NoiseError::Malformed("a client hello with half of IK")),
    }
}

/// `<- e, ee, s, es` with the chain as payload.
fn xx(
    keys: &ServerKeys,
    client_ephemeral: [u8; 32],
    pattern: Pattern,
) -> Result<(Vec<u8>, AfterHello), NoiseError> {
    let name = match pattern {
        Pattern::XxFallback => NOISE_PATTERN_XXFALLBACK,
        _ => NOISE_PATTERN_XX,
    };
    let mut noise = NoiseHandshake::new(name, &WA_CONN_HEADER)?;
    noise.authenticate(&client_ephemeral);
    let ephemeral = KeyPair::generate(&mut rand::rng());
    noise.authenticate(ephemeral.public_key.public_key_bytes());
    noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_ephemeral)?;
    let encrypted_static = noise.encrypt(keys.static_key.public_key.public_key_bytes())?;
    noise.mix_shared_secret(keys.static_key.private_key.serialize(), &client_ephemeral)?;
    let encrypted_chain = noise.encrypt(&keys.chain)?;
    let hello = server_hello(
        ephemeral.public_key.public_key_bytes(),
        Some(encrypted_static),
        encrypted_chain,
    );
    Ok((
        hello,
        AfterHello::AwaitFinish(Box::new(PendingFinish {
            noise,
            ephemeral,
            pattern,
        })),
    ))
}

impl PendingFinish {
    /// Reads the client's finish: `-> s, se` and the payload.
    pub(crate) fn finish(mut self, client_finish: &[u8]) -> Result<Established, NoiseError> {
        let message = waproto::codec::handshake_message_decode(client_finish)?;
        let finish = message
            .client_finish
            .into_option()
            .ok_or(NoiseError::Malformed("no client finish"))?;
        let encrypted_static = finish
            .r#static
            .ok_or(NoiseError::Malformed("client finish without static"))?;
        let encrypted_payload = finish
            .payload
            .ok_or(NoiseError::Malformed("client finish without payload"))?;
        let client_static = self.noise.decrypt(&encrypted_static)?;
        let client_static = key32(Some(&client_static), "client static")?;
        self.noise
            .mix_shared_secret(self.ephemeral.private_key.serialize(), &client_static)?;
        let payload = self.noise.decrypt(&encrypted_payload)?;
        let (first, second) = self.noise.finish()?;
        Ok(Established {
            read: first,
            write: second,
            client_static,
            payload,
            pattern: self.pattern,
        })
    }
}

/// The client's `-> e, es, s, ss` with its payload; then `<- e, ee, se`.
fn ik(
    keys: &ServerKeys,
    client_ephemeral: [u8; 32],
    encrypted_static: &[u8],
    encrypted_payload: &[u8],
) -> Result<Result<(Vec<u8>, AfterHello), NoiseError>, NoiseError> {
    let server_static = keys.static_key.private_key.serialize();
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
    noise.authenticate(&keys.static_public());
    noise.authenticate(&client_ephemeral);
    noise.mix_shared_secret(server_static, &client_ephemeral)?;
    let client_static = noise.decrypt(encrypted_static)?;
    let client_static = key32(Some(&client_static), "client static")?;
    noise.mix_shared_secret(server_static, &client_static)?;
    let payload = noise.decrypt(encrypted_payload)?;
    // From here on a failure is this server's, not a key mismatch: no fallback.
    Ok((|| {
        let ephemeral = KeyPair::generate(&mut rand::rng());
        noise.authenticate(ephemeral.public_key.public_key_bytes());
        noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_ephemeral)?;
        noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
        let encrypted_chain = noise.encrypt(&keys.chain)?;
        let hello = server_hello(
            ephemeral.public_key.public_key_bytes(),
            None,
            encrypted_chain,
        );
        let (first, second) = noise.finish()?;
        Ok((
            hello,
            AfterHello::Done(Box::new(Established {
                read: first,
                write: second,
                client_static,
                payload,
                pattern: Pattern::Ik,
            })),
        ))
    })())
}

fn server_hello(ephemeral: &[u8], encrypted_static: Option<Vec<u8>>, payload: Vec<u8>) -> Vec<u8> {
    waproto::codec::handshake_message_to_vec(&HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn key32(bytes: Option<&[u8]>, what: &'static str) -> Result<[u8; 32], NoiseError> {
    bytes
        .and_then(|b| b.try_into().ok())
        .ok_or(NoiseError::Malformed(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_noise::{IkHandshakeState, IkServerHelloOutcome, XxHandshakeState};

    fn client_key() -> KeyPair {
        KeyPair::generate(&mut rand::rng())
    }

    /// A client that kept the server's key logs in by IK: both sides end with the same
    /// transport keys, and the server has the client's key and payload.
    #[test]
    fn ik_completes_with_the_clients_own_state_machine() {
        let keys = ServerKeys::generate();
        let client = client_key();
        let mut ik = IkHandshakeState::new(
            client.clone(),
            keys.static_public(),
            b"login payload".to_vec(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = ik.build_client_hello().unwrap();
        let (server_hello, after) = respond(&keys, &hello).unwrap();
        let AfterHello::Done(server) = after else {
            panic!("IK needs no finish");
        };
        assert_eq!(server.pattern, Pattern::Ik);
        assert_eq!(server.payload, b"login payload");
        assert_eq!(
            &server.client_static[..],
            client.public_key.public_key_bytes()
        );
        let IkServerHelloOutcome::Continue(client_side) =
            ik.read_server_hello(&server_hello).unwrap()
        else {
            panic!("the server holds the key: no fallback");
        };
        let sealed = client_side
            .write_cipher
            .encrypt_with_counter(0, b"ping")
            .unwrap();
        let mut opened = sealed.clone();
        server
            .read
            .decrypt_in_place_with_counter(0, &mut opened)
            .unwrap();
        assert_eq!(opened, b"ping");
        let sealed = server.write.encrypt_with_counter(0, b"pong").unwrap();
        let mut opened = sealed;
        client_side
            .read_cipher
            .decrypt_in_place_with_counter(0, &mut opened)
            .unwrap();
        assert_eq!(opened, b"pong");
    }

    /// A client that cached another server's key gets an XX-shaped answer (static
    /// present), the signal to fall back.
    #[test]
    fn ik_to_another_servers_key_is_answered_for_a_fallback() {
        let keys = ServerKeys::generate();
        let other = ServerKeys::generate();
        let mut ik = IkHandshakeState::new(
            client_key(),
            other.static_public(),
            b"login".to_vec(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = ik.build_client_hello().unwrap();
        let (server_hello, after) = respond(&keys, &hello).unwrap();
        assert!(matches!(after, AfterHello::AwaitFinish(_)));
        assert!(matches!(
            ik.read_server_hello(&server_hello).unwrap(),
            IkServerHelloOutcome::Fallback(_)
        ));
    }

    /// XX: the client decrypts the server's static key and chain, and (in this crate's
    /// tests, built without the bypass) refuses the chain at its root signature, exactly
    /// where a production wafleet refuses the test server.
    #[test]
    fn xx_gets_as_far_as_the_root_signature() {
        let keys = ServerKeys::generate();
        let mut xx =
            XxHandshakeState::new(client_key(), b"registration".to_vec(), &WA_CONN_HEADER).unwrap();
        let hello = xx.build_client_hello().unwrap();
        let (server_hello, after) = respond(&keys, &hello).unwrap();
        assert!(matches!(after, AfterHello::AwaitFinish(_)));
        let error = xx
            .read_server_hello_and_build_client_finish(&server_hello)
            .expect_err("a production client refuses the chain")
            .to_string();
        assert!(error.contains("intermediate signature"), "{error}");
    }

    #[test]
    fn a_malformed_hello_is_refused() {
        let keys = ServerKeys::generate();
        assert!(respond(&keys, b"not a handshake").is_err());
    }
}
