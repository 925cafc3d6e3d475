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
    /// A `wafleet sim` process, at `sim_url`: for tests, demos and load tests.
    Sim,
}

/// The `[link]` section (nodes only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    /// `whatsapp` (default) or `sim`.
    #[serde(default)]
    pub kind: LinkKind,
    /// With `kind = "sim"`: the simulator's WebSocket, `ws://HOST:PORT/ws` (required).
    #[serde(default)]
    pub sim_url: Option<String>,
}

impl LinkSettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        match (self.kind, &self.sim_url) {
            (LinkKind::Sim, None) => Err(Invalid::new(
                "link.sim_url",
                "required with kind = \"sim\", like ws://127.0.0.1:8090/ws",
            )),
            (LinkKind::Sim, Some(url))
                if !(url.starts_with("ws://") || url.starts_with("wss://")) =>
            {
                Err(Invalid::new(
                    "link.sim_url",
                    format!("{url:?} is not a ws:// URL"),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_needs_a_websocket_url() {
        assert_eq!(LinkSettings::default().check(), Ok(()));
        let sim = |url: Option<&str>| LinkSettings {
            kind: LinkKind::Sim,
            sim_url: url.map(str::to_owned),
        };
        assert!(sim(None).check().is_err());
        assert!(sim(Some("http://x/ws")).check().is_err());
        assert_eq!(sim(Some("ws://127.0.0.1:8090/ws")).check(), Ok(()));
    }
}
