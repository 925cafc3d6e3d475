//! Random identifiers the network hands out: link ids, inbound message ids, and the
//! random bytes behind nonces, keys and codes.

/// `N` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // The OS source essentially never fails; a simulator can live with a weaker one.
        tracing::warn!(%error, "os random source failed, using fastrand");
        bytes.iter_mut().for_each(|byte| *byte = fastrand::u8(..));
    }
    bytes
}

/// A new link id: 32 lowercase hex digits (128 random bits).
pub(crate) fn link_id() -> String {
    hex(&random_bytes::<16>())
}

/// A new id for a message a phone sends to a linked device, shaped like WhatsApp's:
/// `3EB0` and 16 uppercase hex digits.
pub(crate) fn inbound_message_id() -> String {
    format!("3EB0{}", hex(&random_bytes::<8>()).to_uppercase())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ids_are_hex_and_distinct() {
        let (a, b) = (link_id(), link_id());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn inbound_ids_look_like_whatsapp_ids() {
        let id = inbound_message_id();
        assert!(id.starts_with("3EB0"));
        assert_eq!(id.len(), 20);
    }
}
