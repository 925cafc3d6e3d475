//! Memory per constructed, unconnected whatsapp-rust client on the vault backend.
//!
//! ```sh
//! cargo run --release -p wafleet-node --example whatsapp_clients -- 1000
//! ```
//!
//! Creates N device rows in a fresh SQLite store, reads the process's resident memory
//! (`VmRSS`), then builds N clients the way a link session does (vault backend, fresh
//! identity stored sealed, device record loaded, background saver started; nothing
//! dialed), lets the process settle for 2 s and reads `VmRSS` again. Prints a summary
//! and one JSON line. Linux only (reads `/proc/self/status`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wafleet_cluster_config::WhatsAppVersion;
use wafleet_node::link::whatsapp::{Connectors, Probe, VaultBackend, WhatsAppConfig, conformance};
use wafleet_node::seal::{MasterKey, Sealer};
use wafleet_node::store::{SqliteStore, Store};
use wafleet_node::vault::Vault;

/// Resident memory of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmRSS")
        * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("a number of clients"))
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("wafleet.db")).expect("open store"));
    for i in 0..n {
        conformance::create_starting_device(store.as_ref(), &format!("d{i}")).await;
    }
    let vault = Vault::new(
        store.clone(),
        Arc::new(Sealer::new(MasterKey::new(1, [1u8; 32]))),
    );
    // Nothing is dialed; the URL and version only keep the clients off the network.
    let config = WhatsAppConfig {
        ws_url: Some("ws://127.0.0.1:9/unused".into()),
        version: Some(WhatsAppVersion {
            parts: (2, 3000, 1),
        }),
    };
    let connectors = Connectors::new(config).expect("connectors of a test URL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes();

    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let backend = VaultBackend::open(vault.device(&format!("d{i}"), None))
            .await
            .expect("open backend");
        let client = connectors
            .client(
                Arc::new(backend),
                Probe::new("ws://127.0.0.1:9/unused"),
                None,
            )
            .await
            .expect("build client");
        clients.push(client);
    }
    let built = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes();

    let per_client = after.saturating_sub(before) / n as u64;
    println!(
        "{n} clients built in {:.2} s; RSS {:.1} MiB before, {:.1} MiB after: {:.1} KiB per client",
        built.as_secs_f64(),
        mib(before),
        mib(after),
        per_client as f64 / 1024.0
    );
    println!(
        "{{\"clients\":{n},\"build_seconds\":{:.3},\"rss_before_bytes\":{before},\"rss_after_bytes\":{after},\"bytes_per_client\":{per_client}}}",
        built.as_secs_f64()
    );
    for client in clients {
        client.disconnect().await;
    }
}
