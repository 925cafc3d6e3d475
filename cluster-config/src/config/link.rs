//! `[link]`: what a node's devices connect to — WhatsApp, or a simulated network.

use serde::Deserialize;

use super::check::Invalid;

/// Which network devices reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// The real WhatsApp network.
    #[default]
    Whatsapp,
    /// `wafleet sim` processes, at `sim_url` or `sim_urls`: for tests, demos and load
    /// tests.
    Sim,
}

/// The `[link]` section (nodes only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    /// `whatsapp` (default) or `sim`.
    #[serde(default)]
    pub kind: LinkKind,
    /// With `kind = "sim"` and one simulator: its WebSocket, `ws://HOST:PORT/ws`. The
    /// same as a one-element `sim_urls` (kept so that existing configs still load).
    #[serde(default)]
    pub sim_url: Option<String>,
    /// With `kind = "sim"` and a network run as several `wafleet sim` processes: their
    /// WebSockets. Each device dials the one [`sim_of`](crate::sim_of) picks by its id,
    /// so every node (and the load driver) must list the same URLs in the same order.
    #[serde(default)]
    pub sim_urls: Vec<String>,
}

impl LinkSettings {
    /// The simulators' WebSockets, in order: `sim_urls`, or `sim_url` alone. Empty
    /// unless the kind is `sim` (the checks make sure it is not empty then).
    pub fn sim_urls(&self) -> Vec<&str> {
        if self.kind != LinkKind::Sim {
            return Vec::new();
        }
        match &self.sim_url {
            Some(url) => vec![url.as_str()],
            None => self.sim_urls.iter().map(String::as_str).collect(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.kind != LinkKind::Sim {
            return Ok(());
        }
        let key = match (&self.sim_url, self.sim_urls.is_empty()) {
            (None, true) => {
                return Err(Invalid::new(
                    "link.sim_urls",
                    "required with kind = \"sim\" (or sim_url for one simulator), like [\"ws://127.0.0.1:8090/ws\"]",
                ));
            }
            (Some(_), false) => {
                return Err(Invalid::new(
                    "link.sim_url",
                    "give sim_url (one simulator) or sim_urls (several), not both",
                ));
            }
            (Some(_), true) => "link.sim_url",
            (None, false) => "link.sim_urls",
        };
        let urls = self.sim_urls();
        for (i, url) in urls.iter().enumerate() {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(Invalid::new(key, format!("{url:?} is not a ws:// URL")));
            }
            if urls[..i].contains(url) {
                return Err(Invalid::new(
                    key,
                    format!(
                        "{url:?} is listed twice: each simulator once, in the same order on every node"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sims(one: Option<&str>, many: &[&str]) -> LinkSettings {
        LinkSettings {
            kind: LinkKind::Sim,
            sim_url: one.map(str::to_owned),
            sim_urls: many.iter().map(|u| (*u).to_owned()).collect(),
        }
    }

    #[test]
    fn sim_needs_a_websocket_url() {
        assert_eq!(LinkSettings::default().check(), Ok(()));
        let sim = |url: Option<&str>| sims(url, &[]);
        assert!(sim(None).check().is_err());
        assert!(sim(Some("http://x/ws")).check().is_err());
        assert_eq!(sim(Some("ws://127.0.0.1:8090/ws")).check(), Ok(()));
    }

    #[test]
    fn sim_url_is_a_list_of_one() {
        let one = sims(Some("ws://a/ws"), &[]);
        assert_eq!(one.sim_urls(), ["ws://a/ws"]);
        let two = sims(None, &["ws://a/ws", "ws://b/ws"]);
        assert_eq!(two.check(), Ok(()));
        assert_eq!(two.sim_urls(), ["ws://a/ws", "ws://b/ws"]);
        assert!(LinkSettings::default().sim_urls().is_empty());
    }

    #[test]
    fn a_list_of_simulators_is_checked_entry_by_entry() {
        let both = sims(Some("ws://a/ws"), &["ws://b/ws"]).check().unwrap_err();
        assert_eq!(both.key, "link.sim_url");
        assert!(both.message.contains("not both"), "{}", both.message);
        let bad = sims(None, &["ws://a/ws", "tcp://b"]).check().unwrap_err();
        assert_eq!(bad.key, "link.sim_urls");
        assert!(bad.message.contains("tcp://b"), "{}", bad.message);
        let twice = sims(None, &["ws://a/ws", "ws://a/ws"]).check().unwrap_err();
        assert!(twice.message.contains("twice"), "{}", twice.message);
        let none = sims(None, &[]).check().unwrap_err();
        assert_eq!(none.key, "link.sim_urls");
    }
}
