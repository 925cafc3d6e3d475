//! How the simulated network behaves: timings and where it keeps its state.

use std::{path::PathBuf, time::Duration};

/// Settings of a [`Network`](super::Network). `Default` gives the values a real
/// WhatsApp roughly has, kept in memory.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How long one QR code is shown before the network replaces it with a new one.
    pub qr_ttl: Duration,
    /// How many QR codes a pairing connection gets; when the last one expires without a
    /// scan the device is refused with `QR_TIMEOUT` and the connection closes.
    pub qr_codes: u32,
    /// How long a pairing code ("ABCD-EFGH") can be entered on the phone.
    pub pair_code_ttl: Duration,
    /// How long `POST /sim/phones/{phone}/ban` bans a number when the request gives no
    /// `seconds`.
    pub ban_duration: Duration,
    /// `Some(file)`: keep links, inboxes, pending inbound messages, bans and counters in
    /// this SQLite file, so that a restarted process meets the same network.
    /// `None`: memory only.
    pub data_path: Option<PathBuf>,
    /// How the state file keeps message texts: sealed by a wafleet process that runs
    /// the network inside it; `None`: as they are.
    pub state_seal: Option<std::sync::Arc<dyn crate::StateSeal>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            qr_ttl: Duration::from_secs(30),
            qr_codes: 10,
            pair_code_ttl: Duration::from_secs(180),
            ban_duration: Duration::from_secs(3600),
            data_path: None,
            state_seal: None,
        }
    }
}

impl SimConfig {
    /// Why this configuration cannot run, if it cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.qr_ttl.is_zero() {
            Some("qr_ttl must be longer than zero")
        } else if self.qr_codes == 0 {
            Some("qr_codes must be at least 1")
        } else if self.pair_code_ttl.is_zero() {
            Some("pair_code_ttl must be longer than zero")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = SimConfig::default();
        assert_eq!(config.qr_ttl, Duration::from_secs(30));
        assert_eq!(config.qr_codes, 10);
        assert_eq!(config.problem(), None);
    }

    #[test]
    fn zero_codes_is_a_problem() {
        let config = SimConfig {
            qr_codes: 0,
            ..SimConfig::default()
        };
        assert!(config.problem().is_some());
    }
}
