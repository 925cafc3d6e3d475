//! ssefloor: how fast can one small event be fanned out to N loopback TCP sockets
//! (as an HTTP/1.1 chunk) and read back on the same machine?
//!
//!   ssefloor writer <single|two|tokio> <port> <conns> <events> <rate>
//!   ssefloor reader <epoll|tokio> <port> <conns> <events> [epoll-threads] [nap-us]
//!
//! Latency: from the publish time stamped into the frame (CLOCK_MONOTONIC, system-wide)
//! to the time the reader's read() returned it, over every (stream, event) pair.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
const FRAME_LEN: usize = 290;
/// Every wait and loop below is bounded by this.
const SETUP_LIMIT_US: u64 = 60_000_000;
const IDLE_BEFORE_US: u64 = 2_000_000;
const AFTER_US: u64 = 1_500_000;
const READER_IDLE_US: u64 = 5_000_000;
const READER_LIMIT_US: u64 = 120_000_000;

fn mono_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// user, system CPU of this process (all threads), µs.
fn cpu_us() -> (u64, u64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    (t(ru.ru_utime), t(ru.ru_stime))
}

/// Machine-wide CPU from /proc/stat, in clock ticks: (busy, softirq, total).
fn proc_stat() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return (0, 0, 0);
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    (total - idle, v[6], total)
}

/// CPU ticks of the ksoftirqd threads.
fn ksoftirqd_ticks() -> u64 {
    let mut sum = 0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten().take(100_000) {
            let p = entry.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if comm.starts_with("ksoftirqd") {
                let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
                if let Some(rest) = stat.rsplit(')').next() {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    // after ")": state is f[0]; utime is field 14 => f[11], stime f[12]
                    if f.len() > 12 {
                        sum += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
    }
    sum
}

struct Snap {
    csw: (u64, u64),
    user: u64,
    sys: u64,
    stat: (u64, u64, u64),
    ksoft: u64,
    at: u64,
}

fn snap() -> Snap {
    let (user, sys) = cpu_us();
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    Snap { csw: (ru.ru_nvcsw as u64, ru.ru_nivcsw as u64), user, sys, stat: proc_stat(), ksoft: ksoftirqd_ticks(), at: mono_us() }
}

fn cpu_report(a: &Snap, b: &Snap, events: u64) -> String {
    let ev = events.max(1) as f64;
    let tick_ms = 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    format!(
        "cpu_ms_per_event={:.2} user_ms_per_event={:.2} sys_ms_per_event={:.2} machine_busy_ms_per_event={:.1} machine_softirq_ms_per_event={:.2} ksoftirqd_ms_per_event={:.2} window_s={:.2} vol_csw_per_event={:.0} invol_csw_per_event={:.0}",
        (b.user + b.sys - a.user - a.sys) as f64 / 1000.0 / ev,
        (b.user - a.user) as f64 / 1000.0 / ev,
        (b.sys - a.sys) as f64 / 1000.0 / ev,
        (b.stat.0 - a.stat.0) as f64 * tick_ms / ev,
        (b.stat.1 - a.stat.1) as f64 * tick_ms / ev,
        (b.ksoft - a.ksoft) as f64 * tick_ms / ev,
        (b.at - a.at) as f64 / 1e6,
        (b.csw.0 - a.csw.0) as f64 / ev,
        (b.csw.1 - a.csw.1) as f64 / ev,
    )
}

fn sleep_until(t: u64) {
    let now = mono_us();
    if t > now {
        std::thread::sleep(Duration::from_micros(t - now));
    }
}

/// The SSE frame for event `n` published at `at`, exactly FRAME_LEN bytes.
fn frame(n: usize, at: u64) -> Vec<u8> {
    let start = format!("data: {{\"n\":{n},\"at\":{at},\"pad\":\"");
    let end = "\"}\n\n";
    let pad = FRAME_LEN - start.len() - end.len();
    let mut f = start.into_bytes();
    f.extend(std::iter::repeat(b'x').take(pad));
    f.extend_from_slice(end.as_bytes());
    f
}

fn chunk(frame: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", frame.len()).into_bytes();
    c.extend_from_slice(frame);
    c.extend_from_slice(b"\r\n");
    c
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn fanout_report(fanout_us: &[u64]) -> String {
    let mut f = fanout_us.to_vec();
    f.sort_unstable();
    if f.is_empty() {
        return String::new();
    }
    format!(
        "fanout_ms_p50={:.2} fanout_ms_max={:.2}",
        f[f.len() / 2] as f64 / 1000.0,
        f[f.len() - 1] as f64 / 1000.0
    )
}

// ----------------------------------------------------------------------------- writer

/// Accepts `conns` connections (bounded in time), writes the response head on each.
fn accept_all(listener: &TcpListener, conns: usize) -> Vec<TcpStream> {
    let deadline = mono_us() + SETUP_LIMIT_US;
    let mut out = Vec::with_capacity(conns);
    listener.set_nonblocking(true).unwrap();
    while out.len() < conns && mono_us() < deadline {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_nodelay(true).unwrap();
                (&s).write_all(HEAD).unwrap();
                s.set_nonblocking(true).unwrap();
                out.push(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                unsafe { libc::poll(&mut pfd, 1, 100) };
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    out
}

/// One non-blocking write of `buf` on each fd; returns how many were short or failed.
fn write_all_fds(fds: &[RawFd], buf: &[u8]) -> u64 {
    let mut bad = 0;
    for &fd in fds {
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r != buf.len() as isize {
            bad += 1;
        }
    }
    bad
}

fn writer(variant: &str, port: u16, conns: usize, events: usize, rate: u32) {
    let period = 1_000_000 / rate.max(1) as u64;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    match variant {
        "single" | "two" => {
            let listener = TcpListener::bind(addr).unwrap();
            println!("LISTENING");
            let streams = accept_all(&listener, conns);
            eprintln!("writer: {} connections", streams.len());
            let fds: Vec<RawFd> = streams.iter().map(|s| s.as_raw_fd()).collect();
            sleep_until(mono_us() + IDLE_BEFORE_US);
            let mut bad = 0;
            let mut fanout = Vec::new();
            let a = snap();
            let start = mono_us();
            if variant == "single" {
                for n in 0..events {
                    sleep_until(start + n as u64 * period);
                    let at = mono_us();
                    let c = chunk(&frame(n, at));
                    bad += write_all_fds(&fds, &c);
                    fanout.push(mono_us() - at);
                }
            } else {
                // Two threads, each owning half the sockets.
                let halves: Vec<Vec<RawFd>> = vec![fds[..fds.len() / 2].to_vec(), fds[fds.len() / 2..].to_vec()];
                let mut txs = Vec::new();
                let (done_tx, done_rx) = std::sync::mpsc::channel::<(u64, u64)>();
                let mut handles = Vec::new();
                for half in halves {
                    let (tx, rx) = std::sync::mpsc::channel::<Arc<Vec<u8>>>();
                    txs.push(tx);
                    let done_tx = done_tx.clone();
                    handles.push(std::thread::spawn(move || {
                        while let Ok(c) = rx.recv() {
                            let bad = write_all_fds(&half, &c);
                            let _ = done_tx.send((mono_us(), bad));
                        }
                    }));
                }
                for n in 0..events {
                    sleep_until(start + n as u64 * period);
                    let at = mono_us();
                    let c = Arc::new(chunk(&frame(n, at)));
                    for tx in &txs {
                        tx.send(c.clone()).unwrap();
                    }
                    let mut last = 0;
                    for _ in 0..2 {
                        let (t, b) = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
                        last = last.max(t);
                        bad += b;
                    }
                    fanout.push(last - at);
                }
                drop(txs);
                for h in handles {
                    h.join().unwrap();
                }
            }
            sleep_until(mono_us() + AFTER_US);
            let b = snap();
            println!(
                "RESULT side=writer variant={variant} conns={} events={events} short_writes={bad} {} {}",
                fds.len(),
                fanout_report(&fanout),
                cpu_report(&a, &b, events as u64)
            );
        }
        "tokio" => writer_tokio(addr, conns, events, period),
        _ => panic!("writer variant: single|two|tokio"),
    }
}

struct Event {
    n: usize,
    frame: Vec<u8>,
}

/// One task per connection, woken by a broadcast; one writev (chunk header, frame, CRLF)
/// per connection per event, as hyper writes a chunked body.
fn writer_tokio(addr: SocketAddr, conns: usize, events: usize, period: u64) {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (tx, _) = tokio::sync::broadcast::channel::<Arc<Event>>(64);
    let ready = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
    println!("LISTENING");
    {
        let tx = tx.clone();
        let (ready, bad, done) = (ready.clone(), bad.clone(), done.clone());
        rt.spawn(async move {
            for _ in 0..conns {
                let Ok(Ok((mut s, _))) =
                    tokio::time::timeout(Duration::from_micros(SETUP_LIMIT_US), listener.accept()).await
                else {
                    break;
                };
                let mut rx = tx.subscribe();
                let (ready, bad, done) = (ready.clone(), bad.clone(), done.clone());
                tokio::spawn(async move {
                    s.set_nodelay(true).unwrap();
                    s.write_all(HEAD).await.unwrap();
                    ready.fetch_add(1, Ordering::Relaxed);
                    loop {
                        match rx.recv().await {
                            Ok(ev) => {
                                let head = format!("{:x}\r\n", ev.frame.len());
                                let bufs = [
                                    std::io::IoSlice::new(head.as_bytes()),
                                    std::io::IoSlice::new(&ev.frame),
                                    std::io::IoSlice::new(b"\r\n"),
                                ];
                                let want = head.len() + ev.frame.len() + 2;
                                match s.write_vectored(&bufs).await {
                                    Ok(w) if w == want => {}
                                    _ => {
                                        bad.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                done[ev.n].fetch_max(mono_us(), Ordering::Relaxed);
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        }
                    }
                });
            }
        });
    }
    let deadline = mono_us() + SETUP_LIMIT_US;
    while ready.load(Ordering::Relaxed) < conns && mono_us() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = ready.load(Ordering::Relaxed);
    eprintln!("writer: {got} connections");
    sleep_until(mono_us() + IDLE_BEFORE_US);
    let a = snap();
    let start = mono_us();
    let mut ats = Vec::new();
    for n in 0..events {
        sleep_until(start + n as u64 * period);
        let at = mono_us();
        ats.push(at);
        let _ = tx.send(Arc::new(Event { n, frame: frame(n, at) }));
    }
    sleep_until(mono_us() + AFTER_US);
    let b = snap();
    let fanout: Vec<u64> = ats.iter().enumerate().map(|(n, at)| done[n].load(Ordering::Relaxed).saturating_sub(*at)).collect();
    println!(
        "RESULT side=writer variant=tokio conns={got} events={events} short_writes={} {} {}",
        bad.load(Ordering::Relaxed),
        fanout_report(&fanout),
        cpu_report(&a, &b, events as u64)
    );
    drop(tx);
    rt.shutdown_timeout(Duration::from_secs(2));
}

// ----------------------------------------------------------------------------- reader

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Parses the whole chunks at the start of `d`, pushing a latency (µs) for each; returns
/// the bytes used.
fn parse_chunks(d: &[u8], now: u64, lat: &mut Vec<u32>) -> usize {
    let mut pos = 0;
    while pos < d.len() {
        let Some(nl) = find(&d[pos..], b"\r\n") else { break };
        let len = usize::from_str_radix(std::str::from_utf8(&d[pos..pos + nl]).unwrap(), 16).expect("chunk size");
        let start = pos + nl + 2;
        let end = start + len + 2;
        if end > d.len() {
            break;
        }
        let body = &d[start..start + len];
        let i = find(body, b"\"at\":").expect("at") + 5;
        let mut at = 0u64;
        for &c in body[i..].iter().take(20) {
            if !c.is_ascii_digit() {
                break;
            }
            at = at * 10 + (c - b'0') as u64;
        }
        lat.push(now.saturating_sub(at) as u32);
        pos = end;
    }
    pos
}

fn take(left: &mut Vec<u8>, data: &[u8], now: u64, lat: &mut Vec<u32>) -> u64 {
    let before = lat.len();
    if left.is_empty() {
        let used = parse_chunks(data, now, lat);
        if used < data.len() {
            left.extend_from_slice(&data[used..]);
        }
    } else {
        let mut l = std::mem::take(left);
        l.extend_from_slice(data);
        let used = parse_chunks(&l, now, lat);
        l.drain(..used);
        *left = l;
    }
    (lat.len() - before) as u64
}

/// Opens `conns` connections one by one (blocking), reading each one's head.
fn connect_all(addr: SocketAddr, conns: usize) -> Vec<TcpStream> {
    let deadline = mono_us() + SETUP_LIMIT_US;
    let mut out = Vec::with_capacity(conns);
    while out.len() < conns && mono_us() < deadline {
        let mut s = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                if out.is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                panic!("connect {}: {e}", out.len());
            }
        };
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..100 {
            let r = s.read(&mut buf).unwrap();
            assert!(r > 0, "closed before head");
            head.extend_from_slice(&buf[..r]);
            if head.len() >= HEAD.len() {
                break;
            }
        }
        assert_eq!(head, HEAD, "head (and nothing else)");
        out.push(s);
    }
    out
}

struct Shared {
    /// epoll_waits that returned something.
    waits: AtomicU64,
    frames: AtomicU64,
    stop: AtomicBool,
}

/// Watches the count of frames; returns (CPU snapshot when done, whether all came).
fn watch(shared: &Shared, expected: u64) -> (Snap, bool) {
    let begin = mono_us();
    let (mut last, mut moved) = (0, mono_us());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now_frames = shared.frames.load(Ordering::Relaxed);
        let now = mono_us();
        if now_frames >= expected {
            return (snap(), true);
        }
        if now_frames != last {
            (last, moved) = (now_frames, now);
        }
        if (last > 0 && now - moved > READER_IDLE_US) || now - begin > READER_LIMIT_US {
            return (snap(), false);
        }
    }
}

/// `nap_us` > 0: after each batch, sleep that long so readiness piles up (fewer wake-ups:
/// while this thread is not in epoll_wait the writer's softirq has no one to wake).
fn epoll_thread(streams: Vec<TcpStream>, shared: Arc<Shared>, nap_us: u64) -> (Vec<u32>, u64, u64) {
    let ep = unsafe { libc::epoll_create1(0) };
    assert!(ep >= 0);
    let fds: Vec<RawFd> = streams.iter().map(|s| s.as_raw_fd()).collect();
    for (i, &fd) in fds.iter().enumerate() {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }, 0);
    }
    let mut left: Vec<Vec<u8>> = vec![Vec::new(); fds.len()];
    let mut buf = vec![0u8; 65536];
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut lat = Vec::with_capacity(fds.len() * 40);
    let (mut reads, mut closed) = (0u64, 0u64);
    let limit = mono_us() + READER_LIMIT_US;
    while !shared.stop.load(Ordering::Relaxed) && mono_us() < limit && (closed as usize) < fds.len() {
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, 100) };
        if n <= 0 {
            continue;
        }
        let mut frames = 0;
        for ev in &evs[..n as usize] {
            let i = ev.u64 as usize;
            let r = unsafe { libc::read(fds[i], buf.as_mut_ptr().cast(), buf.len()) };
            let now = mono_us();
            reads += 1;
            if r > 0 {
                frames += take(&mut left[i], &buf[..r as usize], now, &mut lat);
            } else if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock {
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fds[i], std::ptr::null_mut()) };
                closed += 1;
            }
        }
        shared.frames.fetch_add(frames, Ordering::Relaxed);
        shared.waits.fetch_add(1, Ordering::Relaxed);
        if nap_us > 0 {
            std::thread::sleep(Duration::from_micros(nap_us));
        }
    }
    unsafe { libc::close(ep) };
    drop(streams);
    (lat, reads, closed)
}

fn reader(variant: &str, port: u16, conns: usize, events: usize, threads: usize, nap_us: u64) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let streams = connect_all(addr, conns);
    let n = streams.len();
    eprintln!("reader: {n} connections");
    let expected = (n * events) as u64;
    let shared = Arc::new(Shared { waits: AtomicU64::new(0), frames: AtomicU64::new(0), stop: AtomicBool::new(false) });
    let a = snap();
    let (b, all, mut lat, reads, label) = match variant {
        "epoll" => {
            let threads = threads.clamp(1, 8);
            let mut parts: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, s) in streams.into_iter().enumerate() {
                s.set_nonblocking(true).unwrap();
                parts[i % threads].push(s);
            }
            let handles: Vec<_> = parts
                .into_iter()
                .map(|p| {
                    let shared = shared.clone();
                    std::thread::spawn(move || epoll_thread(p, shared, nap_us))
                })
                .collect();
            let (b, all) = watch(&shared, expected);
            shared.stop.store(true, Ordering::Relaxed);
            let mut lat = Vec::new();
            let mut reads = 0;
            for h in handles {
                let (l, r, _) = h.join().unwrap();
                lat.extend(l);
                reads += r;
            }
            (b, all, lat, reads, format!("epoll{threads}nap{nap_us}"))
        }
        "tokio" => {
            let (b, all, lat, reads) = reader_tokio(streams, shared.clone(), expected);
            (b, all, lat, reads, "tokio250".to_string())
        }
        _ => panic!("reader variant: epoll|tokio"),
    };
    lat.sort_unstable();
    println!(
        "RESULT side=reader variant={label} conns={n} frames={} expected={expected} all={all} reads={reads} epoll_waits={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} {}",
        lat.len(),
        shared.waits.load(Ordering::Relaxed),
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        cpu_report(&a, &b, events as u64)
    );
}

struct Conn {
    socket: tokio::net::TcpStream,
    buf: Vec<u8>,
}

struct Batch {
    lats: Vec<u32>,
}

/// As wafleet's load driver: one task per 250 connections, a SelectAll over their reads.
fn reader_tokio(streams: Vec<TcpStream>, shared: Arc<Shared>, expected: u64) -> (Snap, bool, Vec<u32>, u64) {
    use futures_util::stream::{SelectAll, StreamExt};
    use tokio::io::AsyncReadExt;
    const PER_TASK: usize = 250;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reads = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let mut streams = streams.into_iter();
    loop {
        let group: Vec<TcpStream> = streams.by_ref().take(PER_TASK).collect();
        if group.is_empty() {
            break;
        }
        let mut stop = stop_rx.clone();
        let shared = shared.clone();
        let reads = reads.clone();
        let _guard = rt.enter();
        let conns: Vec<Conn> = group
            .into_iter()
            .map(|s| {
                s.set_nonblocking(true).unwrap();
                Conn { socket: tokio::net::TcpStream::from_std(s).unwrap(), buf: Vec::new() }
            })
            .collect();
        handles.push(rt.spawn(async move {
            let mut all = SelectAll::new();
            for c in conns {
                let reads = reads.clone();
                all.push(
                    futures_util::stream::unfold(Some(c), move |c| {
                        let reads = reads.clone();
                        async move {
                            let mut c = c?;
                            c.buf.reserve(4096);
                            let r = c.socket.read_buf(&mut c.buf).await;
                            let now = mono_us();
                            reads.fetch_add(1, Ordering::Relaxed);
                            let mut lats = Vec::new();
                            match r {
                                Ok(r) if r > 0 => {
                                    let used = parse_chunks(&c.buf, now, &mut lats);
                                    c.buf.drain(..used);
                                    Some((Batch { lats }, Some(c)))
                                }
                                _ => Some((Batch { lats }, None)),
                            }
                        }
                    })
                    .boxed(),
                );
            }
            let mut lat = Vec::with_capacity(PER_TASK * 40);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    b = all.next() => match b {
                        Some(b) => {
                            shared.frames.fetch_add(b.lats.len() as u64, Ordering::Relaxed);
                            lat.extend(b.lats);
                        }
                        None => break,
                    },
                }
            }
            lat
        }));
    }
    let (b, all) = watch(&shared, expected);
    let _ = stop_tx.send(true);
    let mut lat = Vec::new();
    rt.block_on(async {
        for h in handles {
            if let Ok(Ok(l)) = tokio::time::timeout(Duration::from_secs(10), h).await {
                lat.extend(l);
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    (b, all, lat, reads.load(Ordering::Relaxed))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let port: u16 = get(3, "18080").parse().unwrap();
    let conns: usize = get(4, "10000").parse().unwrap();
    let events: usize = get(5, "30").parse().unwrap();
    match get(1, "").as_str() {
        "writer" => writer(&get(2, "single"), port, conns, events, get(6, "5").parse().unwrap()),
        "reader" => reader(&get(2, "epoll"), port, conns, events, get(6, "1").parse().unwrap(), get(7, "0").parse().unwrap()),
        _ => eprintln!("usage: ssefloor writer <single|two|tokio> <port> <conns> <events> <rate> | reader <epoll|tokio> <port> <conns> <events> [epoll-threads] [nap-us]"),
    }
}
