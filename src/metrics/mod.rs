//! Per-shard metrics, merged on scrape. Each shard owns its counters and is their only writer,
//! so an increment is a plain load and store (no read-modify-write, no lock, no cache line
//! shared with another writer); the admin thread only reads them. Labels (APIs by base path,
//! endpoints by origin) are registered once per process and never renumbered, so counters
//! survive reloads. Latency histograms are HdrHistograms local to the shard, published to a
//! shared slot once a second by the shard's control loop and merged by the reader.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;

use crate::auth::FailureReason;
use crate::compile::snapshot::Snapshot;

/// A counter with one writer (its shard).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Single-writer add: a load and a store, visible to readers eventually.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge with one writer (its shard).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Single-writer set (for values the owner recomputes, like pool sizes).
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Method slots of the request counters (`Method` variants, `Other` last).
pub const METHOD_SLOTS: usize = 10;
/// Status classes 1xx..5xx.
pub const STATUS_CLASSES: usize = 5;
/// API label of requests that matched no API.
pub const NO_API: u32 = 0;

/// Why a request was refused before routing (the head could not be accepted); each is a
/// `shardgate_request_rejections_total{reason}` series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Request line or field syntax, Host, target form (400).
    Syntax,
    /// Framing fields that disagree (`Content-Length` with `Transfer-Encoding`...): the
    /// smuggling probes (400).
    Framing,
    /// A path that cannot be normalised: encoded slash, climbing above `/`... (400).
    Path,
    /// A header name with `_` under `http.underscores_in_headers: reject` (400).
    UnderscoreHeader,
    /// An `Expect` other than `100-continue` (417).
    Expectation,
    /// Head or header count over the limit (431).
    HeadTooLarge,
    /// Request line over the limit (414).
    UriTooLong,
    /// HTTP version other than 1.0 and 1.1 (505).
    Version,
    /// The head did not arrive in time (408).
    Timeout,
}

impl Rejection {
    pub const ALL: [Rejection; 9] = [
        Rejection::Syntax,
        Rejection::Framing,
        Rejection::Path,
        Rejection::UnderscoreHeader,
        Rejection::Expectation,
        Rejection::HeadTooLarge,
        Rejection::UriTooLong,
        Rejection::Version,
        Rejection::Timeout,
    ];

    /// The `reason` label.
    pub const fn label(self) -> &'static str {
        match self {
            Rejection::Syntax => "syntax",
            Rejection::Framing => "framing",
            Rejection::Path => "path",
            Rejection::UnderscoreHeader => "underscore_header",
            Rejection::Expectation => "expectation",
            Rejection::HeadTooLarge => "head_too_large",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::Version => "version",
            Rejection::Timeout => "timeout",
        }
    }
}

/// Per-endpoint counters.
#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// Requests sent (or attempted) to the endpoint.
    pub attempts: Counter,
    /// Attempts that failed before any response byte (connect, reset, TLS).
    pub failures: Counter,
    /// Attempts that were retries of an earlier attempt of the same request.
    pub retries: Counter,
    /// Upstream TCP connections opened.
    pub connections_opened: Counter,
    /// Times this shard suspended the endpoint after a failure.
    pub suspensions: Counter,
    /// Requests being sent to or answered by the endpoint right now.
    pub in_flight: Gauge,
    /// Idle pooled connections (published by the shard's control loop).
    pub idle: Gauge,
}

/// Per-API WebSocket counters.
#[derive(Debug, Default)]
pub struct WebSocketCounters {
    /// Tunnels open right now.
    pub open: Gauge,
    /// Handshakes the upstream accepted (`101`).
    pub upgraded: Counter,
    /// Handshakes answered otherwise (the upstream's status, or a gateway error).
    pub refused: Counter,
    pub bytes_to_upstream: Counter,
    pub bytes_to_client: Counter,
}

/// One shard's counters, sized for the labels known when it was built.
#[derive(Debug)]
pub struct ShardMetrics {
    api_labels: usize,
    requests: Box<[Counter]>,
    endpoints: Box<[EndpointCounters]>,
    /// By API label.
    websockets: Box<[WebSocketCounters]>,
    pub client_connections_open: Gauge,
    pub client_connections_total: Counter,
    pub upstream_connections_open: Gauge,
    pub tls_handshakes: Counter,
    pub tls_handshake_failures: Counter,
    pub tls_plain_http: Counter,
    pub panics: Counter,
    pub access_log_dropped: Counter,
    /// Response body bytes moved by `splice(2)` rather than copied (`upstream.body_relay`).
    pub spliced_body_bytes: Counter,
    /// Large body buffers lent now (published by the shard's control loop).
    pub large_buffers_lent: Gauge,
    /// Reads of a long body made with the ordinary buffer: the shard's large ones were all
    /// lent.
    pub large_buffer_refusals: Counter,
    /// Monotonic clock reads made through `crate::clock` on the shard's thread (set every
    /// control tick): per request, what one reading per task poll leaves.
    pub clock_reads: Gauge,
    /// HTTP/2 client connections (h2 and h2c) past their handshake.
    pub http2_connections: Counter,
    /// HTTP/2 connections closed with `GOAWAY ENHANCE_YOUR_CALM` (a frame budget, rapid
    /// reset, CONTINUATION flood).
    pub http2_budget_exceeded: Counter,
    /// By [`Rejection`], in the order of [`Rejection::ALL`].
    rejections: [Counter; Rejection::ALL.len()],
    /// 401 and 403 answers by `FailureReason::index`.
    auth_failures: [Counter; FailureReason::ALL.len()],
}

impl ShardMetrics {
    pub fn new(api_labels: usize, endpoint_labels: usize) -> Self {
        let counters = |n: usize| {
            (0..n)
                .map(|_| Counter::default())
                .collect::<Box<[Counter]>>()
        };
        Self {
            api_labels,
            requests: counters(api_labels * METHOD_SLOTS * STATUS_CLASSES),
            endpoints: (0..endpoint_labels)
                .map(|_| EndpointCounters::default())
                .collect(),
            websockets: (0..api_labels)
                .map(|_| WebSocketCounters::default())
                .collect(),
            client_connections_open: Gauge::default(),
            client_connections_total: Counter::default(),
            upstream_connections_open: Gauge::default(),
            tls_handshakes: Counter::default(),
            tls_handshake_failures: Counter::default(),
            tls_plain_http: Counter::default(),
            panics: Counter::default(),
            access_log_dropped: Counter::default(),
            spliced_body_bytes: Counter::default(),
            large_buffers_lent: Gauge::default(),
            large_buffer_refusals: Counter::default(),
            clock_reads: Gauge::default(),
            http2_connections: Counter::default(),
            http2_budget_exceeded: Counter::default(),
            rejections: Default::default(),
            auth_failures: Default::default(),
        }
    }

    /// Counts one request refused with 401 or 403.
    #[inline]
    pub fn auth_failure(&self, reason: FailureReason) {
        self.auth_failures[reason.index()].inc();
    }

    pub fn auth_failures(&self, reason: FailureReason) -> u64 {
        self.auth_failures[reason.index()].get()
    }

    /// A larger copy (labels were added by a reload); counts carry over.
    pub fn grown(&self, api_labels: usize, endpoint_labels: usize) -> Self {
        let grown = Self::new(
            api_labels.max(self.api_labels),
            endpoint_labels.max(self.endpoints.len()),
        );
        for api in 0..self.api_labels {
            for slot in 0..METHOD_SLOTS * STATUS_CLASSES {
                let from = api * METHOD_SLOTS * STATUS_CLASSES + slot;
                grown.requests[from].add(self.requests[from].get());
            }
        }
        for (old, new) in self.websockets.iter().zip(grown.websockets.iter()) {
            new.open.set(old.open.get());
            new.upgraded.add(old.upgraded.get());
            new.refused.add(old.refused.get());
            new.bytes_to_upstream.add(old.bytes_to_upstream.get());
            new.bytes_to_client.add(old.bytes_to_client.get());
        }
        for (old, new) in self.endpoints.iter().zip(grown.endpoints.iter()) {
            new.attempts.add(old.attempts.get());
            new.failures.add(old.failures.get());
            new.retries.add(old.retries.get());
            new.connections_opened.add(old.connections_opened.get());
            new.suspensions.add(old.suspensions.get());
            new.in_flight.set(old.in_flight.get());
            new.idle.set(old.idle.get());
        }
        for (old, new) in [
            (
                &self.client_connections_total,
                &grown.client_connections_total,
            ),
            (&self.tls_handshakes, &grown.tls_handshakes),
            (&self.tls_handshake_failures, &grown.tls_handshake_failures),
            (&self.tls_plain_http, &grown.tls_plain_http),
            (&self.panics, &grown.panics),
            (&self.access_log_dropped, &grown.access_log_dropped),
            (&self.spliced_body_bytes, &grown.spliced_body_bytes),
            (&self.large_buffer_refusals, &grown.large_buffer_refusals),
            (&self.http2_connections, &grown.http2_connections),
            (&self.http2_budget_exceeded, &grown.http2_budget_exceeded),
        ] {
            new.add(old.get());
        }
        for (old, new) in self.rejections.iter().zip(grown.rejections.iter()) {
            new.add(old.get());
        }
        for (old, new) in self.auth_failures.iter().zip(&grown.auth_failures) {
            new.add(old.get());
        }
        grown
            .client_connections_open
            .add(self.client_connections_open.get());
        grown
            .upstream_connections_open
            .add(self.upstream_connections_open.get());
        grown.large_buffers_lent.set(self.large_buffers_lent.get());
        grown
    }

    pub fn fits(&self, api_labels: usize, endpoint_labels: usize) -> bool {
        api_labels <= self.api_labels && endpoint_labels <= self.endpoints.len()
    }

    /// The WebSocket counters of an API label.
    pub fn websocket(&self, api_label: u32) -> Option<&WebSocketCounters> {
        self.websockets.get(api_label as usize)
    }

    /// Counts one answered request.
    #[inline]
    pub fn request(&self, api_label: u32, method_slot: usize, status: u16) {
        let class = usize::from(status / 100).clamp(1, STATUS_CLASSES) - 1;
        let index = (api_label as usize * METHOD_SLOTS + method_slot.min(METHOD_SLOTS - 1))
            * STATUS_CLASSES
            + class;
        if let Some(counter) = self.requests.get(index) {
            counter.inc();
        }
    }

    /// Counts one request refused before routing.
    #[inline]
    pub fn reject(&self, reason: Rejection) {
        self.rejections[reason as usize].inc();
    }

    pub fn rejections(&self, reason: Rejection) -> u64 {
        self.rejections[reason as usize].get()
    }

    pub fn requests(&self, api_label: usize, method_slot: usize, class: usize) -> u64 {
        self.requests[(api_label * METHOD_SLOTS + method_slot) * STATUS_CLASSES + class].get()
    }

    pub fn api_labels(&self) -> usize {
        self.api_labels
    }

    #[inline]
    pub fn endpoint(&self, label: u32) -> Option<&EndpointCounters> {
        self.endpoints.get(label as usize)
    }

    pub fn endpoint_labels(&self) -> usize {
        self.endpoints.len()
    }
}

/// Process-wide label names, append-only. Control path only (start, reload, scrape).
#[derive(Debug, Default)]
pub struct Labels {
    apis: Vec<String>,
    endpoints: Vec<String>,
}

impl Labels {
    fn new() -> Self {
        Self {
            apis: vec![String::new()],
            endpoints: Vec::new(),
        }
    }

    fn index_of(list: &mut Vec<String>, name: &str) -> u32 {
        match list.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                list.push(name.to_owned());
                (list.len() - 1) as u32
            }
        }
    }

    pub fn apis(&self) -> &[String] {
        &self.apis
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }
}

/// A snapshot's ids translated to label indices.
#[derive(Debug, Clone, Default)]
pub struct LabelMap {
    /// By `ApiId`.
    pub api: Vec<u32>,
    /// By `EndpointId`.
    pub endpoint: Vec<u32>,
    pub api_labels: usize,
    pub endpoint_labels: usize,
}

/// Latency histograms in microseconds, 1 us to 60 s, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What a shard publishes for the reader.
pub struct PublishedHistograms {
    /// Whole request, from the head's arrival to the last response byte.
    pub total: Histogram<u64>,
    /// Upstream exchange: first attempt to the response head.
    pub upstream: Histogram<u64>,
}

/// Every shard's metrics and histograms, for the admin thread.
pub struct MetricsHub {
    labels: Mutex<Labels>,
    shards: Vec<Mutex<Arc<ShardMetrics>>>,
    histograms: Vec<Mutex<PublishedHistograms>>,
}

impl MetricsHub {
    pub fn new(shards: usize) -> Self {
        Self {
            labels: Mutex::new(Labels::new()),
            shards: (0..shards)
                .map(|_| Mutex::new(Arc::new(ShardMetrics::new(1, 0))))
                .collect(),
            histograms: (0..shards)
                .map(|_| {
                    Mutex::new(PublishedHistograms {
                        total: latency_histogram(),
                        upstream: latency_histogram(),
                    })
                })
                .collect(),
        }
    }

    /// Registers the snapshot's APIs and endpoints and maps its ids to label indices.
    pub fn label_map(&self, snapshot: &Snapshot) -> LabelMap {
        let mut labels = lock(&self.labels);
        let api = snapshot
            .apis
            .iter()
            .map(|a| Labels::index_of(&mut labels.apis, &a.base_path))
            .collect();
        let endpoint = snapshot
            .endpoints
            .iter()
            .map(|e| Labels::index_of(&mut labels.endpoints, &e.origin()))
            .collect();
        LabelMap {
            api,
            endpoint,
            api_labels: labels.apis.len(),
            endpoint_labels: labels.endpoints.len(),
        }
    }

    /// Installs a shard's (new or grown) metrics object.
    pub fn install(&self, shard: usize, metrics: Arc<ShardMetrics>) {
        *lock(&self.shards[shard]) = metrics;
    }

    /// Copies a shard's local histograms into its published slot.
    pub fn publish_histograms(
        &self,
        shard: usize,
        total: &Histogram<u64>,
        upstream: &Histogram<u64>,
    ) {
        let mut slot = lock(&self.histograms[shard]);
        // Same bounds, so this copies counts without allocating.
        let _ = slot.total.set_to(total);
        let _ = slot.upstream.set_to(upstream);
    }

    pub fn labels(&self) -> MutexGuard<'_, Labels> {
        lock(&self.labels)
    }

    pub fn shard_metrics(&self) -> Vec<Arc<ShardMetrics>> {
        self.shards.iter().map(|s| Arc::clone(&lock(s))).collect()
    }

    /// The merged latency histograms of every shard.
    pub fn merged_histograms(&self) -> PublishedHistograms {
        let mut merged = PublishedHistograms {
            total: latency_histogram(),
            upstream: latency_histogram(),
        };
        for slot in &self.histograms {
            let slot = lock(slot);
            let _ = merged.total.add(&slot.total);
            let _ = merged.upstream.add(&slot.upstream);
        }
        merged
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_indexed_by_api_method_and_class() {
        let m = ShardMetrics::new(3, 0);
        m.request(2, 1, 404);
        m.request(2, 1, 404);
        m.request(1, 0, 200);
        m.request(1, 0, 99);
        m.request(1, 0, 600);
        assert_eq!(m.requests(2, 1, 3), 2);
        assert_eq!(m.requests(1, 0, 1), 1);
        assert_eq!(m.requests(1, 0, 0), 1, "below 100 counts as 1xx");
        assert_eq!(m.requests(1, 0, 4), 1, "above 599 counts as 5xx");
        m.request(9, 0, 200); // unknown label: ignored, never a panic
    }

    #[test]
    fn growing_keeps_every_count() {
        let m = ShardMetrics::new(2, 1);
        m.request(1, 3, 503);
        m.endpoint(0).unwrap().failures.add(4);
        m.panics.inc();
        m.reject(Rejection::Path);
        m.auth_failure(FailureReason::Expired);
        m.client_connections_open.add(3);
        let g = m.grown(5, 3);
        assert!(g.fits(5, 3) && !m.fits(5, 3));
        assert_eq!(g.requests(1, 3, 4), 1);
        assert_eq!(g.endpoint(0).unwrap().failures.get(), 4);
        assert_eq!(g.panics.get(), 1);
        assert_eq!(g.rejections(Rejection::Path), 1);
        assert_eq!(g.rejections(Rejection::Framing), 0);
        assert_eq!(g.auth_failures(FailureReason::Expired), 1);
        assert_eq!(g.auth_failures(FailureReason::MissingScope), 0);
        assert_eq!(g.client_connections_open.get(), 3);
    }

    #[test]
    fn rejection_reasons_index_their_own_counters() {
        let m = ShardMetrics::new(1, 0);
        for (i, reason) in Rejection::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i);
            for _ in 0..=i {
                m.reject(reason);
            }
        }
        for (i, reason) in Rejection::ALL.into_iter().enumerate() {
            assert_eq!(m.rejections(reason), i as u64 + 1, "{}", reason.label());
        }
    }

    #[test]
    fn labels_are_stable_across_snapshots() {
        let hub = MetricsHub::new(1);
        let mut labels = hub.labels();
        let a = Labels::index_of(&mut labels.apis, "/a");
        let b = Labels::index_of(&mut labels.apis, "/b");
        assert_eq!(Labels::index_of(&mut labels.apis, "/a"), a);
        assert_ne!(a, b);
        assert_ne!(a, NO_API, "label 0 is reserved for unmatched requests");
    }

    #[test]
    fn histograms_merge_across_shards() {
        let hub = MetricsHub::new(2);
        let mut h = latency_histogram();
        h.record(100).unwrap();
        hub.publish_histograms(0, &h, &h);
        h.record(200).unwrap();
        hub.publish_histograms(1, &h, &h);
        let merged = hub.merged_histograms();
        assert_eq!(merged.total.len(), 3);
        // Publishing again replaces, it does not add.
        hub.publish_histograms(0, &h, &h);
        assert_eq!(hub.merged_histograms().total.len(), 4);
    }
}
