//! Persistence: the network's durable state in one SQLite file (WAL), written by a
//! dedicated thread so that no async task waits on the disk.
//!
//! Every change is recorded as an [`Op`] while the state lock is held, so the file sees
//! changes in the order the network made them. The writer thread drains what has
//! queued up and applies it in one transaction, which keeps 10,000 pairings to a few
//! dozen commits. Dropping the [`Journal`] waits for the queue to be written.

use std::{
    path::Path,
    sync::Arc,
    sync::mpsc::{self, Receiver, Sender},
    thread::JoinHandle,
};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;
use tracing::{debug, warn};
use wafleet_protocol::sim::Inbound;

use super::groups::Group;
use super::inbox::{Extras, InboxEntry, InboxMedia, open_stored_text, stored_text};
use super::seal::{StateSeal, group_place, inbound_place, inbox_place};
use super::{link::Link, stats::Counters};
use super::{seal::sent_place, sent::SentEntry};

/// The most changes written in one transaction.
const MAX_BATCH: usize = 4_096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS links (
    link_id TEXT PRIMARY KEY,
    phone TEXT NOT NULL,
    identity_public BLOB NOT NULL,
    device_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    unlinked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS inbox (
    phone TEXT NOT NULL,
    seq INTEGER NOT NULL,
    from_phone TEXT NOT NULL,
    sender_link TEXT NOT NULL,
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    read_at_ms INTEGER,
    PRIMARY KEY (phone, seq)
);
CREATE TABLE IF NOT EXISTS inbound (
    link_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    from_phone TEXT NOT NULL,
    text TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (link_id, message_id)
);
CREATE TABLE IF NOT EXISTS bans (
    phone TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    phone TEXT NOT NULL,
    seq INTEGER NOT NULL,
    to_phone TEXT NOT NULL,
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    read_at_ms INTEGER,
    PRIMARY KEY (phone, seq)
);
CREATE INDEX IF NOT EXISTS sent_by_message ON sent (phone, message_id);
CREATE TABLE IF NOT EXISTS absent (
    phone TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
PRAGMA user_version = 3;
";

/// Opening the state file failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the writer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One change to the durable state.
#[derive(Debug)]
pub(crate) enum Op {
    /// A link was created by pairing.
    Link {
        link_id: String,
        phone: String,
        identity_public: [u8; 32],
        device_id: String,
        created_at_ms: i64,
    },
    /// The phone removed the link: keep a tombstone, drop its pending inbound.
    Unlink { link_id: String },
    /// A message reached a phone's inbox at position `seq`.
    Deliver {
        phone: String,
        seq: usize,
        entry: InboxEntry,
    },
    /// The phone read everything in its inbox.
    Read { phone: String, read_at_ms: i64 },
    /// A phone's message waits for a link's acknowledgement.
    Inbound { link_id: String, inbound: Inbound },
    /// The link acknowledged an inbound message.
    InboundAck { link_id: String, message_id: String },
    /// The number is banned until then.
    Ban { phone: String, until_ms: i64 },
    /// A phone sent a message to linked devices, at position `seq` of its sent list.
    PhoneSent {
        phone: String,
        seq: usize,
        entry: SentEntry,
    },
    /// A device stored a phone's message (`read`: and read it) at `at_ms`.
    SentProgress {
        phone: String,
        message_id: String,
        read: bool,
        at_ms: i64,
    },
    /// The number is (or is again) on WhatsApp or not.
    Absent { phone: String, absent: bool },
    /// A group as it is now (created or changed).
    Group(Group),
    /// The counters now (only the last one of a batch is written).
    Counters(Counters),
    /// Answer once everything recorded before is written.
    Flush(oneshot::Sender<()>),
}

/// The durable state as found in the file at open.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Every link, tombstones included, in creation order.
    pub(crate) links: Vec<(String, Link)>,
    /// Inbox entries by phone, each phone's in arrival order.
    pub(crate) inbox: Vec<(String, InboxEntry)>,
    /// Unacknowledged inbound messages by link, oldest first.
    pub(crate) pending: Vec<(String, Inbound)>,
    /// Ban end (Unix ms) by phone.
    pub(crate) bans: Vec<(String, i64)>,
    /// Sent messages by phone, each phone's oldest first.
    pub(crate) sent: Vec<(String, SentEntry)>,
    /// Numbers not on WhatsApp.
    pub(crate) absent: Vec<String>,
    /// Every group.
    pub(crate) groups: Vec<Group>,
    pub(crate) counters: Counters,
}

/// Where changes go: a writer thread, or nowhere in memory-only mode.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    queue: Option<Sender<Op>>,
    writer: Option<JoinHandle<()>>,
}

impl Journal {
    /// Memory only: changes are not kept.
    pub(crate) fn disabled() -> Journal {
        Journal::default()
    }

    /// Open (or create) the state file, read what it holds and start the writer.
    /// Texts are sealed with `seal` when given.
    pub(crate) fn open(
        path: &Path,
        seal: Option<Arc<dyn StateSeal>>,
    ) -> Result<(Journal, Snapshot), JournalError> {
        let connection = Connection::open(path)?;
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        debug!(path = %path.display(), mode, "sim state file open");
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.execute_batch(SCHEMA)?;
        let snapshot = load(&connection, seal.as_deref())?;
        let (queue, changes) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("sim-journal".into())
            .spawn(move || write_loop(connection, changes, seal))?;
        Ok((
            Journal {
                queue: Some(queue),
                writer: Some(writer),
            },
            snapshot,
        ))
    }

    /// Queue a change (never blocks).
    pub(crate) fn record(&self, op: Op) {
        if let Some(queue) = &self.queue
            && queue.send(op).is_err()
        {
            warn!("sim journal writer is gone, change not persisted");
        }
    }

    /// A receiver that answers once everything recorded so far is written; `None` in
    /// memory-only mode.
    pub(crate) fn flush(&self) -> Option<oneshot::Receiver<()>> {
        let queue = self.queue.as_ref()?;
        let (done, written) = oneshot::channel();
        queue.send(Op::Flush(done)).ok()?;
        Some(written)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop.
        self.queue.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            warn!("sim journal writer panicked");
        }
    }
}

fn write_loop(mut connection: Connection, changes: Receiver<Op>, seal: Option<Arc<dyn StateSeal>>) {
    while let Ok(first) = changes.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match changes.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        if let Err(error) = write_batch(&mut connection, batch, seal.as_deref(), &mut flushes) {
            warn!(%error, "sim journal batch not written");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn write_batch(
    connection: &mut Connection,
    batch: Vec<Op>,
    seal: Option<&dyn StateSeal>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) -> rusqlite::Result<()> {
    let tx = connection.transaction()?;
    let mut counters = None;
    for op in batch {
        match op {
            Op::Flush(done) => flushes.push(done),
            Op::Counters(now) => counters = Some(now),
            op => {
                if let Err(error) = apply(&tx, &op, seal) {
                    warn!(%error, "sim journal change not written");
                }
            }
        }
    }
    if let Some(counters) = counters {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        for (name, value) in counters.named() {
            upsert.execute(params![name, i64::try_from(value).unwrap_or(i64::MAX)])?;
        }
    }
    tx.commit()
}

/// The stored form of a text.
fn sealed(seal: Option<&dyn StateSeal>, place: &str, text: &str) -> String {
    match seal {
        Some(seal) => seal.seal(place, text),
        None => text.to_owned(),
    }
}

/// A stored text, opened; `None` (logged) if it does not open.
fn opened(seal: Option<&dyn StateSeal>, place: &str, stored: String) -> Option<String> {
    match seal {
        None => Some(stored),
        Some(seal) => match seal.open(place, &stored) {
            Ok(text) => Some(text),
            Err(error) => {
                warn!(place, %error, "a stored text does not open; its message is skipped");
                None
            }
        },
    }
}

fn apply(tx: &Transaction<'_>, op: &Op, seal: Option<&dyn StateSeal>) -> rusqlite::Result<()> {
    match op {
        Op::Link {
            link_id,
            phone,
            identity_public,
            device_id,
            created_at_ms,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO links
                 (link_id, phone, identity_public, device_id, created_at_ms, unlinked)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            )?
            .execute(params![
                link_id,
                phone,
                &identity_public[..],
                device_id,
                created_at_ms
            ])?;
        }
        Op::Unlink { link_id } => {
            tx.prepare_cached("UPDATE links SET unlinked = 1 WHERE link_id = ?1")?
                .execute(params![link_id])?;
            tx.prepare_cached("DELETE FROM inbound WHERE link_id = ?1")?
                .execute(params![link_id])?;
        }
        Op::Deliver { phone, seq, entry } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO inbox
                 (phone, seq, from_phone, sender_link, message_id, text, at_ms, read_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                phone,
                i64::try_from(*seq).unwrap_or(i64::MAX),
                entry.from_phone,
                entry.sender_link,
                entry.message_id,
                sealed(
                    seal,
                    &inbox_place(phone, &entry.message_id),
                    &entry.stored_text()
                ),
                entry.at_ms,
                entry.read_at_ms,
            ])?;
        }
        Op::Read { phone, read_at_ms } => {
            tx.prepare_cached(
                "UPDATE inbox SET read_at_ms = ?2 WHERE phone = ?1 AND read_at_ms IS NULL",
            )?
            .execute(params![phone, read_at_ms])?;
        }
        Op::Inbound { link_id, inbound } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO inbound (link_id, message_id, from_phone, text, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                link_id,
                inbound.message_id,
                inbound.from_phone,
                sealed(
                    seal,
                    &inbound_place(link_id, &inbound.message_id),
                    &stored_text(
                        &inbound.text,
                        &Extras {
                            media: inbound.media.as_ref().map(InboxMedia::from),
                            group: inbound.group_id.clone(),
                            mentions: Vec::new(),
                            reply_to: inbound.reply_to.clone(),
                        }
                    )
                ),
                inbound.at_ms
            ])?;
        }
        Op::InboundAck {
            link_id,
            message_id,
        } => {
            tx.prepare_cached("DELETE FROM inbound WHERE link_id = ?1 AND message_id = ?2")?
                .execute(params![link_id, message_id])?;
        }
        Op::Ban { phone, until_ms } => {
            tx.prepare_cached("INSERT OR REPLACE INTO bans (phone, until_ms) VALUES (?1, ?2)")?
                .execute(params![phone, until_ms])?;
        }
        Op::PhoneSent { phone, seq, entry } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sent
                 (phone, seq, to_phone, message_id, text, at_ms, delivered_at_ms, read_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                phone,
                i64::try_from(*seq).unwrap_or(i64::MAX),
                entry.to_phone,
                entry.message_id,
                sealed(seal, &sent_place(phone, &entry.message_id), &entry.text),
                entry.at_ms,
                entry.delivered_at_ms,
                entry.read_at_ms,
            ])?;
        }
        Op::SentProgress {
            phone,
            message_id,
            read,
            at_ms,
        } => {
            tx.prepare_cached(
                "UPDATE sent SET delivered_at_ms = COALESCE(delivered_at_ms, ?3),
                     read_at_ms = CASE WHEN ?4 THEN COALESCE(read_at_ms, ?3) ELSE read_at_ms END
                 WHERE phone = ?1 AND message_id = ?2",
            )?
            .execute(params![phone, message_id, at_ms, read])?;
        }
        Op::Absent { phone, absent } => {
            let sql = if *absent {
                "INSERT OR IGNORE INTO absent (phone) VALUES (?1)"
            } else {
                "DELETE FROM absent WHERE phone = ?1"
            };
            tx.prepare_cached(sql)?.execute(params![phone])?;
        }
        Op::Group(group) => {
            // Serializing strings, booleans and numbers cannot fail.
            let data = serde_json::to_string(group).unwrap_or_default();
            tx.prepare_cached("INSERT OR REPLACE INTO groups (id, data) VALUES (?1, ?2)")?
                .execute(params![
                    group.id,
                    sealed(seal, &group_place(&group.id), &data)
                ])?;
        }
        Op::Counters(_) | Op::Flush(_) => {}
    }
    Ok(())
}

fn load(connection: &Connection, seal: Option<&dyn StateSeal>) -> rusqlite::Result<Snapshot> {
    let mut snapshot = Snapshot::default();

    let mut links = connection.prepare(
        "SELECT link_id, phone, identity_public, device_id, unlinked FROM links ORDER BY rowid",
    )?;
    let rows = links.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Vec<u8>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, bool>(4)?,
        ))
    })?;
    for row in rows {
        let (link_id, phone, key, device_id, unlinked) = row?;
        let Ok(identity_public) = <[u8; 32]>::try_from(key.as_slice()) else {
            warn!(link_id, "stored link has no valid identity key, skipped");
            continue;
        };
        let mut link = Link::new(phone, identity_public, device_id);
        link.unlinked = unlinked;
        snapshot.links.push((link_id, link));
    }

    let mut inbox = connection.prepare(
        "SELECT phone, from_phone, sender_link, message_id, text, at_ms, read_at_ms
         FROM inbox ORDER BY phone, seq",
    )?;
    let rows = inbox.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            InboxEntry {
                from_phone: row.get(1)?,
                sender_link: row.get(2)?,
                message_id: row.get(3)?,
                text: row.get(4)?,
                at_ms: row.get(5)?,
                read_at_ms: row.get(6)?,
                media: None,
                group: None,
                mentions: Vec::new(),
                reply_to: None,
            },
        ))
    })?;
    for row in rows {
        let (phone, mut entry) = row?;
        let stored = std::mem::take(&mut entry.text);
        if let Some(text) = opened(seal, &inbox_place(&phone, &entry.message_id), stored) {
            entry.set_stored_text(text);
            snapshot.inbox.push((phone, entry));
        }
    }

    let mut pending = connection.prepare(
        "SELECT link_id, message_id, from_phone, text, at_ms FROM inbound ORDER BY rowid",
    )?;
    let rows = pending.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            Inbound {
                message_id: row.get(1)?,
                from_phone: row.get(2)?,
                text: row.get(3)?,
                at_ms: row.get(4)?,
                media: None,
                group_id: None,
                reply_to: None,
            },
        ))
    })?;
    for row in rows {
        let (link_id, mut inbound) = row?;
        let place = inbound_place(&link_id, &inbound.message_id);
        let stored = std::mem::take(&mut inbound.text);
        if let Some(stored) = opened(seal, &place, stored) {
            let (text, extras) = open_stored_text(stored);
            inbound.text = text;
            inbound.media = extras.media.as_ref().map(Into::into);
            inbound.group_id = extras.group;
            inbound.reply_to = extras.reply_to;
            snapshot.pending.push((link_id, inbound));
        }
    }

    let mut bans = connection.prepare("SELECT phone, until_ms FROM bans")?;
    let rows = bans.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    snapshot.bans = rows.collect::<rusqlite::Result<_>>()?;

    let mut sent = connection.prepare(
        "SELECT phone, to_phone, message_id, text, at_ms, delivered_at_ms, read_at_ms
         FROM sent ORDER BY phone, seq",
    )?;
    let rows = sent.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            SentEntry {
                to_phone: row.get(1)?,
                message_id: row.get(2)?,
                text: row.get(3)?,
                at_ms: row.get(4)?,
                delivered_at_ms: row.get(5)?,
                read_at_ms: row.get(6)?,
            },
        ))
    })?;
    for row in rows {
        let (phone, mut entry) = row?;
        if let Some(text) = opened(seal, &sent_place(&phone, &entry.message_id), entry.text) {
            entry.text = text;
            snapshot.sent.push((phone, entry));
        }
    }

    let mut absent = connection.prepare("SELECT phone FROM absent")?;
    let rows = absent.query_map([], |row| row.get(0))?;
    snapshot.absent = rows.collect::<rusqlite::Result<_>>()?;

    let mut groups = connection.prepare("SELECT id, data FROM groups ORDER BY id")?;
    let rows = groups.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (id, stored) = row?;
        let Some(data) = opened(seal, &group_place(&id), stored) else {
            continue;
        };
        match serde_json::from_str::<Group>(&data) {
            Ok(group) => snapshot.groups.push(group),
            Err(error) => warn!(id, %error, "a stored group does not read; skipped"),
        }
    }

    let mut counters = connection.prepare("SELECT name, value FROM counters")?;
    let mut rows = counters.query([])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let value: i64 = row.get(1)?;
        snapshot
            .counters
            .set(&name, u64::try_from(value).unwrap_or(0));
    }

    let version: Option<i64> = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .optional()?;
    debug!(?version, links = snapshot.links.len(), "sim state loaded");
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.db");
        {
            let (journal, snapshot) = Journal::open(&path, None).unwrap();
            assert!(snapshot.links.is_empty());
            for (link_id, phone) in [("a", "62811111111"), ("b", "62822222222")] {
                journal.record(Op::Link {
                    link_id: link_id.into(),
                    phone: phone.into(),
                    identity_public: [3; 32],
                    device_id: "dev".into(),
                    created_at_ms: 5,
                });
            }
            journal.record(Op::Unlink {
                link_id: "b".into(),
            });
            let entry = InboxEntry {
                from_phone: "62811111111".into(),
                sender_link: "a".into(),
                message_id: "m1".into(),
                text: "hello".into(),
                at_ms: 10,
                read_at_ms: None,
                media: None,
                group: None,
                mentions: Vec::new(),
                reply_to: None,
            };
            journal.record(Op::Deliver {
                phone: "62833333333".into(),
                seq: 0,
                entry,
            });
            journal.record(Op::Read {
                phone: "62833333333".into(),
                read_at_ms: 11,
            });
            for id in ["i1", "i2"] {
                let inbound = Inbound {
                    message_id: id.into(),
                    from_phone: "62844444444".into(),
                    text: "yo".into(),
                    at_ms: 12,
                    media: None,
                    group_id: None,
                    reply_to: None,
                };
                journal.record(Op::Inbound {
                    link_id: "a".into(),
                    inbound,
                });
            }
            journal.record(Op::InboundAck {
                link_id: "a".into(),
                message_id: "i1".into(),
            });
            journal.record(Op::Ban {
                phone: "62811111111".into(),
                until_ms: 99,
            });
            journal.record(Op::Counters(Counters {
                pairings: 2,
                ..Counters::default()
            }));
            for (seq, id) in ["s1", "s2", "s3"].into_iter().enumerate() {
                let entry = SentEntry {
                    to_phone: "62811111111".into(),
                    message_id: id.into(),
                    text: "halo".into(),
                    at_ms: 20,
                    delivered_at_ms: None,
                    read_at_ms: None,
                };
                let phone = "62855555555".to_string();
                journal.record(Op::PhoneSent { phone, seq, entry });
            }
            for (id, read, at_ms) in [("s1", false, 21), ("s2", true, 22), ("s1", true, 23)] {
                journal.record(Op::SentProgress {
                    phone: "62855555555".into(),
                    message_id: id.into(),
                    read,
                    at_ms,
                });
            }
            for (phone, absent) in [("62866666666", true), ("62877777777", true)] {
                let phone = phone.to_string();
                journal.record(Op::Absent { phone, absent });
            }
            journal.record(Op::Absent {
                phone: "62877777777".into(),
                absent: false,
            });
        } // dropping waits for the writer

        let (_journal, snapshot) = Journal::open(&path, None).unwrap();
        let links: Vec<(&str, bool)> = snapshot
            .links
            .iter()
            .map(|(id, link)| (id.as_str(), link.unlinked))
            .collect();
        assert_eq!(links, [("a", false), ("b", true)]);
        assert_eq!(snapshot.links[0].1.identity_public, [3; 32]);
        assert_eq!(snapshot.inbox.len(), 1);
        assert_eq!(snapshot.inbox[0].1.read_at_ms, Some(11));
        let pending: Vec<&str> = snapshot
            .pending
            .iter()
            .map(|(_, i)| i.message_id.as_str())
            .collect();
        assert_eq!(pending, ["i2"]);
        assert_eq!(snapshot.bans, [("62811111111".to_string(), 99)]);
        assert_eq!(snapshot.counters.pairings, 2);
        let sent: Vec<(&str, Option<i64>, Option<i64>)> = snapshot
            .sent
            .iter()
            .map(|(_, e)| (e.message_id.as_str(), e.delivered_at_ms, e.read_at_ms))
            .collect();
        assert_eq!(
            sent,
            [
                ("s1", Some(21), Some(23)),
                ("s2", Some(22), Some(22)),
                ("s3", None, None)
            ]
        );
        assert_eq!(snapshot.absent, ["62866666666".to_string()]);
    }

    /// A stand-in for a real seal: reversible, bound to the place, not the text.
    #[derive(Debug)]
    struct Hex(&'static str);

    impl StateSeal for Hex {
        fn seal(&self, place: &str, text: &str) -> String {
            let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
            format!("{}|{place}|{hex}", self.0)
        }

        fn open(&self, place: &str, stored: &str) -> Result<String, String> {
            let hex = stored
                .strip_prefix(&format!("{}|{place}|", self.0))
                .ok_or("not sealed here")?;
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?;
            String::from_utf8(bytes).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn sealed_texts_are_not_in_the_file_and_open_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.db");
        {
            let (journal, _) = Journal::open(&path, Some(Arc::new(Hex("k1")))).unwrap();
            journal.record(Op::Deliver {
                phone: "62833333333".into(),
                seq: 0,
                entry: InboxEntry {
                    from_phone: "62811111111".into(),
                    sender_link: "a".into(),
                    message_id: "m1".into(),
                    text: "rahasia inbox".into(),
                    at_ms: 10,
                    read_at_ms: None,
                    media: None,
                    group: None,
                    mentions: Vec::new(),
                    reply_to: None,
                },
            });
            journal.record(Op::Inbound {
                link_id: "a".into(),
                inbound: Inbound {
                    message_id: "i1".into(),
                    from_phone: "62844444444".into(),
                    text: "rahasia inbound".into(),
                    at_ms: 12,
                    media: None,
                    group_id: None,
                    reply_to: None,
                },
            });
            journal.record(Op::PhoneSent {
                phone: "62844444444".into(),
                seq: 0,
                entry: SentEntry {
                    to_phone: "62811111111".into(),
                    message_id: "i1".into(),
                    text: "rahasia sent".into(),
                    at_ms: 12,
                    delivered_at_ms: None,
                    read_at_ms: None,
                },
            });
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(dir.path().join("sim.db-wal")).unwrap_or_default());
        assert!(!bytes.windows(7).any(|w| w == b"rahasia"));

        let (_journal, snapshot) = Journal::open(&path, Some(Arc::new(Hex("k1")))).unwrap();
        assert_eq!(snapshot.inbox[0].1.text, "rahasia inbox");
        assert_eq!(snapshot.pending[0].1.text, "rahasia inbound");
        assert_eq!(snapshot.sent[0].1.text, "rahasia sent");
        drop(_journal);
        // Under another key nothing opens: those messages are skipped, not shown
        // sealed.
        let (_journal, snapshot) = Journal::open(&path, Some(Arc::new(Hex("k2")))).unwrap();
        assert!(snapshot.inbox.is_empty() && snapshot.pending.is_empty());
        assert!(snapshot.sent.is_empty());
    }

    #[tokio::test]
    async fn flush_answers_after_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(&dir.path().join("sim.db"), None).unwrap();
        journal.record(Op::Ban {
            phone: "62811111111".into(),
            until_ms: 1,
        });
        journal.flush().unwrap().await.unwrap();
        assert!(Journal::disabled().flush().is_none());
    }
}
