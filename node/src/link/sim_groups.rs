//! Group operations over the simulated network's frames: a [`pb::GroupCommand`] as the
//! `GroupRequest` the simulator takes, and its `GroupAnswer` as the link's
//! [`GroupAnswer`]. The session keeps the replies owed by request id (see `sim`).

use wafleet_protocol::node_api::{self as pb, group_command::Op};
use wafleet_protocol::sim::{self, group_answer, group_request};

use super::GroupAnswer;

/// `command` as the frame the simulator takes, tagged `request_id`.
pub(super) fn request(request_id: u64, command: pb::GroupCommand) -> sim::GroupRequest {
    let change = |change: pb::GroupChange| sim::GroupChange {
        group_id: change.group_id,
        phones: change.phones,
    };
    let op = command.op.map(|op| match op {
        Op::Create(create) => group_request::Op::Create(sim::CreateGroup {
            subject: create.subject,
            participants: create.participants,
        }),
        Op::Info(group) => group_request::Op::Info(sim::GroupRef {
            group_id: group.group_id,
        }),
        Op::List(_) => group_request::Op::List(sim::ListGroups {}),
        Op::AddParticipants(c) => group_request::Op::Add(change(c)),
        Op::RemoveParticipants(c) => group_request::Op::Remove(change(c)),
        Op::Promote(c) => group_request::Op::Promote(change(c)),
        Op::Demote(c) => group_request::Op::Demote(change(c)),
    });
    sim::GroupRequest { request_id, op }
}

/// The simulator's answer as the link reports it.
pub(super) fn answer(answer: sim::GroupAnswer) -> GroupAnswer {
    match answer.result {
        Some(group_answer::Result::Group(group)) => GroupAnswer::Group(group_of(group)),
        Some(group_answer::Result::Groups(groups)) => {
            GroupAnswer::Groups(groups.groups.into_iter().map(group_of).collect())
        }
        Some(group_answer::Result::Error(error)) => GroupAnswer::Refused {
            code: error.code,
            message: error.message,
        },
        None => GroupAnswer::Refused {
            code: "invalid_answer".into(),
            message: "the simulator answered a group request with nothing".into(),
        },
    }
}

fn group_of(group: sim::Group) -> pb::Group {
    pb::Group {
        id: group.id,
        subject: group.subject,
        participants: group
            .participants
            .into_iter()
            .map(|p| pb::GroupParticipant {
                phone: p.phone,
                admin: p.admin,
            })
            .collect(),
        creator: group.creator,
        created_at_ms: group.created_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_becomes_its_frame() {
        let change = || pb::GroupChange {
            group_id: "120363041234567890@g.us".into(),
            phones: vec!["6281111111111".into()],
        };
        let cases = [
            (Op::AddParticipants(change()), "Add"),
            (Op::RemoveParticipants(change()), "Remove"),
            (Op::Promote(change()), "Promote"),
            (Op::Demote(change()), "Demote"),
            (Op::List(pb::Empty {}), "List"),
        ];
        for (op, name) in cases {
            let frame = request(7, pb::GroupCommand { op: Some(op) });
            assert_eq!(frame.request_id, 7);
            let shown = format!("{:?}", frame.op.expect("an op"));
            assert!(shown.starts_with(name), "{shown}");
        }
    }

    #[test]
    fn answers_keep_participants_and_refusals_their_code() {
        let group = sim::Group {
            id: "120363041234567890@g.us".into(),
            subject: "Tim".into(),
            creator: "6281111111111".into(),
            participants: vec![sim::GroupParticipant {
                phone: "6281111111111".into(),
                admin: true,
            }],
            created_at_ms: 9,
        };
        let wrapped = sim::GroupAnswer {
            request_id: 1,
            result: Some(group_answer::Result::Group(group)),
        };
        match answer(wrapped) {
            GroupAnswer::Group(g) => {
                assert_eq!((g.participants[0].admin, g.created_at_ms), (true, 9));
            }
            other => panic!("expected a group, got {other:?}"),
        }
        let refused = sim::GroupAnswer {
            request_id: 2,
            result: Some(group_answer::Result::Error(sim::GroupError {
                code: "not_admin".into(),
                message: "no".into(),
            })),
        };
        assert!(
            matches!(answer(refused), GroupAnswer::Refused { code, .. } if code == "not_admin")
        );
    }
}
