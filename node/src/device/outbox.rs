//! The outbox: moving a device's queued messages from the store to its link, each at
//! its slot, and never faster than its quota allows by the hand-offs actually made.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef};
use tracing::warn;
use wafleet_cluster_config::quota::{HOUR_MS, MINUTE_MS};

use super::{DeviceMsg, DeviceState};
use crate::clock::now_ms;
use crate::content::Content;
use crate::limits::actor::LimiterMsg;
use crate::limits::policy::{Decision, quota_for};
use crate::limits::trust::level_from_u8;
use crate::link::{LinkCommand, LinkError, LinkEvent, ReceiptStatus};
use crate::seal::text::Place;
use crate::store::{DeviceStatus, Direction, MessageQuery, QueueKey, StoreError};

/// How long a message whose send was not confirmed waits before it is handed again.
const RESEND_AFTER_MS: i64 = 5_000;

/// How many of a device's newest outbound messages a run reads, before its first
/// hand-off, for when its earlier runs handed theirs ([`DeviceState::recall_handoffs`]).
const RECALLED: u32 = 64;

/// How many places of the in-flight window must be free before a device with a backlog
/// reads its queue again: a quarter of the window (at least one).
fn refill_at(max_in_flight: usize) -> usize {
    (max_in_flight / 4).max(1)
}

impl DeviceState {
    /// Hands queued messages (oldest first) to the link while READY, each at its slot.
    ///
    /// A message carries its slot as `not_before_ms`, given by the rate limiter when
    /// the message was accepted. One without (accepted by a gateway while the device
    /// moved, or given back by a pause) asks the limiter for one first, and the slot is
    /// stored. Messages go in order: the first that is not due sets a timer and ends
    /// the drain. Between two hand-offs at least the quota's minimum gap plus
    /// [`handoff_guard`](crate::context::NodeConfig::handoff_guard) passes.
    pub(super) async fn drain(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
    ) -> Result<(), ActorProcessingErr> {
        if self.session.is_none() || self.status != DeviceStatus::Ready {
            return Ok(());
        }
        let max_in_flight = self.ctx.config.max_in_flight;
        let room = max_in_flight.saturating_sub(self.in_flight.len());
        // With a backlog, wait until a quarter of the window is free: a drain reads
        // the messages in flight again before the new ones (they are the oldest
        // queued), so refilling one place at a time would read the whole window per
        // message sent. A nudge, a timer or the next receipts drain again.
        if room == 0 || (self.backlog && room < refill_at(max_in_flight)) {
            self.backlog = true;
            return Ok(());
        }
        // Read after the last message handed: the messages in flight come before it.
        // From the start, they are read again (and skipped).
        let limit = match &self.handed_upto {
            Some(_) => room,
            None => self.in_flight.len() + room,
        };
        let limit = limit.min(u32::MAX as usize) as u32;
        let queued = self
            .ctx
            .store
            .queued_messages_after(&self.id, self.handed_upto.as_ref(), limit)
            .await?;
        self.backlog = queued.len() as u32 == limit;
        // Read from the start and found nothing, in flight or new: the queue is empty.
        self.queue_empty = self.handed_upto.is_none() && queued.is_empty();
        for message in queued {
            if self.in_flight.contains(&message.id) {
                self.handed_upto = Some(QueueKey::of(&message));
                continue;
            }
            let slot = match message.not_before_ms {
                Some(slot) => slot,
                None => match self.schedule(myself, &message.id).await? {
                    Ok(slot) => slot,
                    Err(retry_at) => {
                        self.drain_later(myself, retry_at);
                        return Ok(());
                    }
                },
            };
            self.recall_handoffs().await?;
            let now = now_ms();
            let due = slot.max(self.earliest_handoff(now));
            if due > now {
                self.drain_later(myself, due);
                return Ok(());
            }
            let Some(session) = self.session.as_mut() else {
                return Ok(());
            };
            let place = QueueKey::of(&message);
            let sealed_at = Place::message(&self.id, &message.id);
            let text = match self.ctx.keys.open(&sealed_at, &message.text).await {
                Ok(text) => text,
                Err(StoreError::Corrupt(reason)) => {
                    // Never sendable: it fails like a send the network refused (a
                    // status event says why), instead of blocking the queue.
                    warn!(device_id = %self.id, message_id = %message.id, %reason, "a queued message's text cannot be opened");
                    self.in_flight.insert(message.id.clone());
                    self.handed_upto = Some(place);
                    let _ = myself.cast(DeviceMsg::Link(
                        self.session_no,
                        LinkEvent::Receipt {
                            message_id: message.id,
                            status: ReceiptStatus::Failed,
                            error: Some(format!("the stored text cannot be opened: {reason}")),
                            at_ms: now,
                        },
                    ));
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let content = Content::from_stored(&text);
            let command = LinkCommand::SendText {
                message_id: message.id.clone(),
                to_phone: message.peer_phone,
                text: content.text,
                media: content.media,
                mentions: content.mentions,
                quote: content.quote.map(Box::new),
            };
            match session.command(command) {
                Ok(()) => {
                    self.in_flight.insert(message.id);
                    self.handed_upto = Some(place);
                    self.handoffs.push_back(now);
                }
                Err(LinkError::WrongState(_)) => {
                    // The link's buffer is full: try again shortly.
                    self.backlog = true;
                    myself.send_after(Duration::from_millis(20), || DeviceMsg::Drain);
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// A message was accepted at `place`: if that is before the last message handed
    /// (accepted concurrently with a later one that was handed first), the next drain
    /// reads from the queue's start, so that it is not passed over.
    pub(super) fn queued(&mut self, place: &QueueKey) {
        if self.handed_upto.as_ref().is_some_and(|upto| place < upto) {
            self.handed_upto = None;
        }
    }

    /// Asks the limiter for a slot for an accepted message that has none, and stores
    /// it. `Err(time)`: no slot before `time` (paused, or the day is full).
    async fn schedule(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        message_id: &str,
    ) -> Result<Result<i64, i64>, ActorProcessingErr> {
        let slot = match self.ask_slot(myself).await? {
            Ok((_, slot)) => slot,
            Err(retry_at) => return Ok(Err(retry_at)),
        };
        self.ctx
            .store
            .reschedule_message(&self.id, message_id, Some(slot))
            .await?;
        Ok(Ok(slot))
    }

    /// Asks the limiter for a slot for a message accepted already (never refused for
    /// the in-flight cap): `Ok((asked_at, slot))`, the slot reserved; `Err(time)`: no
    /// slot before `time` (paused, or the day is full), nothing reserved.
    pub(super) async fn ask_slot(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
    ) -> Result<Result<(i64, i64), i64>, ActorProcessingErr> {
        let admission = self
            .limiter(myself)
            .await?
            .call(LimiterMsg::Schedule, Some(Duration::from_secs(10)))
            .await?;
        let admission = match admission {
            ractor::rpc::CallResult::Success(admission) => admission?,
            other => return Err(format!("rate limiter did not answer: {other:?}").into()),
        };
        Ok(match admission.decision {
            Decision::Refused { retry_after_ms, .. } => {
                Err(admission.at_ms.saturating_add(retry_after_ms))
            }
            _ => Ok((admission.at_ms, admission.slot().unwrap_or(admission.at_ms))),
        })
    }

    /// Before a run's first hand-off, adds to [`DeviceState::handoffs`] when the device's
    /// earlier runs (before a restart, a move to another node, a crash) handed messages
    /// that the network then took or refused: the times of their receipts, among its
    /// [`RECALLED`] newest outbound messages of the last hour. So the minimum gap holds
    /// across runs. The limiter's slots alone do not ensure it: a message can be handed
    /// well after its slot (held by this guard, or by a move), and the next slot is
    /// planned from the slot, not from the hand-off; a new run that hands the next
    /// message at its slot could then follow the last one sooner than the gap (seen in a
    /// rolling restart: 203 ms apart at the phone with a gap of 500 ms). A message handed
    /// whose receipt was never stored is handed again by this run, and counted then.
    async fn recall_handoffs(&mut self) -> Result<(), StoreError> {
        if self.handoffs_recalled {
            return Ok(());
        }
        let now = now_ms();
        let since = now.saturating_sub(HOUR_MS);
        let recent = self
            .ctx
            .store
            .list_messages(
                &self.id,
                &MessageQuery {
                    direction: Some(Direction::Outbound),
                    since_ms: Some(since),
                    limit: RECALLED,
                    ..MessageQuery::default()
                },
            )
            .await?;
        let mut times: Vec<i64> = recent
            .iter()
            .filter_map(|m| m.sent_at_ms.or(m.delivered_at_ms).or(m.failed_at_ms))
            // The network's clock may run ahead of ours: not later than now.
            .map(|at| at.min(now))
            .filter(|&at| at > since)
            .chain(self.handoffs.iter().copied())
            .collect();
        times.sort_unstable();
        self.handoffs = times.into();
        self.handoffs_recalled = true;
        Ok(())
    }

    /// The earliest time the next message may be handed to the link, by the actual
    /// hand-offs so far: the quota's minimum gap after the last one, and no more than
    /// the minute's and the hour's quota in any window, each plus the guard. Slots plan
    /// the pace; this keeps it in what actually leaves, even when one hand-off ran late
    /// (a slot is a lower bound, never a promise to the millisecond).
    fn earliest_handoff(&mut self, now: i64) -> i64 {
        let level = level_from_u8(self.level.load(Ordering::SeqCst));
        let table = self.ctx.quotas.current();
        let quota = quota_for(&table, level);
        while self
            .handoffs
            .front()
            .is_some_and(|&at| at <= now.saturating_sub(HOUR_MS))
        {
            self.handoffs.pop_front();
        }
        let Some(&last) = self.handoffs.back() else {
            return now;
        };
        let guard = i64::try_from(self.ctx.config.handoff_guard.as_millis()).unwrap_or(0);
        let mut due = now;
        if quota.min_gap_ms > 0 {
            let gap = i64::try_from(quota.min_gap_ms).unwrap_or(i64::MAX);
            due = due.max(last.saturating_add(gap).saturating_add(guard));
        }
        for (limit, window) in [(quota.per_minute, MINUTE_MS), (quota.per_hour, HOUR_MS)] {
            let limit = limit as usize;
            if limit > 0 && self.handoffs.len() >= limit {
                let oldest = self.handoffs[self.handoffs.len() - limit];
                due = due.max(oldest.saturating_add(window).saturating_add(guard));
            }
        }
        due
    }

    /// A send the link gave up on without knowing whether it went out: the message is
    /// not failed (it may well have reached WhatsApp) but stays queued, and is handed
    /// again after [`RESEND_AFTER_MS`]. The link sends it again under the same WhatsApp
    /// message id, which WhatsApp delivers once.
    pub(super) fn on_unsent(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
        message_id: &str,
        reason: &str,
    ) {
        warn!(device_id = %self.id, message_id, reason, "send not confirmed, handing it again later");
        self.in_flight.remove(message_id);
        // It may have reached WhatsApp: no longer cancellable.
        self.unconfirmed.insert(message_id.to_owned());
        self.queue_empty = false;
        // It is before the last message handed: read from the start next time.
        self.handed_upto = None;
        self.drain_later(myself, now_ms().saturating_add(RESEND_AFTER_MS));
    }

    /// Drains again at `at_ms` (Unix ms), unless a timer already fires as early.
    fn drain_later(&mut self, myself: &ActorRef<DeviceMsg>, at_ms: i64) {
        if self.next_drain_at.is_some_and(|set| set <= at_ms) {
            return;
        }
        self.next_drain_at = Some(at_ms);
        let delay = Duration::from_millis(u64::try_from(at_ms - now_ms()).unwrap_or(0));
        myself.send_after(delay, move || DeviceMsg::DrainAt(at_ms));
    }
}
