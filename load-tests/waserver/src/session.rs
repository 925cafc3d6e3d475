//! One client connection: the handshake, then either pairing (a device with no account
//! shows QR codes until a phone scans one) or a login (a linked device), then stanzas
//! until either side closes.

use std::time::Duration;

use axum::extract::ws::WebSocket;
use buffa::Message as _;
use tokio::sync::mpsc;
use tracing::{debug, info};
use wacore_binary::builder::NodeBuilder;
use waproto::buffa;
use waproto::whatsapp as wa;

use crate::network::{Command, Linked, Network, NewCompanion, Online, PairingHandle};
use crate::nodes::{self, SERVER};
use crate::noise::{self, AfterHello};
use crate::pairing::device_jid;
use crate::wire::{Secure, Wire, WireError};

/// How long the client has for each handshake message (the client's own limit is 20 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How many QR refs a pairing connection gets (WhatsApp: 6; 60 s, then 20 s each).
const REFS: usize = 6;

/// Serves one WebSocket until it closes.
pub(crate) async fn serve(network: Network, socket: WebSocket) {
    let connection = network.open_connection();
    match run(&network, connection, socket).await {
        Ok(()) | Err(SessionError::Wire(WireError::Closed)) => {
            debug!(connection, "connection closed")
        }
        Err(error) => info!(connection, %error, "connection ended"),
    }
    network.close_connection(connection);
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Noise(#[from] noise::NoiseError),
    #[error("bad client payload: {0}")]
    Payload(String),
}

/// Who the client is, after its payload.
enum Role {
    Pairing {
        noise_key: [u8; 32],
        identity_key: [u8; 32],
    },
    Device {
        phone: String,
        device: u32,
    },
}

async fn run(network: &Network, connection: u64, socket: WebSocket) -> Result<(), SessionError> {
    let mut wire = Wire::new(socket);
    let hello = wire.frame_within(HANDSHAKE_TIMEOUT).await?;
    let (server_hello, after) = noise::respond(&network.keys, &hello)?;
    wire.send_frame(&server_hello).await?;
    let established = match after {
        AfterHello::Done(established) => *established,
        AfterHello::AwaitFinish(pending) => {
            let finish = wire.frame_within(HANDSHAKE_TIMEOUT).await?;
            pending.finish(&finish)?
        }
    };
    network.handshake(established.pattern);
    let payload = wa::ClientPayload::decode_from_slice(&established.payload)
        .map_err(|e| SessionError::Payload(e.to_string()))?;
    let role = match payload.device_pairing_data.as_option() {
        Some(registration) => Role::Pairing {
            noise_key: established.client_static,
            identity_key: registration
                .e_ident
                .as_deref()
                .and_then(|key| key.try_into().ok())
                .ok_or_else(|| SessionError::Payload("registration without identity".into()))?,
        },
        None => Role::Device {
            phone: payload
                .username
                .ok_or_else(|| SessionError::Payload("login without username".into()))?
                .to_string(),
            device: payload.device.unwrap_or(0),
        },
    };
    let mut secure = Secure::new(wire, established.read, established.write);
    match role {
        Role::Pairing {
            noise_key,
            identity_key,
        } => pair(network, connection, secure, noise_key, identity_key).await,
        Role::Device { phone, device } => {
            let linked = network
                .lock()
                .companions
                .get(&(phone.clone(), device))
                .filter(|c| c.noise_key == established.client_static)
                .cloned();
            let Some(companion) = linked else {
                network.lock().stats.refused_logins += 1;
                let failure = NodeBuilder::new("failure").attr("reason", "401").build();
                secure.send(&failure).await?;
                secure.wire.close().await;
                return Ok(());
            };
            if let Some(left) = ban_left(network, &phone) {
                network.lock().stats.refused_logins += 1;
                let failure = NodeBuilder::new("failure")
                    .attr("reason", "402")
                    .attr("code", "101")
                    .attr("expire", left.as_secs().max(1).to_string())
                    .build();
                secure.send(&failure).await?;
                secure.wire.close().await;
                return Ok(());
            }
            let (commands, mut inbox) = mpsc::unbounded_channel();
            network.lock().log_in(
                (phone.clone(), device),
                Online {
                    connection,
                    commands,
                },
            );
            let success = NodeBuilder::new("success")
                .attr("t", nodes::now().to_string())
                .attr(
                    "lid",
                    device_jid(&companion.lid, device, "lid")
                        .parse::<wacore_binary::Jid>()
                        .expect("a LID parses"),
                )
                .attr("props", "1")
                .attr("location", "test")
                .build();
            secure.send(&success).await?;
            // What waited for the device, then the end of the offline queue.
            let queued = network
                .lock()
                .offline
                .remove(&(phone.clone(), device))
                .unwrap_or_default();
            for stanza in &queued {
                secure.send(stanza).await?;
            }
            let offline = NodeBuilder::new("ib")
                .attr("from", SERVER)
                .children([NodeBuilder::new("offline")
                    .attr("count", queued.len().to_string())
                    .build()])
                .build();
            secure.send(&offline).await?;
            let session = crate::iq::Session { phone, device };
            loop {
                tokio::select! {
                    frame = secure.wire.frame() => {
                        let node = secure.open(frame?)?;
                        let replies = match node.tag.as_ref() {
                            "message" => crate::messages::from_device(network, &session, &node).await,
                            "receipt" => {
                                crate::messages::receipt_from_device(network, &session, &node);
                                Vec::new()
                            }
                            // The device acknowledging what it received.
                            "ack" => Vec::new(),
                            _ => crate::iq::answer(network, &session, &node).into_iter().collect(),
                        };
                        for reply in &replies {
                            secure.send(reply).await?;
                        }
                    }
                    Some(command) = inbox.recv() => match command {
                        Command::Kick(error) => {
                            secure.send(&error).await?;
                            secure.wire.close().await;
                            return Ok(());
                        }
                        Command::Deliver(stanza) => secure.send(&stanza).await?,
                        Command::PairSuccess { .. } | Command::PrimaryHello { .. } => {}
                    },
                }
            }
        }
    }
}

/// How long `phone`'s ban still lasts, if it is banned.
fn ban_left(network: &Network, phone: &str) -> Option<Duration> {
    let until = network.lock().phones.get(phone)?.banned_until?;
    until.duration_since(std::time::SystemTime::now()).ok()
}

/// A `pair-success` sent, waiting for the device's signature.
struct Signing {
    id: String,
    link: NewCompanion,
    done: tokio::sync::oneshot::Sender<Result<Linked, String>>,
}

/// A device with no account: show it QR refs until a phone scans one, then link it
/// and restart the stream.
async fn pair(
    network: &Network,
    connection: u64,
    mut secure: Secure,
    noise_key: [u8; 32],
    identity_key: [u8; 32],
) -> Result<(), SessionError> {
    let (commands, mut inbox) = mpsc::unbounded_channel();
    let handle = PairingHandle {
        connection,
        noise_key,
        identity_key,
        commands,
    };
    let refs: Vec<String> = (0..REFS)
        .map(|_| format!("2@{:032x}", rand::random::<u128>()))
        .collect();
    {
        let mut state = network.lock();
        for pairing_ref in &refs {
            state.pairing.insert(pairing_ref.clone(), handle.clone());
        }
    }
    let pair_device = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("xmlns", "md")
        .attr("id", format!("pair-device-{connection}"))
        .children([NodeBuilder::new("pair-device")
            .children(
                refs.iter()
                    .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
            )
            .build()])
        .build();
    secure.send(&pair_device).await?;
    let mut signing: Option<Signing> = None;
    // A phone waiting for this device's `companion_finish` (pairing by code).
    let mut finishing: Option<tokio::sync::oneshot::Sender<crate::pair_code::Finish>> = None;
    loop {
        tokio::select! {
            frame = secure.wire.frame() => {
                let node = secure.open(frame?)?;
                let is_sign = node.tag == "iq"
                    && signing.as_ref().is_some_and(|s| nodes::attr(&node, "id").as_deref() == Some(&s.id));
                if is_sign {
                    let Signing { link, done, .. } = signing.take().expect("checked above");
                    let outcome = if nodes::attr(&node, "type").as_deref() == Some("result") {
                        network.complete_pairing(&link, &node)
                    } else {
                        Err(format!("the device answered {}", nodes::describe(&node)))
                    };
                    let linked = outcome.is_ok();
                    let _ = done.send(outcome);
                    if linked {
                        // The device logs in again as itself.
                        let restart = NodeBuilder::new("stream:error").attr("code", "515").build();
                        secure.send(&restart).await?;
                        secure.wire.close().await;
                        return Ok(());
                    }
                } else if node.tag == "iq" && nodes::attr(&node, "type").as_deref() == Some("result") {
                    // The device's acknowledgement of pair-device.
                } else if node.tag == "ack" {
                    // The device's acknowledgement of a notification.
                } else if let Some(stage) = nodes::child(&node, "link_code_companion_reg")
                    .and_then(|reg| nodes::attr(reg, "stage"))
                {
                    let id = nodes::attr(&node, "id").unwrap_or_default();
                    let answer = match stage.as_str() {
                        "companion_hello" => crate::pair_code::hello(network, &handle, &node),
                        "companion_finish" => match (crate::pair_code::finish(&node), finishing.take()) {
                            (Some(finish), Some(phone)) => {
                                let _ = phone.send(finish);
                                nodes::iq_result(&id, vec![])
                            }
                            _ => nodes::iq_error(&id, 400, "bad-request"),
                        },
                        _ => {
                            network.unknown(nodes::describe(&node));
                            nodes::iq_error(&id, 501, "feature-not-implemented")
                        }
                    };
                    secure.send(&answer).await?;
                } else {
                    let session = crate::iq::Session::pairing();
                    if let Some(answer) = crate::iq::answer(network, &session, &node) {
                        secure.send(&answer).await?;
                    }
                }
            }
            Some(command) = inbox.recv() => match command {
                Command::PairSuccess { iq, id, link, done } => {
                    secure.send(&iq).await?;
                    signing = Some(Signing { id, link: *link, done });
                }
                Command::Kick(error) => {
                    secure.send(&error).await?;
                    secure.wire.close().await;
                    return Ok(());
                }
                Command::PrimaryHello { hello, done } => {
                    secure.send(&hello).await?;
                    finishing = Some(done);
                }
                Command::Deliver(_) => {}
            },
        }
    }
}
