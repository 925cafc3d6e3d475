//! `<iq xmlns="encrypt" type="get"><key>`: the pre-key bundles a device needs to start
//! Signal sessions: a simulated phone's own, or what another linked device uploaded
//! (each fetch uses up one of its one-time pre-keys).

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};

use crate::network::Network;
use crate::nodes::{self, iq_result};

pub(crate) fn answer(network: &Network, id: &str, iq: &Node) -> Node {
    let users = nodes::child(iq, "key")
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .filter_map(|user| nodes::attr(user, "jid"))
        .map(|jid| user(network, &jid))
        .collect::<Vec<_>>();
    iq_result(id, vec![NodeBuilder::new("list").children(users).build()])
}

fn user(network: &Network, jid: &str) -> Node {
    let found = jid.parse::<Jid>().ok().and_then(|parsed| {
        let device = u32::from(parsed.device);
        let number = network.lock().number_of(&parsed)?;
        if device == 0 {
            let party = network.signal_of(&number);
            // Never contended for long: phones encrypt under the same lock, briefly.
            let bundle = party.try_lock().ok()?.bundle();
            Some((bundle, None))
        } else {
            let identity = network
                .lock()
                .companions
                .get(&(number.clone(), device))?
                .device_identity
                .clone();
            Some((network.take_bundle(&number, device)?, Some(identity)))
        }
    });
    let builder = NodeBuilder::new("user").attr("jid", jid);
    let Some((bundle, device_identity)) = found else {
        return builder
            .children([NodeBuilder::new("error")
                .attr("code", "404")
                .attr("text", "item-not-found")
                .build()])
            .build();
    };
    let bytes = |tag: &'static str, value: Vec<u8>| NodeBuilder::new(tag).bytes(value).build();
    let mut children = vec![
        bytes(
            "registration",
            bundle.registration_id.to_be_bytes().to_vec(),
        ),
        bytes("type", vec![5]),
        bytes("identity", bundle.identity.to_vec()),
        NodeBuilder::new("skey")
            .children([
                bytes("id", id3(bundle.signed_id)),
                bytes("value", bundle.signed_public.to_vec()),
                bytes("signature", bundle.signed_signature),
            ])
            .build(),
    ];
    if let Some((key_id, key)) = bundle.pre_key {
        children.push(
            NodeBuilder::new("key")
                .children([bytes("id", id3(key_id)), bytes("value", key.to_vec())])
                .build(),
        );
    }
    if let Some(identity) = device_identity {
        children.push(bytes("device-identity", identity));
    }
    builder.children(children).build()
}

/// A key id as 3 big-endian bytes.
fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}
