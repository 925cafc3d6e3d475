//! The network's state behind one lock: links, phones, pairing sessions and counters.
//! Every method is synchronous and short; frames for other connections are pushed to
//! their command queues (never blocking) and changes are recorded in the journal while
//! the lock is held, so both see the order in which things happened.

use std::{collections::HashMap, time::Duration};

use tokio::{sync::oneshot, time::Instant};
use tracing::info;
use wafleet_protocol::sim::NumberCheck;
use wafleet_protocol::sim::{
    Banned, Inbound, MediaInfo, Paired, Receipt, SendMessage, receipt::Status, refused::Reason,
    server_frame::Kind,
};
use wafleet_protocol::sim::{GroupAnswer, GroupRequest, group_answer, group_request};

use super::groups::{self, Group, GroupView, Groups, Refused};
use super::sent::{SentEntry, SentMessage};
use super::{
    NewLink, SimStats, clock,
    connection::{Command, ConnHandle, ConnId},
    error::SimError,
    failing::{Failing, FailingView},
    ids,
    inbox::{InboxEntry, InboxMedia, InboxMessage},
    journal::{Journal, Op, Snapshot},
    link::{InboxRef, Link, Links},
    pairing::{Issued, Pairings},
    phone::{self, Phone},
    stats::Counters,
};

/// Why a handshake is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) detail: &'static str,
}

impl Refusal {
    const UNKNOWN_LINK: Refusal = Refusal {
        reason: Reason::UnknownLink,
        detail: "no such link: pair again",
    };
    const LOGGED_OUT: Refusal = Refusal {
        reason: Reason::LoggedOut,
        detail: "the phone removed this linked device",
    };
}

/// What a resumed connection must be told after `Welcome`.
#[derive(Debug)]
pub(crate) struct Resumed {
    pub(crate) phone: String,
    /// Inbound messages still unacknowledged, oldest first.
    pub(crate) pending: Vec<Inbound>,
    /// Receipts the device has not acknowledged storing, by message id.
    pub(crate) receipts: Vec<Receipt>,
    /// End of the ban on the account, if one is in force.
    pub(crate) banned_until_ms: Option<i64>,
}

/// The connection is no longer its link's ready connection (replaced or unlinked
/// meanwhile); its command queue holds the news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale;

/// Everything the network knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    links: Links,
    phones: HashMap<String, Phone>,
    pairings: Pairings,
    /// Every group, by id.
    groups: Groups,
    counters: Counters,
    journal: Journal,
}

impl State {
    /// The state found in storage (or an empty one), writing changes to `journal`.
    pub(crate) fn restore(snapshot: Snapshot, journal: Journal) -> State {
        let mut state = State {
            journal,
            counters: snapshot.counters,
            ..State::default()
        };
        for (link_id, link) in snapshot.links {
            state.links.insert(link_id, link);
        }
        for (phone, entry) in snapshot.inbox {
            let inbox = &mut state.phones.entry(phone.clone()).or_default().inbox;
            if let Some(link) = state.links.get_mut(&entry.sender_link) {
                let place = InboxRef {
                    phone,
                    seq: inbox.len(),
                };
                link.sent.insert(entry.message_id.clone(), place);
            }
            inbox.push(entry);
        }
        for (link_id, inbound) in snapshot.pending {
            if let Some(link) = state.links.get_mut(&link_id).filter(|link| !link.unlinked) {
                link.pending.push(inbound);
            }
        }
        for (phone, until_ms) in snapshot.bans {
            state.phones.entry(phone).or_default().banned_until_ms = until_ms;
        }
        for (phone, entry) in snapshot.sent {
            state.phones.entry(phone).or_default().sent.push(entry);
        }
        for phone in snapshot.absent {
            state.phones.entry(phone).or_default().absent = true;
        }
        for group in snapshot.groups {
            state.groups.insert(group.id.clone(), group);
        }
        state
    }

    // ---- pairing -------------------------------------------------------------------

    /// A connection wants to pair: open its session and issue the first QR code.
    pub(crate) fn start_pairing(
        &mut self,
        handle: ConnHandle,
        device_id: String,
        identity_public: [u8; 32],
        ttl: Duration,
        now: Instant,
    ) -> Issued {
        let issued = self
            .pairings
            .start(handle, device_id, identity_public, ttl, now);
        self.counters.qr_codes_issued += 1;
        self.record_counters();
        issued
    }

    /// The next QR code of a session; `None` if it is gone (paired meanwhile).
    pub(crate) fn rotate_qr(
        &mut self,
        conn: ConnId,
        ttl: Duration,
        now: Instant,
    ) -> Option<Issued> {
        let issued = self.pairings.rotate_qr(conn, ttl, now)?;
        self.counters.qr_codes_issued += 1;
        self.record_counters();
        Some(issued)
    }

    /// A pairing code for `phone`; `None` if the session is gone.
    pub(crate) fn issue_pair_code(
        &mut self,
        conn: ConnId,
        phone: String,
        ttl: Duration,
        now: Instant,
    ) -> Option<Issued> {
        let issued = self.pairings.issue_pair_code(conn, phone, ttl, now)?;
        self.counters.pair_codes_issued += 1;
        self.record_counters();
        Some(issued)
    }

    /// Give up a session (no scan in time); false if it was paired meanwhile.
    pub(crate) fn end_pairing(&mut self, conn: ConnId) -> bool {
        self.pairings.end(conn).is_some()
    }

    /// A phone scanned a QR code.
    pub(crate) fn scan(
        &mut self,
        qr: &str,
        phone: &str,
        now: Instant,
    ) -> Result<NewLink, SimError> {
        phone::validate(phone)?;
        let conn = self.pairings.find_qr(qr, now)?;
        self.pair(conn, phone, SimError::QrExpired)
    }

    /// A phone entered a pairing code.
    pub(crate) fn enter_pair_code(
        &mut self,
        phone: &str,
        code: &str,
        now: Instant,
    ) -> Result<NewLink, SimError> {
        phone::validate(phone)?;
        let conn = self.pairings.find_pair_code(phone, code, now)?;
        self.pair(conn, phone, SimError::PairCodeExpired)
    }

    /// Turn a pairing session into a link with `phone`, ready on the session's connection.
    fn pair(&mut self, conn: ConnId, phone: &str, gone: SimError) -> Result<NewLink, SimError> {
        let session = self.pairings.end(conn).ok_or(gone)?;
        let link_id = ids::link_id();
        let paired = Command::Paired(Box::new(Paired {
            link_id: link_id.clone(),
            phone: phone.to_owned(),
        }));
        if !session.handle.send(paired) {
            // The connection is closing: nobody would learn of the link.
            return Err(SimError::QrExpired);
        }
        self.journal.record(Op::Link {
            link_id: link_id.clone(),
            phone: phone.to_owned(),
            identity_public: session.identity_public,
            device_id: session.device_id.clone(),
            created_at_ms: clock::now_ms(),
        });
        let link = Link::new(
            phone.to_owned(),
            session.identity_public,
            session.device_id.clone(),
        );
        self.links.insert(link_id.clone(), link);
        if let Some(until_ms) = self.phones.get(phone).and_then(|p| p.ban(clock::now_ms())) {
            // Queued after Paired, so the device hears of the ban once ready.
            let banned = Kind::Banned(Banned { until_ms });
            session.handle.send(Command::Frame(Box::new(banned)));
        }
        self.links.connect(&link_id, session.handle);
        self.counters.pairings += 1;
        self.record_counters();
        info!(device_id = %session.device_id, %link_id, phone, "device paired");
        Ok(NewLink {
            device_id: session.device_id,
            link_id,
            phone: phone.to_owned(),
        })
    }

    // ---- resume --------------------------------------------------------------------

    /// The key a returning device must prove, or why it cannot resume.
    pub(crate) fn identity_of(&self, link_id: &str) -> Result<[u8; 32], Refusal> {
        match self.links.get(link_id) {
            None => Err(Refusal::UNKNOWN_LINK),
            Some(link) if link.unlinked => Err(Refusal::LOGGED_OUT),
            Some(link) => Ok(link.identity_public),
        }
    }

    /// A returning device proved its key: make `handle` the link's ready connection,
    /// replacing (and telling) any older one.
    pub(crate) fn resume(&mut self, link_id: &str, handle: ConnHandle) -> Result<Resumed, Refusal> {
        self.identity_of(link_id)?;
        if let Some(old) = self.links.connect(link_id, handle) {
            old.send(Command::Replaced);
            self.counters.connections_replaced += 1;
            self.record_counters();
        }
        let link = self.links.get(link_id).ok_or(Refusal::UNKNOWN_LINK)?;
        let banned_until_ms = self
            .phones
            .get(&link.phone)
            .and_then(|phone| phone.ban(clock::now_ms()));
        Ok(Resumed {
            phone: link.phone.clone(),
            pending: link.pending.clone(),
            receipts: link.unacked(),
            banned_until_ms,
        })
    }

    /// Count a `Refused` frame.
    pub(crate) fn count_refusal(&mut self) {
        self.counters.handshakes_refused += 1;
        self.record_counters();
    }

    /// A connection ended: close its pairing session, and release its link if it was
    /// still the link's ready connection.
    pub(crate) fn disconnect(&mut self, conn: ConnId, link_id: Option<&str>) {
        self.pairings.end(conn);
        if let Some(link_id) = link_id {
            self.links.disconnect(link_id, conn);
        }
    }

    // ---- traffic of a ready connection ---------------------------------------------

    /// A linked device sends a message: the receipts to answer with (owed to the device
    /// until it acknowledges them).
    pub(crate) fn send_message(
        &mut self,
        link_id: &str,
        conn: ConnId,
        message: &SendMessage,
        now_ms: i64,
    ) -> Result<Vec<Receipt>, Stale> {
        let receipts = self.land_message(link_id, conn, message, now_ms)?;
        if let (Some(last), Some(link)) = (receipts.last(), self.links.get_mut(link_id)) {
            link.owe(last);
        }
        Ok(receipts)
    }

    fn land_message(
        &mut self,
        link_id: &str,
        conn: ConnId,
        message: &SendMessage,
        now_ms: i64,
    ) -> Result<Vec<Receipt>, Stale> {
        let link = self.links.get(link_id).ok_or(Stale)?;
        if link.unlinked || link.conn().map(|c| c.id) != Some(conn) {
            return Err(Stale);
        }
        let from_phone = link.phone.clone();
        let id = message.message_id.as_str();
        if let Some(place) = link.sent.get(id) {
            // A resend: the phone has it already; tell the device again how it went.
            let entry = self
                .phones
                .get(&place.phone)
                .and_then(|phone| phone.inbox.get(place.seq));
            let mut receipts = Vec::with_capacity(3);
            if let Some(entry) = entry {
                receipts.push(receipt(id, Status::Sent, entry.at_ms));
                receipts.push(receipt(id, Status::Delivered, entry.at_ms));
                if let Some(read_at_ms) = entry.read_at_ms {
                    receipts.push(receipt(id, Status::Read, read_at_ms));
                }
            }
            return Ok(receipts);
        }
        if groups::is_group_id(&message.to_phone) {
            return Ok(self.group_send(link_id, from_phone, message, now_ms));
        }
        if phone::validate(&message.to_phone).is_err() {
            return Ok(vec![self.failed(id, "invalid_phone", now_ms)]);
        }
        if self.phones.get(&message.to_phone).is_some_and(|p| p.absent) {
            return Ok(vec![self.failed(id, "not_on_whatsapp", now_ms)]);
        }
        if self
            .phones
            .get(&from_phone)
            .and_then(|p| p.ban(now_ms))
            .is_some()
        {
            return Ok(vec![self.failed(id, "banned", now_ms)]);
        }
        if let Some(error) = self
            .phones
            .get_mut(&message.to_phone)
            .and_then(|p| p.failing.refuse(now_ms).map(str::to_owned))
        {
            return Ok(vec![self.failed(id, &error, now_ms)]);
        }
        let entry = InboxEntry {
            from_phone,
            sender_link: link_id.to_owned(),
            message_id: id.to_owned(),
            text: message.text.clone(),
            at_ms: now_ms,
            read_at_ms: None,
            media: message.media.as_ref().map(InboxMedia::from),
            group: None,
            mentions: message.mentions.clone(),
            reply_to: message.reply_to.clone(),
        };
        let to_phone = message.to_phone.clone();
        let inbox = &mut self.phones.entry(to_phone.clone()).or_default().inbox;
        let seq = inbox.len();
        inbox.push(entry.clone());
        self.journal.record(Op::Deliver {
            phone: to_phone.clone(),
            seq,
            entry,
        });
        if let Some(link) = self.links.get_mut(link_id) {
            link.sent.insert(
                id.to_owned(),
                InboxRef {
                    phone: to_phone,
                    seq,
                },
            );
        }
        self.counters.messages_delivered += 1;
        self.record_counters();
        Ok(vec![
            receipt(id, Status::Sent, now_ms),
            receipt(id, Status::Delivered, now_ms),
        ])
    }

    fn failed(&mut self, message_id: &str, error: &str, now_ms: i64) -> Receipt {
        self.counters.messages_failed += 1;
        self.record_counters();
        Receipt {
            error: error.to_owned(),
            ..receipt(message_id, Status::Failed, now_ms)
        }
    }

    /// The device stored a receipt: stop replaying it.
    pub(crate) fn ack_receipt(&mut self, link_id: &str, message_id: &str, status: i32) {
        if let Some(link) = self.links.get_mut(link_id) {
            link.acked(message_id, status);
        }
    }

    /// The device stored an inbound message: stop redelivering it.
    pub(crate) fn ack_inbound(&mut self, link_id: &str, message_id: &str) {
        let Some(link) = self.links.get_mut(link_id) else {
            return;
        };
        let Some((from_phone, group)) = link
            .pending
            .iter()
            .find(|inbound| inbound.message_id == message_id)
            .map(|inbound| (inbound.from_phone.clone(), inbound.group_id.clone()))
        else {
            return;
        };
        link.pending
            .retain(|inbound| inbound.message_id != message_id);
        self.journal.record(Op::InboundAck {
            link_id: link_id.to_owned(),
            message_id: message_id.to_owned(),
        });
        self.counters.inbound_acked += 1;
        self.record_counters();
        let Some(to_phone) = self.links.get(link_id).map(|link| link.phone.clone()) else {
            return;
        };
        let written_to = group.unwrap_or(to_phone);
        self.sent_progress(&from_phone, &written_to, &[message_id], false);
    }

    /// The device of `link_id` read these messages of `peer_phone`: to its number, or,
    /// with `group`, those `peer_phone` wrote in that group (whose receipts name the
    /// author, as WhatsApp's do). The author's sent list shows them read. Returns how
    /// many were newly read.
    pub(crate) fn mark_read(
        &mut self,
        link_id: &str,
        peer_phone: &str,
        group: Option<&str>,
        ids: &[String],
    ) -> usize {
        let Some(reader) = self
            .links
            .get(link_id)
            .filter(|link| !link.unlinked)
            .map(|link| link.phone.clone())
        else {
            return 0;
        };
        let written_to = match group {
            // Only a participant reads a group's messages.
            Some(id) if self.groups.get(id).is_some_and(|g| g.has(&reader)) => id.to_owned(),
            Some(_) => return 0,
            None => reader,
        };
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.sent_progress(peer_phone, &written_to, &ids, true)
    }

    /// Moves the messages `ids` that `phone` wrote to `written_to` (a number, or a
    /// group's id) to delivered (and `read`), journaled; returns how many moved. Ids of
    /// other numbers' messages, of other chats, or unknown ones, are skipped.
    fn sent_progress(&mut self, phone: &str, written_to: &str, ids: &[&str], read: bool) -> usize {
        let Some(record) = self.phones.get_mut(phone) else {
            return 0;
        };
        let at_ms = clock::now_ms();
        let mut moved = 0;
        for id in ids {
            // Newest first: a message is acknowledged and read soon after it is sent.
            let Some(entry) = record
                .sent
                .iter_mut()
                .rev()
                .find(|entry| entry.message_id == *id && entry.to_phone == written_to)
            else {
                continue;
            };
            let fresh = if read {
                entry.read(at_ms)
            } else {
                entry.deliver(at_ms)
            };
            if fresh {
                moved += 1;
                self.journal.record(Op::SentProgress {
                    phone: phone.to_owned(),
                    message_id: entry.message_id.clone(),
                    read,
                    at_ms,
                });
            }
        }
        moved
    }

    /// Which of `phones` have a WhatsApp account, in the order asked: every valid
    /// number not made absent.
    pub(crate) fn check_numbers(&self, phones: &[String]) -> Vec<NumberCheck> {
        phones
            .iter()
            .map(|number| {
                let on_whatsapp = phone::validate(number).is_ok()
                    && !self.phones.get(number).is_some_and(|p| p.absent);
                NumberCheck {
                    phone: number.clone(),
                    on_whatsapp,
                    jid: if on_whatsapp {
                        phone::jid(number)
                    } else {
                        String::new()
                    },
                }
            })
            .collect()
    }

    // ---- groups --------------------------------------------------------------------

    /// A device's group operation, its number acting; the answer to send back.
    pub(crate) fn group_request(&mut self, link_id: &str, request: GroupRequest) -> GroupAnswer {
        let result = match self.links.get(link_id).filter(|link| !link.unlinked) {
            None => Err(Refused {
                code: "not_found",
                message: "this link is gone".into(),
            }),
            Some(link) => {
                let phone = link.phone.clone();
                self.group_op(&phone, request.op)
            }
        };
        GroupAnswer {
            request_id: request.request_id,
            result: Some(
                result.unwrap_or_else(|refused| group_answer::Result::Error(refused.into())),
            ),
        }
    }

    fn group_op(
        &mut self,
        phone: &str,
        op: Option<group_request::Op>,
    ) -> Result<group_answer::Result, Refused> {
        use group_request::Op as Ask;
        let group = match op {
            None => {
                return Err(Refused {
                    code: "invalid_request",
                    message: "a group request names an operation".into(),
                });
            }
            Some(Ask::List(_)) => {
                let groups = self
                    .groups
                    .values()
                    .filter(|group| group.has(phone))
                    .map(Group::frame)
                    .collect();
                return Ok(group_answer::Result::Groups(
                    wafleet_protocol::sim::Groups { groups },
                ));
            }
            Some(Ask::Create(create)) => {
                groups::check_subject(&create.subject)?;
                self.check_members(&create.participants)?;
                let mut id = groups::new_id();
                while self.groups.contains_key(&id) {
                    id = groups::new_id();
                }
                let group = Group::new(
                    id.clone(),
                    create.subject,
                    phone,
                    &create.participants,
                    clock::now_ms(),
                );
                info!(%id, creator = phone, participants = group.participants.len(), "group created");
                self.groups.insert(id.clone(), group);
                id
            }
            Some(Ask::Info(group)) => {
                let found = self.groups.get(&group.group_id);
                return found
                    .ok_or_else(|| Refused::not_found(&group.group_id))?
                    .seen_by(phone)
                    .map(|group| group_answer::Result::Group(group.frame()));
            }
            Some(Ask::Add(change)) => {
                self.check_members(&change.phones)?;
                self.changed(phone, &change.group_id)?.add(&change.phones);
                change.group_id
            }
            Some(Ask::Remove(change)) => {
                self.changed(phone, &change.group_id)?
                    .remove(&change.phones)?;
                change.group_id
            }
            Some(Ask::Promote(change)) => {
                self.changed(phone, &change.group_id)?
                    .set_admin(&change.phones, true)?;
                change.group_id
            }
            Some(Ask::Demote(change)) => {
                self.changed(phone, &change.group_id)?
                    .set_admin(&change.phones, false)?;
                change.group_id
            }
        };
        let group = self
            .groups
            .get(&group)
            .ok_or_else(|| Refused::not_found(&group))?
            .clone();
        let frame = group.frame();
        self.journal.record(Op::Group(group));
        Ok(group_answer::Result::Group(frame))
    }

    /// The group `id`, for `phone` (an admin of it) to change.
    fn changed(&mut self, phone: &str, id: &str) -> Result<&mut Group, Refused> {
        self.groups
            .get_mut(id)
            .ok_or_else(|| Refused::not_found(id))?
            .changed_by(phone)
    }

    /// Numbers that may join a group: valid and on WhatsApp.
    fn check_members(&self, phones: &[String]) -> Result<(), Refused> {
        for number in phones {
            if phone::validate(number).is_err() {
                return Err(Refused {
                    code: "invalid_phone",
                    message: format!("{number:?} is not a phone number"),
                });
            }
            if self.phones.get(number).is_some_and(|p| p.absent) {
                return Err(Refused {
                    code: "not_on_whatsapp",
                    message: format!("{number} is not on WhatsApp"),
                });
            }
        }
        Ok(())
    }

    /// A device writes to a group: every other participant's inbox gets it, with the
    /// group and the mentions. The sender must be a participant.
    fn group_send(
        &mut self,
        link_id: &str,
        from_phone: String,
        message: &SendMessage,
        now_ms: i64,
    ) -> Vec<Receipt> {
        let id = message.message_id.as_str();
        let Some(group) = self.groups.get(&message.to_phone) else {
            return vec![self.failed(id, "group_not_found", now_ms)];
        };
        if !group.has(&from_phone) {
            return vec![self.failed(id, "not_participant", now_ms)];
        }
        if self
            .phones
            .get(&from_phone)
            .and_then(|p| p.ban(now_ms))
            .is_some()
        {
            return vec![self.failed(id, "banned", now_ms)];
        }
        let others: Vec<String> = group.others(&from_phone).map(str::to_owned).collect();
        let entry = InboxEntry {
            from_phone: from_phone.clone(),
            sender_link: link_id.to_owned(),
            message_id: id.to_owned(),
            text: message.text.clone(),
            at_ms: now_ms,
            read_at_ms: None,
            media: message.media.as_ref().map(InboxMedia::from),
            group: Some(message.to_phone.clone()),
            mentions: message.mentions.clone(),
            reply_to: message.reply_to.clone(),
        };
        let mut first = None;
        for to_phone in others {
            let inbox = &mut self.phones.entry(to_phone.clone()).or_default().inbox;
            let seq = inbox.len();
            inbox.push(entry.clone());
            self.journal.record(Op::Deliver {
                phone: to_phone.clone(),
                seq,
                entry: entry.clone(),
            });
            first.get_or_insert(InboxRef {
                phone: to_phone,
                seq,
            });
            self.counters.messages_delivered += 1;
        }
        // A resend finds the message in the first inbox (a group of one has none: a
        // resend is then delivered again, to nobody).
        if let (Some(place), Some(link)) = (first, self.links.get_mut(link_id)) {
            link.sent.insert(id.to_owned(), place);
        }
        self.record_counters();
        vec![
            receipt(id, Status::Sent, now_ms),
            receipt(id, Status::Delivered, now_ms),
        ]
    }

    /// The links a phone's message to group `id` goes to: those of every other
    /// participant. The phone must be in it.
    fn group_targets(&self, from: &str, id: &str) -> Result<Vec<String>, SimError> {
        let group = self
            .groups
            .get(id)
            .ok_or_else(|| SimError::GroupNotFound(id.to_owned()))?;
        if !group.has(from) {
            return Err(SimError::NotInGroup(from.to_owned()));
        }
        Ok(group
            .others(from)
            .flat_map(|other| self.links.of_phone(other).iter().cloned())
            .collect())
    }

    /// A group as the control API shows it.
    pub(crate) fn group(&self, id: &str) -> Result<GroupView, SimError> {
        self.groups
            .get(id)
            .map(Group::view)
            .ok_or_else(|| SimError::GroupNotFound(id.to_owned()))
    }

    // ---- phones (the control API) --------------------------------------------------

    /// What reached a phone, in arrival order.
    pub(crate) fn inbox(&self, phone: &str) -> Result<Vec<InboxMessage>, SimError> {
        phone::validate(phone)?;
        Ok(self
            .phones
            .get(phone)
            .map(|phone| phone.inbox.iter().map(InboxEntry::view).collect())
            .unwrap_or_default())
    }

    /// The messages a phone sent to linked devices, oldest first.
    pub(crate) fn sent(&self, phone: &str) -> Result<Vec<SentMessage>, SimError> {
        phone::validate(phone)?;
        Ok(self
            .phones
            .get(phone)
            .map(|phone| phone.sent.iter().map(SentEntry::view).collect())
            .unwrap_or_default())
    }

    /// Makes a number not on WhatsApp (`absent`), or on it again.
    pub(crate) fn set_absent(&mut self, phone: &str, absent: bool) -> Result<(), SimError> {
        phone::validate(phone)?;
        self.phones.entry(phone.to_owned()).or_default().absent = absent;
        self.journal.record(Op::Absent {
            phone: phone.to_owned(),
            absent,
        });
        info!(phone, absent, "phone presence on whatsapp set");
        Ok(())
    }

    /// Makes the next `times` sends from linked devices to `phone` fail with `error`.
    pub(crate) fn fail(&mut self, phone: &str, times: u32, error: &str) -> Result<(), SimError> {
        phone::validate(phone)?;
        self.phones
            .entry(phone.to_owned())
            .or_default()
            .failing
            .set(times, error);
        info!(phone, times, error, "sends to the phone will fail");
        Ok(())
    }

    /// The refusals asked for `phone` and those made.
    pub(crate) fn failing(&self, phone: &str) -> Result<FailingView, SimError> {
        phone::validate(phone)?;
        Ok(self
            .phones
            .get(phone)
            .map(|p| p.failing.view(phone))
            .unwrap_or_else(|| Failing::default().view(phone)))
    }

    /// Phone `from` writes to number `to`: every live link of `to` gets it, as a reply
    /// to message `reply_to` if given (one the phone received or sent, else
    /// `message_not_found`). Returns the new message id.
    pub(crate) fn phone_send(
        &mut self,
        from: &str,
        to: &str,
        text: &str,
        media: Option<MediaInfo>,
        reply_to: Option<&str>,
    ) -> Result<String, SimError> {
        phone::validate(from)?;
        if let Some(id) = reply_to
            && !self.phones.get(from).is_some_and(|phone| phone.has(id))
        {
            return Err(SimError::MessageNotFound(id.to_owned()));
        }
        let (targets, group_id) = if groups::is_group_id(to) {
            (self.group_targets(from, to)?, Some(to.to_owned()))
        } else {
            phone::validate(to)?;
            let targets = self.links.of_phone(to).to_vec();
            if targets.is_empty() {
                return Err(SimError::NoLinkedDevice(to.to_owned()));
            }
            (targets, None)
        };
        let inbound = Inbound {
            message_id: ids::inbound_message_id(),
            from_phone: from.to_owned(),
            text: text.to_owned(),
            at_ms: clock::now_ms(),
            media,
            group_id,
            reply_to: reply_to.map(str::to_owned),
        };
        for link_id in targets {
            let Some(link) = self.links.get_mut(&link_id) else {
                continue;
            };
            link.pending.push(inbound.clone());
            if let Some(conn) = link.conn() {
                conn.send(Command::Frame(Box::new(Kind::Inbound(inbound.clone()))));
            }
            self.journal.record(Op::Inbound {
                link_id,
                inbound: inbound.clone(),
            });
            self.counters.inbound_sent += 1;
        }
        self.record_counters();
        let entry = SentEntry {
            to_phone: to.to_owned(),
            message_id: inbound.message_id.clone(),
            text: inbound.text,
            at_ms: inbound.at_ms,
            delivered_at_ms: None,
            read_at_ms: None,
        };
        let sent = &mut self.phones.entry(from.to_owned()).or_default().sent;
        sent.push(entry.clone());
        self.journal.record(Op::PhoneSent {
            phone: from.to_owned(),
            seq: sent.len() - 1,
            entry,
        });
        Ok(inbound.message_id)
    }

    /// The phone reads its inbox: every unread message becomes read, and the senders'
    /// ready connections get a READ receipt. Returns how many were newly read.
    pub(crate) fn read(&mut self, phone: &str) -> Result<usize, SimError> {
        phone::validate(phone)?;
        let Some(record) = self.phones.get_mut(phone) else {
            return Ok(0);
        };
        let now_ms = clock::now_ms();
        let mut newly_read = Vec::new();
        for entry in record.inbox.iter_mut().filter(|e| e.read_at_ms.is_none()) {
            entry.read_at_ms = Some(now_ms);
            newly_read.push((entry.sender_link.clone(), entry.message_id.clone()));
        }
        if newly_read.is_empty() {
            return Ok(0);
        }
        for (sender_link, message_id) in &newly_read {
            let Some(sender) = self
                .links
                .get_mut(sender_link)
                .filter(|link| !link.unlinked)
            else {
                continue;
            };
            let read = receipt(message_id, Status::Read, now_ms);
            sender.owe(&read);
            if let Some(conn) = sender.conn() {
                conn.send(Command::Frame(Box::new(Kind::Receipt(read))));
            }
        }
        self.journal.record(Op::Read {
            phone: phone.to_owned(),
            read_at_ms: now_ms,
        });
        self.counters.messages_read += newly_read.len() as u64;
        self.record_counters();
        Ok(newly_read.len())
    }

    /// The phone removes all its linked devices; connected ones are logged out.
    pub(crate) fn unlink(&mut self, phone: &str) -> Result<usize, SimError> {
        phone::validate(phone)?;
        let unlinked = self.links.unlink_phone(phone);
        if unlinked.is_empty() {
            return Err(SimError::NoLinkedDevice(phone.to_owned()));
        }
        for (link_id, conn) in &unlinked {
            if let Some(conn) = conn {
                conn.send(Command::LoggedOut);
            }
            let device_id = self.links.get(link_id).map(|link| link.device_id.as_str());
            info!(phone, %link_id, device_id, connected = conn.is_some(), "device unlinked");
            self.journal.record(Op::Unlink {
                link_id: link_id.clone(),
            });
        }
        Ok(unlinked.len())
    }

    /// A device logs itself out: its link is unlinked from the phone. The caller (the
    /// link's own connection) answers `LoggedOut`; `false` if it was not linked.
    pub(crate) fn logout(&mut self, link_id: &str) -> bool {
        let Some((phone, _conn)) = self.links.unlink(link_id) else {
            return false;
        };
        let device_id = self.links.get(link_id).map(|link| link.device_id.as_str());
        info!(phone, %link_id, device_id, "device logged out");
        self.journal.record(Op::Unlink {
            link_id: link_id.to_owned(),
        });
        true
    }

    /// Ban a number for `duration` (zero lifts a ban); connected links are told.
    /// Returns the end of the ban (Unix ms).
    pub(crate) fn ban(&mut self, phone: &str, duration: Duration) -> Result<i64, SimError> {
        phone::validate(phone)?;
        let until_ms = clock::ms_after(duration);
        self.phones
            .entry(phone.to_owned())
            .or_default()
            .banned_until_ms = until_ms;
        if !duration.is_zero() {
            for link_id in self.links.of_phone(phone) {
                if let Some(conn) = self.links.get(link_id).and_then(Link::conn) {
                    let banned = Kind::Banned(Banned { until_ms });
                    conn.send(Command::Frame(Box::new(banned)));
                }
            }
        }
        self.journal.record(Op::Ban {
            phone: phone.to_owned(),
            until_ms,
        });
        info!(phone, until_ms, "phone banned");
        Ok(until_ms)
    }

    // ---- bookkeeping ---------------------------------------------------------------

    /// The counters (connections_open is the caller's to fill in).
    pub(crate) fn stats(&self) -> SimStats {
        let c = &self.counters;
        SimStats {
            links_connected: self.links.connected() as u64,
            links_total: self.links.live() as u64,
            pairings: c.pairings,
            messages_delivered: c.messages_delivered,
            messages_failed: c.messages_failed,
            messages_read: c.messages_read,
            handshakes_refused: c.handshakes_refused,
            inbound_sent: c.inbound_sent,
            inbound_acked: c.inbound_acked,
            connections_replaced: c.connections_replaced,
            qr_codes_issued: c.qr_codes_issued,
            pair_codes_issued: c.pair_codes_issued,
            connections_open: 0,
            pairing_now: self.pairings.len() as u64,
        }
    }

    /// Answers once every change so far is on disk; `None` in memory-only mode.
    pub(crate) fn flush(&self) -> Option<oneshot::Receiver<()>> {
        self.journal.flush()
    }

    fn record_counters(&self) {
        self.journal.record(Op::Counters(self.counters));
    }
}

fn receipt(message_id: &str, status: Status, at_ms: i64) -> Receipt {
    Receipt {
        message_id: message_id.to_owned(),
        status: status as i32,
        error: String::new(),
        at_ms,
    }
}
