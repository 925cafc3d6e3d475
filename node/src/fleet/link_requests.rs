//! The operations that ask a READY device's network and wait on its answer: which
//! numbers are on WhatsApp ([`Fleet::check_numbers`]), and what they share: the READY
//! device's actor and what a caller hears when the link fails. Marking a chat read is
//! in `chat_read.rs`, group operations in `groups.rs`.

use super::{Fleet, call};
use crate::api::{FleetError, NumberCheck, state_code};
use crate::device::DeviceMsg;
use crate::link::LinkError;
use crate::store::{DeviceRecord, DeviceStatus};

impl Fleet {
    /// Which of `phones` have a WhatsApp account, one check per phone in the order
    /// asked. The device must be READY.
    pub async fn check_numbers(
        &self,
        id: &str,
        phones: Vec<String>,
    ) -> Result<Vec<NumberCheck>, FleetError> {
        let device = self.catalog.device(id).await?;
        let actor = self.ready_actor(&device, "checking numbers")?;
        let asked = phones.clone();
        let answer = call(&actor, move |reply| DeviceMsg::CheckNumbers(phones, reply)).await?;
        let found = answer.map_err(|error| link_failure(id, "check numbers", error))?;
        Ok(in_order(asked, found))
    }

    /// The device's actor, if the device is READY and runs here; `WrongState` otherwise.
    pub(super) fn ready_actor(
        &self,
        device: &DeviceRecord,
        doing: &str,
    ) -> Result<ractor::ActorRef<DeviceMsg>, FleetError> {
        let running = self.ctx.running.device(&device.id);
        match running {
            Some(actor) if device.status == DeviceStatus::Ready => Ok(actor),
            _ => Err(FleetError::WrongState {
                code: state_code::DEVICE_NOT_READY,
                message: format!(
                    "device {} is {}; {doing} needs READY (start it and link it first)",
                    device.id, device.status
                ),
            }),
        }
    }
}

/// One check per phone asked, in the order asked, from the link's answer (in any
/// order); a phone the link did not answer for is not on WhatsApp.
fn in_order(asked: Vec<String>, found: Vec<NumberCheck>) -> Vec<NumberCheck> {
    asked
        .into_iter()
        .map(|phone| {
            found
                .iter()
                .find(|check| check.phone == phone)
                .cloned()
                .unwrap_or(NumberCheck {
                    phone,
                    on_whatsapp: false,
                    jid: None,
                })
        })
        .collect()
}

/// What a caller hears when the link could not do what was asked.
pub(super) fn link_failure(id: &str, doing: &str, error: LinkError) -> FleetError {
    match error {
        LinkError::Timeout => FleetError::Timeout,
        LinkError::WrongState(why) => FleetError::WrongState {
            code: state_code::DEVICE_NOT_READY,
            message: format!("device {id} cannot {doing} now: {why}"),
        },
        LinkError::Closed => FleetError::WrongState {
            code: state_code::DEVICE_NOT_READY,
            message: format!("device {id} lost its connection; retry once it is READY"),
        },
        error @ (LinkError::Connect(_) | LinkError::Storage(_) | LinkError::Refused(_)) => {
            FleetError::WrongState {
                code: state_code::LINK_UNAVAILABLE,
                message: format!("device {id} could not {doing}: {error}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(phone: &str, on_whatsapp: bool) -> NumberCheck {
        NumberCheck {
            phone: phone.into(),
            on_whatsapp,
            jid: on_whatsapp.then(|| format!("{phone}@s.whatsapp.net")),
        }
    }

    #[test]
    fn checks_follow_the_order_asked_and_unanswered_numbers_are_absent() {
        let asked = ["6283", "6281", "6282", "6281"].map(String::from).to_vec();
        let found = vec![check("6281", true), check("6283", false)];
        assert_eq!(
            in_order(asked, found),
            [
                check("6283", false),
                check("6281", true),
                check("6282", false),
                check("6281", true)
            ]
        );
    }

    #[test]
    fn a_timeout_is_a_timeout_and_a_refusal_names_the_link() {
        assert!(matches!(
            link_failure("d", "check numbers", LinkError::Timeout),
            FleetError::Timeout
        ));
        let refused = link_failure("d", "check numbers", LinkError::Refused("iq 500".into()));
        match refused {
            FleetError::WrongState { code, message } => {
                assert_eq!(code, state_code::LINK_UNAVAILABLE);
                assert!(message.contains("iq 500"), "{message}");
            }
            other => panic!("expected WrongState, got {other:?}"),
        }
    }
}
