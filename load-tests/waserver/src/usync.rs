//! `<iq xmlns="usync">`: who is on the network, their LIDs, and their device lists.

use buffa::Message as _;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa;
use waproto::whatsapp as wa;

use crate::network::State;
use crate::nodes::{self, iq_result};

/// `ADV_PREFIX_KEY_INDEX_LIST` of WhatsApp.
const KEY_INDEX_PREFIX: &[u8] = &[6, 2];

/// Answers a usync query for each `<user>` of its list: the protocols asked for
/// (`contact`, `lid`, `devices`) that this server knows.
pub(crate) fn answer(state: &mut State, id: &str, iq: &Node) -> Node {
    let Some(usync) = nodes::child(iq, "usync") else {
        return nodes::iq_error(id, 400, "bad-request");
    };
    let asked: Vec<String> = nodes::child(usync, "query")
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .map(|q| q.tag.to_string())
        .collect();
    let users = nodes::child(usync, "list")
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .filter_map(|user| {
            let phone = match nodes::attr(user, "jid") {
                Some(jid) => state.number_of(&jid.parse().ok()?)?,
                None => nodes::child(user, "contact")
                    .and_then(|c| c.content_as_string())
                    .map(|c| c.trim_start_matches('+').to_owned())?,
            };
            Some(user_node(state, &phone, &asked))
        })
        .collect::<Vec<_>>();
    let attrs = [("sid", nodes::attr(usync, "sid").unwrap_or_default())];
    iq_result(
        id,
        vec![
            NodeBuilder::new("usync")
                .attrs(attrs)
                .children([NodeBuilder::new("list").children(users).build()])
                .build(),
        ],
    )
}

fn user_node(state: &mut State, number: &str, asked: &[String]) -> Node {
    let phone = state.phone(number);
    let lid = phone.lid.clone();
    let account = phone.identity.clone();
    let mut devices: Vec<u32> = state
        .companions
        .keys()
        .filter(|(user, _)| user == number)
        .map(|(_, device)| *device)
        .collect();
    devices.sort_unstable();
    let mut children = Vec::new();
    for protocol in asked {
        match protocol.as_str() {
            "contact" => children.push(NodeBuilder::new("contact").attr("type", "in").build()),
            "lid" => children.push(
                NodeBuilder::new("lid")
                    .attr("val", format!("{lid}@lid"))
                    .build(),
            ),
            "devices" => {
                let list = std::iter::once(NodeBuilder::new("device").attr("id", "0").build())
                    .chain(devices.iter().map(|d| {
                        NodeBuilder::new("device")
                            .attr("id", d.to_string())
                            .attr("key-index", d.to_string())
                            .build()
                    }))
                    .collect::<Vec<_>>();
                let details = wa::ADVKeyIndexList {
                    raw_id: Some(1),
                    timestamp: Some(nodes::now()),
                    current_index: Some(devices.last().copied().unwrap_or(0)),
                    valid_indexes: devices.clone(),
                    ..Default::default()
                }
                .encode_to_vec();
                let signature = account
                    .private_key
                    .calculate_signature(&[KEY_INDEX_PREFIX, &details].concat(), &mut rand::rng())
                    .expect("a curve25519 key signs");
                let key_index = wa::ADVSignedKeyIndexList {
                    details: Some(details),
                    account_signature: Some(signature.to_vec()),
                    ..Default::default()
                }
                .encode_to_vec();
                children.push(
                    NodeBuilder::new("devices")
                        .children([
                            NodeBuilder::new("device-list").children(list).build(),
                            NodeBuilder::new("key-index-list")
                                .attr("ts", nodes::now().to_string())
                                .bytes(key_index)
                                .build(),
                        ])
                        .build(),
                );
            }
            _ => {}
        }
    }
    NodeBuilder::new("user")
        .attr("jid", format!("{number}@s.whatsapp.net"))
        .children(children)
        .build()
}
