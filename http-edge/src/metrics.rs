//! The metrics of the HTTP edge, labelled by listener (`api`, `metrics`, `node`, `sim`).

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::activity::Expiry;

pub const CONNECTIONS: &str = "wafleet_http_connections";
pub const CONNECTIONS_REFUSED: &str = "wafleet_http_connections_refused_total";
pub const CONNECTIONS_TIMED_OUT: &str = "wafleet_http_connections_timed_out_total";
pub const REQUESTS_TIMED_OUT: &str = "wafleet_http_requests_timed_out_total";

/// Every metric name this crate registers.
pub const ALL: &[&str] = &[
    CONNECTIONS,
    CONNECTIONS_REFUSED,
    CONNECTIONS_TIMED_OUT,
    REQUESTS_TIMED_OUT,
];

/// Describes the metrics to the process's recorder (the gateway's `prometheus()` calls
/// this with the others).
pub fn describe() {
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "open HTTP connections (WebSockets and SSE streams included), by listener"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        Unit::Count,
        "HTTP connections closed at once because the listener held http.max_connections, by listener"
    );
    describe_counter!(
        CONNECTIONS_TIMED_OUT,
        Unit::Count,
        "HTTP connections closed for sending no complete request head in time (header_timeout) or no next request in time (idle_timeout), by listener"
    );
    describe_counter!(
        REQUESTS_TIMED_OUT,
        Unit::Count,
        "HTTP requests answered 503 request_timeout for having no response within http.request_timeout_ms, by listener"
    );
}

/// Shows every series of `listener` at zero from the start, so that a dashboard or an
/// alert sees 0 rather than no data.
pub(crate) fn register(listener: &'static str) {
    gauge!(CONNECTIONS, "listener" => listener).increment(0.0);
    counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(0);
    for why in [Expiry::HeaderTimeout, Expiry::IdleTimeout] {
        counter!(CONNECTIONS_TIMED_OUT, "listener" => listener, "reason" => why.label())
            .increment(0);
    }
    counter!(REQUESTS_TIMED_OUT, "listener" => listener).increment(0);
}

pub(crate) fn opened(listener: &'static str) {
    gauge!(CONNECTIONS, "listener" => listener).increment(1.0);
}

pub(crate) fn closed(listener: &'static str) {
    gauge!(CONNECTIONS, "listener" => listener).decrement(1.0);
}

pub(crate) fn refused(listener: &'static str) {
    counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(1);
}

pub(crate) fn timed_out(listener: &'static str, why: Expiry) {
    counter!(CONNECTIONS_TIMED_OUT, "listener" => listener, "reason" => why.label()).increment(1);
}

pub(crate) fn request_timed_out(listener: &'static str) {
    counter!(REQUESTS_TIMED_OUT, "listener" => listener).increment(1);
}
