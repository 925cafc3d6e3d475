//! What the rate limiter adds to an accepted send, measured side by side in one run.
//!
//! Two READY devices on one node (a link that accepts everything and answers nothing).
//! Each round sends one message to each, alternating which goes first:
//! - through [`Fleet::send_text`], the real path: checks, the device's `RateLimiter`
//!   actor decides (unthrottled table, so every send is admitted), the message is stored
//!   with its slot, the device is nudged;
//! - through [`accept_text`], the same checks and store write without the limiter (what
//!   a gateway does while a device moves).
//!
//! The difference of the two is the limiter's cost. Run with
//! `cargo bench -p wafleet-node --bench limiter` (prints the figures; no assertions).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wafleet_cluster_config::QuotaTable;
use wafleet_node::events::{BusConfig, EventBus, EventFilter};
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkFactory, LinkSession,
};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{SqliteStore, Store, TrustLevel};
use wafleet_node::{Fleet, NewDevice, NodeConfig, SendText, accept_text};

/// Pairs at once; swallows every command.
#[derive(Debug)]
struct SilentLink;

#[derive(Debug)]
struct SilentSession;

impl LinkSession for SilentSession {
    fn command(&mut self, _command: LinkCommand) -> Result<(), LinkError> {
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for SilentLink {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        ctx.events.emit(LinkEvent::Paired {
            phone: format!("62899{}", ctx.device_id.len()),
        });
        Ok(Box::new(SilentSession))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("w.db")).unwrap());
    let bus = EventBus::in_memory(BusConfig::default());
    let config = NodeConfig {
        connect_jitter: Duration::ZERO,
        ..NodeConfig::default()
    };
    let fleet = Fleet::start(
        config,
        store.clone(),
        Arc::new(Sealer::new(MasterKey::new(1, [3u8; 32]))),
        bus.clone(),
        Arc::new(SilentLink),
    )
    .await
    .unwrap();
    fleet
        .catalog()
        .set_quota_table(QuotaTable::UNTHROTTLED)
        .await
        .unwrap();
    fleet.refresh_settings().await.unwrap();
    let mut events = bus.subscribe(EventFilter::All, None).await.unwrap();
    for id in ["limited", "direct"] {
        fleet
            .catalog()
            .create_device(NewDevice {
                id: id.into(),
                name: id.into(),
                trust_level: TrustLevel::Newcomer,
            })
            .await
            .unwrap();
        fleet.start_device(id, None).await.unwrap();
    }
    let mut ready = 0;
    while ready < 2 {
        let event = events.next().await.unwrap();
        if event.data["status"] == "READY" {
            ready += 1;
        }
    }

    let send = |n: usize| SendText {
        to_phone: "6281234567890".into(),
        text: format!("bench {n}"),
        idempotency_key: None,
        media: None,
        mentions: Vec::new(),
        send_at_ms: None,
        reply_to: None,
    };
    // Warm up both paths (the limiter loads its state on first use).
    for n in 0..200 {
        fleet.send_text("limited", send(n)).await.unwrap();
        accept_text(store.as_ref(), fleet.catalog().keys(), "direct", send(n))
            .await
            .unwrap();
    }
    let mut limited = Vec::with_capacity(rounds);
    let mut direct = Vec::with_capacity(rounds);
    for n in 0..rounds {
        let order = [n % 2 == 0, n % 2 == 1];
        for through_limiter in order {
            let started = Instant::now();
            if through_limiter {
                fleet.send_text("limited", send(n)).await.unwrap();
                limited.push(started.elapsed());
            } else {
                accept_text(store.as_ref(), fleet.catalog().keys(), "direct", send(n))
                    .await
                    .unwrap();
                direct.push(started.elapsed());
            }
        }
    }
    limited.sort_unstable();
    direct.sort_unstable();
    println!("accepted sends, {rounds} each, side by side (µs):");
    println!("{:<28} {:>8} {:>8} {:>8}", "path", "p50", "p99", "max");
    for (name, samples) in [
        ("with the rate limiter", &limited),
        ("without (accept_text)", &direct),
    ] {
        println!(
            "{:<28} {:>8.1} {:>8.1} {:>8.1}",
            name,
            micros(percentile(samples, 0.50)),
            micros(percentile(samples, 0.99)),
            micros(*samples.last().unwrap())
        );
    }
    let added_p50 = micros(percentile(&limited, 0.50)) - micros(percentile(&direct, 0.50));
    let added_p99 = micros(percentile(&limited, 0.99)) - micros(percentile(&direct, 0.99));
    println!("added by the limiter: p50 {added_p50:.1} µs, p99 {added_p99:.1} µs");
    println!(
        "{{\"rounds\": {rounds}, \"limited_p50_us\": {:.1}, \"limited_p99_us\": {:.1}, \"direct_p50_us\": {:.1}, \"direct_p99_us\": {:.1}, \"added_p50_us\": {added_p50:.1}, \"added_p99_us\": {added_p99:.1}}}",
        micros(percentile(&limited, 0.50)),
        micros(percentile(&limited, 0.99)),
        micros(percentile(&direct, 0.50)),
        micros(percentile(&direct, 0.99)),
    );
    fleet.shutdown().await;
}
