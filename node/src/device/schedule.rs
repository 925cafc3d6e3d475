//! Scheduled messages: moving each into the device's queue when it falls due.
//!
//! A scheduled message is stored `scheduled` with its `send_at_ms` and no rate-limit
//! slot (see [`crate::outbox`]). It is not in the queue the drain reads, so it holds up
//! none of the device's other messages while it waits, and the limiter knows nothing of
//! it (it spends no quota). The device's actor keeps one timer for the earliest
//! scheduled message; when it fires, the actor:
//!
//! 1. asks its limiter for a slot (as for a message accepted without one: never refused
//!    for the in-flight cap; refused while paused or with the day's quota spent, and
//!    then the message waits, still scheduled, and is tried again when a slot can be
//!    had);
//! 2. moves the message into the queue with that slot, placed at the time it asked
//!    ([`Store::promote_message`](crate::store::Store::promote_message)): behind every
//!    message accepted before, whose slots the limiter gave before its own, and ahead
//!    of every later one; so the queue stays in slot order and the drain never waits on
//!    it while a message behind it is due;
//! 3. tells its drain about the new place ([`DeviceState::queued`]): if the drain's
//!    cursor is already past it, the next read starts from the queue's start, so the
//!    message is never skipped.
//!
//! Only the device's owner moves a scheduled message, so whichever node owns the
//! device when it falls due sends it. The schedule lives in the store: a run reads it
//! when it starts (after a restart, a crash or a move), when a message is scheduled
//! through it, and when its node nudges it (a message may have been scheduled by a
//! gateway while the device moved). A message that fell due while no run had it is
//! moved at once.

use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef};
use tracing::warn;

use super::{DeviceMsg, DeviceState};
use crate::clock::now_ms;
use crate::limits::actor::LimiterMsg;
use crate::store::QueueKey;

/// How many scheduled messages one read of the schedule takes (the due ones are moved,
/// and a full page of due ones reads again).
const SCHEDULE_PAGE: u32 = 64;

impl DeviceState {
    /// Reads the device's schedule: moves every message that is due into the queue (in
    /// `send_at` order), sets the timer for the next one, and drains if any moved.
    pub(super) async fn check_schedule(
        &mut self,
        myself: &ActorRef<DeviceMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let scheduled = self
            .ctx
            .store
            .scheduled_messages(&self.id, SCHEDULE_PAGE)
            .await?;
        let full = scheduled.len() as u32 == SCHEDULE_PAGE;
        let mut moved = false;
        let mut next = None;
        for message in scheduled {
            let Some(send_at) = message.send_at_ms else {
                warn!(device_id = %self.id, message_id = %message.id, "a scheduled message has no send_at");
                continue;
            };
            if send_at > now_ms() {
                next = Some(send_at);
                break;
            }
            let (asked_at, slot) = match self.ask_slot(myself).await? {
                Ok(given) => given,
                Err(retry_at) => {
                    // Paused, or the day is full: it waits, still scheduled.
                    next = Some(retry_at);
                    break;
                }
            };
            match self
                .ctx
                .store
                .promote_message(&self.id, &message.id, asked_at, slot)
                .await?
            {
                Some(promoted) => {
                    moved = true;
                    self.queue_empty = false;
                    self.queued(&QueueKey::of(&promoted));
                }
                // Cancelled meanwhile: its slot goes back.
                None => {
                    if let Some(limiter) = &self.limiter {
                        let _ = limiter.cast(LimiterMsg::Release(slot));
                    }
                }
            }
        }
        if next.is_none() && full {
            // A full page, every one of them due: read on.
            let _ = myself.cast(DeviceMsg::CheckSchedule);
        }
        if let Some(at) = next {
            self.schedule_check_at(myself, at);
        }
        if moved {
            self.drain(myself).await?;
        }
        Ok(())
    }

    /// Reads the schedule again at `at_ms` (Unix ms), unless a timer fires as early.
    pub(super) fn schedule_check_at(&mut self, myself: &ActorRef<DeviceMsg>, at_ms: i64) {
        if self.next_schedule_at.is_some_and(|set| set <= at_ms) {
            return;
        }
        self.next_schedule_at = Some(at_ms);
        let delay = Duration::from_millis(u64::try_from(at_ms - now_ms()).unwrap_or(0));
        myself.send_after(delay, move || DeviceMsg::ScheduleAt(at_ms));
    }
}
