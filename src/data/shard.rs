//! One shard: a thread pinned to a core, running its own monoio runtime (io_uring, falling
//! back to epoll), its own SO_REUSEPORT listeners, connection pool, round-robin cursors and
//! view of the snapshot. Nothing here is shared with other shards except what `Shared`
//! holds, and that is read on the control path only. A shard never blocks.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};

use crate::access_log::AccessLogBuffer;
use crate::auth::TokenCache;
use crate::cli::Driver;
use crate::compile::snapshot::Snapshot;
use crate::data::memory::StormWatch;
use crate::data::proxy::buffers::BufferPool;
use crate::data::shared::{ListenerKind, Shared, CONTROL_INTERVAL};
use crate::ids::{EndpointId, UpstreamId};
use crate::metrics::{latency_histogram, LabelMap, MetricsHub, ShardMetrics};
use crate::tls::ClientStream;
use crate::upstream::balancer::RoundRobinCursors;
use crate::upstream::connection::{OpenConnections, UpstreamConnection};
use crate::upstream::health::{
    Change, FailureCause, HealthWord, LocalHealth, SuspensionPolicy, Transition,
};
use crate::upstream::local::LocalUpstreams;
use crate::upstream::pool::ConnectionPool;
use crate::upstream::probe::{HealthCheckers, ProbeTarget};
use crate::upstream::signals::SuspensionSignals;
use hdrhistogram::Histogram;

/// io_uring submission queue size per shard.
const RING_ENTRIES: u32 = 4096;
/// Control ticks between two publications of histograms and pool sizes (about 1 s).
const PUBLISH_EVERY_TICKS: u32 = 20;
/// Pause after an accept error (EMFILE, ENFILE, ENOBUFS) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a shard thread starts with.
pub struct ShardConfig {
    pub index: usize,
    pub core: Option<core_affinity::CoreId>,
    pub driver: Driver,
    pub listeners: Vec<(ListenerKind, std::net::TcpListener)>,
    pub shared: Arc<Shared>,
    pub access_log: Option<AccessLogBuffer>,
    /// Asks the control plane to give free heap memory back (never blocks).
    pub memory: crate::data::memory::ReleaseHandle,
}

type Started = mpsc::Sender<io::Result<(usize, &'static str)>>;

/// The shard thread's body: pins, builds the runtime, serves until drained.
pub fn run(config: ShardConfig, started: Started) {
    if let Some(core) = config.core {
        if !core_affinity::set_for_current(core) {
            log::warn!("shard {}: could not pin to core {}", config.index, core.id);
        }
    }
    let failed = |e: io::Error, started: &Started| {
        let _ = started.send(Err(io::Error::new(
            e.kind(),
            format!("shard {}: cannot build the io runtime: {e}", config.index),
        )));
    };
    let uring = || {
        // Completions are reaped by the shard's own thread only: no inter-processor
        // interrupt per completion (COOP_TASKRUN), one submitter (SINGLE_ISSUER), and the
        // kernel's completion work deferred to the shard's next wait instead of run whenever
        // the thread enters the kernel (DEFER_TASKRUN: in A/B runs of bench/compare.py, CPU
        // per request and p99 equal or a little lower). Kernels older than 6.1 refuse the
        // flags; the ring is then built without them.
        let mut tuned = io_uring::IoUring::builder();
        tuned
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(tuned)
            .enable_timer()
            .build()
            .or_else(|_| {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .with_entries(RING_ENTRIES)
                    .enable_timer()
                    .build()
            })
    };
    let legacy = || {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
    };
    match config.driver {
        Driver::Auto | Driver::Uring => match uring() {
            Ok(mut rt) => rt.block_on(shard_main(config, started, "io_uring")),
            Err(e) if config.driver == Driver::Uring => failed(e, &started),
            Err(e) => {
                log::warn!(
                    "shard {}: io_uring is unavailable ({e}); using epoll",
                    config.index
                );
                match legacy() {
                    Ok(mut rt) => rt.block_on(shard_main(config, started, "epoll")),
                    Err(e) => failed(e, &started),
                }
            }
        },
        Driver::Legacy => match legacy() {
            Ok(mut rt) => rt.block_on(shard_main(config, started, "epoll")),
            Err(e) => failed(e, &started),
        },
    }
}

/// A shard's view of one snapshot, with the per-shard state sized to its tables.
pub struct ShardView {
    pub snapshot: Arc<Snapshot>,
    pub generation: u64,
    pub cursors: RoundRobinCursors,
    /// Metric label indices of the snapshot's APIs and endpoints.
    pub labels: LabelMap,
}

impl ShardView {
    fn new(snapshot: Arc<Snapshot>, generation: u64, shard: usize, hub: &MetricsHub) -> Self {
        ShardView {
            cursors: RoundRobinCursors::new(&snapshot.groups, shard),
            labels: hub.label_map(&snapshot),
            snapshot,
            generation,
        }
    }
}

/// Request latencies of one shard, in microseconds.
pub struct LatencyHistograms {
    pub total: Histogram<u64>,
    pub upstream: Histogram<u64>,
}

/// Everything one shard owns. Shared by its tasks through `Rc`.
pub struct ShardContext {
    pub index: usize,
    pub driver: &'static str,
    pub shared: Arc<Shared>,
    view: RefCell<Rc<ShardView>>,
    pub pool: RefCell<ConnectionPool<UpstreamConnection>>,
    /// Upstream connections open on this shard, pooled or in use.
    pub upstream_open: OpenConnections,
    /// The last health epoch this shard saw per upstream.
    local_health: RefCell<LocalHealth>,
    /// Addresses and drain flags per upstream, copied from the process-wide table.
    pub upstreams: RefCell<LocalUpstreams>,
    /// This shard's share of the active health checks; they outlive reloads.
    health_checkers: RefCell<HealthCheckers>,
    /// Wakes this shard's requests waiting on an endpoint that went down.
    pub suspensions: SuspensionSignals,
    /// Jitter source (backoffs).
    rng: Cell<u64>,
    /// Tokens this shard validated recently.
    pub tokens: RefCell<TokenCache>,
    pub connections: Rc<ClientConnections>,
    /// This shard's counters (it is their only writer).
    metrics: RefCell<Arc<ShardMetrics>>,
    pub latency: RefCell<LatencyHistograms>,
    /// This shard's access log lines, when the access log is on.
    pub access_log: RefCell<Option<AccessLogBuffer>>,
    draining: Cell<bool>,
    /// Full-size I/O buffers of connections between requests.
    pub buffers: BufferPool,
    /// This shard's token allowances of the throttling tiers.
    pub rate_limits: crate::ratelimit::ShardRateLimits,
}

impl ShardContext {
    /// The snapshot new requests use. An `Rc` clone: no atomic, no lock.
    pub fn view(&self) -> Rc<ShardView> {
        Rc::clone(&self.view.borrow())
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// This shard's counters.
    pub fn metrics(&self) -> Arc<ShardMetrics> {
        Arc::clone(&self.metrics.borrow())
    }

    /// Runs `f` with the counters (no refcount traffic).
    #[inline]
    pub fn with_metrics<R>(&self, f: impl FnOnce(&ShardMetrics) -> R) -> R {
        f(&self.metrics.borrow())
    }

    /// Hands the access log lines gathered so far to the writer.
    fn flush_access_log(&self) {
        if let Some(buffer) = self.access_log.borrow_mut().as_mut() {
            let dropped = buffer.flush();
            if dropped > 0 {
                self.with_metrics(|m| m.access_log_dropped.add(dropped));
            }
        }
    }

    /// Publishes what the admin thread reads but the shard keeps locally.
    fn publish_observations(&self) {
        let view = self.view();
        let pool = self.pool.borrow();
        self.with_metrics(|metrics| {
            for (endpoint, &label) in view.snapshot.endpoints.iter().zip(&view.labels.endpoint) {
                if let Some(counters) = metrics.endpoint(label) {
                    counters.idle.set(pool.idle(endpoint.upstream) as i64);
                }
            }
            metrics
                .upstream_connections_open
                .set(self.upstream_open.get());
        });
        let latency = self.latency.borrow();
        self.shared
            .metrics
            .publish_histograms(self.index, &latency.total, &latency.upstream);
    }

    /// Passive failure detection: an attempt on `endpoint` failed before any response byte
    /// (connect, TLS handshake, a fresh connection closed, an attempt timeout). Suspends it
    /// for all shards.
    pub fn endpoint_failed(
        &self,
        view: &ShardView,
        endpoint: EndpointId,
        policy: &SuspensionPolicy,
        cause: FailureCause,
        what: &str,
    ) {
        let snapshot = &view.snapshot;
        let upstream = snapshot.endpoints[endpoint.index()].upstream;
        let health = &snapshot.upstreams.health;
        let transition = health.report_failure(upstream, Instant::now(), policy, cause);
        if let Transition::Suspended { for_ms } | Transition::Resuspended { for_ms, .. } =
            transition
        {
            let label = view.labels.endpoint[endpoint.index()];
            self.with_metrics(|m| {
                if let Some(c) = m.endpoint(label) {
                    c.suspensions.inc();
                }
            });
            let probe = if matches!(transition, Transition::Resuspended { .. }) {
                " (its probe failed)"
            } else {
                ""
            };
            log::warn!(
                "endpoint {} suspended for {for_ms} ms: {what}{probe}",
                snapshot.endpoints[endpoint.index()].origin()
            );
        }
        // This shard knows already: its idle connections to the endpoint are suspect.
        self.reconcile(upstream, health.load(upstream));
    }

    /// An attempt on `endpoint` got a response: healthy again for all shards (a plain load
    /// when it already was).
    pub fn endpoint_succeeded(&self, view: &ShardView, endpoint: EndpointId) {
        let snapshot = &view.snapshot;
        let upstream = snapshot.endpoints[endpoint.index()].upstream;
        if snapshot.upstreams.health.report_success(upstream) == Transition::Recovered {
            log::info!(
                "endpoint {} healthy again: it answered a request",
                snapshot.endpoints[endpoint.index()].origin()
            );
        }
    }

    /// Reconciles this shard with an upstream's health word: when it went down (or bounced)
    /// since this shard last looked, the shard's idle connections to it are closed, and when
    /// it went down, the requests waiting on it are told.
    #[inline]
    pub fn reconcile(&self, upstream: UpstreamId, word: HealthWord) {
        let change = self.local_health.borrow().observe_word(upstream, word);
        if let Some(change) = change {
            if change.drains_pool() {
                self.pool.borrow_mut().drain(upstream);
            }
            if change == Change::Down {
                self.suspensions.notify_down(upstream);
            }
        }
    }

    /// Looks at the health word of every upstream of the current snapshot: a suspension made
    /// by another shard reaches this shard's waiting requests within a control interval even
    /// when no new request reads the word.
    fn reconcile_all(&self) {
        let view = self.view();
        let health = &view.snapshot.upstreams.health;
        for endpoint in &view.snapshot.endpoints {
            self.reconcile(endpoint.upstream, health.load(endpoint.upstream));
        }
    }

    /// `base` scaled by a factor in [0.5, 1.5) (xorshift; no shared state).
    pub fn jittered(&self, base: Duration) -> Duration {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        base.mul_f64(0.5 + (x >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn refresh_view(&self) {
        let generation = self.shared.generation();
        if generation == self.view.borrow().generation {
            return;
        }
        let (snapshot, generation) = self.shared.snapshot();
        // Upstream ids mean the same server in every snapshot: pools, health observations
        // and checkers of upstreams still present carry on untouched; the pool closes the
        // idle connections of the others and refuses them from now on.
        self.pool
            .borrow_mut()
            .set_live(snapshot.endpoints.iter().map(|e| e.upstream));
        self.local_health
            .borrow_mut()
            .grow_to(snapshot.upstreams.len());
        let view = ShardView::new(snapshot, generation, self.index, &self.shared.metrics);
        let grown = {
            let metrics = self.metrics.borrow();
            (!metrics.fits(view.labels.api_labels, view.labels.endpoint_labels)).then(|| {
                Arc::new(metrics.grown(view.labels.api_labels, view.labels.endpoint_labels))
            })
        };
        if let Some(grown) = grown {
            self.shared.metrics.install(self.index, Arc::clone(&grown));
            *self.metrics.borrow_mut() = grown;
        }
        self.rate_limits.follow(&view.snapshot);
        *self.view.borrow_mut() = Rc::new(view);
        self.refresh_upstreams(true);
        log::info!(
            "shard {}: now serving configuration generation {generation}",
            self.index
        );
    }

    /// Follows the process-wide upstream table: new addresses (idle connections to
    /// addresses DNS no longer returns are closed), admin drains (their idle connections
    /// closed), and the health checks that depend on both. Two loads when nothing moved.
    fn refresh_upstreams(&self, view_changed: bool) {
        let view = self.view();
        let refreshed = self
            .upstreams
            .borrow_mut()
            .refresh(&view.snapshot.upstreams);
        {
            let local = self.upstreams.borrow();
            let mut pool = self.pool.borrow_mut();
            for &id in &refreshed.readdressed {
                pool.retain(id, |conn| local.has_address(id, conn.peer));
            }
            for &id in &refreshed.drained {
                pool.drain(id);
            }
        }
        if view_changed || !refreshed.readdressed.is_empty() {
            self.sync_health_checks(&view);
        }
    }

    /// Makes this shard's checkers match the current snapshot: upstream `i` is checked by
    /// shard `i mod workers` (the process-wide id, so the assignment survives reloads), with
    /// the settings of the first group it is a member of that checks.
    fn sync_health_checks(&self, view: &ShardView) {
        let snapshot = &view.snapshot;
        let workers = self.shared.workers.max(1);
        let local = self.upstreams.borrow();
        let mut targets: Vec<ProbeTarget> = Vec::new();
        for (id, endpoint) in snapshot.endpoints.iter().enumerate() {
            if endpoint.upstream.index() % workers != self.index
                || targets.iter().any(|t| t.upstream == endpoint.upstream)
            {
                continue;
            }
            let endpoint_id = EndpointId(id as u32);
            let checking = snapshot.groups.iter().find_map(|g| {
                let settings = g.health_check.as_ref()?;
                g.members
                    .iter()
                    .any(|m| m.endpoint == endpoint_id)
                    .then(|| (settings.clone(), g.suspension, g.http2))
            });
            let Some((mut settings, policy, http2)) = checking else {
                continue;
            };
            // The HTTP check speaks plain HTTP/1.1: https and HTTP/2 endpoints get a TCP
            // connect check.
            if endpoint.scheme == crate::compile::config::url::Scheme::Https || http2 {
                settings.path = None;
            }
            targets.push(ProbeTarget {
                upstream: endpoint.upstream,
                addrs: local.addresses(endpoint.upstream),
                origin: endpoint.origin().into(),
                authority: endpoint.authority.clone(),
                settings,
                policy,
            });
        }
        drop(local);
        self.health_checkers
            .borrow_mut()
            .sync(&snapshot.upstreams.health, targets);
    }
}

async fn shard_main(config: ShardConfig, started: Started, driver: &'static str) {
    let ShardConfig {
        index,
        listeners,
        shared,
        access_log,
        memory,
        ..
    } = config;
    let (snapshot, generation) = shared.snapshot();
    let gateway = &snapshot.gateway;
    let mut pool = ConnectionPool::new(
        gateway.upstream.max_idle_per_endpoint,
        Duration::from_millis(gateway.timeouts.upstream_idle_ms),
    );
    pool.set_live(snapshot.endpoints.iter().map(|e| e.upstream));
    let drain_for = Duration::from_millis(gateway.timeouts.drain_ms);
    let tokens = TokenCache::new(gateway.jwt.cache_entries, gateway.jwt.clock_skew_secs);
    let upstreams = snapshot.upstreams.len();
    let view = ShardView::new(snapshot, generation, index, &shared.metrics);
    let rate_limits = crate::ratelimit::ShardRateLimits::new(
        Arc::clone(&shared.rate_limits),
        index,
        shared.workers,
        &view.snapshot,
    );
    let metrics = Arc::new(ShardMetrics::new(
        view.labels.api_labels,
        view.labels.endpoint_labels,
    ));
    shared.metrics.install(index, Arc::clone(&metrics));
    let ctx = Rc::new(ShardContext {
        index,
        driver,
        shared: Arc::clone(&shared),
        view: RefCell::new(Rc::new(view)),
        local_health: RefCell::new(LocalHealth::new(upstreams)),
        upstreams: RefCell::new(LocalUpstreams::default()),
        health_checkers: RefCell::new(HealthCheckers::default()),
        suspensions: SuspensionSignals::default(),
        rng: Cell::new(
            0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
        ),
        pool: RefCell::new(pool),
        tokens: RefCell::new(tokens),
        connections: Rc::new(ClientConnections::default()),
        metrics: RefCell::new(metrics),
        latency: RefCell::new(LatencyHistograms {
            total: latency_histogram(),
            upstream: latency_histogram(),
        }),
        access_log: RefCell::new(access_log),
        draining: Cell::new(false),
        buffers: BufferPool::default(),
        upstream_open: OpenConnections::default(),
        rate_limits,
    });

    let mut listener_fds = Vec::new();
    for (kind, std_listener) in listeners {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        listener_fds.push(listener.as_raw_fd());
        monoio::spawn(accept_loop(Rc::clone(&ctx), listener, kind));
    }
    ctx.refresh_upstreams(true);
    shared.mark_ready();
    let _ = started.send(Ok((index, driver)));
    drop(started);

    let mut ticks = 0u32;
    let mut storm = StormWatch::default();
    while !shared.is_draining() {
        monoio::time::sleep(CONTROL_INTERVAL).await;
        ctx.refresh_view();
        ctx.refresh_upstreams(false);
        ctx.reconcile_all();
        ctx.pool.borrow_mut().evict_expired(Instant::now());
        ctx.rate_limits.tick();
        ctx.flush_access_log();
        ticks = ticks.wrapping_add(1);
        if ticks % PUBLISH_EVERY_TICKS == 0 {
            ctx.publish_observations();
            ctx.buffers.trim();
            let open = ctx.connections.open();
            if let Some(peak) = storm.subsided(ctx.connections.take_peak(), open) {
                // The shard's own spare buffers go now (cheap, shard-local); walking the
                // allocator's arenas (milliseconds) is the control plane's job.
                ctx.buffers.release_all();
                memory.request(format!(
                    "shard {index}: {open} client connections after a peak of {peak}: spare \
                     buffers released"
                ));
            }
        }
    }
    ctx.publish_observations();
    ctx.health_checkers.borrow_mut().stop_all();
    drain(&ctx, &listener_fds, drain_for).await;
    crate::data::h2::upstream::close_all();
    ctx.flush_access_log();
    // The buffer holds a sender of the writer's queue: release it now rather than when the
    // last task holding the context is dropped, so the writer can finish and exit.
    ctx.access_log.borrow_mut().take();
}

/// Stops accepting, wakes idle keep-alive connections so they close, and waits (bounded) for
/// in-flight requests to finish.
async fn drain(ctx: &ShardContext, listener_fds: &[RawFd], drain_for: Duration) {
    ctx.draining.set(true);
    for &fd in listener_fds {
        // Completes the pending accept with an error; the accept loop sees `draining` and ends.
        // SAFETY: `fd` belongs to a listener still owned by its accept loop task.
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
    ctx.connections.shutdown_idle();
    // HTTP/2 connections are never idle that way: they send GOAWAY and finish their streams.
    crate::data::h2::begin_drain();
    let deadline = Instant::now() + drain_for;
    while ctx.connections.open() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
        ctx.connections.shutdown_idle();
    }
    if ctx.connections.open() > 0 {
        log::warn!(
            "shard {}: drain timeout; closing {} connections",
            ctx.index,
            ctx.connections.open()
        );
        // Whatever still runs (a slow response, a WebSocket tunnel) ends now: its reads and
        // writes fail, and its task closes both of its connections on the way out.
        ctx.connections.shutdown_all();
        let closing = Instant::now() + Duration::from_secs(1);
        while ctx.connections.open() > 0 && Instant::now() < closing {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept_loop(ctx: Rc<ShardContext>, listener: TcpListener, kind: ListenerKind) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if ctx.is_draining() {
                    break;
                }
                let _ = stream.set_nodelay(true);
                let task = serve_accepted(Rc::clone(&ctx), stream, peer, kind);
                monoio::spawn(CatchUnwind {
                    inner: task,
                    ctx: Rc::clone(&ctx),
                });
            }
            Err(_) if ctx.is_draining() => break,
            Err(e) => {
                // EMFILE and friends: say so (at most once a second) and back off instead of
                // spinning; the pending connections wait in the backlog.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    log::error!("shard {}: accept failed: {e}; backing off", ctx.index);
                    last_error_log = Some(Instant::now());
                }
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A connection's task: the TLS handshake on HTTPS listeners (inside the task, so a slow
/// handshake never holds up the accept loop), then the request loop.
async fn serve_accepted(
    ctx: Rc<ShardContext>,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    kind: ListenerKind,
) {
    let stream = match kind {
        ListenerKind::Http => ClientStream::from(tcp),
        ListenerKind::Https => {
            let view = ctx.view();
            let timeout = Duration::from_millis(view.snapshot.gateway.timeouts.tls_handshake_ms);
            // Boxed: the handshake's state is large and would otherwise size every
            // connection task, plain HTTP ones included, for the whole connection's life.
            let handshake = Box::pin(view.snapshot.tls.server.accept(tcp, timeout));
            match handshake.await {
                Ok(tls) => {
                    ctx.with_metrics(|m| m.tls_handshakes.inc());
                    ClientStream::from(tls)
                }
                Err(e) => {
                    ctx.with_metrics(|m| match e {
                        crate::tls::HandshakeError::PlainHttp => m.tls_plain_http.inc(),
                        _ => m.tls_handshake_failures.inc(),
                    });
                    log::debug!("shard {}: TLS handshake with {peer} failed: {e}", ctx.index);
                    return;
                }
            }
        }
    };
    ctx.with_metrics(|m| {
        m.client_connections_open.add(1);
        m.client_connections_total.inc();
    });
    crate::data::proxy::serve_connection(Rc::clone(&ctx), stream, peer, kind).await;
    ctx.with_metrics(|m| m.client_connections_open.add(-1));
}

/// Runs a connection task, turning a panic into a closed connection instead of a dead shard.
struct CatchUnwind<F> {
    inner: F,
    ctx: Rc<ShardContext>,
}

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of `self`, and
        // `CatchUnwind` has no Drop impl that could move it.
        let this = unsafe { self.get_unchecked_mut() };
        let ctx = &this.ctx;
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                ctx.with_metrics(|m| m.panics.inc());
                log::error!(
                    "shard {}: a connection task panicked and was closed: {message}",
                    ctx.index
                );
                Poll::Ready(())
            }
        }
    }
}

/// The open client connections of a shard, so that a drain can wake the idle ones.
#[derive(Default)]
pub struct ClientConnections {
    slots: RefCell<Vec<Option<ConnectionEntry>>>,
    free: RefCell<Vec<usize>>,
    open: Cell<usize>,
    /// The most connections open at once since the control loop last asked: a storm shorter
    /// than its interval is still seen.
    peak: Cell<usize>,
}

struct ConnectionEntry {
    fd: RawFd,
    idle: bool,
}

impl ClientConnections {
    /// Registers a connection; the slot is released when the returned guard drops.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> ClientSlot {
        let entry = Some(ConnectionEntry { fd, idle: false });
        let index = match self.free.borrow_mut().pop() {
            Some(index) => {
                self.slots.borrow_mut()[index] = entry;
                index
            }
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(entry);
                slots.len() - 1
            }
        };
        let open = self.open.get() + 1;
        self.open.set(open);
        if open > self.peak.get() {
            self.peak.set(open);
        }
        ClientSlot {
            registry: Rc::clone(self),
            index,
        }
    }

    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// The most connections open at once since the last call.
    pub fn take_peak(&self) -> usize {
        self.peak.replace(self.open.get())
    }

    /// Shuts every connection down both ways (the drain's deadline passed).
    fn shutdown_all(&self) {
        for entry in self.slots.borrow().iter().flatten() {
            // SAFETY: the fd is owned by a live connection task (its slot is registered).
            unsafe { libc::shutdown(entry.fd, libc::SHUT_RDWR) };
        }
    }

    /// Half-closes every connection waiting for its next request: the pending read returns
    /// end-of-stream and the connection ends as if the client had left.
    fn shutdown_idle(&self) {
        for entry in self.slots.borrow().iter().flatten() {
            if entry.idle {
                // SAFETY: the fd is owned by a live connection task (its slot is registered).
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RD) };
            }
        }
    }
}

/// A registered connection; dropping it unregisters.
pub struct ClientSlot {
    registry: Rc<ClientConnections>,
    index: usize,
}

impl ClientSlot {
    /// Marks the connection as waiting for a request (idle) or working on one.
    pub fn set_idle(&self, idle: bool) {
        if let Some(entry) = &mut self.registry.slots.borrow_mut()[self.index] {
            entry.idle = idle;
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.registry.slots.borrow_mut()[self.index] = None;
        self.registry.free.borrow_mut().push(self.index);
        self.registry.open.set(self.registry.open.get() - 1);
    }
}
