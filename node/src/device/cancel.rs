//! Cancelling a message, decided by the device's actor: it alone knows what it has
//! handed to its link (see [`crate::cancellation`] for the rule and why this is
//! race-free against the drain).

use super::DeviceState;
use crate::api::FleetError;
use crate::cancellation::{self, Cancelled};
use crate::limits::actor::LimiterMsg;
use crate::store::{MessageRecord, MessageStatus};

impl DeviceState {
    /// Cancels the message unless it has left: refused while it is handed to the link
    /// (in flight) or was given back by it unconfirmed (it may have reached WhatsApp).
    /// A queued message's rate-limit slot goes back to the limiter.
    pub(super) async fn cancel(&mut self, message_id: &str) -> Result<MessageRecord, FleetError> {
        let (in_flight, unconfirmed) = (&self.in_flight, &self.unconfirmed);
        let outcome = cancellation::cancel(&self.ctx, &self.id, message_id, |id| {
            if in_flight.contains(id) {
                Some("being sent (handed to WhatsApp, waiting for its confirmation)")
            } else if unconfirmed.contains(id) {
                Some("maybe sent (handed to WhatsApp, not confirmed)")
            } else {
                None
            }
        })
        .await?;
        let Cancelled { before, after } = match outcome {
            Ok(cancelled) => cancelled,
            Err(already) => return Ok(already),
        };
        if before.status == MessageStatus::Queued
            && let Some(limiter) = &self.limiter
        {
            // Out of the queue without leaving. Its slot is freed (a slot removed from
            // the limiter's log leaves it sorted, and a restart reads the same log: the
            // store lists no slot for a cancelled message); a message that had none yet
            // only leaves the in-flight count, as a sent one does.
            let _ = limiter.cast(match before.not_before_ms {
                Some(slot) => LimiterMsg::Release(slot),
                None => LimiterMsg::Settled,
            });
        }
        Ok(after)
    }
}
