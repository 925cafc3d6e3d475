//! Pairing: the QR codes and pairing codes shown to devices that have no link yet, and
//! a memory of codes that stopped being valid, so that a late scan is told "expired"
//! (410) rather than "not found" (404).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use base64::Engine;
use tokio::time::Instant;

use super::{
    connection::{ConnHandle, ConnId},
    error::SimError,
    ids::random_bytes,
};

/// Pairing-code characters: no 0/O or 1/I to confuse a person typing them.
const PAIR_CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// How many no-longer-valid codes are remembered (older ones then read as unknown).
const RETIRED_QR_CODES: usize = 16_384;
const RETIRED_PAIR_CODES: usize = 4_096;
/// Attempts to draw a code that no other connection shows (a clash is ~impossible).
const DRAWS: usize = 8;

/// A device waiting to be paired: one per pairing connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// The connection, to tell it `Paired`.
    pub(crate) handle: ConnHandle,
    pub(crate) device_id: String,
    /// The key the link will be bound to.
    pub(crate) identity_public: [u8; 32],
    qr: String,
    qr_expires: Instant,
    pair_code: Option<PairCodeSlot>,
}

/// A pairing code handed to a session, valid for one phone.
#[derive(Debug)]
struct PairCodeSlot {
    /// Normalised: 8 characters, no dash.
    code: String,
    phone: String,
    expires: Instant,
}

/// A code handed to a device, and when it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) code: String,
    pub(crate) expires: Instant,
}

/// Every pairing session and the codes they show.
#[derive(Debug)]
pub(crate) struct Pairings {
    sessions: HashMap<ConnId, Session>,
    qr_codes: HashMap<String, ConnId>,
    pair_codes: HashMap<String, ConnId>,
    retired_qr: Retired,
    retired_pair: Retired,
}

impl Default for Pairings {
    fn default() -> Self {
        Pairings {
            sessions: HashMap::new(),
            qr_codes: HashMap::new(),
            pair_codes: HashMap::new(),
            retired_qr: Retired::new(RETIRED_QR_CODES),
            retired_pair: Retired::new(RETIRED_PAIR_CODES),
        }
    }
}

impl Pairings {
    /// Open a session for a connection and issue its first QR code.
    pub(crate) fn start(
        &mut self,
        handle: ConnHandle,
        device_id: String,
        identity_public: [u8; 32],
        ttl: Duration,
        now: Instant,
    ) -> Issued {
        let conn = handle.id;
        if self.sessions.contains_key(&conn) {
            self.end(conn);
        }
        let qr = self.draw_qr(&identity_public);
        let expires = now + ttl;
        self.qr_codes.insert(qr.clone(), conn);
        self.sessions.insert(
            conn,
            Session {
                handle,
                device_id,
                identity_public,
                qr: qr.clone(),
                qr_expires: expires,
                pair_code: None,
            },
        );
        Issued { code: qr, expires }
    }

    /// Replace a session's QR code with a new one; `None` if the session is gone.
    pub(crate) fn rotate_qr(
        &mut self,
        conn: ConnId,
        ttl: Duration,
        now: Instant,
    ) -> Option<Issued> {
        let identity_public = self.sessions.get(&conn)?.identity_public;
        let qr = self.draw_qr(&identity_public);
        let session = self.sessions.get_mut(&conn)?;
        let old = std::mem::replace(&mut session.qr, qr.clone());
        session.qr_expires = now + ttl;
        let expires = session.qr_expires;
        self.qr_codes.remove(&old);
        self.retired_qr.insert(&old);
        self.qr_codes.insert(qr.clone(), conn);
        Some(Issued { code: qr, expires })
    }

    /// Hand a session a pairing code for `phone` (replacing any earlier one); the code
    /// is returned formatted `ABCD-EFGH`. `None` if the session is gone.
    pub(crate) fn issue_pair_code(
        &mut self,
        conn: ConnId,
        phone: String,
        ttl: Duration,
        now: Instant,
    ) -> Option<Issued> {
        if !self.sessions.contains_key(&conn) {
            return None;
        }
        let mut code = draw_pair_code();
        for _ in 1..DRAWS {
            if !self.pair_codes.contains_key(&code) {
                break;
            }
            code = draw_pair_code();
        }
        let session = self.sessions.get_mut(&conn)?;
        let expires = now + ttl;
        let old = session.pair_code.replace(PairCodeSlot {
            code: code.clone(),
            phone,
            expires,
        });
        if let Some(old) = old {
            self.pair_codes.remove(&old.code);
            self.retired_pair.insert(&old.code);
        }
        self.pair_codes.insert(code.clone(), conn);
        Some(Issued {
            code: format_pair_code(&code),
            expires,
        })
    }

    /// Close a session (paired, timed out, or its connection went away); its codes are
    /// retired.
    pub(crate) fn end(&mut self, conn: ConnId) -> Option<Session> {
        let session = self.sessions.remove(&conn)?;
        self.qr_codes.remove(&session.qr);
        self.retired_qr.insert(&session.qr);
        if let Some(slot) = &session.pair_code {
            self.pair_codes.remove(&slot.code);
            self.retired_pair.insert(&slot.code);
        }
        Some(session)
    }

    /// The session showing this QR code.
    pub(crate) fn find_qr(&self, qr: &str, now: Instant) -> Result<ConnId, SimError> {
        match self
            .qr_codes
            .get(qr)
            .and_then(|conn| self.sessions.get(conn))
        {
            Some(session) if now < session.qr_expires => Ok(session.handle.id),
            Some(_) => Err(SimError::QrExpired),
            None if self.retired_qr.contains(qr) => Err(SimError::QrExpired),
            None => Err(SimError::QrNotFound),
        }
    }

    /// The session that requested this pairing code for this phone. The code may be
    /// given with or without its dash, in any case.
    pub(crate) fn find_pair_code(
        &self,
        phone: &str,
        code: &str,
        now: Instant,
    ) -> Result<ConnId, SimError> {
        let code = normalize_pair_code(code);
        let found = self
            .pair_codes
            .get(&code)
            .and_then(|conn| self.sessions.get(conn));
        match found.and_then(|session| Some((session, session.pair_code.as_ref()?))) {
            // Another phone's code reads as unknown: it reveals nothing about codes.
            Some((_, slot)) if slot.phone != phone => Err(SimError::PairCodeNotFound),
            Some((session, slot)) if now < slot.expires => Ok(session.handle.id),
            Some(_) => Err(SimError::PairCodeExpired),
            None if self.retired_pair.contains(&code) => Err(SimError::PairCodeExpired),
            None => Err(SimError::PairCodeNotFound),
        }
    }

    /// Sessions open now.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    fn draw_qr(&self, identity_public: &[u8; 32]) -> String {
        let mut qr = qr_code(identity_public);
        for _ in 1..DRAWS {
            if !self.qr_codes.contains_key(&qr) {
                break;
            }
            qr = qr_code(identity_public);
        }
        qr
    }
}

/// The raw content of a QR code: `2@` + 16 random bytes (base64url) + `,` + the
/// device's identity key (base64), after WhatsApp's own shape.
pub(crate) fn qr_code(identity_public: &[u8; 32]) -> String {
    let reference = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<16>());
    let key = base64::engine::general_purpose::STANDARD.encode(identity_public);
    format!("2@{reference},{key}")
}

/// 8 random characters of the pairing alphabet, without dash.
fn draw_pair_code() -> String {
    random_bytes::<8>()
        .iter()
        .map(|byte| char::from(PAIR_CODE_ALPHABET[usize::from(byte & 31)]))
        .collect()
}

/// `ABCDEFGH` → `ABCD-EFGH`.
pub(crate) fn format_pair_code(code: &str) -> String {
    let split = code.char_indices().nth(4).map_or(code.len(), |(i, _)| i);
    format!("{}-{}", &code[..split], &code[split..])
}

/// What a person typed → the stored form: no dashes or spaces, upper case.
pub(crate) fn normalize_pair_code(code: &str) -> String {
    code.chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

/// A bounded memory of codes that are no longer valid (hashes only, oldest forgotten).
#[derive(Debug)]
struct Retired {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    hasher: RandomState,
    capacity: usize,
}

impl Retired {
    fn new(capacity: usize) -> Retired {
        Retired {
            seen: HashSet::new(),
            order: VecDeque::new(),
            hasher: RandomState::new(),
            capacity,
        }
    }

    fn insert(&mut self, code: &str) {
        let hash = self.hasher.hash_one(code);
        if self.seen.insert(hash) {
            self.order.push_back(hash);
            if self.order.len() > self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.seen.remove(&oldest);
            }
        }
    }

    fn contains(&self, code: &str) -> bool {
        self.seen.contains(&self.hasher.hash_one(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn session(pairings: &mut Pairings, conn: ConnId, now: Instant) -> Issued {
        let (handle, _commands) = ConnHandle::channel(conn);
        pairings.start(handle, "dev".into(), [7; 32], TTL, now)
    }

    #[test]
    fn qr_codes_are_unique_and_carry_the_key() {
        let a = qr_code(&[7; 32]);
        let b = qr_code(&[7; 32]);
        assert_ne!(a, b);
        assert!(a.starts_with("2@"));
        assert!(a.ends_with(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])));
    }

    #[test]
    fn pair_codes_use_the_unambiguous_alphabet() {
        for _ in 0..100 {
            let code = draw_pair_code();
            assert_eq!(code.len(), 8);
            assert!(!code.contains(['0', 'O', '1', 'I']), "{code}");
        }
        assert_eq!(format_pair_code("ABCDEFGH"), "ABCD-EFGH");
        assert_eq!(normalize_pair_code(" abcd-efgh"), "ABCDEFGH");
    }

    #[test]
    fn rotated_qr_reads_as_expired() {
        let mut pairings = Pairings::default();
        let now = Instant::now();
        let first = session(&mut pairings, 1, now);
        assert_eq!(pairings.find_qr(&first.code, now).ok(), Some(1));
        let second = pairings.rotate_qr(1, TTL, now + TTL).unwrap();
        assert!(matches!(
            pairings.find_qr(&first.code, now + TTL),
            Err(SimError::QrExpired)
        ));
        assert_eq!(pairings.find_qr(&second.code, now + TTL).ok(), Some(1));
        // Past its time, even before the rotation happens.
        assert!(matches!(
            pairings.find_qr(&second.code, now + TTL * 2),
            Err(SimError::QrExpired)
        ));
        assert!(matches!(
            pairings.find_qr("2@nope", now),
            Err(SimError::QrNotFound)
        ));
        pairings.end(1);
        assert!(matches!(
            pairings.find_qr(&second.code, now),
            Err(SimError::QrExpired)
        ));
        assert_eq!(pairings.len(), 0);
    }

    #[test]
    fn pair_code_is_bound_to_its_phone() {
        let mut pairings = Pairings::default();
        let now = Instant::now();
        session(&mut pairings, 1, now);
        let issued = pairings
            .issue_pair_code(1, "62811111111".into(), TTL, now)
            .unwrap();
        let lower = issued.code.to_lowercase().replace('-', "");
        assert_eq!(
            pairings.find_pair_code("62811111111", &lower, now).ok(),
            Some(1)
        );
        assert!(matches!(
            pairings.find_pair_code("62822222222", &issued.code, now),
            Err(SimError::PairCodeNotFound)
        ));
        assert!(matches!(
            pairings.find_pair_code("62811111111", &issued.code, now + TTL),
            Err(SimError::PairCodeExpired)
        ));
        let again = pairings
            .issue_pair_code(1, "62811111111".into(), TTL, now)
            .unwrap();
        assert!(matches!(
            pairings.find_pair_code("62811111111", &issued.code, now),
            Err(SimError::PairCodeExpired)
        ));
        assert!(
            pairings
                .find_pair_code("62811111111", &again.code, now)
                .is_ok()
        );
        assert!(matches!(
            pairings.find_pair_code("62811111111", "ZZZZ-ZZZZ", now),
            Err(SimError::PairCodeNotFound)
        ));
    }

    #[test]
    fn retired_memory_is_bounded() {
        let mut retired = Retired::new(2);
        retired.insert("a");
        retired.insert("b");
        retired.insert("c");
        assert!(!retired.contains("a"));
        assert!(retired.contains("b") && retired.contains("c"));
    }
}
