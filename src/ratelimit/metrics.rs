//! What the rate limits tell the admin thread: admitted and throttled requests per (API,
//! tier), counted by each shard in counters it alone writes (as `crate::metrics` does), and
//! the Redis syncer's state. Also where a shard finds the syncer to wake it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;

use crate::metrics::Counter;

use super::RateLimits;

/// One shard's counters, by label index.
#[derive(Debug, Default)]
pub struct LimitCounters {
    admitted: Box<[Counter]>,
    throttled: Box<[Counter]>,
}

impl LimitCounters {
    fn new(labels: usize) -> Self {
        let counters = || (0..labels).map(|_| Counter::default()).collect();
        Self {
            admitted: counters(),
            throttled: counters(),
        }
    }

    pub fn labels(&self) -> usize {
        self.admitted.len()
    }

    /// A larger copy (a reload added labels); counts carry over.
    pub fn grown(&self, labels: usize) -> Self {
        let grown = Self::new(labels.max(self.labels()));
        for (old, new) in self.admitted.iter().zip(grown.admitted.iter()) {
            new.add(old.get());
        }
        for (old, new) in self.throttled.iter().zip(grown.throttled.iter()) {
            new.add(old.get());
        }
        grown
    }

    #[inline]
    pub fn admitted(&self, label: u32) {
        if let Some(c) = self.admitted.get(label as usize) {
            c.inc();
        }
    }

    #[inline]
    pub fn throttled(&self, label: u32) {
        if let Some(c) = self.throttled.get(label as usize) {
            c.inc();
        }
    }
}

/// The state of the instance's link to Redis, written by the syncer thread only.
#[derive(Debug, Default)]
pub struct RedisState {
    /// Redis is unreachable: the instance admits its local share.
    pub fallback: AtomicBool,
    /// Times the instance fell back.
    pub fallbacks: AtomicU64,
    /// Batches asked of Redis (one `EVAL` each, several pipelined per round trip).
    pub calls: AtomicU64,
    /// Exchanges that failed (connect, timeout, protocol).
    pub errors: AtomicU64,
}

/// Process-wide: label names, every shard's counters, the Redis state and the syncer's
/// thread. Read by the admin thread; shards touch it on reloads and in the rare slow path.
#[derive(Debug)]
pub struct RateLimitHub {
    labels: Mutex<Vec<(String, String)>>,
    shards: Vec<Mutex<Arc<LimitCounters>>>,
    pub redis: RedisState,
    syncer: OnceLock<Thread>,
}

impl RateLimitHub {
    pub fn new(shards: usize) -> Self {
        Self {
            labels: Mutex::new(Vec::new()),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            redis: RedisState::default(),
            syncer: OnceLock::new(),
        }
    }

    /// The label index of each limit of `limits` (by `LimitId`), registering new
    /// (API, tier) pairs; and how many labels there are now.
    pub fn label_map(&self, limits: &RateLimits, api_names: &[&str]) -> (Vec<u32>, usize) {
        let mut labels = lock(&self.labels);
        let map = limits
            .limits
            .iter()
            .map(|limit| {
                let api = api_names.get(limit.api.index()).copied().unwrap_or("");
                let position = labels
                    .iter()
                    .position(|(a, t)| a == api && **t == *limit.tier);
                let index = position.unwrap_or_else(|| {
                    labels.push((api.to_owned(), limit.tier.to_string()));
                    labels.len() - 1
                });
                index as u32
            })
            .collect();
        (map, labels.len())
    }

    /// Installs a shard's (new or grown) counters.
    pub fn install(&self, shard: usize, counters: Arc<LimitCounters>) {
        if let Some(slot) = self.shards.get(shard) {
            *lock(slot) = counters;
        }
    }

    /// Records the syncer's thread so that shards can wake it.
    pub fn set_syncer(&self, thread: Thread) {
        let _ = self.syncer.set(thread);
    }

    /// Wakes the syncer now (a shard found no token anywhere while a batch may come).
    pub fn kick(&self) {
        if let Some(thread) = self.syncer.get() {
            thread.unpark();
        }
    }

    /// `(admitted, throttled)` summed over shards for (api, tier), for tests.
    pub fn counts(&self, api: &str, tier: &str) -> (u64, u64) {
        let labels = lock(&self.labels);
        let Some(label) = labels.iter().position(|(a, t)| a == api && t == tier) else {
            return (0, 0);
        };
        drop(labels);
        self.shards.iter().fold((0, 0), |(a, t), slot| {
            let counters = lock(slot);
            (
                a + counters.admitted.get(label).map_or(0, Counter::get),
                t + counters.throttled.get(label).map_or(0, Counter::get),
            )
        })
    }

    /// Appends the Prometheus series.
    pub fn render(&self, out: &mut String, escape: fn(&str) -> String) {
        let _ = writeln!(out, "# HELP shardgate_rate_limit_requests_total Requests that met a throttling tier, by API base path, tier and outcome (admitted, throttled: answered 429).");
        let _ = writeln!(out, "# TYPE shardgate_rate_limit_requests_total counter");
        let labels = lock(&self.labels).clone();
        let shards: Vec<Arc<LimitCounters>> =
            self.shards.iter().map(|s| Arc::clone(&lock(s))).collect();
        for (i, (api, tier)) in labels.iter().enumerate() {
            for (outcome, pick) in [
                (
                    "admitted",
                    (|c: &LimitCounters| &c.admitted) as fn(&LimitCounters) -> &[Counter],
                ),
                ("throttled", |c: &LimitCounters| &c.throttled),
            ] {
                let total: u64 = shards
                    .iter()
                    .filter_map(|c| pick(c).get(i))
                    .map(Counter::get)
                    .sum();
                let _ = writeln!(
                    out,
                    "shardgate_rate_limit_requests_total{{api=\"{}\",tier=\"{}\",outcome=\"{outcome}\"}} {total}",
                    escape(api),
                    escape(tier)
                );
            }
        }
        let redis = &self.redis;
        for (name, kind, help, value) in [
            (
                "shardgate_rate_limit_redis_fallback",
                "gauge",
                "1 while Redis is unreachable and this instance admits its local share of each tier.",
                u64::from(redis.fallback.load(Ordering::Relaxed)),
            ),
            (
                "shardgate_rate_limit_redis_fallbacks_total",
                "counter",
                "Times this instance lost Redis and fell back to its local share.",
                redis.fallbacks.load(Ordering::Relaxed),
            ),
            (
                "shardgate_rate_limit_redis_batches_total",
                "counter",
                "Token batches asked of Redis.",
                redis.calls.load(Ordering::Relaxed),
            ),
            (
                "shardgate_rate_limit_redis_errors_total",
                "counter",
                "Redis exchanges that failed (connect, timeout, protocol).",
                redis.errors.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_counts_and_unknown_labels_are_ignored() {
        let c = LimitCounters::new(1);
        c.admitted(0);
        c.throttled(0);
        c.throttled(5);
        let g = c.grown(3);
        assert_eq!(g.labels(), 3);
        g.admitted(2);
        assert_eq!(g.admitted[0].get(), 1);
        assert_eq!(g.throttled[0].get(), 1);
        assert_eq!(g.admitted[2].get(), 1);
    }
}
