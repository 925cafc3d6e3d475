//! The key bundles devices upload (`<iq xmlns="encrypt" type="set">`): kept per device,
//! and answered back as a digest (`<digest/>`) the device checks against its store.

use std::collections::BTreeMap;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::nodes::{self, iq_error, iq_result};

/// A device's uploaded keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyBundle {
    pub(crate) registration: Vec<u8>,
    pub(crate) identity: Vec<u8>,
    pub(crate) signed_id: Vec<u8>,
    pub(crate) signed_value: Vec<u8>,
    pub(crate) signed_signature: Vec<u8>,
    /// One-time pre-keys by their 3-byte id.
    pub(crate) prekeys: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Merges an upload into `bundle`; how many one-time keys it carried.
pub(crate) fn upload(bundle: &mut KeyBundle, iq: &Node) -> Result<usize, &'static str> {
    let content = |tag: &str| {
        nodes::child(iq, tag)
            .and_then(nodes::bytes)
            .map(<[u8]>::to_vec)
    };
    if let Some(registration) = content("registration") {
        bundle.registration = registration;
    }
    if let Some(identity) = content("identity") {
        bundle.identity = identity;
    }
    if let Some(skey) = nodes::child(iq, "skey") {
        let part = |tag: &str| {
            nodes::child(skey, tag)
                .and_then(nodes::bytes)
                .map(<[u8]>::to_vec)
                .ok_or("skey without id, value or signature")
        };
        bundle.signed_id = part("id")?;
        bundle.signed_value = part("value")?;
        bundle.signed_signature = part("signature")?;
    }
    let mut count = 0;
    for key in nodes::child(iq, "list")
        .and_then(Node::children)
        .unwrap_or_default()
    {
        let id = nodes::child(key, "id").and_then(nodes::bytes);
        let value = nodes::child(key, "value").and_then(nodes::bytes);
        let (Some(id), Some(value)) = (id, value) else {
            return Err("a key without id or value");
        };
        bundle.prekeys.insert(id.to_vec(), value.to_vec());
        count += 1;
    }
    Ok(count)
}

/// The answer to `<digest/>`: the bundle as the server holds it, and its SHA-1.
pub(crate) fn digest(id: &str, bundle: Option<&KeyBundle>) -> Node {
    let Some(bundle) = bundle.filter(|b| !b.identity.is_empty()) else {
        // The device re-uploads on 404.
        return iq_error(id, 404, "item-not-found");
    };
    let prekeys: Vec<&[u8]> = bundle.prekeys.values().map(Vec::as_slice).collect();
    let hash = wacore::prekeys::compute_key_bundle_digest(
        &bundle.identity,
        &bundle.signed_value,
        &bundle.signed_signature,
        &prekeys,
    );
    let bytes =
        |tag: &'static str, value: &[u8]| NodeBuilder::new(tag).bytes(value.to_vec()).build();
    iq_result(
        id,
        vec![
            NodeBuilder::new("digest")
                .children([
                    bytes("registration", &bundle.registration),
                    bytes("type", &[5]),
                    bytes("identity", &bundle.identity),
                    NodeBuilder::new("skey")
                        .children([
                            bytes("id", &bundle.signed_id),
                            bytes("value", &bundle.signed_value),
                            bytes("signature", &bundle.signed_signature),
                        ])
                        .build(),
                    NodeBuilder::new("list")
                        .children(bundle.prekeys.keys().map(|key_id| bytes("id", key_id)))
                        .build(),
                    bytes("hash", &hash),
                ])
                .build(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload_iq(keys: &[(u32, u8)]) -> Node {
        let bytes = |tag: &'static str, value: Vec<u8>| NodeBuilder::new(tag).bytes(value).build();
        NodeBuilder::new("iq")
            .children([
                bytes("registration", vec![0, 0, 0, 7]),
                bytes("type", vec![5]),
                bytes("identity", vec![1; 32]),
                NodeBuilder::new("list")
                    .children(keys.iter().map(|(id, fill)| {
                        NodeBuilder::new("key")
                            .children([
                                bytes("id", id.to_be_bytes()[1..].to_vec()),
                                bytes("value", vec![*fill; 32]),
                            ])
                            .build()
                    }))
                    .build(),
                NodeBuilder::new("skey")
                    .children([
                        bytes("id", vec![0, 0, 1]),
                        bytes("value", vec![2; 32]),
                        bytes("signature", vec![3; 64]),
                    ])
                    .build(),
            ])
            .build()
    }

    /// The digest lists what was uploaded, and its hash is WhatsApp's over the same keys
    /// in id order.
    #[test]
    fn the_digest_hashes_the_keys_the_device_uploaded() {
        let mut bundle = KeyBundle::default();
        assert_eq!(
            upload(&mut bundle, &upload_iq(&[(2, 0xB), (1, 0xA)])),
            Ok(2)
        );
        let answer = digest("d1", Some(&bundle));
        let digest = nodes::child(&answer, "digest").unwrap();
        let ids: Vec<&[u8]> = nodes::child(digest, "list")
            .and_then(Node::children)
            .unwrap()
            .iter()
            .filter_map(nodes::bytes)
            .collect();
        assert_eq!(ids, [&[0, 0, 1][..], &[0, 0, 2][..]]);
        let expected = wacore::prekeys::compute_key_bundle_digest(
            &[1; 32],
            &[2; 32],
            &[3; 64],
            &[&[0xA; 32], &[0xB; 32]],
        );
        assert_eq!(
            nodes::child(digest, "hash").and_then(nodes::bytes),
            Some(&expected[..])
        );
    }

    #[test]
    fn no_upload_yet_is_a_404_the_device_answers_with_one() {
        let answer = digest("d2", None);
        assert_eq!(nodes::attr(&answer, "type").as_deref(), Some("error"));
        let error = nodes::child(&answer, "error").unwrap();
        assert_eq!(nodes::attr(error, "code").as_deref(), Some("404"));
    }
}
