//! The service hyper calls for each request of a connection: the listener's router,
//! with the request timeout, and the connection's [`Activity`] told when a request
//! starts and when its response has been written.
//!
//! The timeout bounds the handler, up to its response head, counted from the request's
//! start or from the last bytes of its body that arrived, whichever is later: an upload
//! that keeps sending (a large file over a slow link) is not cut while its bytes flow,
//! and its handler still has the whole timeout after the last of them. A stream (an SSE
//! response, a WebSocket's 101) has its head at once and its body afterwards, so it is
//! never cut: only ordinary requests that take too long are, and those get a 503 in the
//! API's error shape.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::activity::{Activity, InFlight};
use crate::metrics;

/// One connection's service (cheap to clone: the router shares its routes). Every
/// request carries the connection's peer address `A` as axum's `ConnectInfo<A>` (what
/// the API's audit log records as the source).
#[derive(Debug, Clone)]
pub(crate) struct Requests<A> {
    pub(crate) router: Router,
    pub(crate) peer: A,
    pub(crate) activity: Arc<Activity>,
    pub(crate) timeout: Duration,
    pub(crate) listener: &'static str,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl<A: Clone + Send + Sync + 'static> hyper::service::Service<Request<Incoming>> for Requests<A> {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        let in_flight = self.activity.request();
        let started = Instant::now();
        let last_body_bytes = Arc::new(AtomicU64::new(0));
        let mut request = request.map(|body| {
            Body::new(Watched {
                body,
                started,
                last: last_body_bytes.clone(),
            })
        });
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer.clone()));
        let handled = self.router.clone().oneshot(request);
        let (timeout, listener) = (self.timeout, self.listener);
        Box::pin(async move {
            let mut handled = std::pin::pin!(handled);
            let response = loop {
                let active = Duration::from_millis(last_body_bytes.load(Ordering::Relaxed));
                let deadline = started + active + timeout;
                match tokio::time::timeout_at(deadline, &mut handled).await {
                    Ok(Ok(response)) => break response,
                    Ok(Err(never)) => match never {},
                    // Body bytes came meanwhile: the handler's time runs from them.
                    Err(_)
                        if last_body_bytes.load(Ordering::Relaxed) > active.as_millis() as u64 => {}
                    Err(_) => {
                        metrics::request_timed_out(listener);
                        break timed_out(timeout);
                    }
                }
            };
            Ok(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The answer to a request whose handler had no response within `timeout`: the API's
/// error shape (`{"error": {"code", "message", "retryable"}}`), 503, retryable.
fn timed_out(timeout: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "error": {
            "code": "request_timeout",
            "message": format!("the request took longer than {} ms", timeout.as_millis()),
            "retryable": true,
        }
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A request's body, noting when its last bytes arrived (milliseconds from the request's
/// start) for the request timeout.
struct Watched {
    body: Incoming,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            let at = self.started.elapsed().as_millis() as u64;
            self.last.store(at.max(1), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its request in flight until hyper has written it to its
/// end (or the connection closed): hyper drops the body then.
#[derive(Debug)]
pub(crate) struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timed_out_request_is_a_retryable_503_in_the_api_shape() {
        let response = timed_out(Duration::from_millis(1500));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout");
        assert_eq!(body["error"]["retryable"], true);
        assert_eq!(
            body["error"]["message"],
            "the request took longer than 1500 ms"
        );
    }
}
