//! What one shard owns, shared by its tasks through `Rc`: its view of the snapshot, pool,
//! health caches, upstream copies, checkers, token cache, counters and buffers, and the
//! reactions to what requests and checks observe (failures, successes, reconciliation).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::AccessLogBuffer;
use crate::auth::TokenCache;
use crate::compile::snapshot::Snapshot;
use crate::data::proxy::buffers::BufferPool;
use crate::data::shared::Shared;
use crate::ids::{EndpointId, UpstreamId};
use crate::metrics::{LabelMap, MetricsHub, ShardMetrics};
use crate::upstream::balancer::RoundRobinCursors;
use crate::upstream::connection::{OpenConnections, UpstreamConnection};
use crate::upstream::health::{
    Change, FailureCause, HealthWord, LocalHealth, SuspensionPolicy, Transition,
};
use crate::upstream::local::LocalUpstreams;
use crate::upstream::pool::ConnectionPool;
use crate::upstream::probe::{HealthCheckers, ProbeTarget};
use crate::upstream::signals::SuspensionSignals;

use super::ClientConnections;
use hdrhistogram::Histogram;

/// A shard's view of one snapshot, with the per-shard state sized to its tables.
pub struct ShardView {
    pub snapshot: Arc<Snapshot>,
    pub generation: u64,
    pub cursors: RoundRobinCursors,
    /// Metric label indices of the snapshot's APIs and endpoints.
    pub labels: LabelMap,
}

impl ShardView {
    pub(super) fn new(
        snapshot: Arc<Snapshot>,
        generation: u64,
        shard: usize,
        hub: &MetricsHub,
    ) -> Self {
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
    pub(super) view: RefCell<Rc<ShardView>>,
    pub pool: RefCell<ConnectionPool<UpstreamConnection>>,
    /// Upstream connections open on this shard, pooled or in use.
    pub upstream_open: OpenConnections,
    /// The last health epoch this shard saw per upstream.
    pub(super) local_health: RefCell<LocalHealth>,
    /// Addresses and drain flags per upstream, copied from the process-wide table.
    pub upstreams: RefCell<LocalUpstreams>,
    /// This shard's share of the active health checks; they outlive reloads.
    pub(super) health_checkers: RefCell<HealthCheckers>,
    /// Wakes this shard's requests waiting on an endpoint that went down.
    pub suspensions: SuspensionSignals,
    /// Jitter source (backoffs).
    pub(super) rng: Cell<u64>,
    /// Tokens this shard validated recently.
    pub tokens: RefCell<TokenCache>,
    pub connections: Rc<ClientConnections>,
    /// This shard's counters (it is their only writer).
    pub(super) metrics: RefCell<Arc<ShardMetrics>>,
    pub latency: RefCell<LatencyHistograms>,
    /// This shard's access log lines, when the access log is on.
    pub access_log: RefCell<Option<AccessLogBuffer>>,
    pub(super) draining: Cell<bool>,
    /// Full-size I/O buffers of connections between requests.
    pub buffers: BufferPool,
    /// Empty pipes for spliced response bodies.
    pub(crate) pipes: crate::data::proxy::PipePool,
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
    pub(super) fn flush_access_log(&self) {
        if let Some(buffer) = self.access_log.borrow_mut().as_mut() {
            let dropped = buffer.flush();
            if dropped > 0 {
                self.with_metrics(|m| m.access_log_dropped.add(dropped));
            }
        }
    }

    /// Publishes what the admin thread reads but the shard keeps locally.
    pub(super) fn publish_observations(&self) {
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
            metrics
                .client_connections_open
                .set(self.connections.open() as i64);
            metrics.clock_reads.set(crate::clock::reads() as i64);
            metrics
                .large_buffers_lent
                .set(self.buffers.large().1 as i64);
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
    pub(super) fn reconcile_all(&self) {
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

    pub(super) fn refresh_view(&self) {
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
    pub(super) fn refresh_upstreams(&self, view_changed: bool) {
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
    pub(super) fn sync_health_checks(&self, view: &ShardView) {
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
