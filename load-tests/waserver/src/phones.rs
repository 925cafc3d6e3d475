//! What a phone does to its linked devices: unlink them, or get its account banned for
//! a while.

use std::time::{Duration, SystemTime};

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::network::{Command, Network};

impl Network {
    /// The phone unlinks every companion device: each is forgotten, and a connected
    /// one is told it was removed. How many there were.
    pub fn unlink(&self, phone: &str) -> usize {
        let mut state = self.lock();
        let before = state.companions.len();
        state.companions.retain(|(user, _), _| user != phone);
        state.bundles.retain(|(user, _), _| user != phone);
        state.keys_shared.retain(|(user, _)| user != phone);
        let removed = before - state.companions.len();
        kick(&state.online, phone, || conflict("device_removed"));
        removed
    }

    /// The account is banned for `duration`: connected devices are disconnected and
    /// every login until then fails with 402. When the ban ends.
    pub fn ban(&self, phone: &str, duration: Duration) -> SystemTime {
        let until = SystemTime::now() + duration;
        let mut state = self.lock();
        state.phone(phone).banned_until = Some(until);
        kick(&state.online, phone, || {
            NodeBuilder::new("stream:error").attr("code", "503").build()
        });
        until
    }
}

impl Network {
    /// The server drops `phone`'s connected devices with a stream error (503, "service
    /// unavailable"), as WhatsApp does when it moves a connection: they reconnect. How
    /// many were connected.
    pub fn disconnect(&self, phone: &str) -> usize {
        let state = self.lock();
        let connected = state
            .online
            .keys()
            .filter(|(user, _)| user == phone)
            .count();
        kick(&state.online, phone, || {
            NodeBuilder::new("stream:error").attr("code", "503").build()
        });
        connected
    }
}

/// Sends each connected device of `phone` a stream error, then closes it.
fn kick(
    online: &std::collections::HashMap<(String, u32), crate::network::Online>,
    phone: &str,
    error: impl Fn() -> Node,
) {
    for ((user, _), connection) in online {
        if user == phone {
            let _ = connection.commands.send(Command::Kick(error()));
        }
    }
}

/// `<stream:error><conflict type/></stream:error>`.
pub(crate) fn conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict").attr("type", kind).build()])
        .build()
}
