//! Counts of what happened on the network, as `GET /sim/stats` shows them.

use serde::Serialize;

/// A snapshot of the network's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Links with a ready connection now.
    pub links_connected: u64,
    /// Links that exist (created and not unlinked).
    pub links_total: u64,
    /// Links ever created (QR scans and pairing codes that succeeded).
    pub pairings: u64,
    /// Messages that reached a phone's inbox (a resent message id counts once).
    pub messages_delivered: u64,
    /// Sends refused with a FAILED receipt (banned sender, invalid number).
    pub messages_failed: u64,
    /// Messages phones marked read.
    pub messages_read: u64,
    /// Connections refused during a handshake (any `Refused` frame).
    pub handshakes_refused: u64,
    /// Inbound messages created for links (one per link a phone's message is for).
    pub inbound_sent: u64,
    /// Inbound messages the devices acknowledged.
    pub inbound_acked: u64,
    /// Ready connections closed with `Replaced` because the same link resumed elsewhere.
    pub connections_replaced: u64,
    /// QR codes shown to pairing devices.
    pub qr_codes_issued: u64,
    /// Pairing codes handed to devices.
    pub pair_codes_issued: u64,
    /// Connections open now, in any stage (not persisted).
    pub connections_open: u64,
    /// Connections waiting for a QR scan or a pairing code now (not persisted).
    pub pairing_now: u64,
}

/// The counters that survive a restart when the network persists its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) pairings: u64,
    pub(crate) messages_delivered: u64,
    pub(crate) messages_failed: u64,
    pub(crate) messages_read: u64,
    pub(crate) handshakes_refused: u64,
    pub(crate) inbound_sent: u64,
    pub(crate) inbound_acked: u64,
    pub(crate) connections_replaced: u64,
    pub(crate) qr_codes_issued: u64,
    pub(crate) pair_codes_issued: u64,
}

impl Counters {
    /// Every counter with its stored name.
    pub(crate) fn named(&self) -> [(&'static str, u64); 10] {
        [
            ("pairings", self.pairings),
            ("messages_delivered", self.messages_delivered),
            ("messages_failed", self.messages_failed),
            ("messages_read", self.messages_read),
            ("handshakes_refused", self.handshakes_refused),
            ("inbound_sent", self.inbound_sent),
            ("inbound_acked", self.inbound_acked),
            ("connections_replaced", self.connections_replaced),
            ("qr_codes_issued", self.qr_codes_issued),
            ("pair_codes_issued", self.pair_codes_issued),
        ]
    }

    /// Set a counter by its stored name; unknown names (from a newer version) are ignored.
    pub(crate) fn set(&mut self, name: &str, value: u64) {
        let slot = match name {
            "pairings" => &mut self.pairings,
            "messages_delivered" => &mut self.messages_delivered,
            "messages_failed" => &mut self.messages_failed,
            "messages_read" => &mut self.messages_read,
            "handshakes_refused" => &mut self.handshakes_refused,
            "inbound_sent" => &mut self.inbound_sent,
            "inbound_acked" => &mut self.inbound_acked,
            "connections_replaced" => &mut self.connections_replaced,
            "qr_codes_issued" => &mut self.qr_codes_issued,
            "pair_codes_issued" => &mut self.pair_codes_issued,
            _ => return,
        };
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut counters = Counters::default();
        for (i, (name, _)) in Counters::default().named().into_iter().enumerate() {
            counters.set(name, i as u64 + 1);
        }
        let values: Vec<u64> = counters.named().iter().map(|(_, v)| *v).collect();
        assert_eq!(values, (1..=10).collect::<Vec<_>>());
    }
}
