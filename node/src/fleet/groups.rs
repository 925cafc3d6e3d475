//! [`Fleet::group`]: a group operation (create, info, list, add or remove
//! participants, promote or demote admins), asked of a READY device's network with its
//! own number acting, and the network's refusals as API errors.

use wafleet_protocol::node_api::{self as pb, group_command::Op};

use super::link_requests::link_failure;
use super::{Fleet, call};
use crate::api::{FleetError, Reply, group_code};
use crate::device::DeviceMsg;
use crate::link::GroupAnswer;

impl Fleet {
    /// Runs `command` on device `id`'s network: [`Reply::Groups`] for a listing,
    /// [`Reply::Group`] (the group after the change) for anything else. The device must
    /// be READY; the caller checked ids, numbers and the subject.
    pub async fn group(&self, id: &str, command: pb::GroupCommand) -> Result<Reply, FleetError> {
        let device = self.catalog.device(id).await?;
        let actor = self.ready_actor(&device, "a group operation")?;
        let group_id = command.op.as_ref().and_then(named_group).map(str::to_owned);
        let answer = call(&actor, move |reply| DeviceMsg::Group(command, reply)).await?;
        let answer = answer.map_err(|error| link_failure(id, "run a group operation", error))?;
        self.learn_subjects(id, &answer);
        match answer {
            GroupAnswer::Group(group) => Ok(Reply::Group(group)),
            GroupAnswer::Groups(groups) => Ok(Reply::Groups(groups)),
            GroupAnswer::Refused { code, message } => {
                Err(refusal(&code, message, group_id.unwrap_or_default()))
            }
        }
    }
}

/// The group an operation names (all but create and list).
fn named_group(op: &Op) -> Option<&str> {
    match op {
        Op::Create(_) | Op::List(_) => None,
        Op::Info(group) => Some(&group.group_id),
        Op::AddParticipants(change)
        | Op::RemoveParticipants(change)
        | Op::Promote(change)
        | Op::Demote(change) => Some(&change.group_id),
    }
}

/// What a client hears when the network refused: an unknown group (or one the device's
/// number is not in) is `GroupNotFound`; anything else a `GroupRefused` with its rule.
fn refusal(code: &str, message: String, group_id: String) -> FleetError {
    let code = match code {
        "not_found" => return FleetError::GroupNotFound(group_id),
        "not_admin" => group_code::NOT_ADMIN,
        "not_participant" => group_code::NOT_PARTICIPANT,
        "not_on_whatsapp" => group_code::NOT_ON_WHATSAPP,
        "invalid_subject" => group_code::INVALID_SUBJECT,
        "unsupported" => group_code::UNSUPPORTED,
        _ => group_code::OTHER,
    };
    FleetError::GroupRefused { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_networks_refusals_become_api_rules() {
        let id = "120363041234567890@g.us".to_owned();
        assert!(matches!(
            refusal("not_found", "no".into(), id.clone()),
            FleetError::GroupNotFound(named) if named == id
        ));
        for (network, api) in [
            ("not_admin", group_code::NOT_ADMIN),
            ("not_participant", group_code::NOT_PARTICIPANT),
            ("not_on_whatsapp", group_code::NOT_ON_WHATSAPP),
            ("invalid_subject", group_code::INVALID_SUBJECT),
            ("unsupported", group_code::UNSUPPORTED),
            ("something_new", group_code::OTHER),
        ] {
            match refusal(network, "why".into(), id.clone()) {
                FleetError::GroupRefused { code, message } => {
                    assert_eq!((code, message.as_str()), (api, "why"));
                }
                other => panic!("expected GroupRefused, got {other:?}"),
            }
        }
    }

    #[test]
    fn operations_name_their_group() {
        let change = pb::GroupChange {
            group_id: "g".into(),
            phones: Vec::new(),
        };
        assert_eq!(named_group(&Op::Demote(change)), Some("g"));
        assert_eq!(named_group(&Op::List(pb::Empty {})), None);
    }
}
