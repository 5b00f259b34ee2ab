//! One shard: a thread pinned to a core, running its own monoio runtime (io_uring, falling
//! back to epoll), its own SO_REUSEPORT listeners, connection pool, round-robin cursors and
//! view of the snapshot (`context`). Nothing here is shared with other shards except what
//! `Shared` holds, and that is read on the control path only. A shard never blocks.

mod catch_unwind;
mod connections;
mod context;

use catch_unwind::CatchUnwind;
pub use connections::{ClientConnections, ClientSlot};
pub use context::{LatencyHistograms, ShardContext, ShardView};

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};

use crate::access_log::AccessLogBuffer;
use crate::auth::TokenCache;
use crate::cli::Driver;
use crate::data::memory::StormWatch;
use crate::data::proxy::buffers::BufferPool;
use crate::data::shared::{ListenerKind, Shared, CONTROL_INTERVAL};
use crate::metrics::{latency_histogram, ShardMetrics};
use crate::tls::ClientStream;
use crate::upstream::connection::OpenConnections;
use crate::upstream::health::LocalHealth;
use crate::upstream::local::LocalUpstreams;
use crate::upstream::pool::ConnectionPool;
use crate::upstream::probe::HealthCheckers;
use crate::upstream::signals::SuspensionSignals;

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
        pipes: Default::default(),
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
        let now = Instant::now();
        ctx.pool.borrow_mut().evict_expired(now);
        ctx.connections.expire_parked(now);
        ctx.rate_limits.tick();
        ctx.flush_access_log();
        ticks = ticks.wrapping_add(1);
        if ticks % PUBLISH_EVERY_TICKS == 0 {
            ctx.publish_observations();
            ctx.buffers.trim();
            // Awake connections, not open ones, hold the memory (a parked one holds a few
            // hundred bytes): a storm of requests that ends in parked connections is a storm.
            let awake = ctx.connections.awake();
            if let Some(peak) = storm.subsided(ctx.connections.take_peak(), awake) {
                // The shard's own spare buffers go now (cheap, shard-local); walking the
                // allocator's arenas (milliseconds) is the control plane's job.
                ctx.buffers.release_all();
                ctx.pipes.release_all();
                memory.request(format!(
                    "shard {index}: {awake} client connections awake after a peak of {peak}: \
                     spare buffers released"
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
                // Two kinds of task: a plain connection's stays small while it is idle (its
                // request path is boxed while awake), a TLS one's holds the session.
                let ctx = Rc::clone(&ctx);
                match kind {
                    ListenerKind::Http => monoio::spawn(CatchUnwind {
                        inner: crate::data::proxy::idle::serve_plain(Rc::clone(&ctx), stream, peer),
                        ctx,
                    }),
                    ListenerKind::Https => monoio::spawn(CatchUnwind {
                        inner: serve_tls(Rc::clone(&ctx), stream, peer),
                        ctx,
                    }),
                };
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

/// An HTTPS connection's task: the TLS handshake (inside the task, so a slow handshake never
/// holds up the accept loop), then the request loop.
async fn serve_tls(ctx: Rc<ShardContext>, tcp: TcpStream, peer: std::net::SocketAddr) {
    let view = ctx.view();
    let timeout = Duration::from_millis(view.snapshot.gateway.timeouts.tls_handshake_ms);
    // Boxed: the handshake's state is large and would otherwise size the task for the whole
    // connection's life.
    let handshake = Box::pin(view.snapshot.tls.server.accept(tcp, timeout));
    let stream = match handshake.await {
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
    };
    drop(view);
    // Open connections are the registry's count (published by the control loop).
    ctx.with_metrics(|m| m.client_connections_total.inc());
    crate::data::proxy::serve_connection(Rc::clone(&ctx), stream, peer).await;
}
