//! Rate limits (BEHAVIOUR.md §9): the tiers an API or an operation names with
//! `x-wso2-throttling-tier`, compiled into [`Limit`]s, and how each is held exactly across
//! the shards of an instance and, through Redis, across instances.
//!
//! # Window model
//! Fixed windows aligned to the Unix clock: a tier of `requests` per `per` seconds admits at
//! most `requests` in each interval `[k * per, (k + 1) * per)` of Unix time. Every instance
//! computes the same `k` from its clock, so the Redis key of a window (`prefix:scope:per:k`)
//! is the same everywhere, with nothing to negotiate. The price is the fixed window's
//! well-known edge: a client may be admitted `requests` at the end of one window and again
//! at the start of the next.
//!
//! # Allowances
//! The request path never writes memory another core reads while a shard has tokens: each
//! shard holds an allowance (tokens of the current window, [`allowance`]) and spends it with a
//! plain decrement. An allowance is refilled from the limit's shared [`pool`] in batches, by
//! the shard's control loop before it runs out, or by the request that finds it empty. The
//! pool never gives out more than it holds, so the instance never admits more than the limit
//! (or its Redis grants). Batches are small enough (see [`shard_batch`]) that the tokens left
//! in allowances at a window's end are at most 1 % of the limit, and a shard that saw no
//! request for a control interval gives its tokens back, so one client pinned to one shard
//! still gets the whole limit.
//!
//! With `rate_limits.redis`, the pool is credited by one control-plane thread per instance
//! ([`syncer`]) with batches taken from a Redis counter per (limit, window); it never runs on
//! a shard, and a shard never waits on Redis except for the rare request that finds both its
//! allowance and the pool empty while a batch is on its way.

pub mod allowance;
pub mod metrics;
pub mod pool;
pub mod redis;
pub mod shard;
pub mod syncer;

use std::sync::Arc;

use crate::compile::config::gateway::RateLimitsConfig;
use crate::ids::ApiId;

pub use metrics::RateLimitHub;
pub use pool::Pool;
pub use shard::ShardRateLimits;

/// A limit of the snapshot, by position in [`RateLimits::limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitId(pub u32);

impl LimitId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The tier Choreo Connect calls `Unlimited`: no limit at all.
pub const UNLIMITED: &str = "Unlimited";

/// WSO2's built-in tiers (requests per minute); `rate_limits.tiers` adds to or overrides them.
pub const BUILT_IN_TIERS: [(&str, u32); 3] = [("Gold", 5000), ("Silver", 2000), ("Bronze", 1000)];

/// A tier's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    pub requests: u32,
    pub per_secs: u32,
}

/// What a tier name means under `config`: `None` when it names no tier, `Some(None)` for a
/// tier without a limit (`Unlimited`).
pub fn tier_named(config: &RateLimitsConfig, name: &str) -> Option<Option<Tier>> {
    if let Some(spec) = config.tiers.get(name) {
        return Some(Some(Tier {
            requests: spec.requests,
            per_secs: spec.per.secs(),
        }));
    }
    if name == UNLIMITED {
        return Some(None);
    }
    BUILT_IN_TIERS
        .iter()
        .find(|(tier, _)| *tier == name)
        .map(|&(_, requests)| {
            Some(Tier {
                requests,
                per_secs: 60,
            })
        })
}

/// Every tier name `config` knows, for error messages.
pub fn tier_names(config: &RateLimitsConfig) -> Vec<String> {
    let mut names: Vec<String> = std::iter::once(UNLIMITED)
        .chain(BUILT_IN_TIERS.iter().map(|(name, _)| *name))
        .map(str::to_owned)
        .chain(config.tiers.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One limit: a tier applied to an API as a whole or to one operation.
#[derive(Debug)]
pub struct Limit {
    /// What is limited: the API's base path, or `base path METHOD template` for an
    /// operation with its own tier. Part of the Redis key; matched across reloads.
    pub scope: Box<str>,
    pub api: ApiId,
    pub tier: Box<str>,
    pub requests: u32,
    pub per_secs: u32,
    /// The instance's tokens left per window (shared by its shards, kept across reloads).
    pub pool: Arc<Pool>,
}

impl Limit {
    pub fn per_ms(&self) -> u64 {
        u64::from(self.per_secs) * 1000
    }

    /// The window `unix_ms` falls in.
    pub fn window_of(&self, unix_ms: u64) -> u64 {
        unix_ms / self.per_ms()
    }

    /// Seconds from `unix_ms` to the end of its window, rounded up (at least 1): the
    /// `Retry-After` of a 429.
    pub fn retry_after_secs(&self, unix_ms: u64) -> u32 {
        let end = (self.window_of(unix_ms) + 1) * self.per_ms();
        let secs = (end - unix_ms).div_ceil(1000);
        u32::try_from(secs).unwrap_or(u32::MAX).max(1)
    }
}

/// The limits of a snapshot and how they are shared.
#[derive(Debug, Default)]
pub struct RateLimits {
    pub limits: Vec<Limit>,
    /// Redis makes the limits global: pools are credited by the syncer, never opened by
    /// shards.
    pub distributed: bool,
    /// `rate_limits.instances`.
    pub instances: u32,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The allotment a shard may open a window with: the whole limit when the instance is
    /// its own authority, none (wait for the syncer's credit) with Redis.
    pub fn open_with(&self, limit: &Limit) -> Option<u32> {
        (!self.distributed).then_some(limit.requests)
    }

    /// Keeps the pools of limits still present (same scope and window length) so that a
    /// reload neither refills nor empties a window in progress.
    pub fn carry_pools_from(&mut self, previous: &RateLimits) {
        for limit in &mut self.limits {
            if let Some(old) = previous
                .limits
                .iter()
                .find(|old| old.scope == limit.scope && old.per_secs == limit.per_secs)
            {
                limit.pool = Arc::clone(&old.pool);
            }
        }
    }
}

/// Tokens a shard takes from the pool at once. Without Redis, the allowances of `workers`
/// shards hold at most `workers * batch <= requests / 100` tokens: what a window can strand
/// in shards that stop receiving requests. With Redis, a share of the instance's batch.
/// A batch of 1 means every admitted request takes its token from the pool (small limits,
/// where that costs little and nothing is ever stranded).
pub fn shard_batch(requests: u32, workers: usize, distributed: bool, instances: u32) -> u32 {
    let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
    if distributed {
        (instance_batch(requests, instances) / workers).max(1)
    } else {
        (requests / workers.saturating_mul(100)).max(1)
    }
}

/// Tokens the syncer takes from Redis at once. Each instance holds at most one and a half
/// batches in its pool plus its shards' allowances (another batch): with `instances`
/// instances that is `2.5 * requests / 300 <= requests / 100` stranded at a window's end.
pub fn instance_batch(requests: u32, instances: u32) -> u32 {
    (requests / instances.max(1).saturating_mul(300)).max(1)
}

/// What an instance may admit per window while Redis is unreachable: its share of the limit,
/// `ceil(requests / instances)`.
pub fn local_share(requests: u32, instances: u32) -> u32 {
    requests.div_ceil(instances.max(1))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per_secs: u32) -> Limit {
        Limit {
            scope: "/a".into(),
            api: ApiId(0),
            tier: "T".into(),
            requests,
            per_secs,
            pool: Arc::default(),
        }
    }

    #[test]
    fn windows_are_aligned_to_the_unix_clock() {
        let l = limit(10, 60);
        assert_eq!(l.window_of(0), 0);
        assert_eq!(l.window_of(59_999), 0);
        assert_eq!(l.window_of(60_000), 1);
        assert_eq!(l.retry_after_secs(60_000), 60);
        assert_eq!(l.retry_after_secs(119_001), 1);
        assert_eq!(l.retry_after_secs(119_999), 1, "never 0");
        assert_eq!(l.retry_after_secs(90_500), 30, "rounded up");
    }

    #[test]
    fn batches_keep_stranded_tokens_within_one_percent() {
        for requests in [1, 10, 99, 100, 300, 1000, 5000, 100_000, 10_000_000] {
            for workers in [1usize, 2, 4, 16] {
                let batch = shard_batch(requests, workers, false, 1);
                assert!(batch >= 1);
                if batch > 1 {
                    assert!(
                        u64::from(batch) * workers as u64 * 100 <= u64::from(requests),
                        "{requests} {workers}"
                    );
                }
                for instances in [1u32, 2, 3, 10] {
                    let pool = instance_batch(requests, instances);
                    let shard = shard_batch(requests, workers, true, instances);
                    if pool > 1 && shard > 1 {
                        // 1.5 pool batches plus the allowances, per instance.
                        let stranded = u64::from(instances)
                            * (u64::from(pool) * 3 / 2 + u64::from(shard) * workers as u64);
                        assert!(
                            stranded * 100 <= u64::from(requests),
                            "{requests} {workers} {instances}"
                        );
                    }
                }
            }
        }
        assert_eq!(shard_batch(300, 2, false, 1), 1);
        assert_eq!(shard_batch(5000, 2, false, 1), 25);
        assert_eq!(instance_batch(6000, 2), 10);
    }

    #[test]
    fn the_local_share_rounds_up() {
        assert_eq!(local_share(100, 1), 100);
        assert_eq!(local_share(100, 3), 34);
        assert_eq!(local_share(5, 0), 5);
    }

    #[test]
    fn built_in_tiers_can_be_overridden_and_unlimited_has_no_limit() {
        let mut config = RateLimitsConfig::default();
        assert_eq!(
            tier_named(&config, "Gold"),
            Some(Some(Tier {
                requests: 5000,
                per_secs: 60
            }))
        );
        assert_eq!(tier_named(&config, "Unlimited"), Some(None));
        assert_eq!(tier_named(&config, "gold"), None, "names are exact");
        config.tiers.insert(
            "Gold".into(),
            crate::compile::config::gateway::TierSpec {
                requests: 7,
                per: crate::compile::config::gateway::Per(2),
            },
        );
        assert_eq!(
            tier_named(&config, "Gold"),
            Some(Some(Tier {
                requests: 7,
                per_secs: 2
            }))
        );
        assert_eq!(
            tier_names(&config),
            ["Bronze", "Gold", "Silver", "Unlimited"]
        );
    }
}
