//! The one place the control plane and the shards meet: the current snapshot and its
//! generation, the drain flag, readiness, and the metrics and rate-limit hubs. The control
//! plane writes it (publish a snapshot, begin the drain); shards read it in their control
//! loop (every `CONTROL_INTERVAL`), never per request. It is data-plane code so that the data
//! plane never imports the control plane.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::compile::snapshot::{PublishRefused, Snapshot};
use crate::metrics::MetricsHub;

/// Which protocol a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    Http,
    Https,
}

/// State every shard can see. Read on the control path only (every ~50 ms per shard), never
/// per request.
pub struct Shared {
    /// The current snapshot; `generation` changes when a new one is published.
    current: Mutex<Arc<Snapshot>>,
    generation: AtomicU64,
    /// Set once: stop accepting, finish in-flight requests, exit.
    draining: AtomicBool,
    /// Shards whose listeners are accepting.
    ready: AtomicUsize,
    /// Every shard's counters and histograms, for the admin thread.
    pub metrics: MetricsHub,
    /// Shards started.
    pub workers: usize,
    /// Rate-limit counters of every shard, the Redis link's state, the syncer's thread.
    pub rate_limits: Arc<crate::ratelimit::RateLimitHub>,
}

impl Shared {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot and its generation.
    pub fn snapshot(&self) -> (Arc<Snapshot>, u64) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (
            Arc::clone(&current),
            self.generation.load(Ordering::Acquire),
        )
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Makes `snapshot` the one new requests use; in-flight requests finish on the old one.
    /// Shards pick it up within their control interval. Refused, leaving the serving one in
    /// place, unless `snapshot` was built from the serving one (see `Snapshot::may_replace`).
    pub fn publish(&self, snapshot: Snapshot) -> Result<(), PublishRefused> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        snapshot.may_replace(&current)?;
        *current = Arc::new(snapshot);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The health of endpoint `id` of the current snapshot, for `/endpoints`.
    pub fn health_of(&self, id: usize) -> EndpointHealth {
        let (snapshot, _) = self.snapshot();
        endpoint_health(&snapshot, id)
    }

    /// Appends the health table's metrics: state per endpoint and its transition epoch.
    pub fn render_health_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let (snapshot, _) = self.snapshot();
        let _ = writeln!(
            out,
            "# HELP shardgate_endpoint_state Health of each endpoint (1 for its current state)."
        );
        let _ = writeln!(out, "# TYPE shardgate_endpoint_state gauge");
        for (id, endpoint) in snapshot.endpoints.iter().enumerate() {
            let health = endpoint_health(&snapshot, id);
            for state in ["healthy", "suspended", "probing", "drained"] {
                let value = u8::from(health.state == state);
                let _ = writeln!(
                    out,
                    "shardgate_endpoint_state{{endpoint=\"{}\",state=\"{state}\"}} {value}",
                    endpoint.origin()
                );
            }
        }
        let _ = writeln!(out, "# HELP shardgate_endpoint_health_epoch Health transitions of each endpoint (16-bit, wraps).");
        let _ = writeln!(out, "# TYPE shardgate_endpoint_health_epoch gauge");
        for (id, endpoint) in snapshot.endpoints.iter().enumerate() {
            let _ = writeln!(
                out,
                "shardgate_endpoint_health_epoch{{endpoint=\"{}\"}} {}",
                endpoint.origin(),
                endpoint_health(&snapshot, id).epoch
            );
        }
    }

    pub(crate) fn mark_ready(&self) {
        self.ready.fetch_add(1, Ordering::AcqRel);
    }

    pub fn ready_shards(&self) -> usize {
        self.ready.load(Ordering::Acquire)
    }
}

/// An endpoint's health from the process-wide upstream table.
fn endpoint_health(snapshot: &Snapshot, id: usize) -> EndpointHealth {
    let upstream = snapshot.endpoints[id].upstream;
    let table = &snapshot.upstreams.health;
    let word = table.load(upstream);
    let now_ms = table.millis(std::time::Instant::now());
    let drained = snapshot.upstreams.is_drained(upstream);
    let state = match word.state() {
        _ if drained => "drained",
        crate::upstream::health::State::Healthy => "healthy",
        crate::upstream::health::State::Suspended => "suspended",
        crate::upstream::health::State::Probing => "probing",
    };
    EndpointHealth {
        state,
        drained,
        cause: (!word.is_healthy()).then(|| word.cause().as_str()),
        epoch: u64::from(word.epoch()),
        suspended_remaining_ms: if word.is_healthy() {
            0
        } else {
            word.until_ms().saturating_sub(now_ms)
        },
    }
}

/// An endpoint's health as the admin API shows it.
#[derive(Clone, Copy, Debug)]
pub struct EndpointHealth {
    /// `drained` when the admin API took it out of service, else its health state.
    pub state: &'static str,
    pub drained: bool,
    /// Why it is suspended, when it is.
    pub cause: Option<&'static str>,
    pub epoch: u64,
    pub suspended_remaining_ms: u64,
}

impl Shared {
    /// The state for `workers` shards serving `snapshot` (generation 1).
    pub(crate) fn new(snapshot: Snapshot, workers: usize) -> Shared {
        Shared {
            current: Mutex::new(Arc::new(snapshot)),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            metrics: MetricsHub::new(workers),
            workers,
            rate_limits: Arc::new(crate::ratelimit::RateLimitHub::new(workers)),
        }
    }

    /// Stop accepting, finish in-flight requests, exit (set once).
    pub(crate) fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// How long a shard's control loop sleeps between checks (reload, drain, pool expiry).
pub const CONTROL_INTERVAL: Duration = Duration::from_millis(50);
