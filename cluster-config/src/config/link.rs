//! `[link]`: what a node's devices connect to — WhatsApp, or a simulated network.

use std::fmt;
use std::str::FromStr;

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
    /// With `kind = "whatsapp"`: the WebSocket to dial instead of WhatsApp's
    /// (`wss://web.whatsapp.com/ws/chat`), `ws://` or `wss://`: a relay, or a protocol
    /// test server (which only a `test-chain` build accepts).
    #[serde(default)]
    pub whatsapp_url: Option<String>,
    /// With `kind = "whatsapp"`: the WhatsApp Web version the devices announce, instead
    /// of the current one fetched from web.whatsapp.com (which a node without a route
    /// there, or one dialling a test server, cannot fetch).
    #[serde(default)]
    pub whatsapp_version: Option<WhatsAppVersion>,
}

/// A WhatsApp Web client version, `2.3000.1023456789`: three numbers separated by dots.
/// Pinning it spares the fetch of the current one from web.whatsapp.com. The one parser
/// of the standalone flag `--whatsapp-version` and of `[link] whatsapp_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhatsAppVersion {
    /// The three numbers, in the order written.
    pub parts: (u32, u32, u32),
}

impl FromStr for WhatsAppVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<WhatsAppVersion, String> {
        let bad = || {
            format!(
                "`{text}` is not a WhatsApp Web version: expected three numbers separated by dots, like 2.3000.1023456789"
            )
        };
        let mut numbers = text.trim().split('.').map(|part| {
            // `u32::from_str` takes a leading `+`; a version has digits only.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u32>().ok()
        });
        match (
            numbers.next(),
            numbers.next(),
            numbers.next(),
            numbers.next(),
        ) {
            (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => {
                Ok(WhatsAppVersion { parts: (a, b, c) })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for WhatsAppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = self.parts;
        write!(f, "{a}.{b}.{c}")
    }
}

impl<'de> Deserialize<'de> for WhatsAppVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<WhatsAppVersion, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
            return match &self.whatsapp_url {
                Some(url) if !(url.starts_with("ws://") || url.starts_with("wss://")) => {
                    Err(Invalid::new(
                        "link.whatsapp_url",
                        format!("{url:?} is not a ws:// or wss:// URL"),
                    ))
                }
                _ => Ok(()),
            };
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
            ..LinkSettings::default()
        }
    }

    #[test]
    fn a_whatsapp_version_is_three_numbers() {
        let version: WhatsAppVersion = "2.3000.1023456789".parse().unwrap();
        assert_eq!(version.parts, (2, 3000, 1_023_456_789));
        assert_eq!(version.to_string(), "2.3000.1023456789");
        assert_eq!(
            " 2.3000.1 ".parse(),
            Ok(WhatsAppVersion {
                parts: (2, 3000, 1)
            })
        );
        for bad in [
            "",
            "2",
            "2.3000",
            "2.3000.1.4",
            "2..1",
            "2.3000.",
            "v2.3000.1",
            "2.+3000.1",
            "2.-1.1",
            "2.3000.4294967296",
            "2.3000.x",
        ] {
            let err = bad.parse::<WhatsAppVersion>().unwrap_err();
            assert!(err.contains("like 2.3000.1023456789"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_whatsapp_url_is_a_websocket() {
        let whatsapp = |url: &str| LinkSettings {
            whatsapp_url: Some(url.to_owned()),
            ..LinkSettings::default()
        };
        assert_eq!(whatsapp("ws://127.0.0.1:9000/ws/chat").check(), Ok(()));
        assert_eq!(whatsapp("wss://relay.example/ws/chat").check(), Ok(()));
        let err = whatsapp("https://relay.example/ws/chat")
            .check()
            .unwrap_err();
        assert_eq!(err.key, "link.whatsapp_url");
        assert!(
            err.message.contains("https://relay.example"),
            "{}",
            err.message
        );
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
