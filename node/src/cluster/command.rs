//! Running a device [`Command`] that came over the cluster against this node's
//! [`Fleet`]: what the host does with `HostMsg::Command`.

use tracing::{debug, warn};
use wafleet_protocol::node_api as pb;

use super::api::{Command, CommandError, Operation, Reply, reply_to_wire};
use super::ownership::{Ownership, OwnershipCheck};
use crate::fleet::{Fleet, FleetError, NewDevice};

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
    let command = Command::try_from(command).map_err(|error| {
        warn!(%error, "undecodable device command");
        FleetError::Internal(error.to_string())
    })?;
    let Some(fleet) = fleet else {
        return Err(FleetError::Unavailable(format!("{node} runs no devices")).into());
    };
    if command.operation == Operation::RefreshSettings {
        fleet.refresh_settings().await?;
        return Ok(Reply::Refreshed);
    }
    let fence = match ownership.owns(&command.device_id) {
        Ownership::Owned { fence } => fence,
        Ownership::Elsewhere { owner_hint } => {
            debug!(device_id = %command.device_id, ?owner_hint, "command for a device owned elsewhere");
            return Err(CommandError::NotOwner { owner_hint });
        }
    };
    let Command {
        device_id,
        operation,
    } = command;
    let id = device_id.as_str();
    let reply = match operation {
        Operation::Create {
            name,
            trust_level,
            webhook,
        } => Reply::Device(
            fleet
                .create_device(NewDevice {
                    id: device_id.clone(),
                    name,
                    trust_level,
                    webhook,
                })
                .await?,
        ),
        Operation::Get => Reply::Device(fleet.device(id).await?),
        Operation::Delete => {
            fleet.delete_device(id).await?;
            Reply::Deleted
        }
        Operation::Start => Reply::Device(match fence {
            Some(fence) => fleet.start_device_owned(id, fence).await?,
            None => fleet.start_device(id).await?,
        }),
        Operation::Stop => Reply::Device(fleet.stop_device(id).await?),
        Operation::Restart => Reply::Device(match fence {
            Some(fence) => {
                fleet.hand_off(id).await?;
                fleet.start_device_owned(id, fence).await?
            }
            None => fleet.restart_device(id).await?,
        }),
        Operation::Logout => Reply::Device(fleet.logout_device(id).await?),
        Operation::Qr => Reply::Qr(fleet.qr(id).await?),
        Operation::PairingCode { phone } => {
            Reply::PairingCode(fleet.pairing_code(id, &phone).await?)
        }
        Operation::SendText(send) => Reply::Sent(fleet.send_text(id, send).await?),
        Operation::Limits => Reply::Limits(fleet.limits(id).await?),
        Operation::SetTrustLevel(level) => Reply::Device(fleet.set_trust_level(id, level).await?),
        Operation::RefreshSettings => {
            fleet.refresh_settings().await?;
            Reply::Refreshed
        }
        Operation::GetMessage { message_id } => {
            Reply::Message(fleet.message(id, &message_id).await?)
        }
    };
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::api::reply_from_wire;
    use crate::cluster::ownership::AlwaysOwned;

    #[tokio::test]
    async fn a_process_without_a_fleet_answers_unavailable() {
        let command = pb::NodeCommand::from(Command::new("dev-1", Operation::Start));
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
