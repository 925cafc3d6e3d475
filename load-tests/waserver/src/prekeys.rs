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
