//! What the test server knows: the phones (accounts), the companion devices each has
//! linked, the connections waiting to be paired, and what happened (stats).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wacore_libsignal::protocol::KeyPair;

use crate::keys::ServerKeys;
use crate::noise::Pattern;

/// The test server's state, shared by its connections and its control API.
#[derive(Clone, Debug)]
pub struct Network {
    pub(crate) keys: Arc<ServerKeys>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// By phone number.
    pub(crate) phones: HashMap<String, Phone>,
    /// Linked companion devices, by their JID's user and device number.
    pub(crate) companions: HashMap<(String, u32), Companion>,
    /// The keys each companion uploaded.
    pub(crate) bundles: HashMap<(String, u32), crate::prekeys::KeyBundle>,
    /// What waits for a device to log in, by device.
    pub(crate) offline: HashMap<(String, u32), Vec<wacore_binary::Node>>,
    /// What phones sent.
    pub(crate) sent: Vec<crate::messages::SentMessage>,
    /// Logged-in connections, by device.
    pub(crate) online: HashMap<(String, u32), Online>,
    /// Devices their phone gave its app state key.
    pub(crate) keys_shared: std::collections::HashSet<(String, u32)>,
    /// Devices waiting for a pairing code, by the phone number they asked it for.
    pub(crate) code_flows: HashMap<String, crate::pair_code::CodeFlow>,
    /// Connections showing QR codes, by each of their refs.
    pub(crate) pairing: HashMap<String, PairingHandle>,
    pub(crate) stats: Stats,
    next_connection: u64,
}

/// An account on the simulated network: a phone with its identity key.
pub(crate) struct Phone {
    pub(crate) lid: String,
    /// The account's identity: it signs each companion device it links.
    pub(crate) identity: KeyPair,
    pub(crate) next_device: u32,
    /// Banned until then: logins fail with 402.
    pub(crate) banned_until: Option<std::time::SystemTime>,
    /// Its Signal state (an async lock: decrypting awaits the store).
    pub(crate) signal: Arc<tokio::sync::Mutex<crate::signal::SignalParty>>,
    pub(crate) inbox: Vec<crate::messages::InboxMessage>,
}

/// A logged-in connection, as the control API reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Online {
    pub(crate) connection: u64,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("lid", &self.lid)
            .field("next_device", &self.next_device)
            .finish_non_exhaustive()
    }
}

/// A companion device a phone has linked.
#[derive(Debug, Clone)]
pub(crate) struct Companion {
    /// Its `ADVSignedDeviceIdentity`, signed by the account and by the device (what
    /// other devices check before they start a session with it).
    pub(crate) device_identity: Vec<u8>,
    pub(crate) noise_key: [u8; 32],
    pub(crate) identity_key: [u8; 32],
    pub(crate) lid: String,
}

/// How the control API reaches a connection that shows QR codes.
#[derive(Debug, Clone)]
pub(crate) struct PairingHandle {
    pub(crate) connection: u64,
    pub(crate) noise_key: [u8; 32],
    pub(crate) identity_key: [u8; 32],
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

/// What the control API asks of a connection.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send this `pair-success` and, once the device has signed, link it.
    PairSuccess {
        iq: wacore_binary::Node,
        id: String,
        link: Box<NewCompanion>,
        done: oneshot::Sender<Result<Linked, String>>,
    },
    /// Send the phone's `primary_hello` (pairing by code), and hand the device's
    /// `companion_finish` to `done`.
    PrimaryHello {
        hello: wacore_binary::Node,
        done: oneshot::Sender<crate::pair_code::Finish>,
    },
    /// Send this stream error and close the connection.
    Kick(wacore_binary::Node),
    /// Send this stanza (a message or receipt from a phone).
    Deliver(wacore_binary::Node),
}

/// A device about to be linked, waiting for its signature.
#[derive(Debug, Clone)]
pub(crate) struct NewCompanion {
    pub(crate) phone: String,
    pub(crate) device: u32,
    pub(crate) lid: String,
    pub(crate) details: Vec<u8>,
    pub(crate) account_key: [u8; 32],
    pub(crate) companion: Companion,
}

/// What `/sim/scan` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Linked {
    pub phone: String,
    pub jid: String,
    pub lid: String,
}

/// Counters and the stanzas nobody answers (tests assert there are none they did not
/// expect).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub connections: u64,
    pub connected: u64,
    pub handshakes: BTreeMap<String, u64>,
    pub pairings: u64,
    pub logins: u64,
    pub refused_logins: u64,
    /// Logins that replaced a live connection of the same device (two connections of
    /// one device at once: in a cluster, two nodes that both think they own it).
    pub connections_replaced: u64,
    pub prekeys_uploaded: u64,
    /// Pre-key uploads answered: a device's first after it is linked, then one each
    /// time it tops its pre-keys up.
    pub prekey_uploads: u64,
    /// `<presence>` stanzas devices sent (one per login once a device has a push name).
    pub presences: u64,
    /// Copies of a device's message a phone could not decrypt.
    pub undecryptable: u64,
    /// Copies of a device's message for its own phone.
    pub own_copies: u64,
    /// Copies of a device's message relayed to another linked device.
    pub relayed: u64,
    /// `tag xmlns child` of each stanza the server has no answer for, with a count.
    pub unknown: BTreeMap<String, u64>,
}

impl Network {
    pub fn new() -> Network {
        Network {
            keys: Arc::new(ServerKeys::generate()),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn open_connection(&self) -> u64 {
        let mut state = self.lock();
        state.next_connection += 1;
        state.stats.connections += 1;
        state.stats.connected += 1;
        state.next_connection
    }

    pub(crate) fn close_connection(&self, connection: u64) {
        let mut state = self.lock();
        state.stats.connected -= 1;
        state
            .pairing
            .retain(|_, handle| handle.connection != connection);
        state
            .code_flows
            .retain(|_, flow| flow.handle.connection != connection);
        state
            .online
            .retain(|_, online| online.connection != connection);
    }

    pub(crate) fn handshake(&self, pattern: Pattern) {
        *self
            .lock()
            .stats
            .handshakes
            .entry(format!("{pattern:?}"))
            .or_default() += 1;
    }

    pub(crate) fn unknown(&self, what: String) {
        tracing::warn!(stanza = %what, "no answer for this stanza");
        *self.lock().stats.unknown.entry(what).or_default() += 1;
    }
}

impl Default for Network {
    fn default() -> Network {
        Network::new()
    }
}

impl State {
    /// The phone `number`, created with a fresh identity and LID on first use.
    pub(crate) fn phone(&mut self, number: &str) -> &mut Phone {
        let next_lid = 100_000_000_000_000 + self.phones.len() as u64;
        self.phones.entry(number.to_owned()).or_insert_with(|| {
            let identity = KeyPair::generate(&mut rand::rng());
            Phone {
                lid: next_lid.to_string(),
                signal: Arc::new(tokio::sync::Mutex::new(crate::signal::SignalParty::new(
                    &identity,
                ))),
                identity,
                next_device: 1,
                banned_until: None,
                inbox: Vec::new(),
            }
        })
    }

    /// The phone number of a JID's user: the number itself, or the phone whose LID it
    /// is (`None` for a LID this server never gave out).
    pub(crate) fn number_of(&self, jid: &wacore_binary::Jid) -> Option<String> {
        let user = jid.user.to_string();
        if jid.server == wacore_binary::Server::Lid {
            self.phones
                .iter()
                .find(|(_, phone)| phone.lid == user)
                .map(|(number, _)| number.clone())
        } else {
            Some(user)
        }
    }

    /// `online` is now the device's connection: a live one it replaces is told so
    /// (`conflict type="replaced"`, as WhatsApp does) and counted.
    pub(crate) fn log_in(&mut self, device: (String, u32), online: Online) {
        self.stats.logins += 1;
        if let Some(previous) = self.online.insert(device, online) {
            // One connection per device: the older one is replaced. Its session still
            // reads its commands while it is live (a closed one has left `online`,
            // or its receiver is gone).
            if previous
                .commands
                .send(Command::Kick(crate::phones::conflict("replaced")))
                .is_ok()
            {
                self.stats.connections_replaced += 1;
            }
        }
    }

    /// What `number` received.
    pub(crate) fn inbox_of(&mut self, number: &str) -> &mut Vec<crate::messages::InboxMessage> {
        &mut self.phone(number).inbox
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(connection: u64) -> (Online, mpsc::UnboundedReceiver<Command>) {
        let (commands, inbox) = mpsc::unbounded_channel();
        (
            Online {
                connection,
                commands,
            },
            inbox,
        )
    }

    #[test]
    fn a_login_over_a_live_connection_of_the_device_replaces_it_and_is_counted() {
        let mut state = State::default();
        let device = ("6281234567890".to_owned(), 3);
        let (first, mut first_inbox) = online(1);
        state.log_in(device.clone(), first);
        assert_eq!(state.stats.connections_replaced, 0);
        let (second, _second_inbox) = online(2);
        state.log_in(device.clone(), second);
        assert_eq!(
            (state.stats.logins, state.stats.connections_replaced),
            (2, 1)
        );
        let Ok(Command::Kick(error)) = first_inbox.try_recv() else {
            panic!("the first connection was not kicked")
        };
        let conflict = error
            .children()
            .and_then(|c| c.first())
            .expect("a conflict");
        assert_eq!(
            crate::nodes::attr(conflict, "type").as_deref(),
            Some("replaced")
        );
        assert_eq!(state.online[&device].connection, 2);
    }

    #[test]
    fn a_login_after_the_connection_went_away_is_not_a_replacement() {
        let mut state = State::default();
        let device = ("6281234567890".to_owned(), 3);
        let (first, first_inbox) = online(1);
        state.log_in(device.clone(), first);
        // Its session ended (the node was killed) before the server removed it.
        drop(first_inbox);
        let (second, _second_inbox) = online(2);
        state.log_in(device.clone(), second);
        // Another device of the same phone is not the same device.
        let (other, _other_inbox) = online(3);
        state.log_in(("6281234567890".to_owned(), 4), other);
        assert_eq!(
            (state.stats.logins, state.stats.connections_replaced),
            (3, 0)
        );
    }

    #[test]
    fn the_stats_route_reports_replacements() {
        let network = Network::new();
        network.lock().stats.connections_replaced = 2;
        let stats = serde_json::to_value(network.stats()).unwrap();
        assert_eq!(stats["connections_replaced"], 2);
    }
}
