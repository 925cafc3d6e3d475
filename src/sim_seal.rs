//! The simulated network's texts, when it runs inside a standalone process and keeps
//! its state in the data folder: sealed with the master key, like everything else there
//! that could be read.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as BASE64;
use wafleet_node::seal::Sealer;
use wafleet_node::store::SealedBlob;

/// What every sealed text of the network's state starts with.
const MARKER: &str = "\u{1}wfsim1:";

/// Seals the network's texts with the master key (the place binds each to its record).
#[derive(Debug)]
pub(crate) struct SimStateSeal(pub(crate) Arc<Sealer>);

impl wafleet_sim::StateSeal for SimStateSeal {
    fn seal(&self, place: &str, text: &str) -> String {
        let blob = self.0.seal("sim", "text", place, text.as_bytes());
        format!(
            "{MARKER}{}:{}",
            blob.key_version,
            BASE64.encode(&blob.bytes)
        )
    }

    fn open(&self, place: &str, stored: &str) -> Result<String, String> {
        // Kept before texts were sealed: as it is.
        let Some(rest) = stored.strip_prefix(MARKER) else {
            return Ok(stored.to_owned());
        };
        let (version, bytes) = rest.split_once(':').ok_or("malformed sealed text")?;
        let blob = SealedBlob {
            key_version: version.parse().map_err(|_| "malformed sealed text")?,
            bytes: BASE64.decode(bytes).map_err(|_| "malformed sealed text")?,
        };
        let plain = self
            .0
            .open("sim", "text", place, &blob)
            .map_err(|e| e.to_string())?;
        String::from_utf8(plain).map_err(|_| "a sealed text is not utf-8".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use wafleet_node::seal::MasterKey;
    use wafleet_sim::StateSeal;

    use super::*;

    #[test]
    fn texts_round_trip_only_at_their_place() {
        let seal = SimStateSeal(Arc::new(Sealer::new(MasterKey::new(1, [4; 32]))));
        let stored = seal.seal("inbox/1/m1", "halo rahasia");
        assert!(!stored.contains("halo"), "{stored}");
        assert_eq!(seal.open("inbox/1/m1", &stored).unwrap(), "halo rahasia");
        assert!(seal.open("inbox/1/m2", &stored).is_err());
        assert_eq!(seal.open("inbox/1/m1", "plain").unwrap(), "plain");
        assert!(seal.open("inbox/1/m1", "\u{1}wfsim1:1:!!").is_err());
    }
}
