//! A recording TCP proxy: what a peer dialing it sends goes on to `upstream` and back,
//! and every byte, both ways, is kept to be searched afterwards (each direction of each
//! connection in a stream of its own, so a text split over two reads is still found).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Connections a tap forwards at most (a test opens a handful).
const MAX_CONNECTIONS: usize = 64;
/// Reads per direction of one connection at most (far above what a test sends).
const MAX_READS: usize = 1_000_000;

/// The recorded byte streams, one per direction of each connection.
type Streams = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A running tap; dropping it stops it.
pub(crate) struct WireTap {
    /// `127.0.0.1:PORT` to dial instead of `upstream`.
    pub(crate) addr: String,
    streams: Streams,
    accept: JoinHandle<()>,
}

impl Drop for WireTap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl WireTap {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: String) -> WireTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let streams: Streams = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let streams = streams.clone();
            tokio::spawn(async move {
                // The pipes stop with this task (when the tap is dropped).
                let mut pipes: Vec<AbortOnDrop> = Vec::new();
                for _ in 0..MAX_CONNECTIONS {
                    let Ok((inbound, _)) = listener.accept().await else {
                        break;
                    };
                    let Ok(outbound) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let sent = Arc::new(Mutex::new(Vec::new()));
                    let received = Arc::new(Mutex::new(Vec::new()));
                    streams
                        .lock()
                        .unwrap()
                        .extend([sent.clone(), received.clone()]);
                    pipes.push(AbortOnDrop(tokio::spawn(pipe(
                        inbound, outbound, sent, received,
                    ))));
                }
                std::future::pending::<()>().await;
                drop(pipes);
            })
        };
        WireTap {
            addr,
            streams,
            accept,
        }
    }

    /// How many connections went through.
    pub(crate) fn connections(&self) -> usize {
        self.streams.lock().unwrap().len() / 2
    }

    /// How many bytes went through, both ways.
    pub(crate) fn bytes(&self) -> usize {
        let streams = self.streams.lock().unwrap();
        streams.iter().map(|s| s.lock().unwrap().len()).sum()
    }

    /// Whether `needle` went through, in either direction of any connection.
    pub(crate) fn saw(&self, needle: &[u8]) -> bool {
        let streams = self.streams.lock().unwrap();
        streams.iter().any(|stream| {
            stream
                .lock()
                .unwrap()
                .windows(needle.len())
                .any(|window| window == needle)
        })
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies both ways between `a` and `b`, recording what passes.
async fn pipe(
    a: TcpStream,
    b: TcpStream,
    sent: Arc<Mutex<Vec<u8>>>,
    received: Arc<Mutex<Vec<u8>>>,
) {
    let (a_read, a_write) = a.into_split();
    let (b_read, b_write) = b.into_split();
    tokio::join!(copy(a_read, b_write, sent), copy(b_read, a_write, received));
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    recorded: Arc<Mutex<Vec<u8>>>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    for _ in 0..MAX_READS {
        // A session is kept alive by pings well within this.
        let read = tokio::time::timeout(Duration::from_secs(120), from.read(&mut buffer)).await;
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        recorded.lock().unwrap().extend_from_slice(&buffer[..n]);
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
