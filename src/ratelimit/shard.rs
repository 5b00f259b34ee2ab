//! A shard's side of the rate limits: its allowance per limit of the snapshot it serves, the
//! request-path check, and the control-loop tick that tops allowances up and gives idle ones
//! back. Owned by one shard (`!Send`); the only shared memory it touches is the limit's
//! pool, once per batch, and the syncer's wake-up in the rare slow path.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::compile::snapshot::Snapshot;
use crate::error::GatewayError;

use super::allowance::{Allowance, Decision};
use super::metrics::{LimitCounters, RateLimitHub};
use super::{shard_batch, unix_ms, Limit, LimitId, RateLimits};

/// How often a request that found no token anywhere looks again while a Redis batch is on
/// its way.
const PENDING_POLL: Duration = Duration::from_millis(1);
/// How long such a request waits at most beyond the Redis timeout: by then the syncer has
/// either credited the pool or fallen back to the local share.
const PENDING_SLACK: Duration = Duration::from_millis(200);

/// The allowances of one snapshot's limits.
#[derive(Default)]
struct Table {
    limits: Arc<RateLimits>,
    allowances: Vec<Allowance>,
    batches: Vec<u32>,
    labels: Vec<u32>,
}

/// One shard's rate-limit state.
pub struct ShardRateLimits {
    hub: Arc<RateLimitHub>,
    shard: usize,
    workers: usize,
    table: RefCell<Table>,
    counters: RefCell<Arc<LimitCounters>>,
}

impl ShardRateLimits {
    pub fn new(hub: Arc<RateLimitHub>, shard: usize, workers: usize, snapshot: &Snapshot) -> Self {
        let counters = Arc::new(LimitCounters::default());
        hub.install(shard, Arc::clone(&counters));
        let this = Self {
            hub,
            shard,
            workers,
            table: RefCell::default(),
            counters: RefCell::new(counters),
        };
        this.follow(snapshot);
        this
    }

    /// Moves to the limits of `snapshot` (start, reload): tokens held for the old table go
    /// back to their pools (a limit that survives the reload keeps its pool, so they count
    /// again there), and the counters grow to the labels the new table uses.
    pub fn follow(&self, snapshot: &Snapshot) {
        let mut table = self.table.borrow_mut();
        if Arc::ptr_eq(&table.limits, &snapshot.rate_limits) {
            return;
        }
        let old = std::mem::take(&mut *table);
        for (allowance, limit) in old.allowances.into_iter().zip(&old.limits.limits) {
            let mut allowance = allowance;
            allowance.release(&limit.pool);
        }
        let limits = Arc::clone(&snapshot.rate_limits);
        let names: Vec<&str> = snapshot.apis.iter().map(|a| &*a.base_path).collect();
        let (labels, label_count) = self.hub.label_map(&limits, &names);
        let grown = {
            let counters = self.counters.borrow();
            (counters.labels() < label_count).then(|| Arc::new(counters.grown(label_count)))
        };
        if let Some(grown) = grown {
            self.hub.install(self.shard, Arc::clone(&grown));
            *self.counters.borrow_mut() = grown;
        }
        *table = Table {
            allowances: vec![Allowance::default(); limits.limits.len()],
            batches: limits
                .limits
                .iter()
                .map(|l| {
                    shard_batch(
                        l.requests,
                        self.workers,
                        limits.distributed,
                        limits.instances,
                    )
                })
                .collect(),
            labels,
            limits,
        };
    }

    /// The request path: admits the request against limit `id` of `snapshot`, or answers
    /// why not. A shard-local decrement while the allowance lasts.
    pub async fn admit(&self, snapshot: &Snapshot, id: LimitId) -> Result<(), GatewayError> {
        let Some(limit) = snapshot.rate_limits.limits.get(id.index()) else {
            return Ok(());
        };
        match self.decide(snapshot, id, limit, unix_ms()) {
            Ok(()) => Ok(()),
            Err(Some(error)) => Err(error),
            // Boxed: the wait's state would otherwise size every connection's future.
            Err(None) => Box::pin(self.wait_for_tokens(snapshot, id, limit)).await,
        }
    }

    /// `Err(None)`: pending (a Redis batch may come).
    #[inline]
    fn decide(
        &self,
        snapshot: &Snapshot,
        id: LimitId,
        limit: &Limit,
        now_ms: u64,
    ) -> Result<(), Option<GatewayError>> {
        let window = limit.window_of(now_ms);
        let open_with = snapshot.rate_limits.open_with(limit);
        let mut table = self.table.borrow_mut();
        let (decision, label) = if Arc::ptr_eq(&table.limits, &snapshot.rate_limits) {
            let Table {
                allowances,
                batches,
                labels,
                ..
            } = &mut *table;
            let i = id.index();
            let decision = allowances[i].admit(&limit.pool, window, batches[i], open_with);
            (decision, Some(labels[i]))
        } else {
            // A request still on the snapshot before a reload this shard has followed: no
            // allowance of its own, one token at a time from the pool.
            let mut one = Allowance::default();
            let decision = one.admit(&limit.pool, window, 1, open_with);
            (decision, None)
        };
        drop(table);
        let counters = self.counters.borrow();
        match decision {
            Decision::Admitted => {
                if let Some(label) = label {
                    counters.admitted(label);
                }
                Ok(())
            }
            Decision::Throttled => {
                if let Some(label) = label {
                    counters.throttled(label);
                }
                Err(Some(GatewayError::RateLimited {
                    retry_after_secs: limit.retry_after_secs(now_ms),
                }))
            }
            Decision::Pending => Err(None),
        }
    }

    /// The slow path: neither the allowance nor the pool has a token, and the syncer may
    /// bring some. Wakes it and looks again every millisecond, bounded by the Redis timeout
    /// (after which the syncer has fallen back to the local share) plus a margin.
    async fn wait_for_tokens(
        &self,
        snapshot: &Snapshot,
        id: LimitId,
        limit: &Limit,
    ) -> Result<(), GatewayError> {
        limit.pool.want();
        self.hub.kick();
        let bound =
            Duration::from_millis(snapshot.gateway.rate_limits.redis_timeout_ms) + PENDING_SLACK;
        let deadline = Instant::now() + bound;
        loop {
            monoio::time::sleep(PENDING_POLL).await;
            let now_ms = unix_ms();
            match self.decide(snapshot, id, limit, now_ms) {
                Ok(()) => return Ok(()),
                Err(Some(error)) => return Err(error),
                Err(None) if Instant::now() >= deadline => {
                    // Counted as throttled: the client is told to come back.
                    if let Some(&label) = self.table.borrow().labels.get(id.index()) {
                        self.counters.borrow().throttled(label);
                    }
                    return Err(GatewayError::RateLimited {
                        retry_after_secs: 1,
                    });
                }
                Err(None) => {
                    limit.pool.want();
                    self.hub.kick();
                }
            }
        }
    }

    /// The control loop's turn (every `CONTROL_INTERVAL`): allowances of limits this shard
    /// served are topped up, the others given back.
    pub fn tick(&self) {
        let now_ms = unix_ms();
        let mut table = self.table.borrow_mut();
        let Table {
            limits,
            allowances,
            batches,
            ..
        } = &mut *table;
        for ((limit, allowance), &batch) in limits.limits.iter().zip(allowances).zip(batches.iter())
        {
            let window = limit.window_of(now_ms);
            allowance.tick(&limit.pool, window, batch, limits.open_with(limit));
        }
    }
}
