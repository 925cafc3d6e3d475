//! Small readers and builders of binary nodes.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeContent};

/// The server's JID, as every stanza of the server says `from`.
pub(crate) const SERVER: &str = "s.whatsapp.net";

pub(crate) fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

pub(crate) fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(bytes)) => Some(bytes),
        _ => None,
    }
}

pub(crate) fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

/// The first child's tag (what an IQ asks).
pub(crate) fn first_child_tag(node: &Node) -> Option<&str> {
    node.children()
        .and_then(|children| children.first())
        .map(|c| c.tag.as_ref())
}

/// `<iq from=server id type="result">` with `children`.
pub(crate) fn iq_result(id: &str, children: Vec<Node>) -> Node {
    let builder = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("id", id)
        .attr("type", "result");
    if children.is_empty() {
        builder.build()
    } else {
        builder.children(children).build()
    }
}

/// `<iq from=server id type="error"><error code text/></iq>`.
pub(crate) fn iq_error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("id", id)
        .attr("type", "error")
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text)
            .build()])
        .build()
}

/// What a stanza is, for the log of unanswered ones: `iq set md pair-device`.
pub(crate) fn describe(node: &Node) -> String {
    let mut parts = vec![node.tag.to_string()];
    for key in ["type", "xmlns", "class"] {
        if let Some(value) = attr(node, key) {
            parts.push(value);
        }
    }
    if let Some(tag) = first_child_tag(node) {
        parts.push(tag.to_owned());
    }
    parts.join(" ")
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
