//! Getting a link up: waiting for a connect slot (the node's gate on concurrent
//! handshakes), opening the link within the handshake timeout, the reconnect backoff
//! with its jitter, and the pairing code asked of an open link.

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::{DeviceMsg, DeviceState};
use crate::access::DEFAULT_TENANT;
use crate::link::{LinkCommand, LinkContext, LinkError, LinkEvents, PairCode};
use crate::store::{DevicePatch, DeviceStatus, StoreError};

impl DeviceState {
    pub(super) fn wait_for_connect_slot(&mut self, myself: ActorRef<DeviceMsg>) {
        if self.session.is_some() {
            return;
        }
        let gate = self.ctx.connect_gate.clone();
        let jitter = jitter(self.ctx.config.connect_jitter);
        tokio::spawn(async move {
            tokio::time::sleep(jitter).await;
            if let Ok(permit) = gate.acquire_owned().await {
                let _ = myself.cast(DeviceMsg::Open(permit));
            }
        });
    }

    pub(super) async fn open(
        &mut self,
        myself: ActorRef<DeviceMsg>,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), StoreError> {
        if self.session.is_some() {
            return Ok(());
        }
        if self.status != DeviceStatus::Starting {
            self.set_status(DeviceStatus::Starting, None, DevicePatch::default())
                .await?;
        }
        self.session_no += 1;
        let session_no = self.session_no;
        let to_actor = myself.clone();
        let tenant = self
            .ctx
            .tenants
            .lookup(&self.id, self.ctx.store.as_ref())
            .await?
            .map_or_else(|| DEFAULT_TENANT.to_owned(), |t| t.to_string());
        let link_ctx = LinkContext {
            device_id: self.id.clone(),
            tenant,
            media: self.ctx.media.clone(),
            vault: self.ctx.vault.device(&self.id, self.fence),
            events: LinkEvents::new(
                session_no,
                Arc::new(move |session, event| {
                    let _ = to_actor.cast(DeviceMsg::Link(session, event));
                }),
            ),
        };
        let timeout = self.ctx.config.handshake_timeout;
        match tokio::time::timeout(timeout, self.ctx.links.open(link_ctx)).await {
            Ok(Ok(session)) => {
                self.session = Some(session);
                self.permit = Some(permit);
                myself.send_after(timeout, move || DeviceMsg::HandshakeTimeout(session_no));
                Ok(())
            }
            Ok(Err(error)) => {
                drop(permit);
                self.disconnected(&myself, error.to_string()).await
            }
            Err(_) => {
                drop(permit);
                self.disconnected(&myself, "connect timed out".into()).await
            }
        }
    }

    pub(super) fn end_session(&mut self) {
        self.session = None;
        self.permit = None;
        self.qr = None;
        // What was handed and not confirmed may have reached WhatsApp: it is handed
        // again on the next connection, and cannot be cancelled until a receipt says.
        self.unconfirmed.extend(self.in_flight.drain());
        self.handed_upto = None;
    }

    pub(super) fn request_pair_code(
        &mut self,
        phone: String,
        reply: RpcReplyPort<Result<PairCode, LinkError>>,
    ) {
        let session = match (&mut self.session, self.status) {
            (Some(session), DeviceStatus::ScanQr) => session,
            _ => {
                let _ = reply.send(Err(LinkError::WrongState(format!(
                    "device is {}, a pairing code needs SCAN_QR",
                    self.status
                ))));
                return;
            }
        };
        let (tx, rx) = oneshot::channel();
        if let Err(error) = session.command(LinkCommand::RequestPairCode { phone, reply: tx }) {
            let _ = reply.send(Err(error));
            return;
        }
        // Answer from a task so the actor does not wait on the network.
        tokio::spawn(async move {
            let answer = rx.await.unwrap_or(Err(LinkError::Closed));
            let _ = reply.send(answer);
        });
    }
}

/// `min · 2^attempt`, capped at `max`, with up to half of it as random jitter.
pub(super) fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let base = min
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    base / 2 + jitter(base / 2)
}

/// A random duration in `[0, up_to]`.
fn jitter(up_to: Duration) -> Duration {
    let ms = up_to.as_millis() as u64;
    if ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(fastrand::u64(0..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            let d = backoff(min, max, attempt);
            let base = min.saturating_mul(1 << attempt.min(20)).min(max);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {attempt}: {d:?} vs {base:?}"
            );
        }
        assert!(backoff(min, max, 40) <= max);
    }
}
