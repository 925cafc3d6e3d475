//! The server's answers to what a logged-in device asks: one line per kind of stanza.
//! A stanza with no answer here is recorded ([`Network::unknown`], `/sim/stats`) and,
//! if it is an IQ, refused with 501 so the client does not wait for its timeout.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::network::Network;
use crate::nodes::{self, iq_error, iq_result};
use crate::{prekeys, usync};

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) phone: String,
    pub(crate) device: u32,
}

impl Session {
    /// A connection still pairing: it has no account yet.
    pub(crate) fn pairing() -> Session {
        Session {
            phone: String::new(),
            device: 0,
        }
    }

    fn key(&self) -> (String, u32) {
        (self.phone.clone(), self.device)
    }
}

/// The answer to `node`, if it needs one.
pub(crate) fn answer(network: &Network, session: &Session, node: &Node) -> Option<Node> {
    match node.tag.as_ref() {
        "iq" => iq(network, session, node),
        // The device telling the server its clock offset; nothing to answer.
        "ib" if nodes::first_child_tag(node) == Some("unified_session") => None,
        // A device with a push name says it is online at each login.
        "presence" => {
            network.lock().stats.presences += 1;
            None
        }
        _ => {
            network.unknown(nodes::describe(node));
            None
        }
    }
}

fn iq(network: &Network, session: &Session, node: &Node) -> Option<Node> {
    let id = nodes::attr(node, "id").unwrap_or_default();
    let kind = nodes::attr(node, "type").unwrap_or_default();
    if kind == "result" || kind == "error" {
        // An answer to one of ours.
        return None;
    }
    let xmlns = nodes::attr(node, "xmlns").unwrap_or_default();
    let child = nodes::first_child_tag(node).unwrap_or_default().to_owned();
    let answer = match (kind.as_str(), xmlns.as_str(), child.as_str()) {
        // Keepalive.
        ("get", "w:p", _) => iq_result(&id, vec![]),
        ("set", "passive", _) => iq_result(&id, vec![]),
        ("set", "encrypt", _) => {
            let mut state = network.lock();
            let bundle = state.bundles.entry(session.key()).or_default();
            match prekeys::upload(bundle, node) {
                Ok(count) => {
                    state.stats.prekeys_uploaded += count as u64;
                    state.stats.prekey_uploads += 1;
                    if state.keys_shared.insert(session.key()) {
                        // The first upload of a newly linked device: its phone can now
                        // write to it, and shares the app state key.
                        let (network, session) = (network.clone(), session.clone());
                        tokio::spawn(async move {
                            if let Err(error) = network
                                .share_app_state_key(&session.phone, session.device)
                                .await
                            {
                                tracing::warn!(%error, "the phone cannot share its app state key");
                            }
                        });
                    }
                    iq_result(&id, vec![])
                }
                Err(error) => iq_error(&id, 400, error),
            }
        }
        ("get", "encrypt", "digest") => {
            prekeys::digest(&id, network.lock().bundles.get(&session.key()))
        }
        ("get", "encrypt", "key") => crate::bundles::answer(network, &id, node),
        ("get", "usync", "usync") => usync::answer(&mut network.lock(), &id, node),
        // A/B props: none.
        ("get", "abt", "props") => iq_result(
            &id,
            vec![NodeBuilder::new("props").attr("protocol", "1").build()],
        ),
        ("get", "blocklist", _) => iq_result(&id, vec![NodeBuilder::new("list").build()]),
        ("get", "privacy", "privacy") => iq_result(&id, vec![privacy()]),
        // Trusted-contact tokens a device issues to whom it writes: nothing to keep.
        ("set", "privacy", "tokens") => iq_result(&id, vec![]),
        // App state: every collection asked for is empty and in sync.
        ("set", "w:sync:app:state", "sync") => iq_result(&id, vec![app_state(node)]),
        _ => {
            network.unknown(nodes::describe(node));
            iq_error(&id, 501, "feature-not-implemented")
        }
    };
    Some(answer)
}

/// Everyone may see everything.
fn privacy() -> Node {
    let categories = [
        "last",
        "online",
        "profile",
        "status",
        "groupadd",
        "readreceipts",
        "calladd",
        "messages",
    ];
    NodeBuilder::new("privacy")
        .children(categories.iter().map(|name| {
            NodeBuilder::new("category")
                .attr("name", *name)
                .attr("value", "all")
                .build()
        }))
        .build()
}

/// `<sync>` with one empty `<collection name>` per collection the device asked for.
fn app_state(iq: &Node) -> Node {
    let asked = nodes::child(iq, "sync")
        .and_then(Node::children)
        .unwrap_or_default();
    NodeBuilder::new("sync")
        .children(asked.iter().filter_map(|collection| {
            let name = nodes::attr(collection, "name")?;
            Some(NodeBuilder::new("collection").attr("name", name).build())
        }))
        .build()
}
