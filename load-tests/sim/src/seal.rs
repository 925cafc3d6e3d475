//! How message texts are kept in the state file. A network run inside a wafleet
//! process (`wafleet standalone --link sim`) keeps its state in wafleet's data folder,
//! where no message text may be readable: that process gives a [`StateSeal`] that seals
//! them with its master key. A network on its own (`wafleet sim`) stands in for
//! WhatsApp's servers and keeps them as they are.

/// Seals and opens the texts the state file holds.
pub trait StateSeal: Send + Sync + std::fmt::Debug {
    /// The stored form of `text`, bound to `place` (which record it belongs to).
    fn seal(&self, place: &str, text: &str) -> String;
    /// The text `stored` holds for `place`; an error for one that does not open.
    fn open(&self, place: &str, stored: &str) -> Result<String, String>;
}

/// Where an inbox entry's text is kept.
pub(crate) fn inbox_place(phone: &str, message_id: &str) -> String {
    format!("inbox/{phone}/{message_id}")
}

/// Where a pending inbound message's text is kept.
pub(crate) fn inbound_place(link_id: &str, message_id: &str) -> String {
    format!("inbound/{link_id}/{message_id}")
}

/// Where a phone's sent message's text is kept.
pub(crate) fn sent_place(phone: &str, message_id: &str) -> String {
    format!("sent/{phone}/{message_id}")
}

/// Where a group (its subject and participants) is kept.
pub(crate) fn group_place(id: &str) -> String {
    format!("group/{id}")
}
