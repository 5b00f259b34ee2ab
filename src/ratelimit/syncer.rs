//! The instance's link to Redis: a control-plane thread that keeps each limit's pool
//! credited with batches taken from a Redis counter per (limit, window), and falls back to
//! the instance's local share when Redis is unreachable. No shard ever waits for it except
//! the rare request that finds no token anywhere (it wakes this thread and polls the pool).
//!
//! Per limit and window the syncer keeps a book: tokens credited to the pool, tokens it
//! credited without Redis knowing (the fallback share), and whether the window is exhausted.
//! A batch is `EVAL` of a script that `INCRBY`s the window's key by the batch (plus anything
//! unreported) and sets its expiry when it creates it; the grant is the part of the batch
//! under the limit, so the instances together never take more than the limit from Redis.
//! When Redis fails (connect, timeout, error reply) the instance logs it once, counts it and
//! credits each window up to its share, `ceil(requests / instances)`, counting what Redis had
//! granted already. It tries Redis again every [`PROBE_EVERY`]; once back, what the pools
//! still hold is withdrawn, the rest of the fallback credits is reported with the next batch,
//! and the limits are global again.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::compile::config::gateway::RedisUrl;
use crate::compile::snapshot::Snapshot;
use crate::data::shared::Shared;

use super::redis::{Connection, RedisError, Reply};
use super::{instance_batch, local_share, unix_ms, Limit, RateLimits};

/// Between two rounds while limits are in use (a shard that needs a batch sooner wakes the
/// thread).
const TICK: Duration = Duration::from_millis(5);
/// Between two rounds when there is nothing to do (no Redis configured, or no tier in use).
const IDLE: Duration = Duration::from_millis(100);
/// How often Redis is tried again while unreachable.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// `INCRBY KEYS[1] ARGV[1]`, and `PEXPIRE KEYS[1] ARGV[2]` when that created the key; the
/// new count. One atomic step: a key never lives without its expiry.
const SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return n";

/// What the syncer knows of one window of one limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Book {
    credited: u32,
    /// Credited from the local share while Redis was unreachable, not yet added to Redis.
    unreported: u32,
    /// Nothing more to credit this window (Redis said so, or the local share is given).
    exhausted: bool,
}

/// A batch to ask for.
struct Want {
    limit: usize,
    window: u64,
    key: String,
    ask: u32,
    report: u32,
}

/// Starts the syncer thread; it ends when the server drains.
pub fn spawn(shared: Arc<Shared>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ratelimit-sync".into())
        .spawn(move || {
            shared.rate_limits.set_syncer(std::thread::current());
            let mut syncer = Syncer::default();
            while !shared.is_draining() {
                let (snapshot, _) = shared.snapshot();
                let wait = syncer.round(&shared, &snapshot);
                drop(snapshot);
                std::thread::park_timeout(wait);
            }
        })
}

#[derive(Default)]
struct Syncer {
    url: Option<RedisUrl>,
    connection: Option<Connection>,
    /// (limit's key base, window) -> book.
    books: HashMap<(String, u64), Book>,
    /// While falling back: when to try Redis again.
    next_probe: Option<Instant>,
}

/// `PREFIX:scope:per` (the window's index is appended).
fn key_base(prefix: &str, limit: &Limit) -> String {
    format!("{prefix}:{}:{}", limit.scope, limit.per_secs)
}

impl Syncer {
    /// One round: what every limit needs, asked of Redis in one pipelined exchange (or
    /// credited from the local share). Returns how long to sleep.
    fn round(&mut self, shared: &Shared, snapshot: &Snapshot) -> Duration {
        let config = &snapshot.gateway.rate_limits;
        let limits = &snapshot.rate_limits;
        let url = config
            .redis
            .as_deref()
            .and_then(|u| RedisUrl::parse(u).ok());
        let Some(url) = url.filter(|_| !limits.is_empty() && limits.distributed) else {
            self.connection = None;
            return IDLE;
        };
        if self.url.as_ref() != Some(&url) {
            self.connection = None;
            self.url = Some(url.clone());
        }
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let now_ms = unix_ms();
        let state = &shared.rate_limits.redis;
        if self.next_probe.is_some_and(|at| Instant::now() >= at) {
            match Connection::connect(&url, timeout)
                .and_then(|mut c| c.exchange(&[vec![b"PING".to_vec()]]).map(|_| c))
            {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.next_probe = None;
                    self.recover(limits, &config.redis_key_prefix, now_ms);
                    state.fallback.store(false, Ordering::Relaxed);
                    log::info!(
                        "rate limits: Redis at {}:{} is reachable again; tiers are global again",
                        url.host,
                        url.port
                    );
                }
                Err(e) => {
                    state.errors.fetch_add(1, Ordering::Relaxed);
                    log::debug!("rate limits: Redis still unreachable: {e}");
                    self.next_probe = Some(Instant::now() + PROBE_EVERY);
                }
            }
        }
        let wants = self.plan(limits, config, now_ms, timeout);
        if !wants.is_empty() {
            if self.next_probe.is_some() {
                self.fall_back(limits, config.instances, &wants);
            } else {
                match self.ask(&url, timeout, &wants, key_ttl_ms(limits, &wants)) {
                    Ok(totals) => {
                        state.calls.fetch_add(wants.len() as u64, Ordering::Relaxed);
                        self.apply(limits, &wants, &totals);
                    }
                    Err(e) => {
                        self.connection = None;
                        state.errors.fetch_add(1, Ordering::Relaxed);
                        state.fallbacks.fetch_add(1, Ordering::Relaxed);
                        state.fallback.store(true, Ordering::Relaxed);
                        self.next_probe = Some(Instant::now() + PROBE_EVERY);
                        log::warn!(
                            "rate limits: Redis at {}:{} is unreachable ({e}); until it is back, this instance admits its local share of each tier (1/{} of the limit)",
                            url.host,
                            url.port,
                            config.instances
                        );
                        self.fall_back(limits, config.instances, &wants);
                    }
                }
            }
        }
        self.prune(limits, &config.redis_key_prefix, now_ms);
        TICK
    }

    /// The batches the pools need now: a window someone waits for, a window whose pool is
    /// down to half a batch, and the next window of a busy limit shortly before it starts
    /// (so that its first requests find tokens).
    fn plan(
        &mut self,
        limits: &RateLimits,
        config: &crate::compile::config::gateway::RateLimitsConfig,
        now_ms: u64,
        timeout: Duration,
    ) -> Vec<Want> {
        let lead_ms = (timeout + TICK * 4).as_millis() as u64;
        let mut wants = Vec::new();
        for (i, limit) in limits.limits.iter().enumerate() {
            let base = key_base(&config.redis_key_prefix, limit);
            let batch = instance_batch(limit.requests, config.instances);
            let window = limit.window_of(now_ms);
            let wanted = limit.pool.take_wanted();
            let book = self
                .books
                .get(&(base.clone(), window))
                .copied()
                .unwrap_or_default();
            let low = limit.pool.level(window) <= batch / 2;
            let mut windows = Vec::with_capacity(2);
            if !book.exhausted && (wanted || (book.credited > 0 && low)) {
                windows.push((window, book));
            }
            let window_end = (window + 1) * limit.per_ms();
            if book.credited > 0 && now_ms + lead_ms >= window_end {
                let next = self
                    .books
                    .get(&(base.clone(), window + 1))
                    .copied()
                    .unwrap_or_default();
                if next.credited == 0 && !next.exhausted {
                    windows.push((window + 1, next));
                }
            }
            for (window, book) in windows {
                wants.push(Want {
                    limit: i,
                    window,
                    key: format!("{base}:{window}"),
                    ask: batch,
                    report: book.unreported,
                });
            }
        }
        wants
    }

    /// One pipelined round trip; the new count of each key, in order.
    fn ask(
        &mut self,
        url: &RedisUrl,
        timeout: Duration,
        wants: &[Want],
        ttl_ms: u64,
    ) -> Result<Vec<i64>, RedisError> {
        if self.connection.is_none() {
            self.connection = Some(Connection::connect(url, timeout)?);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(RedisError::Protocol("no connection"));
        };
        let commands: Vec<Vec<Vec<u8>>> = wants
            .iter()
            .map(|want| {
                vec![
                    b"EVAL".to_vec(),
                    SCRIPT.as_bytes().to_vec(),
                    b"1".to_vec(),
                    want.key.as_bytes().to_vec(),
                    (u64::from(want.ask) + u64::from(want.report))
                        .to_string()
                        .into_bytes(),
                    ttl_ms.to_string().into_bytes(),
                ]
            })
            .collect();
        let replies = connection.exchange(&commands)?;
        replies
            .into_iter()
            .map(|reply| match reply {
                Reply::Integer(n) => Ok(n),
                Reply::Error(_) => Err(RedisError::Protocol("error reply to EVAL")),
                _ => Err(RedisError::Protocol("EVAL did not answer an integer")),
            })
            .collect()
    }

    /// Credits what Redis granted: the part of each batch that fits under the limit.
    fn apply(&mut self, limits: &RateLimits, wants: &[Want], totals: &[i64]) {
        for (want, &total) in wants.iter().zip(totals) {
            let limit = &limits.limits[want.limit];
            let over = total.saturating_sub(i64::from(limit.requests)).max(0);
            let grant = want.ask - u32::try_from(over).unwrap_or(u32::MAX).min(want.ask);
            let exhausted = total >= i64::from(limit.requests);
            let book = self.book(want);
            book.credited = book.credited.saturating_add(grant);
            book.unreported = book.unreported.saturating_sub(want.report);
            book.exhausted = exhausted;
            limit.pool.credit(want.window, grant, exhausted);
        }
    }

    /// Without Redis: each window gets up to the local share, counting what Redis granted.
    fn fall_back(&mut self, limits: &RateLimits, instances: u32, wants: &[Want]) {
        for want in wants {
            let limit = &limits.limits[want.limit];
            let share = local_share(limit.requests, instances);
            let book = self.book(want);
            let give = share.saturating_sub(book.credited);
            book.credited += give;
            book.unreported += give;
            book.exhausted = true;
            limit.pool.credit(want.window, give, true);
        }
    }

    /// Redis is back: the tokens the pools still hold are taken back (they were never
    /// used), so that only what was handed out is reported; windows may ask Redis again.
    fn recover(&mut self, limits: &RateLimits, prefix: &str, now_ms: u64) {
        for limit in &limits.limits {
            let base = key_base(prefix, limit);
            let current = limit.window_of(now_ms);
            for window in [current, current + 1] {
                if let Some(book) = self.books.get_mut(&(base.clone(), window)) {
                    let withdrawn = limit.pool.withdraw(window);
                    book.credited = book.credited.saturating_sub(withdrawn);
                    book.unreported = book.unreported.saturating_sub(withdrawn);
                    book.exhausted = false;
                    if book.credited > 0 || book.unreported > 0 {
                        // Ask at once: requests may be waiting.
                        limit.pool.want();
                    }
                }
            }
        }
    }

    fn book(&mut self, want: &Want) -> &mut Book {
        let base = want
            .key
            .rsplit_once(':')
            .map_or(want.key.as_str(), |(b, _)| b);
        self.books
            .entry((base.to_owned(), want.window))
            .or_default()
    }

    /// Forgets windows that are over (and limits a reload removed).
    fn prune(&mut self, limits: &RateLimits, prefix: &str, now_ms: u64) {
        if self.books.len() < 2 * limits.limits.len() + 8 {
            return;
        }
        let current: HashMap<String, u64> = limits
            .limits
            .iter()
            .map(|l| (key_base(prefix, l), l.window_of(now_ms)))
            .collect();
        self.books
            .retain(|(base, window), _| current.get(base).is_some_and(|w| *window >= *w));
    }
}

/// Expiry of a window's key: two windows of the longest limit asked for, plus a minute for
/// clock differences between instances.
fn key_ttl_ms(limits: &RateLimits, wants: &[Want]) -> u64 {
    wants
        .iter()
        .map(|w| limits.limits[w.limit].per_ms() * 2 + 60_000)
        .max()
        .unwrap_or(60_000)
}
