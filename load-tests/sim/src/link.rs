//! Links: a device paired with a phone's account, like a WhatsApp linked device.
//! A link outlives its connections; an unlinked one stays as a tombstone so that a
//! later resume is told `LOGGED_OUT` rather than `UNKNOWN_LINK`.

use std::collections::{BTreeMap, HashMap};

use wafleet_protocol::sim::receipt::Status;
use wafleet_protocol::sim::{Inbound, Receipt};

use super::connection::{ConnHandle, ConnId};

/// One linked device.
#[derive(Debug)]
pub(crate) struct Link {
    /// The account (phone number) the device is linked to.
    pub(crate) phone: String,
    /// The X25519 key the device presented at pairing; every resume must prove it.
    pub(crate) identity_public: [u8; 32],
    /// The wafleet device id given at pairing, for logs.
    pub(crate) device_id: String,
    /// The phone removed this device; the record stays as a tombstone.
    pub(crate) unlinked: bool,
    /// The ready connection of this link, if any (changed only through [`Links`], which
    /// keeps the count of connected links).
    conn: Option<ConnHandle>,
    /// Inbound messages not yet acknowledged, oldest first; redelivered on each resume.
    pub(crate) pending: Vec<Inbound>,
    /// Where each message id this link sent landed: deduplication and receipt replay.
    pub(crate) sent: HashMap<String, InboxRef>,
    /// The latest receipt of each message the device has not acknowledged storing;
    /// replayed on each resume (WhatsApp keeps receipts for a device that was offline).
    unacked: BTreeMap<String, Receipt>,
}

/// Most receipts a link keeps unacknowledged; past that the oldest ids are forgotten.
const MAX_UNACKED: usize = 100_000;

/// How far along a message a receipt is: a later receipt replaces an earlier one.
fn rank(status: i32) -> u8 {
    match Status::try_from(status) {
        Ok(Status::Sent) => 1,
        Ok(Status::Delivered) => 2,
        Ok(Status::Read | Status::Failed) => 3,
        _ => 0,
    }
}

/// The place of a message in a phone's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboxRef {
    pub(crate) phone: String,
    pub(crate) seq: usize,
}

impl Link {
    /// A link as pairing creates it, or as persistence restores it (without connection).
    pub(crate) fn new(phone: String, identity_public: [u8; 32], device_id: String) -> Link {
        Link {
            phone,
            identity_public,
            device_id,
            unlinked: false,
            conn: None,
            pending: Vec::new(),
            sent: HashMap::new(),
            unacked: BTreeMap::new(),
        }
    }

    /// The device is told `receipt` (now, or on its next resume) until it acks it.
    pub(crate) fn owe(&mut self, receipt: &Receipt) {
        // A later status replaces an earlier one; anything replaces FAILED (a retry).
        let later = self.unacked.get(&receipt.message_id).is_none_or(|owed| {
            rank(receipt.status) >= rank(owed.status) || owed.status == Status::Failed as i32
        });
        if later {
            self.unacked
                .insert(receipt.message_id.clone(), receipt.clone());
        }
        while self.unacked.len() > MAX_UNACKED {
            self.unacked.pop_first();
        }
    }

    /// The device stored `status` of `message_id`: forget what it covers.
    pub(crate) fn acked(&mut self, message_id: &str, status: i32) {
        if self
            .unacked
            .get(message_id)
            .is_some_and(|owed| rank(status) >= rank(owed.status))
        {
            self.unacked.remove(message_id);
        }
    }

    /// The receipts to replay on a resume, by message id.
    pub(crate) fn unacked(&self) -> Vec<Receipt> {
        self.unacked.values().cloned().collect()
    }

    /// The ready connection of this link, if any.
    pub(crate) fn conn(&self) -> Option<&ConnHandle> {
        self.conn.as_ref()
    }
}

/// Every link, with an index by phone of the live ones.
#[derive(Debug, Default)]
pub(crate) struct Links {
    by_id: HashMap<String, Link>,
    /// Live (not unlinked) links of each phone, in pairing order.
    by_phone: HashMap<String, Vec<String>>,
    /// How many links have a ready connection.
    connected: usize,
}

impl Links {
    /// Add a link (new, or restored from storage).
    pub(crate) fn insert(&mut self, link_id: String, link: Link) {
        if !link.unlinked {
            self.by_phone
                .entry(link.phone.clone())
                .or_default()
                .push(link_id.clone());
        }
        if link.conn.is_some() {
            self.connected += 1;
        }
        if let Some(old) = self.by_id.insert(link_id, link) {
            // Link ids are 128 random bits; a clash means a storage mix-up. Keep counts right.
            if old.conn.is_some() {
                self.connected -= 1;
            }
        }
    }

    pub(crate) fn get(&self, link_id: &str) -> Option<&Link> {
        self.by_id.get(link_id)
    }

    pub(crate) fn get_mut(&mut self, link_id: &str) -> Option<&mut Link> {
        self.by_id.get_mut(link_id)
    }

    /// The live links of a phone.
    pub(crate) fn of_phone(&self, phone: &str) -> &[String] {
        self.by_phone.get(phone).map_or(&[], Vec::as_slice)
    }

    /// Make `handle` the ready connection of a live link; returns the one it replaces.
    pub(crate) fn connect(&mut self, link_id: &str, handle: ConnHandle) -> Option<ConnHandle> {
        let link = self.by_id.get_mut(link_id)?;
        let old = link.conn.replace(handle);
        if old.is_none() {
            self.connected += 1;
        }
        old
    }

    /// Forget connection `conn` as the ready connection of the link, if it still is.
    pub(crate) fn disconnect(&mut self, link_id: &str, conn: ConnId) {
        if let Some(link) = self.by_id.get_mut(link_id)
            && link.conn.as_ref().is_some_and(|c| c.id == conn)
        {
            link.conn = None;
            self.connected -= 1;
        }
    }

    /// Turn one live link into a tombstone (the device logged itself out); returns its
    /// phone and the connection it had, `None` if there is no such live link.
    pub(crate) fn unlink(&mut self, link_id: &str) -> Option<(String, Option<ConnHandle>)> {
        let link = self.by_id.get_mut(link_id).filter(|link| !link.unlinked)?;
        link.unlinked = true;
        link.pending = Vec::new();
        link.unacked.clear();
        let conn = link.conn.take();
        if conn.is_some() {
            self.connected -= 1;
        }
        let phone = link.phone.clone();
        if let Some(ids) = self.by_phone.get_mut(&phone) {
            ids.retain(|id| id != link_id);
            if ids.is_empty() {
                self.by_phone.remove(&phone);
            }
        }
        Some((phone, conn))
    }

    /// Turn every live link of a phone into a tombstone; returns their ids and the
    /// connections they had.
    pub(crate) fn unlink_phone(&mut self, phone: &str) -> Vec<(String, Option<ConnHandle>)> {
        let ids = self.by_phone.remove(phone).unwrap_or_default();
        let mut unlinked = Vec::with_capacity(ids.len());
        for link_id in ids {
            if let Some(link) = self.by_id.get_mut(&link_id) {
                link.unlinked = true;
                link.pending = Vec::new();
                link.unacked.clear();
                let conn = link.conn.take();
                if conn.is_some() {
                    self.connected -= 1;
                }
                unlinked.push((link_id, conn));
            }
        }
        unlinked
    }

    /// Links with a ready connection.
    pub(crate) fn connected(&self) -> usize {
        self.connected
    }

    /// Links that are not unlinked.
    pub(crate) fn live(&self) -> usize {
        self.by_phone.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnHandle;

    fn link(phone: &str) -> Link {
        Link::new(phone.into(), [9; 32], "dev".into())
    }

    #[test]
    fn counts_connected_and_live_links() {
        let mut links = Links::default();
        links.insert("a".into(), link("62811111111"));
        links.insert("b".into(), link("62811111111"));
        links.insert("c".into(), link("62822222222"));
        assert_eq!((links.live(), links.connected()), (3, 0));

        let (first, _rx1) = ConnHandle::channel(1);
        let (second, _rx2) = ConnHandle::channel(2);
        assert!(links.connect("a", first).is_none());
        let replaced = links
            .connect("a", second)
            .expect("the first connection is replaced");
        assert_eq!(replaced.id, 1);
        assert_eq!(links.connected(), 1);

        links.disconnect("a", 1); // stale: no longer the link's connection
        assert_eq!(links.connected(), 1);
        links.disconnect("a", 2);
        assert_eq!(links.connected(), 0);
    }

    #[test]
    fn unlinking_leaves_tombstones() {
        let mut links = Links::default();
        links.insert("a".into(), link("62811111111"));
        let (handle, _rx) = ConnHandle::channel(7);
        links.connect("a", handle);
        let unlinked = links.unlink_phone("62811111111");
        assert_eq!(unlinked.len(), 1);
        assert_eq!(unlinked[0].1.as_ref().map(|c| c.id), Some(7));
        assert!(links.get("a").is_some_and(|l| l.unlinked));
        assert_eq!((links.live(), links.connected()), (0, 0));
        assert!(links.of_phone("62811111111").is_empty());
    }
}
