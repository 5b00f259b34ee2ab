//! Hostile peers and process readings for the robustness suites: a scripted backend that keeps
//! the raw bytes it received and notices when the gateway closes or resets its connection, a
//! monoio backend that holds thousands of connections on one thread, and /proc and rlimit
//! helpers (CPU time, open fds, RSS, the open-file limit).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- scripted backend

/// A request as a scripted backend read it: the raw bytes and the parsed parts.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The head exactly as received (request line to blank line).
    pub raw_head: Vec<u8>,
    /// The body exactly as received (still chunked when it was).
    pub raw_body: Vec<u8>,
    /// The body's payload (de-chunked).
    pub body: Vec<u8>,
    /// Which accepted connection (0-based) carried it.
    pub connection: usize,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What one backend connection saw.
#[derive(Default)]
struct ConnectionLog {
    raw: Mutex<Vec<u8>>,
    /// Bytes received but not part of any complete request when the script ended.
    leftover: Mutex<Vec<u8>>,
    /// The gateway closed or reset the connection (seen by a read or a write).
    peer_closed: AtomicBool,
}

struct ScriptState {
    connections: AtomicUsize,
    /// Scripts that returned (their connection is closed).
    finished: AtomicUsize,
    /// Connections the gateway closed or reset.
    peer_closed: AtomicUsize,
    /// Bytes the scripts wrote.
    written: AtomicU64,
    requests: Mutex<Vec<RawRequest>>,
    logs: Mutex<Vec<Arc<ConnectionLog>>>,
    stopping: AtomicBool,
    /// A clone of each connection while its script runs (by index), to unblock it on stop.
    open: Mutex<Vec<Option<TcpStream>>>,
}

/// One accepted backend connection as a script drives it. Everything read is logged.
pub struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    index: usize,
    log: Arc<ConnectionLog>,
    state: Arc<ScriptState>,
}

impl Peer {
    /// Which accepted connection this is (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn note_closed(&self) {
        if !self.state.stopping.load(Ordering::Acquire)
            && !self.log.peer_closed.swap(true, Ordering::AcqRel)
        {
            self.state.peer_closed.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Reads more bytes; false at end of stream or on an error (noted as the peer closing).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                self.note_closed();
                false
            }
            Ok(n) => {
                self.log.raw.lock().unwrap().extend_from_slice(&chunk[..n]);
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads a request head only (the body, if any, stays unread).
    pub fn read_head(&mut self) -> Option<RawRequest> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let request = RawRequest {
                        method: req.method.unwrap_or_default().to_owned(),
                        target: req.path.unwrap_or_default().to_owned(),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        raw_head: self.buf[..len].to_vec(),
                        raw_body: Vec::new(),
                        body: Vec::new(),
                        connection: self.index,
                    };
                    self.buf.drain(..len);
                    return Some(request);
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill() {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads a whole request (head and body by its framing) and records it.
    pub fn read_request(&mut self) -> Option<RawRequest> {
        let mut request = self.read_head()?;
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if chunked {
            let (raw, body) = self.read_chunked()?;
            request.raw_body = raw;
            request.body = body;
        } else if let Some(length) = request
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            while self.buf.len() < length {
                if !self.fill() {
                    return None;
                }
            }
            request.body = self.buf.drain(..length).collect();
            request.raw_body = request.body.clone();
        }
        self.state.requests.lock().unwrap().push(request.clone());
        Some(request)
    }

    fn line(&mut self) -> Option<usize> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Some(pos);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// (raw bytes, payload) of a chunked body; trailers stay in the raw bytes only.
    fn read_chunked(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let (mut raw, mut body) = (Vec::new(), Vec::new());
        loop {
            let end = self.line()?;
            let size_text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            raw.extend(self.buf.drain(..end + 2));
            if size == 0 {
                loop {
                    let end = self.line()?;
                    raw.extend(self.buf.drain(..end + 2));
                    if end == 0 {
                        return Some((raw, body));
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill() {
                    return None;
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            raw.extend(self.buf.drain(..size + 2));
        }
    }

    /// Reads and drops `n` body bytes; false if the connection ended first.
    pub fn skip(&mut self, mut n: usize) -> bool {
        loop {
            let take = n.min(self.buf.len());
            self.buf.drain(..take);
            n -= take;
            if n == 0 {
                return true;
            }
            if !self.fill() {
                return false;
            }
        }
    }

    /// Writes all of `bytes`; false when the gateway closed the connection (noted).
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        match self.stream.write_all(bytes) {
            Ok(()) => {
                self.state
                    .written
                    .fetch_add(bytes.len() as u64, Ordering::AcqRel);
                true
            }
            Err(_) => {
                self.note_closed();
                false
            }
        }
    }

    /// Answers `200` with `body` and `Content-Length`.
    pub fn reply_ok(&mut self, body: &[u8]) -> bool {
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        self.write(&out)
    }

    /// Reads (and logs) until the gateway closes the connection; true if it did within
    /// `limit`.
    pub fn wait_closed(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.state.stopping.load(Ordering::Acquire) {
                return false;
            }
            let _ = self
                .stream
                .set_read_timeout(Some(left.min(Duration::from_millis(100))));
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.note_closed();
                    return true;
                }
                Ok(n) => self.log.raw.lock().unwrap().extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    self.note_closed();
                    return true;
                }
            }
        }
    }

    /// Makes the close when the script returns a TCP reset (SO_LINGER 0) instead of a FIN.
    pub fn reset_on_close(&mut self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket this Peer owns, with a valid pointer and length.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&self.stream),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        *self.log.leftover.lock().unwrap() = std::mem::take(&mut self.buf);
        // Drop the backend's clone first, so that closing this stream really closes the
        // socket (a FIN, or a reset with unread data or `reset_on_close`).
        if let Some(slot) = self.state.open.lock().unwrap().get_mut(self.index) {
            slot.take();
        }
    }
}

/// A backend whose every connection runs `script`, recording raw bytes and closes.
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    state: Arc<ScriptState>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl ScriptedBackend {
    pub fn start(script: impl Fn(&mut Peer) + Send + Sync + 'static) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted backend");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(ScriptState {
            connections: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            peer_closed: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let script = Arc::new(script);
        let accept_state = Arc::clone(&state);
        let acceptor = thread::spawn(move || {
            while !accept_state.stopping.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_nodelay(true);
                        let index = accept_state.connections.fetch_add(1, Ordering::AcqRel);
                        let log = Arc::new(ConnectionLog::default());
                        accept_state.logs.lock().unwrap().push(Arc::clone(&log));
                        accept_state
                            .open
                            .lock()
                            .unwrap()
                            .push(stream.try_clone().ok());
                        let state = Arc::clone(&accept_state);
                        let script = Arc::clone(&script);
                        thread::spawn(move || {
                            let mut peer = Peer {
                                stream,
                                buf: Vec::new(),
                                index,
                                log,
                                state: Arc::clone(&state),
                            };
                            script(&mut peer);
                            drop(peer);
                            state.finished.fetch_add(1, Ordering::AcqRel);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ScriptedBackend {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// Answers every request with `200` and `target` as the body, until the gateway closes.
    pub fn echo_targets() -> ScriptedBackend {
        ScriptedBackend::start(|peer| {
            while let Some(request) = peer.read_request() {
                let target = request.target.clone();
                if !peer.reply_ok(target.as_bytes()) {
                    return;
                }
            }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Acquire)
    }

    /// Connections whose script has returned.
    pub fn finished(&self) -> usize {
        self.state.finished.load(Ordering::Acquire)
    }

    /// Connections the gateway closed or reset.
    pub fn peer_closed(&self) -> usize {
        self.state.peer_closed.load(Ordering::Acquire)
    }

    /// Bytes the scripts wrote to the gateway.
    pub fn written(&self) -> u64 {
        self.state.written.load(Ordering::Acquire)
    }

    /// Complete requests read by `read_request`, in arrival order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Bytes received over all connections so far.
    pub fn raw_total(&self) -> usize {
        self.state
            .logs
            .lock()
            .unwrap()
            .iter()
            .map(|log| log.raw.lock().unwrap().len())
            .sum()
    }

    /// Everything connection `index` received.
    pub fn raw(&self, index: usize) -> Vec<u8> {
        self.state.logs.lock().unwrap()[index]
            .raw
            .lock()
            .unwrap()
            .clone()
    }

    /// Bytes of connection `index` that were not part of a complete request when its script
    /// ended (empty while the script runs).
    pub fn leftover(&self, index: usize) -> Vec<u8> {
        self.state.logs.lock().unwrap()[index]
            .leftover
            .lock()
            .unwrap()
            .clone()
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.state.open.lock().unwrap().iter().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------- many-connection backend

/// A backend on one thread (monoio, epoll) that holds any number of connections cheaply:
/// every request without a body gets `200` with a fixed body. For connection storms.
pub struct ManyBackend {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ManyBackend {
    pub fn start() -> ManyBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind many-connection backend");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (count, stop) = (Arc::clone(&requests), Arc::clone(&stopping));
        let thread = thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("monoio runtime");
            rt.block_on(async move {
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                while !stop.load(Ordering::Acquire) {
                    let Ok((stream, _)) = listener.accept().await else {
                        monoio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    monoio::spawn(serve_many(stream, Arc::clone(&count)));
                }
            });
        });
        ManyBackend {
            addr,
            requests,
            stopping,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }
}

async fn serve_many(mut stream: monoio::net::TcpStream, count: Arc<AtomicU64>) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let (result, back) = stream.read(buf).await;
        buf = back;
        let n = match result {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut answers = Vec::new();
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            count.fetch_add(1, Ordering::AcqRel);
            answers.extend_from_slice(ANSWER);
        }
        if !answers.is_empty() {
            let (result, _) = stream.write_all(answers).await;
            if result.is_err() {
                return;
            }
        }
    }
}

impl Drop for ManyBackend {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------- process readings

/// CPU time (user + system) of process `pid` in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Enough for a 10,000-connection storm with both ends and the upstream side in one process.
const GENEROUS_NOFILE: u64 = 65_536;

/// Raises this process's open-file limit (to 65,536 where permitted, else the soft limit to
/// the hard one); returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        // With CAP_SYS_RESOURCE (root in CI) the hard limit itself can be lifted.
        let generous = libc::rlimit {
            rlim_cur: GENEROUS_NOFILE.max(limit.rlim_max),
            rlim_max: GENEROUS_NOFILE.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &generous) == 0 {
            return generous.rlim_cur;
        }
        if limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return wanted.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// Sets the open-file limit (soft and hard) of another process.
pub fn set_nofile_limit_of(pid: u32, limit: u64) -> io::Result<()> {
    let wanted = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit with a valid pointer to a local struct and a null old-limit pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &wanted,
            std::ptr::null_mut(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `VmRSS` of process `pid` in kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Latency percentile (`p` in 0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Connection tasks of an in-process gateway that panicked (caught by the shard).
pub fn panics(gateway: &super::Gateway) -> u64 {
    gateway.shard_sum(|m| m.panics.get())
}
