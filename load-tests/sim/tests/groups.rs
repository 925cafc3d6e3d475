//! Groups on the simulated network: devices create and change them with
//! `GroupRequest`, write to them with `SendMessage`, and phones write to them through
//! the control API; the state file keeps them.

#[path = "sim/device.rs"]
#[allow(dead_code)]
mod device;

use device::{Device, Transport};
use serde_json::{Value, json};
use wafleet_protocol::sim::{
    CreateGroup, Group, GroupChange, GroupRef, GroupRequest, ListGroups, MarkRead, Receipt,
    SendMessage, client_frame::Kind as Out, group_answer, group_request::Op, receipt::Status,
    server_frame::Kind as In,
};
use wafleet_sim::{Network, SimConfig};

const PHONE_A: &str = "6281300000001";
const PHONE_B: &str = "6281300000002";
const PHONE_C: &str = "6281300000003";
const PHONE_D: &str = "6281300000004";

fn network() -> Network {
    Network::open(SimConfig::default()).expect("the network opens")
}

/// Sends a group request and waits for its answer.
async fn ask(device: &mut Device, op: Op) -> group_answer::Result {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let request_id = NEXT.fetch_add(1, Ordering::Relaxed);
    let request = GroupRequest {
        request_id,
        op: Some(op),
    };
    device.send(Out::Group(request)).await;
    match device.next().await {
        In::Group(answer) => {
            assert_eq!(answer.request_id, request_id);
            answer.result.expect("a result")
        }
        other => panic!("expected a GroupAnswer, got {other:?}"),
    }
}

fn group(result: group_answer::Result) -> Group {
    match result {
        group_answer::Result::Group(group) => group,
        other => panic!("expected a group, got {other:?}"),
    }
}

fn refused(result: group_answer::Result) -> String {
    match result {
        group_answer::Result::Error(error) => {
            assert!(!error.message.is_empty());
            error.code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

fn phones(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| p.to_string()).collect()
}

fn change(id: &str, list: &[&str]) -> GroupChange {
    GroupChange {
        group_id: id.to_owned(),
        phones: phones(list),
    }
}

async fn create(device: &mut Device, subject: &str, members: &[&str]) -> group_answer::Result {
    let create = CreateGroup {
        subject: subject.to_owned(),
        participants: phones(members),
    };
    ask(device, Op::Create(create)).await
}

async fn send(device: &mut Device, id: &str, to: &str, text: &str, mentions: &[&str]) -> Receipt {
    let message = SendMessage {
        message_id: id.to_owned(),
        to_phone: to.to_owned(),
        text: text.to_owned(),
        media: None,
        mentions: phones(mentions),
        reply_to: None,
    };
    device.send(Out::Send(message)).await;
    match device.next().await {
        In::Receipt(receipt) => receipt,
        other => panic!("expected a receipt, got {other:?}"),
    }
}

fn inbox(network: &Network, phone: &str) -> Value {
    serde_json::to_value(network.inbox(phone).unwrap()).unwrap()
}

#[tokio::test]
async fn a_group_message_reaches_every_other_participant_with_its_mentions() {
    let network = network();
    let mut device = Device::paired(&network, "dev-group-a", PHONE_A).await;
    let created = group(create(&mut device, "Tim Jakarta", &[PHONE_B, PHONE_C, PHONE_A]).await);
    assert!(
        created.id.starts_with("120363") && created.id.ends_with("@g.us"),
        "{}",
        created.id
    );
    let members: Vec<_> = created
        .participants
        .iter()
        .map(|p| (p.phone.as_str(), p.admin))
        .collect();
    assert_eq!(
        members,
        [(PHONE_A, true), (PHONE_B, false), (PHONE_C, false)]
    );
    assert_eq!(created.creator, PHONE_A);

    let first = send(&mut device, "g-1", &created.id, "halo @B", &[PHONE_B]).await;
    assert_eq!(first.status(), Status::Sent);
    device.next().await; // its DELIVERED receipt
    for phone in [PHONE_B, PHONE_C] {
        let shown = inbox(&network, phone);
        assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
        assert_eq!(shown[0]["group"], json!(created.id));
        assert_eq!(shown[0]["mentions"], json!([PHONE_B]));
        assert_eq!(shown[0]["from_phone"], PHONE_A);
    }
    assert_eq!(inbox(&network, PHONE_A), json!([]), "not to the sender");

    group(ask(&mut device, Op::Remove(change(&created.id, &[PHONE_C]))).await);
    send(&mut device, "g-2", &created.id, "again", &[]).await;
    assert_eq!(inbox(&network, PHONE_B).as_array().unwrap().len(), 2);
    assert_eq!(inbox(&network, PHONE_C).as_array().unwrap().len(), 1);
    assert!(inbox(&network, PHONE_B)[1].get("mentions").is_none());

    let view = serde_json::to_value(network.group(&created.id).unwrap()).unwrap();
    assert_eq!(
        view["participants"],
        json!([{"phone": PHONE_A, "admin": true}, {"phone": PHONE_B, "admin": false}])
    );
    assert_eq!(view["subject"], "Tim Jakarta");
}

#[tokio::test]
async fn only_admins_change_a_group_and_strangers_do_not_see_it() {
    let network = network();
    let mut admin = Device::paired(&network, "dev-group-admin", PHONE_A).await;
    let mut member = Device::paired(&network, "dev-group-member", PHONE_B).await;
    let mut stranger = Device::paired(&network, "dev-group-stranger", PHONE_D).await;
    let id = group(create(&mut admin, "rapat", &[PHONE_B]).await).id;

    assert_eq!(
        refused(ask(&mut member, Op::Add(change(&id, &[PHONE_C]))).await),
        "not_admin"
    );
    let info = Op::Info(GroupRef {
        group_id: id.clone(),
    });
    assert_eq!(refused(ask(&mut stranger, info.clone()).await), "not_found");
    assert_eq!(group(ask(&mut member, info).await).subject, "rapat");
    match ask(&mut stranger, Op::List(ListGroups {})).await {
        group_answer::Result::Groups(groups) => assert!(groups.groups.is_empty()),
        other => panic!("expected groups, got {other:?}"),
    }
    match ask(&mut member, Op::List(ListGroups {})).await {
        group_answer::Result::Groups(groups) => assert_eq!(groups.groups.len(), 1),
        other => panic!("expected groups, got {other:?}"),
    }

    let promoted = group(ask(&mut admin, Op::Promote(change(&id, &[PHONE_B]))).await);
    assert!(promoted.participants.iter().all(|p| p.admin));
    let added = group(ask(&mut member, Op::Add(change(&id, &[PHONE_C]))).await);
    assert_eq!(added.participants.len(), 3);
    let demoted = group(ask(&mut member, Op::Demote(change(&id, &[PHONE_A]))).await);
    assert!(!demoted.participants[0].admin);
    assert_eq!(
        refused(ask(&mut member, Op::Remove(change(&id, &[PHONE_D]))).await),
        "not_participant"
    );

    let failed = send(&mut stranger, "s-1", &id, "let me in", &[]).await;
    assert_eq!(
        (failed.status(), failed.error.as_str()),
        (Status::Failed, "not_participant")
    );
}

#[tokio::test]
async fn groups_need_a_subject_and_participants_on_whatsapp() {
    let network = network();
    let mut device = Device::paired(&network, "dev-group-rules", PHONE_A).await;
    assert_eq!(
        refused(create(&mut device, "", &[PHONE_B]).await),
        "invalid_subject"
    );
    assert_eq!(
        refused(create(&mut device, &"x".repeat(101), &[PHONE_B]).await),
        "invalid_subject"
    );
    assert_eq!(
        refused(create(&mut device, "ok", &["12"]).await),
        "invalid_phone"
    );
    network.set_absent(PHONE_C, true).unwrap();
    assert_eq!(
        refused(create(&mut device, "ok", &[PHONE_C]).await),
        "not_on_whatsapp"
    );
    let info = Op::Info(GroupRef {
        group_id: "120363000000000000@g.us".into(),
    });
    assert_eq!(refused(ask(&mut device, info).await), "not_found");
}

#[tokio::test]
async fn a_phone_writes_to_a_group_and_every_other_members_devices_hear_it() {
    let network = network();
    let mut a = Device::paired(&network, "dev-group-in-a", PHONE_A).await;
    let mut b = Device::paired(&network, "dev-group-in-b", PHONE_B).await;
    let id = group(create(&mut a, "keluarga", &[PHONE_B, PHONE_C]).await).id;

    let message_id = network.send_from_phone(PHONE_C, &id, "makan?").unwrap();
    for device in [&mut a, &mut b] {
        match device.next().await {
            In::Inbound(inbound) => {
                assert_eq!(inbound.message_id, message_id);
                assert_eq!(inbound.from_phone, PHONE_C);
                assert_eq!(inbound.group_id.as_deref(), Some(id.as_str()));
            }
            other => panic!("expected an inbound message, got {other:?}"),
        }
    }
    assert!(matches!(
        network.send_from_phone(PHONE_D, &id, "hi"),
        Err(wafleet_sim::SimError::NotInGroup(_))
    ));
    assert!(matches!(
        network.send_from_phone(PHONE_C, "120363999999999999@g.us", "hi"),
        Err(wafleet_sim::SimError::GroupNotFound(_))
    ));
}

#[tokio::test]
async fn groups_and_group_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        data_path: Some(dir.path().join("sim.db")),
        ..SimConfig::default()
    };
    let network = Network::open(config.clone()).unwrap();
    let mut device = Device::paired(&network, "dev-group-durable", PHONE_A).await;
    let id = group(create(&mut device, "tetap", &[PHONE_B, PHONE_C]).await).id;
    send(&mut device, "d-1", &id, "hi", &[PHONE_C]).await;
    device.next().await;
    let inbound = network.send_from_phone(PHONE_B, &id, "pending").unwrap();
    device.hang_up().await;
    network.flush().await;
    drop(network);

    let network = Network::open(config).unwrap();
    let view = serde_json::to_value(network.group(&id).unwrap()).unwrap();
    assert_eq!(view["subject"], "tetap");
    assert_eq!(view["participants"].as_array().unwrap().len(), 3);
    let shown = inbox(&network, PHONE_C);
    assert_eq!(shown[0]["group"], json!(id));
    assert_eq!(shown[0]["mentions"], json!([PHONE_C]));
    device.reconnect(Transport::attach(&network)).await;
    device.resume_ok().await;
    match device.next().await {
        In::Inbound(redelivered) => {
            assert_eq!(redelivered.message_id, inbound);
            assert_eq!(redelivered.group_id.as_deref(), Some(id.as_str()));
        }
        other => panic!("expected the pending inbound message, got {other:?}"),
    }
}

/// A device's read receipt for a group message names the group and the author: the
/// author's sent list shows it read. A 1:1 receipt, or one from a number not in the
/// group, reads nothing there.
#[tokio::test]
async fn a_group_read_receipt_names_the_author_and_reads_only_in_its_group() {
    let network = network();
    let mut device = Device::paired(&network, "dev-group-reader", PHONE_A).await;
    let mut stranger = Device::paired(&network, "dev-group-outsider", PHONE_D).await;
    let id = group(create(&mut device, "Gudang", &[PHONE_B, PHONE_C]).await).id;
    let from_b = network.send_from_phone(PHONE_B, &id, "stok habis").unwrap();
    let from_c = network.send_from_phone(PHONE_C, &id, "siap").unwrap();
    for _ in 0..2 {
        match device.next().await {
            In::Inbound(inbound) => assert_eq!(inbound.group_id.as_deref(), Some(id.as_str())),
            other => panic!("expected an Inbound, got {other:?}"),
        }
    }
    let status = |phone: &str| {
        let sent = network.sent(phone).unwrap();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].to_phone, id);
        serde_json::to_value(sent[0].status).unwrap()
    };
    let read = |peer: &str, ids: &[&String], group: Option<&str>| {
        Out::MarkRead(MarkRead {
            peer_phone: peer.to_owned(),
            message_ids: ids.iter().map(|id| id.to_string()).collect(),
            group_id: group.map(str::to_owned),
        })
    };
    let list = || Op::List(ListGroups {});

    // Not as a 1:1 chat, and not by a number outside the group.
    device.send(read(PHONE_B, &[&from_b], None)).await;
    stranger.send(read(PHONE_B, &[&from_b], Some(&id))).await;
    ask(&mut device, list()).await;
    ask(&mut stranger, list()).await;
    assert_eq!(status(PHONE_B), "sent");

    // One receipt per author, each naming the group.
    device.send(read(PHONE_B, &[&from_b], Some(&id))).await;
    device.send(read(PHONE_C, &[&from_c], Some(&id))).await;
    ask(&mut device, list()).await;
    assert_eq!(
        (status(PHONE_B), status(PHONE_C)),
        ("read".into(), "read".into())
    );
}
