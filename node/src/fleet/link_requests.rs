//! The operations that ask a READY device's network and wait on its answer: which
//! numbers are on WhatsApp ([`Fleet::check_numbers`]) and marking a chat read
//! ([`Fleet::mark_read`]: read receipts to the network, then `read_at_ms` stored).

use super::{Fleet, call};
use crate::api::{FleetError, NumberCheck, state_code};
use crate::clock::now_ms;
use crate::device::DeviceMsg;
use crate::link::LinkError;
use crate::store::{
    DeviceRecord, DeviceStatus, Direction, MessageQuery, MessageStatus, message_log::LogKey,
    message_log::is_unread,
};

/// Inbound messages read from the store per page while collecting a chat's unread ones.
const UNREAD_PAGE: u32 = 500;

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

    /// Marks the chat with `peer_phone` read: read receipts for its unread inbound
    /// messages go to the network, then each is stored read (`read_at_ms`). The device
    /// must be READY. Returns how many messages became read.
    pub async fn mark_read(&self, id: &str, peer_phone: &str) -> Result<u64, FleetError> {
        let device = self.catalog.device(id).await?;
        let actor = self.ready_actor(&device, "marking a chat read")?;
        let unread = self.unread_from(id, peer_phone).await?;
        if unread.is_empty() {
            return Ok(0);
        }
        let (peer, ids) = (peer_phone.to_owned(), unread.clone());
        let sent = call(&actor, move |reply| DeviceMsg::MarkRead {
            peer_phone: peer,
            message_ids: ids,
            reply,
        })
        .await?;
        sent.map_err(|error| link_failure(id, "send read receipts", error))?;
        let at_ms = now_ms();
        let mut read = 0;
        for message_id in &unread {
            let stored = self
                .ctx
                .store
                .advance_message(id, message_id, MessageStatus::Read, at_ms, None)
                .await?;
            if stored.is_some_and(|m| m.read_at_ms == Some(at_ms)) {
                read += 1;
            }
        }
        Ok(read)
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

    /// The ids of the unread inbound messages from `peer_phone`. A link that writes the
    /// peer in E.164 (`+62…`, the WhatsApp link) and one that writes digits (the
    /// simulator) are both found.
    async fn unread_from(&self, id: &str, peer_phone: &str) -> Result<Vec<String>, FleetError> {
        let digits = peer_phone.strip_prefix('+').unwrap_or(peer_phone);
        let mut unread = Vec::new();
        for peer in [digits.to_owned(), format!("+{digits}")] {
            let mut query = MessageQuery {
                direction: Some(Direction::Inbound),
                status: Some(MessageStatus::Delivered),
                peer: Some(peer),
                limit: UNREAD_PAGE,
                ..MessageQuery::default()
            };
            loop {
                let page = self.ctx.store.list_messages(id, &query).await?;
                let full = page.len() as u32 == UNREAD_PAGE;
                query.before = page.last().map(LogKey::of);
                unread.extend(page.into_iter().filter(is_unread).map(|m| m.id));
                if !full {
                    break;
                }
            }
        }
        Ok(unread)
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
