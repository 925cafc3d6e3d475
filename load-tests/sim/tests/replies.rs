//! Replies on the simulated network: a device's `SendMessage{reply_to}` shows in the
//! phone's inbox as `reply_to`, a phone's reply (`POST /sim/phones/{phone}/send` with
//! `reply_to`) reaches the device as `Inbound{reply_to}`, a phone can only quote what it
//! has, and the state file keeps both.

#[path = "sim/device.rs"]
#[allow(dead_code)]
mod device;

use device::{Device, Transport};
use wafleet_protocol::sim::{
    Inbound, SendMessage, client_frame::Kind as Out, receipt::Status, server_frame::Kind as In,
};
use wafleet_sim::{Network, SimConfig, SimError};

const PHONE_A: &str = "6281400000001";
const PHONE_B: &str = "6281400000002";

fn inbound(frame: In) -> Inbound {
    match frame {
        In::Inbound(inbound) => inbound,
        other => panic!("expected an inbound message, got {other:?}"),
    }
}

/// Sends a text replying to `reply_to`; waits for SENT and DELIVERED.
async fn reply(device: &mut Device, id: &str, to: &str, text: &str, reply_to: &str) {
    let message = SendMessage {
        message_id: id.to_owned(),
        to_phone: to.to_owned(),
        text: text.to_owned(),
        media: None,
        mentions: Vec::new(),
        reply_to: Some(reply_to.to_owned()),
    };
    device.send(Out::Send(message)).await;
    for expected in [Status::Sent, Status::Delivered] {
        match device.next().await {
            In::Receipt(receipt) => {
                assert_eq!(
                    (receipt.message_id.as_str(), receipt.status()),
                    (id, expected)
                )
            }
            other => panic!("expected a receipt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn replies_go_both_ways_by_the_ids_each_side_knows() {
    let network = Network::open(SimConfig::default()).unwrap();
    let mut device = Device::paired(&network, "dev-replies", PHONE_A).await;
    device.send_text("m-question", PHONE_B, "which size?").await;
    device.next().await;
    device.next().await;

    // The phone replies to the message it received: the device gets the device's id.
    let answer = network
        .reply_from_phone(PHONE_B, PHONE_A, "size 42", None, "m-question")
        .unwrap();
    let received = inbound(device.next().await);
    assert_eq!(received.message_id, answer);
    assert_eq!(received.reply_to.as_deref(), Some("m-question"));
    device.ack(&answer).await;

    // The device replies to the phone's message: the inbox shows the phone's id for it.
    reply(&mut device, "m-thanks", PHONE_B, "noted", &answer).await;
    let inbox = network.inbox(PHONE_B).unwrap();
    let shown: Vec<(&str, Option<&str>)> = inbox
        .iter()
        .map(|m| (m.message_id.as_str(), m.reply_to.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [("m-question", None), ("m-thanks", Some(answer.as_str()))]
    );
    let json = serde_json::to_value(&inbox[1]).unwrap();
    assert_eq!(json["reply_to"], answer.as_str());
    assert!(
        serde_json::to_value(&inbox[0])
            .unwrap()
            .get("reply_to")
            .is_none()
    );

    // The phone quotes its own message too.
    let again = network
        .reply_from_phone(PHONE_B, PHONE_A, "or 43", None, &answer)
        .unwrap();
    let received = inbound(device.next().await);
    assert_eq!(received.message_id, again);
    assert_eq!(received.reply_to.as_deref(), Some(answer.as_str()));

    // Nothing the phone has: refused, nothing sent.
    let unknown = network.reply_from_phone(PHONE_B, PHONE_A, "?", None, "m-nobody-sent");
    assert!(
        matches!(&unknown, Err(SimError::MessageNotFound(id)) if id == "m-nobody-sent"),
        "{unknown:?}"
    );
    assert_eq!(unknown.unwrap_err().code(), "message_not_found");
    assert_eq!(network.sent(PHONE_B).unwrap().len(), 2);
}

#[tokio::test]
async fn quotes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };
    let network = Network::open(config.clone()).unwrap();
    let mut device = Device::paired(&network, "dev-replies-kept", PHONE_A).await;
    device.send_text("m-first", PHONE_B, "first").await;
    device.next().await;
    device.next().await;
    reply(&mut device, "m-second", PHONE_B, "about that", "m-first").await;
    // Not acknowledged: redelivered after the restart, still a reply.
    let pending = network
        .reply_from_phone(PHONE_B, PHONE_A, "yes?", None, "m-second")
        .unwrap();
    assert_eq!(inbound(device.next().await).message_id, pending);
    device.hang_up().await;
    drop(network);

    let network = Network::open(config).unwrap();
    let inbox = network.inbox(PHONE_B).unwrap();
    assert_eq!(inbox[1].reply_to.as_deref(), Some("m-first"));
    device.reconnect(Transport::attach(&network)).await;
    device.resume_ok().await;
    let again = inbound(device.next().await);
    assert_eq!(
        (again.message_id.as_str(), again.reply_to.as_deref()),
        (pending.as_str(), Some("m-second"))
    );
}
