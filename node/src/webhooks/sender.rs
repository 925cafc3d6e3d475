//! Sending one delivery: the signed POST, done safely.
//!
//! - Every name is resolved once per new connection by [`GuardedResolver`], which
//!   checks every address it resolved to (the SSRF rule of [`crate::egress`]) and hands
//!   exactly those to the connector; an address literal is checked before the request.
//! - No redirects are followed (a 3xx is a failed attempt), no proxy from the
//!   environment is used.
//! - Connect and total timeouts; at most [`MAX_RESPONSE_BYTES`] of a response are read.
//! - A small pool of idle connections per target, and at most
//!   [`PER_TARGET_CONCURRENCY`] requests in flight to one target (scheme, host, port)
//!   with at most `concurrency` in the whole node: one slow receiver holds only its own
//!   share, never the node's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::egress;

/// At most this much of a receiver's answer is read (then the connection is dropped).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Requests in flight to one target at once.
pub const PER_TARGET_CONCURRENCY: usize = 32;
/// Idle connections kept per target.
const IDLE_PER_TARGET: usize = 16;
/// A connection (TCP and TLS) taking longer than this fails the attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One delivery request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub url: &'a str,
    pub event_id: &'a str,
    pub event: &'a str,
    /// The JSON body, exactly as signed.
    pub body: Vec<u8>,
    /// The secret, if the webhook has one (then the request is signed).
    pub secret: Option<&'a [u8]>,
    /// Unix seconds, sent and signed.
    pub timestamp: i64,
    pub timeout: Duration,
}

/// What a receiver made of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it is not delivered (`None`: 2xx).
    pub error: Option<String>,
}

impl Response {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// `v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v1=");
    for byte in tag.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Sends deliveries for one node.
#[derive(Debug)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    node: Arc<Semaphore>,
    per_target: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Sender {
    /// A sender with at most `concurrency` requests in flight; `allow_private` lets
    /// targets resolve to loopback and private addresses (tests, private networks).
    pub fn new(concurrency: usize, allow_private: bool) -> Sender {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_TARGET)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("wafleet-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(egress::GuardedResolver { allow_private }))
            .build()
            .expect("the webhook HTTP client builds");
        Sender {
            client,
            allow_private,
            node: Arc::new(Semaphore::new(concurrency.max(1))),
            per_target: Mutex::new(HashMap::new()),
        }
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    fn target_gate(&self, url: &reqwest::Url) -> Arc<Semaphore> {
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let mut gates = self.per_target.lock().unwrap_or_else(|e| e.into_inner());
        if gates.len() > 10_000 {
            // Forget idle targets now and then (a gate in use is held elsewhere too).
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        gates
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_TARGET_CONCURRENCY)))
            .clone()
    }

    /// Makes one attempt.
    pub async fn send(&self, request: Request<'_>) -> Response {
        let failed = |error: String| Response {
            status_code: None,
            error: Some(error),
        };
        let url = match egress::check_url(request.url, self.allow_private) {
            Ok(url) => url,
            Err(error) => return failed(error.to_string()),
        };
        let gate = self.target_gate(&url);
        let Ok(_target) = gate.acquire_owned().await else {
            return failed("shutting down".into());
        };
        let Ok(_node) = self.node.clone().acquire_owned().await else {
            return failed("shutting down".into());
        };
        let mut builder = self
            .client
            .post(url)
            .timeout(request.timeout)
            .header("content-type", "application/json")
            .header("x-wafleet-event-id", request.event_id)
            .header("x-wafleet-event", request.event)
            .header("x-wafleet-timestamp", request.timestamp.to_string());
        if let Some(secret) = request.secret {
            builder = builder.header(
                "x-wafleet-signature",
                signature(secret, request.timestamp, &request.body),
            );
        }
        let attempt = async {
            let mut response = builder.body(request.body).send().await?;
            let status = response.status();
            // Read a little of the answer (so the connection can be kept), no more.
            let mut read = 0usize;
            while read < MAX_RESPONSE_BYTES {
                match response.chunk().await? {
                    Some(chunk) => read += chunk.len(),
                    None => break,
                }
            }
            Ok::<_, reqwest::Error>(status)
        };
        match tokio::time::timeout(request.timeout, attempt).await {
            Err(_) => failed(format!(
                "timed out after {} ms",
                request.timeout.as_millis()
            )),
            Ok(Err(error)) => failed(describe(&error)),
            Ok(Ok(status)) if status.is_success() => Response {
                status_code: Some(status.as_u16()),
                error: None,
            },
            Ok(Ok(status)) => Response {
                status_code: Some(status.as_u16()),
                error: Some(format!("HTTP {}", status.as_u16())),
            },
        }
    }
}

/// A reqwest error as one line, with its causes (a refused address says so).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> Request<'_> {
        Request {
            url,
            event_id: "evt_1",
            event: "status",
            body: b"{}".to_vec(),
            secret: None,
            timestamp: 1,
            timeout: Duration::from_secs(2),
        }
    }

    /// The TLS stack is there (no crypto provider missing at the first https target)
    /// and fails closed: a server that does not complete a handshake is a failed
    /// attempt, not a panic and not a plain-text request.
    #[tokio::test]
    async fn an_https_target_without_tls_is_a_failed_attempt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            }
        });
        let sender = Sender::new(4, true);
        let url = format!("https://127.0.0.1:{port}/hook");
        let response = sender.send(request(&url)).await;
        assert_eq!(response.status_code, None, "{response:?}");
        assert!(!response.delivered(), "{response:?}");
    }

    /// Without private targets allowed, a loopback literal is refused before any
    /// connection, and a redirect is not followed.
    #[tokio::test]
    async fn private_literals_are_refused_and_redirects_not_followed() {
        let refused = Sender::new(4, false)
            .send(request("http://127.0.0.1:9/hook"))
            .await;
        assert!(
            refused
                .error
                .as_deref()
                .is_some_and(|e| e.contains("not a public address")),
            "{refused:?}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n",
                    )
                    .await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/hook");
        let redirected = Sender::new(4, true).send(request(&url)).await;
        assert_eq!(redirected.status_code, Some(302), "{redirected:?}");
        assert!(!redirected.delivered());
    }

    /// A receiver that answers 200 and then never ends its body: the attempt reads at
    /// most MAX_RESPONSE_BYTES and is done, well before the timeout.
    #[tokio::test]
    async fn an_endless_answer_is_read_only_up_to_the_cap() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n";
                    if socket.write_all(head).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 16 * 1024];
                    while socket.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        let url = format!("http://127.0.0.1:{port}/hook");
        let started = std::time::Instant::now();
        let response = Sender::new(4, true).send(request(&url)).await;
        assert_eq!(response.status_code, Some(200), "{response:?}");
        assert!(response.delivered());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", 1_700_000_000, br#"{"a":1}"#),
            "v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
    }
}
