//! An SSE response: a stream of ready-made frames, and a heartbeat comment.
//!
//! One gateway holds thousands of streams, and each event goes to all of them, so what
//! a stream costs per event and at rest is what this keeps small:
//! - An event's frame (`id:`, `event:`, `data:` lines) is rendered once, into
//!   [`DeviceEvent::rendered`], and every stream sends a clone of those bytes (a
//!   reference count), where axum's `sse::Event` is built, its data copied, once per
//!   stream.
//! - The heartbeat is a timer per stream that fires every [`HEARTBEAT`] and is never
//!   moved: axum's `KeepAlive` resets its timer for each event sent, a timer-wheel
//!   update per stream per event. A comment goes out every [`HEARTBEAT`], events or not,
//!   which keeps the promise (a comment at least that often) with none of the resets.
//! - A stream's first heartbeat comes at a random point of its first period, so that
//!   streams opened together (every client reconnecting after a restart) do not all
//!   beat at once: 10,000 comments written in one burst delay the events behind them
//!   by as long as an event to 10,000 streams takes.
//! - The body is an `http_body::Body` of its own, without axum's `Sse` body and
//!   keep-alive stream around the frames.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use http_body::Frame;
use tokio::time::{Instant, Sleep};
use wafleet_node::events::DeviceEvent;

use crate::dto::rfc3339;

/// A comment line at least this often keeps proxies from closing an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// The comment sent every [`HEARTBEAT`].
const HEARTBEAT_FRAME: &[u8] = b": heartbeat\n\n";

/// An SSE response (`200`, `text/event-stream`) that sends `frames` as they come, and
/// a heartbeat comment every [`HEARTBEAT`]; it ends when `frames` ends.
pub(crate) fn response<S>(frames: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let body = SseBody {
        frames: frames.boxed(),
        heartbeat: Box::pin(tokio::time::sleep(first_heartbeat())),
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::new(body),
    )
        .into_response()
}

/// When a new stream's first heartbeat is due: a random point of the period's last
/// nine tenths.
fn first_heartbeat() -> Duration {
    HEARTBEAT.mul_f64(0.1 + 0.9 * fastrand::f64())
}

/// The frame of `event` (`id:`, `event:`, `data:` with its JSON and `at`), rendered by
/// the first stream that sends it for every other.
pub(crate) fn event_frame(event: &DeviceEvent) -> Bytes {
    event
        .rendered
        .get_or_init(|| {
            let mut data = event.data.clone();
            if let Some(map) = data.as_object_mut() {
                map.insert("at".into(), rfc3339(event.at_ms).into());
            }
            let id = event.id.to_string();
            frame(Some(&id), event.kind.as_str(), &data.to_string())
        })
        .clone()
}

/// One event's frame: an optional `id:`, the `event:` name, and `data` on one `data:`
/// line each of its lines (JSON text has none but the last).
pub(crate) fn frame(id: Option<&str>, event: &str, data: &str) -> Bytes {
    let mut text = String::with_capacity(data.len() + event.len() + 40);
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    text.push_str("event: ");
    text.push_str(event);
    text.push('\n');
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push('\n');
    Bytes::from(text)
}

/// The body of [`response`].
struct SseBody {
    frames: futures_util::stream::BoxStream<'static, Bytes>,
    /// Fires every [`HEARTBEAT`] from the stream's start.
    heartbeat: Pin<Box<Sleep>>,
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Poll::Ready(frame) = self.frames.poll_next_unpin(cx) {
            return Poll::Ready(frame.map(|frame| Ok(Frame::data(frame))));
        }
        if self.heartbeat.as_mut().poll(cx).is_ready() {
            // From now, not from the deadline: a runtime that stalled for minutes owes
            // one comment, not one per missed period.
            self.heartbeat.as_mut().reset(Instant::now() + HEARTBEAT);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(HEARTBEAT_FRAME)))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;
    use wafleet_node::events::EventKind;

    use super::*;

    #[test]
    fn an_event_is_rendered_once_as_a_whole_frame() {
        let event = DeviceEvent {
            id: 42,
            device_id: "d1".to_owned(),
            kind: EventKind::MessageInbound,
            data: json!({"device_id": "d1", "text": "two\nlines"}),
            at_ms: 0,
            rendered: OnceLock::new(),
        };
        let frame = event_frame(&event);
        assert_eq!(
            &frame[..],
            b"id: 42\nevent: message.inbound\ndata: {\"at\":\"1970-01-01T00:00:00.000Z\",\"device_id\":\"d1\",\"text\":\"two\\nlines\"}\n\n"
        );
        // The same bytes, not a copy.
        assert_eq!(event_frame(&event).as_ptr(), frame.as_ptr());
    }

    #[test]
    fn data_with_newlines_is_one_data_line_each() {
        assert_eq!(
            &frame(None, "reset", "a\nb")[..],
            b"event: reset\ndata: a\ndata: b\n\n"
        );
    }

    /// The body polled once, now: a data frame, its end, or nothing yet.
    fn poll_now(body: &mut Body) -> Poll<Option<Bytes>> {
        use http_body::Body as _;
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        Pin::new(body)
            .poll_frame(&mut cx)
            .map(|frame| frame.map(|frame| frame.unwrap().into_data().unwrap()))
    }

    #[test]
    fn streams_opened_together_beat_apart() {
        let firsts: Vec<Duration> = (0..1000).map(|_| first_heartbeat()).collect();
        assert!(
            firsts
                .iter()
                .all(|first| *first >= HEARTBEAT / 10 && *first <= HEARTBEAT)
        );
        // Spread over the period: each tenth of its last nine holds some.
        for tenth in 1..10 {
            let (from, to) = (HEARTBEAT * tenth / 10, HEARTBEAT * (tenth + 1) / 10);
            let within = firsts.iter().filter(|f| **f >= from && **f < to).count();
            assert!(within > 50, "{within} of 1000 in tenth {tenth}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_gets_a_heartbeat_every_period_and_ends_with_its_frames() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let mut body = response(frames).into_body();
        let heartbeat = Poll::Ready(Some(Bytes::from_static(HEARTBEAT_FRAME)));
        assert_eq!(poll_now(&mut body), Poll::Pending, "nothing yet");
        tokio::time::sleep(HEARTBEAT).await;
        assert_eq!(poll_now(&mut body), heartbeat);
        assert_eq!(poll_now(&mut body), Poll::Pending);
        let event = Bytes::from_static(b"event: x\ndata: {}\n\n");
        tx.send(event.clone()).unwrap();
        assert_eq!(poll_now(&mut body), Poll::Ready(Some(event)));
        // Events do not move the heartbeat.
        tokio::time::sleep(HEARTBEAT).await;
        assert_eq!(poll_now(&mut body), heartbeat);
        drop(tx);
        assert_eq!(
            poll_now(&mut body),
            Poll::Ready(None),
            "ends with its frames"
        );
    }
}
