//! One worker thread: a monoio runtime pinned to a core, its connections, and (open loop)
//! its dispatcher.
//!
//! Open loop: request `i` of the whole run is due at `t0 + i / rate`. Thread `k` of `T`
//! owns the requests `i = k, k + T, k + 2T, ...`. Its dispatcher sleeps (on a timerfd, see
//! [`crate::timer`]) until the next one is due, then releases every request that is due by
//! then into a FIFO. An idle connection takes the oldest released request. A connection
//! carries one request at a time (HTTP/1.1 without pipelining), so when every connection is
//! busy, due requests wait in the FIFO; their latency still counts from their intended time.
//! The dispatcher records its own lag (release time minus intended time): that is the
//! generator's error, reported and checked separately.
//!
//! Closed loop: each connection sends its next request as soon as the previous response is
//! complete, like wrk; the latency counts from the actual send.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector, TlsError};
use rustls::pki_types::ServerName;

use crate::http::{HttpError, ResponseReader};
use crate::queue::SlotQueue;
use crate::stats::{Cause, ErrorKind, Msg, ThreadStats};
use crate::timer::PreciseTimer;

/// Read buffer per connection (reused for every response).
const READ_BUF: usize = 16 * 1024;
/// A response head larger than this is a protocol error.
const MAX_HEAD: usize = 1024 * 1024;

/// A connect destination: address plus TLS server name when https.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub tls_name: Option<ServerName<'static>>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedUrl {
    pub target: usize,
    pub request: Vec<u8>,
    pub head_only: bool,
}

/// Everything the workers share, read-only.
#[derive(Debug)]
pub(crate) struct Plan {
    pub targets: Vec<Target>,
    pub urls: Vec<PlannedUrl>,
    pub threads: usize,
    pub conns_per_thread: Vec<usize>,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    pub insecure: bool,
}

/// A worker's report after connecting, before the start.
#[derive(Debug)]
pub(crate) struct Ready {
    pub connected: usize,
    pub first_error: Option<String>,
}

/// What a worker returns after the run.
#[derive(Debug)]
pub(crate) struct WorkerOut {
    pub stats: ThreadStats,
    pub precise_timer: bool,
    pub cpu: Duration,
    /// Whether the runtime got io_uring (else monoio's epoll fallback).
    pub io_uring: bool,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, buf: Rc<Vec<u8>>) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await.0,
            Stream::Tls(s) => s.write_all(buf).await.0,
        }
    }

    async fn read<T: IoBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }
}

struct Conn {
    id: usize,
    /// One stream per target (several URLs may name several hosts).
    streams: Vec<Option<Stream>>,
    /// Requests completed on the current stream of each target.
    served: Vec<u64>,
    connected_before: Vec<bool>,
    buf: Vec<u8>,
    next_url: usize,
    backoff: Duration,
}

/// How one request/response exchange ended, short of a timeout.
enum ExErr {
    Write(std::io::Error),
    Read(std::io::Error),
    Http(HttpError),
}

struct Exchange {
    status: u16,
    keep_alive: bool,
    server_close: bool,
    body_bytes: u64,
    read_bytes: u64,
    written: u64,
    extra: bool,
}

struct Ctx {
    plan: Arc<Plan>,
    k: usize,
    t0: Instant,
    measure_start: Instant,
    end: Instant,
    drain_deadline: Instant,
    stats: RefCell<ThreadStats>,
    queue: SlotQueue,
    requests: Vec<Rc<Vec<u8>>>,
    tls: Option<TlsConnector>,
    precise: Cell<bool>,
    /// This thread's CPU time when the measured window began (after the warmup).
    cpu_at_start: Cell<Option<Duration>>,
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The body of worker thread `k`: connect, report ready, wait for the start, run.
/// Returns `None` when the run was called off before the start.
pub(crate) fn run_worker(
    k: usize,
    plan: Arc<Plan>,
    ready_tx: Sender<(usize, Ready)>,
    start_rx: Receiver<Option<Instant>>,
    msg_tx: Sender<Msg>,
) -> Result<Option<WorkerOut>, String> {
    let conns = plan.conns_per_thread[k];
    let entries = ((conns * 2 + 64).next_power_of_two()).clamp(256, 32768) as u32;
    let mut builder = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().with_entries(entries);
    // Completions are delivered at the worker's next kernel entry instead of by interrupting
    // it (COOP_TASKRUN), and only this thread submits (SINGLE_ISSUER): about 5-8% less CPU
    // per request in closed loop against nginx on this 2-core machine. Older kernels do not
    // know the flags; they get monoio's default ring rather than the epoll fallback.
    if uring_flags_supported() {
        let mut urb =
            io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
        urb.setup_coop_taskrun().setup_single_issuer();
        builder = builder.uring_builder(urb);
    }
    let mut rt = match builder.enable_timer().build() {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("cannot build the monoio runtime: {e}");
            let _ = ready_tx.send((
                k,
                Ready {
                    connected: 0,
                    first_error: Some(msg.clone()),
                },
            ));
            return Err(msg);
        }
    };
    let uring = matches!(rt, monoio::FusionRuntime::Uring(_));
    let out = rt.block_on(worker_main(k, plan, ready_tx, start_rx, msg_tx));
    out.map(|o| {
        o.map(|mut o| {
            o.io_uring = uring;
            o
        })
    })
}

/// Whether the kernel takes IORING_SETUP_COOP_TASKRUN and IORING_SETUP_SINGLE_ISSUER (6.0+).
fn uring_flags_supported() -> bool {
    io_uring::IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder()
        .setup_coop_taskrun()
        .setup_single_issuer()
        .build(4)
        .is_ok()
}

async fn worker_main(
    k: usize,
    plan: Arc<Plan>,
    ready_tx: Sender<(usize, Ready)>,
    start_rx: Receiver<Option<Instant>>,
    msg_tx: Sender<Msg>,
) -> Result<Option<WorkerOut>, String> {
    let n = plan.conns_per_thread[k];
    let tls = if plan.targets.iter().any(|t| t.tls_name.is_some()) {
        match crate::tls::client_config(plan.insecure) {
            Ok(cfg) => Some(TlsConnector::from(cfg)),
            Err(e) => {
                let msg = format!("TLS configuration: {e}");
                let _ = ready_tx.send((
                    k,
                    Ready {
                        connected: 0,
                        first_error: Some(msg.clone()),
                    },
                ));
                return Err(msg);
            }
        }
    } else {
        None
    };

    // Connect every connection to the first URL's target before the clock starts.
    let first = plan.urls[0].target;
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let target = plan.targets[first].clone();
        let tls = tls.clone();
        let timeout = plan.timeout;
        handles.push(monoio::spawn(async move {
            let start = Instant::now();
            let r = connect(&target, tls.as_ref(), timeout).await;
            (r, start.elapsed())
        }));
    }
    let ntargets = plan.targets.len();
    let mut conns = Vec::with_capacity(n);
    let mut initial = Vec::with_capacity(n);
    let mut first_error = None;
    for (id, h) in handles.into_iter().enumerate() {
        let (r, took) = h.await;
        let mut c = Conn {
            id,
            streams: (0..ntargets).map(|_| None).collect(),
            served: vec![0; ntargets],
            connected_before: vec![false; ntargets],
            buf: Vec::with_capacity(READ_BUF),
            next_url: id,
            backoff: Duration::ZERO,
        };
        match r {
            Ok(s) => {
                c.streams[first] = Some(s);
                c.connected_before[first] = true;
                initial.push(took);
            }
            Err(cause) => {
                if first_error.is_none() {
                    first_error = Some(format!("{}: {cause}", plan.targets[first].addr));
                }
            }
        }
        conns.push(c);
    }
    let connected = initial.len();
    if ready_tx
        .send((
            k,
            Ready {
                connected,
                first_error,
            },
        ))
        .is_err()
    {
        return Ok(None);
    }
    drop(ready_tx);
    // Blocking here is fine: nothing else runs on this thread before the start.
    let Ok(Some(t0)) = start_rx.recv() else {
        return Ok(None);
    };

    let measure_start = t0 + plan.warmup;
    let end = measure_start + plan.duration;
    let mut stats = ThreadStats::new(k, measure_start, plan.duration, Some(msg_tx));
    for took in initial {
        stats.on_connect(took, false);
    }
    let ctx = Rc::new(Ctx {
        requests: plan
            .urls
            .iter()
            .map(|u| Rc::new(u.request.clone()))
            .collect(),
        k,
        t0,
        measure_start,
        end,
        drain_deadline: end + plan.timeout,
        stats: RefCell::new(stats),
        queue: SlotQueue::new(n),
        tls,
        precise: Cell::new(false),
        cpu_at_start: Cell::new(if plan.warmup.is_zero() {
            Some(thread_cpu_time())
        } else {
            None
        }),
        plan,
    });

    let ticker = monoio::spawn(ticker(ctx.clone()));
    let mut tasks = Vec::with_capacity(n);
    let open = ctx.plan.rate.is_some();
    for c in conns {
        let ctx = ctx.clone();
        tasks.push(monoio::spawn(async move {
            if open {
                open_loop_conn(&ctx, c).await
            } else {
                closed_loop_conn(&ctx, c).await
            }
        }));
    }
    if open {
        dispatch(&ctx).await;
    }
    for t in tasks {
        t.await;
    }
    // The ticker stops one second before the end of the window, so this does not wait.
    ticker.await;
    let cpu = thread_cpu_time().saturating_sub(ctx.cpu_at_start.get().unwrap_or_default());
    // Connections only stop once every released request is taken, so this is 0.
    let leftover = ctx.queue.backlog();
    let precise = ctx.precise.get();
    let ctx = Rc::try_unwrap(ctx).map_err(|_| "worker context still shared".to_string())?;
    let mut stats = ctx.stats.into_inner();
    stats.counters.unsent += leftover;
    stats.finish_timeline();
    Ok(Some(WorkerOut {
        stats,
        precise_timer: precise || !open,
        cpu,
        io_uring: false,
    }))
}

/// Closes each second of the timeline shortly after it ends (the last one is closed after
/// the drain, so that late completions still land in it).
async fn ticker(ctx: Rc<Ctx>) {
    if ctx.cpu_at_start.get().is_none() {
        monoio::time::sleep_until(monoio::time::Instant::from_std(ctx.measure_start)).await;
        ctx.cpu_at_start.set(Some(thread_cpu_time()));
    }
    let seconds = (ctx.plan.duration.as_secs_f64().ceil() as u64).max(1);
    for s in 1..seconds {
        let at = ctx.measure_start + Duration::from_secs(s) + Duration::from_millis(2);
        monoio::time::sleep_until(monoio::time::Instant::from_std(at)).await;
        ctx.stats.borrow_mut().tick(Instant::now());
    }
}

impl Ctx {
    /// This thread's request `j`: its intended time and URL. It is request
    /// `i = k + j * threads` of the whole run, due at `t0 + i / rate`.
    fn slot(&self, j: u64) -> (Instant, usize) {
        let rate = self.plan.rate.expect("open loop");
        let i = self.k as u64 + j * self.plan.threads as u64;
        let intended = self.t0 + Duration::from_secs_f64(i as f64 / rate);
        (intended, (i % self.plan.urls.len() as u64) as usize)
    }
}

/// The open-loop schedule of this thread.
async fn dispatch(ctx: &Ctx) {
    let mut timer = PreciseTimer::new();
    ctx.precise.set(timer.is_precise());
    let mut j = 0u64;
    loop {
        let (next, _) = ctx.slot(j);
        if next >= ctx.end {
            break;
        }
        if Instant::now() < next {
            timer.sleep_until(next).await;
        }
        // Release everything due by now: several requests may have fallen due since the
        // last wake-up.
        let now = Instant::now();
        let mut stats = ctx.stats.borrow_mut();
        loop {
            let (intended, _) = ctx.slot(j);
            if intended > now || intended >= ctx.end {
                break;
            }
            if intended >= ctx.measure_start {
                stats.on_lag(now - intended);
            }
            j += 1;
        }
        drop(stats);
        ctx.queue.release_until(j);
    }
    ctx.queue.close();
}

async fn open_loop_conn(ctx: &Ctx, mut conn: Conn) {
    while let Some(j) = ctx.queue.pop(conn.id).await {
        let (intended, url) = ctx.slot(j);
        let counted = intended >= ctx.measure_start;
        if Instant::now() >= ctx.drain_deadline {
            if counted {
                ctx.stats.borrow_mut().counters.unsent += 1;
            }
            continue;
        }
        execute(ctx, &mut conn, intended, Instant::now(), url, counted).await;
    }
}

async fn closed_loop_conn(ctx: &Ctx, mut conn: Conn) {
    let n_urls = ctx.plan.urls.len();
    monoio::time::sleep_until(monoio::time::Instant::from_std(ctx.t0)).await;
    loop {
        let now = Instant::now();
        if now >= ctx.end {
            break;
        }
        let url = conn.next_url % n_urls;
        conn.next_url = conn.next_url.wrapping_add(1);
        let ok = execute(ctx, &mut conn, now, now, url, now >= ctx.measure_start).await;
        if !ok && !conn.backoff.is_zero() {
            // Do not spin on a dead server; the wait is not part of any request.
            let wake = (Instant::now() + conn.backoff).min(ctx.end);
            monoio::time::sleep_until(monoio::time::Instant::from_std(wake)).await;
        }
    }
}

async fn connect(
    target: &Target,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Stream, Cause> {
    let fut = async {
        let tcp = TcpStream::connect_addr(target.addr)
            .await
            .map_err(|e| Cause::Io(e.kind()))?;
        let _ = tcp.set_nodelay(true);
        match (&target.tls_name, tls) {
            (Some(name), Some(tls)) => match tls.connect(name.clone(), tcp).await {
                Ok(s) => Ok(Stream::Tls(Box::new(s))),
                Err(TlsError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    Err(Cause::Other(format!("TLS: {e}")))
                }
                Err(TlsError::Io(e)) => Err(Cause::Io(e.kind())),
                Err(TlsError::Rustls(e)) => Err(Cause::Other(format!("TLS: {e}"))),
            },
            _ => Ok(Stream::Plain(tcp)),
        }
    };
    match monoio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Cause::Text("connect timed out")),
    }
}

/// Runs one request on `conn` (taken up at `now`); returns whether it got a response.
async fn execute(
    ctx: &Ctx,
    conn: &mut Conn,
    intended: Instant,
    now: Instant,
    url_idx: usize,
    counted: bool,
) -> bool {
    let url = &ctx.plan.urls[url_idx];
    let t = url.target;
    ctx.stats.borrow_mut().on_issue(now, counted);
    let mut first_send: Option<Instant> = None;
    let mut retried = false;
    // The clock is read once per step: `now` stays the send time unless a connect intervenes.
    let mut now = now;
    loop {
        if conn.streams[t].is_none() {
            let start = Instant::now();
            match connect(&ctx.plan.targets[t], ctx.tls.as_ref(), ctx.plan.timeout).await {
                Ok(s) => {
                    let re = conn.connected_before[t];
                    conn.connected_before[t] = true;
                    conn.streams[t] = Some(s);
                    conn.served[t] = 0;
                    conn.backoff = Duration::ZERO;
                    now = Instant::now();
                    ctx.stats.borrow_mut().on_connect(now - start, re);
                }
                Err(cause) => {
                    conn.backoff = (conn.backoff * 2)
                        .clamp(Duration::from_millis(1), Duration::from_millis(100));
                    ctx.stats.borrow_mut().on_error(
                        counted,
                        Instant::now(),
                        ErrorKind::Connect,
                        cause,
                    );
                    return false;
                }
            }
        }
        let reused = conn.served[t] > 0;
        let stream = conn.streams[t].as_mut().expect("connected");
        let sent = now;
        let first = *first_send.get_or_insert(sent);
        let deadline = monoio::time::Instant::from_std(first + ctx.plan.timeout);
        let fut = exchange(
            stream,
            ctx.requests[url_idx].clone(),
            &mut conn.buf,
            url.head_only,
        );
        let res = monoio::time::timeout_at(deadline, fut).await;
        let done = Instant::now();
        let (kind, cause) = match res {
            Ok(Ok(ex)) => {
                conn.served[t] += 1;
                let mut st = ctx.stats.borrow_mut();
                if counted {
                    st.counters.bytes_read += ex.read_bytes;
                    st.counters.bytes_written += ex.written;
                }
                if ex.server_close {
                    st.counters.closed_by_server += 1;
                }
                if !ex.keep_alive || ex.extra {
                    conn.streams[t] = None;
                }
                st.on_response(counted, intended, first, done, ex.status, ex.body_bytes);
                return true;
            }
            Ok(Err(e)) => {
                conn.streams[t] = None;
                // A kept-alive connection that the server closed while idle fails at once
                // with nothing received: reconnect and send again (once), like browsers do.
                let idle_close = match &e {
                    ExErr::Http(HttpError::ClosedBeforeResponse) => true,
                    ExErr::Read(io) | ExErr::Write(io) => matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ),
                    _ => false,
                };
                if reused && !retried && idle_close {
                    retried = true;
                    ctx.stats.borrow_mut().counters.closed_by_server += 1;
                    continue;
                }
                match e {
                    ExErr::Write(io) => (ErrorKind::Write, Cause::Io(io.kind())),
                    ExErr::Read(io) => (ErrorKind::Read, Cause::Io(io.kind())),
                    ExErr::Http(HttpError::Malformed(why)) => {
                        (ErrorKind::Protocol, Cause::Text(why))
                    }
                    ExErr::Http(HttpError::ClosedBeforeResponse) => (
                        ErrorKind::Read,
                        Cause::Text("connection closed before the response"),
                    ),
                    ExErr::Http(HttpError::Incomplete) => (
                        ErrorKind::Read,
                        Cause::Text("connection closed in the middle of the response"),
                    ),
                }
            }
            Err(_) => {
                // Dropping the exchange cancelled its I/O; the connection is unusable.
                conn.streams[t] = None;
                (
                    ErrorKind::Timeout,
                    Cause::Text("no complete response within --timeout"),
                )
            }
        };
        ctx.stats.borrow_mut().on_error(counted, done, kind, cause);
        return false;
    }
}

/// Writes the request and reads one complete response, counting its body.
async fn exchange(
    stream: &mut Stream,
    req: Rc<Vec<u8>>,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> Result<Exchange, ExErr> {
    let written = req.len() as u64;
    stream.write_all(req).await.map_err(ExErr::Write)?;
    let mut rd = ResponseReader::new(head_only);
    let mut read_bytes = 0u64;
    buf.clear();
    loop {
        let mut b = std::mem::take(buf);
        if b.capacity() == 0 {
            // Lost to a cancelled read after a timeout; allocate again.
            b.reserve(READ_BUF);
        } else if b.len() == b.capacity() {
            if b.len() >= MAX_HEAD {
                return Err(ExErr::Http(HttpError::Malformed("response head too large")));
            }
            b.reserve(b.capacity());
        }
        let (start, cap) = (b.len(), b.capacity());
        let (r, slice) = stream.read(b.slice_mut(start..cap)).await;
        *buf = slice.into_inner();
        let n = r.map_err(ExErr::Read)?;
        if n == 0 {
            rd.eof().map_err(ExErr::Http)?;
            break;
        }
        read_bytes += n as u64;
        if rd.feed(buf).map_err(ExErr::Http)? {
            break;
        }
    }
    Ok(Exchange {
        status: rd.status,
        keep_alive: rd.keep_alive,
        server_close: rd.server_close,
        body_bytes: rd.body_bytes,
        read_bytes,
        written,
        extra: rd.extra_bytes > 0,
    })
}
