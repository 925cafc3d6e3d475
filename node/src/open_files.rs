//! Open files: every wafleet process raises its soft limit to the hard limit when it
//! starts ([`raise_limit`]), and says once, clearly, when it runs out.
//!
//! Each device's link is a socket, on the node and on the simulator, so a process with
//! thousands of devices needs thousands of descriptors; many systems give a process a
//! soft limit of 1,024 under a hard limit far above it, which the process may raise by
//! itself. When a process does run out, `accept` and `connect` fail with `EMFILE`
//! (`ENFILE` when the whole system is out). axum's own accept loop logs that as an
//! error line every second for as long as it lasts; here the first failure of an
//! episode logs one line that says what happened and what to do, the rest are counted,
//! and the end of the episode is one more line with the count ([`ran_out`],
//! [`available`]). A new episode within a minute of the last report is only counted.
//!
//! [`Listener`] is the accept loop of every HTTP/WebSocket server of a wafleet process
//! (gateway, node, simulator); the simulator dialer (`link::ws`) reports its dials.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{error, info, warn};

/// How long the accept loop waits before it tries again while out of files: connections
/// closing free descriptors; a retry without a pause would spin.
const RETRY_WHILE_OUT: Duration = Duration::from_millis(100);
/// How long it waits after any other accept failure (what axum does).
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);
/// The least time between two reports of running out.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The open-files limit before and after [`raise_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit: how far the process could raise it.
    pub hard: u64,
}

/// Raises the soft limit on open files to the hard limit and says so on one line.
pub fn raise_limit() -> io::Result<FilesLimit> {
    let (before, hard) = rlimit::Resource::NOFILE.get()?;
    let now = rlimit::increase_nofile_limit(hard)?;
    let limit = FilesLimit { before, now, hard };
    if now > before {
        info!(
            before,
            now, "open files: soft limit raised to the hard limit"
        );
    } else {
        info!(
            limit = now,
            "open files: soft limit already at the hard limit"
        );
    }
    Ok(limit)
}

/// Whether `error` means the process (`EMFILE`) or the system (`ENFILE`) has no file
/// descriptor left.
pub fn is_out_of_files(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Notes that `doing` (`"accepting a connection"`, `"dialing the simulator"`) failed for
/// want of file descriptors; the first failure of an episode is logged.
pub fn ran_out(doing: &'static str, error: &io::Error) {
    OUT.store(true, Ordering::Relaxed);
    let report = lock().ran_out(Instant::now());
    if let Some(suppressed) = report {
        let limit = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).ok();
        error!(
            limit,
            suppressed,
            %error,
            "out of open files: {doing} failed; new connections wait until some close. \
             Give the process a higher open-files limit (ulimit -n, systemd LimitNOFILE, \
             docker --ulimit nofile) or fewer devices. Said once; \
             a line follows when descriptors are available again"
        );
    }
}

/// Notes that an accept or a dial succeeded: ends an episode of [`ran_out`] (one line,
/// if it was reported). Costs one atomic load when nothing ran out.
pub fn available() {
    if !OUT.load(Ordering::Relaxed) || !OUT.swap(false, Ordering::Relaxed) {
        return;
    }
    if let Some(ended) = lock().available(Instant::now()) {
        info!(
            failed = ended.failed,
            lasted_ms = ended.lasted.as_millis() as u64,
            "open files available again"
        );
    }
}

/// An accept loop for axum that treats running out of files as above: say it once,
/// retry every 100 ms, say when it is over.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    pub fn new(inner: TcpListener) -> Listener {
        Listener { inner }
    }
}

impl axum::serve::Listener for Listener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok(accepted) => {
                    available();
                    return accepted;
                }
                Err(error) if is_out_of_files(&error) => {
                    ran_out("accepting a connection", &error);
                    tokio::time::sleep(RETRY_WHILE_OUT).await;
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that went away before it was accepted: nothing wrong with the server.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Set while an episode lasts, so that [`available`] is one load on the common path.
static OUT: AtomicBool = AtomicBool::new(false);
static EPISODES: Mutex<Episodes> = Mutex::new(Episodes::new());

fn lock() -> std::sync::MutexGuard<'static, Episodes> {
    EPISODES.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the process has said about running out of files, and what it has not said yet.
#[derive(Debug)]
struct Episodes {
    /// When the current episode began (`None`: not out of files).
    since: Option<Instant>,
    /// Failures in the current episode.
    failed: u64,
    /// Whether the current episode was reported (its end is then reported too).
    reported: bool,
    /// When running out was last reported.
    last_report: Option<Instant>,
    /// Failures not reported since the last report (episodes within a minute of it).
    unreported: u64,
}

/// An episode that ended, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ended {
    failed: u64,
    lasted: Duration,
}

impl Episodes {
    const fn new() -> Episodes {
        Episodes {
            since: None,
            failed: 0,
            reported: false,
            last_report: None,
            unreported: 0,
        }
    }

    /// A failure at `now`: `Some(failures left unreported before it)` when it must be
    /// reported (the first of an episode, a minute or more after the last report).
    fn ran_out(&mut self, now: Instant) -> Option<u64> {
        self.failed += 1;
        if self.since.is_none() {
            self.since = Some(now);
            self.reported = false;
        }
        let due = !self.reported
            && self
                .last_report
                .is_none_or(|last| now.duration_since(last) >= REPORT_EVERY);
        if !due {
            self.unreported += 1;
            return None;
        }
        self.reported = true;
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// A success at `now`: ends the episode; `Some` when it was reported.
    fn available(&mut self, now: Instant) -> Option<Ended> {
        let since = self.since.take()?;
        let ended = Ended {
            failed: std::mem::take(&mut self.failed),
            lasted: now.duration_since(since),
        };
        self.reported.then_some(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_said_once_and_its_end_once() {
        let t0 = Instant::now();
        let mut episodes = Episodes::new();
        assert_eq!(episodes.ran_out(t0), Some(0), "the first failure is said");
        for ms in 1..5_000 {
            assert_eq!(episodes.ran_out(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(
            episodes.available(t0 + Duration::from_secs(5)),
            Some(Ended {
                failed: 5_000,
                lasted: Duration::from_secs(5)
            })
        );
        assert_eq!(episodes.available(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn episodes_close_together_are_counted_then_said_a_minute_later() {
        let t0 = Instant::now();
        let mut episodes = Episodes::new();
        assert_eq!(episodes.ran_out(t0), Some(0));
        assert!(episodes.available(t0 + Duration::from_secs(1)).is_some());
        // A flapping limit: a new episode every few seconds, none said, none ended
        // loudly.
        for s in 2..60 {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(episodes.ran_out(at), None);
            assert_eq!(episodes.available(at + Duration::from_millis(10)), None);
        }
        // A minute after the last report the next episode is said, with the count of
        // what was not.
        assert_eq!(episodes.ran_out(t0 + Duration::from_secs(61)), Some(58));
    }

    #[test]
    fn only_emfile_and_enfile_are_out_of_files() {
        assert!(is_out_of_files(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_out_of_files(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_out_of_files(&io::Error::from_raw_os_error(
            libc::ECONNRESET
        )));
        assert!(!is_out_of_files(&io::Error::other("x")));
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let limit = raise_limit().unwrap();
        assert!(limit.now >= limit.before);
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap().0, limit.now);
    }
}
