//! One subscriber's stream: the replay a backend gave at subscription, then live events,
//! caught up from the backend when the subscriber falls behind the live channel.
//!
//! Ids only grow, so "each event once, in order" is kept by remembering the last id
//! handed out: a replayed event that the live channel brings again is skipped. What the
//! backend could not replay any more is said once, as a [`Reset`], before the events that
//! follow it, so that a client never mistakes a gap for a quiet period.

use std::collections::VecDeque;
use std::sync::Arc;

use super::hub::{Lagged, Live};
use super::{Backend, DeviceEvent, EventFilter, Replay, Reset};

/// What a subscription hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next event.
    Event(Arc<DeviceEvent>),
    /// Events were lost between the last one handed out and the next one.
    Reset(Reset),
}

/// A stream of events for one subscriber.
#[derive(Debug)]
pub struct Subscription {
    backend: Backend,
    filter: EventFilter,
    live: Live,
    /// A reset to hand out before the pending events.
    reset: Option<Reset>,
    pending: VecDeque<Arc<DeviceEvent>>,
    /// The id of the last event handed out (or skipped as already seen).
    last: u64,
}

impl Subscription {
    pub(super) fn new(
        backend: Backend,
        filter: EventFilter,
        live: Live,
        replay: Replay,
        last: u64,
    ) -> Subscription {
        Subscription {
            backend,
            filter,
            live,
            reset: replay.reset,
            pending: replay.events,
            last,
        }
    }

    /// The next event or reset; `None` when the bus cannot be read to catch up (the
    /// client should reconnect with its last id).
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(reset) = self.reset.take() {
                crate::metrics::event_reset_handed();
                return Some(Delivery::Reset(reset));
            }
            if let Some(event) = self.pending.pop_front() {
                if event.id > self.last {
                    self.last = event.id;
                    return Some(Delivery::Event(event));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.id > self.last && self.filter.matches(&event) {
                        self.last = event.id;
                        return Some(Delivery::Event(event));
                    }
                }
                Err(Lagged) => {
                    crate::metrics::event_subscriber_lagged();
                    let replay = match &self.backend {
                        Backend::Memory(memory) => memory.replay(&self.filter, self.last),
                        // Boxed: the Redis read's state would otherwise be part of this
                        // future, which every subscriber holds while it waits (an SSE
                        // gateway holds thousands), though few ever fall behind.
                        Backend::Redis(redis) => {
                            Box::pin(redis.replay(&self.filter, self.last)).await.ok()?
                        }
                    };
                    self.reset = replay.reset;
                    self.pending = replay.events;
                }
            }
        }
    }

    /// The next event, passing over resets: for consumers that act on events as they
    /// come and have no state to read again (SSE uses [`Subscription::recv`]).
    pub async fn next(&mut self) -> Option<Arc<DeviceEvent>> {
        loop {
            if let Delivery::Event(event) = self.recv().await? {
                return Some(event);
            }
        }
    }
}
