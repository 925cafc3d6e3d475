//! Requests a caller makes of a READY device's network and waits on: number checks,
//! read receipts and group operations. The device hands the command to its link and answers from a task, so
//! the actor never waits on the network; an answer that does not come within
//! [`ANSWER_TIMEOUT`] is [`LinkError::Timeout`].

use std::time::Duration;

use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use super::DeviceState;
use crate::link::{GroupAnswer, LinkCommand, LinkError, NumberCheck};
use crate::store::DeviceStatus;

/// How long a request waits for the network's answer: less than the fleet's call
/// timeout, so that a caller hears `Timeout` from the device rather than giving up.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);

impl DeviceState {
    /// Asks the network which of `phones` have a WhatsApp account.
    pub(super) fn check_numbers(
        &mut self,
        phones: Vec<String>,
        reply: RpcReplyPort<Result<Vec<NumberCheck>, LinkError>>,
    ) {
        self.ask_link(
            |answer| LinkCommand::CheckNumbers {
                phones,
                reply: answer,
            },
            reply,
        );
    }

    /// Sends read receipts for `message_ids` of `peer_phone` (in `group`, when given).
    pub(super) fn mark_read(
        &mut self,
        peer_phone: String,
        group: Option<String>,
        message_ids: Vec<String>,
        reply: RpcReplyPort<Result<(), LinkError>>,
    ) {
        let command = |answer| LinkCommand::MarkRead {
            peer_phone,
            group,
            message_ids,
            reply: answer,
        };
        self.ask_link(command, reply);
    }

    /// A group operation, the device's number acting.
    pub(super) fn group(
        &mut self,
        command: wafleet_protocol::node_api::GroupCommand,
        reply: RpcReplyPort<Result<GroupAnswer, LinkError>>,
    ) {
        self.ask_link(
            |answer| LinkCommand::Group {
                command,
                reply: answer,
            },
            reply,
        );
    }

    /// Hands the command `ask` makes to the link if the device is READY (`WrongState`
    /// otherwise), and answers `reply` with the link's answer when it comes.
    fn ask_link<T: Send + 'static>(
        &mut self,
        ask: impl FnOnce(oneshot::Sender<Result<T, LinkError>>) -> LinkCommand,
        reply: RpcReplyPort<Result<T, LinkError>>,
    ) {
        let session = match (&mut self.session, self.status) {
            (Some(session), DeviceStatus::Ready) => session,
            _ => {
                let _ = reply.send(Err(LinkError::WrongState(format!(
                    "device is {}, this needs READY",
                    self.status
                ))));
                return;
            }
        };
        let (answer, answered) = oneshot::channel();
        if let Err(error) = session.command(ask(answer)) {
            let _ = reply.send(Err(error));
            return;
        }
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(ANSWER_TIMEOUT, answered).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(LinkError::Closed),
                Err(_) => Err(LinkError::Timeout),
            };
            let _ = reply.send(answer);
        });
    }
}
