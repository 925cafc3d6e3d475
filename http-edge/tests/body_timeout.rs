//! The request timeout counts from the last bytes of a request's body: an upload that
//! keeps sending outlives it, and a handler that stalls after the body is still cut.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::post;
use futures_util::stream;
use wafleet_cluster_config::HttpSection;
use wafleet_http_edge::{Edge, serve};

const TIMEOUT: Duration = Duration::from_millis(400);

async fn start() -> String {
    let router = Router::new()
        .route(
            "/slurp",
            post(|body: Body| async move {
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                bytes.len().to_string()
            }),
        )
        .route(
            "/stall",
            post(|body: Body| async move {
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                tokio::time::sleep(Duration::from_secs(3)).await;
                bytes.len().to_string()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rules = HttpSection {
        request_timeout: TIMEOUT,
        ..HttpSection::default()
    };
    tokio::spawn(serve(
        listener,
        router,
        Edge::new("api", rules),
        std::future::pending(),
    ));
    base
}

/// Six chunks of 1 KiB, 200 ms apart: 1.2 s in all, three times the timeout.
fn trickle() -> reqwest::Body {
    let chunks = stream::unfold(0, |i| async move {
        if i == 6 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some((Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1024])), i + 1))
    });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test]
async fn an_upload_that_keeps_sending_is_not_cut() {
    let base = start().await;
    let response = reqwest::Client::new()
        .post(format!("{base}/slurp"))
        .body(trickle())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "6144");
}

#[tokio::test]
async fn a_handler_that_stalls_after_the_body_is_cut_at_the_timeout() {
    let base = start().await;
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{base}/stall"))
        .body(trickle())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let took = started.elapsed();
    // The body's last bytes at about 1.0 s, then the timeout.
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_millis(2900),
        "{took:?}"
    );
}
