//! Running a device command (`NodeCommand`) that came over the cluster against this node's
//! [`Fleet`]: what the host does with `HostMsg::Command`.

use tracing::{debug, warn};
use wafleet_protocol::node_api as pb;

use super::ownership::{Ownership, OwnershipCheck};
use crate::api::wire::reply_to_wire;
use crate::api::{CommandError, DeviceCommand, FleetError, Reply};
use crate::fleet::Fleet;

/// Runs `command` and gives the reply to send back. `fleet` is `None` in a process that
/// runs no devices (a gateway), which answers `unavailable`; a device this node does not
/// own is answered `not_owner`.
pub async fn execute(
    node: &str,
    fleet: Option<&Fleet>,
    ownership: &dyn OwnershipCheck,
    command: pb::NodeCommand,
) -> pb::NodeReply {
    reply_to_wire(run(node, fleet, ownership, command).await)
}

async fn run(
    node: &str,
    fleet: Option<&Fleet>,
    ownership: &dyn OwnershipCheck,
    command: pb::NodeCommand,
) -> Result<Reply, CommandError> {
    let pb::NodeCommand { device_id, op } = command;
    let Some(op) = op else {
        warn!(%device_id, "undecodable device command: no operation");
        return Err(FleetError::Internal("malformed command: no operation".into()).into());
    };
    let Some(fleet) = fleet else {
        return Err(FleetError::Unavailable(format!("{node} runs no devices")).into());
    };
    // Not about a device: any node answers.
    if let DeviceCommand::RefreshSettings(_) = op {
        return Ok(fleet.execute(&device_id, op, None).await?);
    }
    let fence = match ownership.owns(&device_id) {
        Ownership::Owned { fence } => fence,
        Ownership::Elsewhere { owner_hint } => {
            debug!(%device_id, ?owner_hint, "command for a device owned elsewhere");
            return Err(CommandError::NotOwner { owner_hint });
        }
    };
    Ok(fleet.execute(&device_id, op, fence).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::reply_from_wire;
    use crate::cluster::ownership::AlwaysOwned;

    #[tokio::test]
    async fn a_process_without_a_fleet_answers_unavailable() {
        let command = pb::NodeCommand {
            device_id: "dev-1".into(),
            op: Some(DeviceCommand::Start(crate::api::Empty {})),
        };
        let reply = execute("gateway-1", None, &AlwaysOwned, command).await;
        match reply_from_wire(reply) {
            Err(CommandError::Fleet(FleetError::Unavailable(reason))) => {
                assert_eq!(reason, "gateway-1 runs no devices");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_command_without_an_operation_is_internal() {
        let command = pb::NodeCommand {
            device_id: "dev-1".into(),
            op: None,
        };
        let reply = execute("node-1", None, &AlwaysOwned, command).await;
        assert!(matches!(
            reply_from_wire(reply),
            Err(CommandError::Fleet(FleetError::Internal(_)))
        ));
    }
}
