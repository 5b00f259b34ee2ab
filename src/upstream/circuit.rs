//! Circuit breakers (`advanceEndpointConfig.circuitBreakers`): per-group limits that hold
//! exactly across all shards. One set of shared counters per group that configures breakers;
//! a group without them costs a bounds check and nothing else. Over a limit the caller
//! answers 503 `102505` (`GatewayError::UpstreamOverflow`) without calling the upstream.
//!
//! # What each limit counts (Envoy's semantics, as Choreo Connect configures them)
//!
//! - `maxRequests`: requests of the group in flight to its upstreams, across all shards
//!   (take a [`BreakerGuard`] from [`CircuitBreakers::try_acquire_request`] before the first
//!   attempt; it is released when the response has been relayed or the request failed).
//! - `maxPendingRequests`: requests waiting for a connection because `maxConnections` is
//!   reached ([`CircuitBreakers::acquire_connection`] takes it while it waits).
//! - `maxConnections`: open upstream connections made on behalf of the group. A
//!   [`ConnectionSlot`] is taken when dialing and is meant to live as long as the connection
//!   (keep it next to the connection in the idle pool); it owns its counter, so it survives a
//!   reload. Connections are pooled per endpoint, so a connection opened for one group and
//!   reused by another stays counted for the first, and idle connections count: with
//!   per-shard pools, idle connections in other shards' pools hold slots, so a limit lower
//!   than `maxRequests` plus the idle connections it may leave can make requests wait.
//! - `maxRetries`: retries of the group in flight at once (take a guard from
//!   [`CircuitBreakers::try_acquire_retry`] for each attempt after the first, connect-failure
//!   moves to the next endpoint included). Envoy does not send a retry over the limit and
//!   answers with the failure it has; BEHAVIOUR.md 3 makes any breaker overflow a 503
//!   `102505`.
//!
//! An absent limit is not counted at all.
//!
//! # Exactness
//!
//! Each counter is taken by a compare-and-swap from a value below the limit to one more, so
//! it never exceeds the limit, not even for an instant (a `fetch_add` then undo would, and
//! could turn away a request that fits). Each counter is one atomic location: all cores
//! agree on the order of its changes, and the check and the increment are one step.
//! Acquire on taking and Release on giving back are the conventional semaphore pairing; no
//! other data depends on them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

use crate::compile::config::endpoint::CircuitBreakerSpec;
use crate::ids::GroupId;
use crate::upstream::Group;

/// Which limit was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Connections,
    Requests,
    PendingRequests,
    Retries,
}

impl Limit {
    /// The configuration key (`maxRequests`, ...), for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "maxConnections",
            Limit::Requests => "maxRequests",
            Limit::PendingRequests => "maxPendingRequests",
            Limit::Retries => "maxRetries",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A breaker limit was reached; the upstream must not be called (503 `102505`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {} reached", .0.as_str())]
pub struct Overflow(pub Limit);

/// The in-flight counts of one group, by [`Limit`] index.
#[derive(Debug, Default)]
struct Counters([AtomicU32; 4]);

/// One group's limits and its shared counters.
#[derive(Debug)]
struct GroupBreaker {
    limits: [Option<u32>; 4],
    counters: Arc<CachePadded<Counters>>,
}

/// The breakers of every group of a snapshot, indexed by `GroupId`; shared by all shards.
#[derive(Debug)]
pub struct CircuitBreakers {
    groups: Box<[Option<GroupBreaker>]>,
}

/// What is in use in one group (for the admin endpoint and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InUse {
    pub connections: u32,
    pub requests: u32,
    pub pending_requests: u32,
    pub retries: u32,
}

fn limits_of(spec: &CircuitBreakerSpec) -> Option<[Option<u32>; 4]> {
    let limits = [
        spec.max_connections,
        spec.max_requests,
        spec.max_pending_requests,
        spec.max_retries,
    ];
    limits.iter().any(Option::is_some).then_some(limits)
}

impl CircuitBreakers {
    /// Fresh counters for every group that configures at least one limit.
    pub fn new(groups: &[Group]) -> Self {
        Self {
            groups: groups
                .iter()
                .map(|g| {
                    let limits = limits_of(g.circuit_breakers.as_ref()?)?;
                    Some(GroupBreaker {
                        limits,
                        counters: Arc::default(),
                    })
                })
                .collect(),
        }
    }

    /// The breakers of a reloaded snapshot: `old_group_of[new]` names the group's id in
    /// `old` when it is still present; such a group keeps its counters (so requests and
    /// connections still in flight under the old snapshot keep counting), with its new
    /// limits. Other groups start from zero: their limits hold from the reload on.
    pub fn carry_over(
        old: &CircuitBreakers,
        groups: &[Group],
        old_group_of: &[Option<GroupId>],
    ) -> Self {
        let mut new = Self::new(groups);
        for (slot, old_id) in new.groups.iter_mut().zip(old_group_of) {
            let (Some(breaker), Some(old_id)) = (slot, old_id) else {
                continue;
            };
            if let Some(Some(old_breaker)) = old.groups.get(old_id.index()) {
                breaker.counters = Arc::clone(&old_breaker.counters);
            }
        }
        new
    }

    /// Counts one request of `group` in flight, or says which limit it would exceed.
    #[inline]
    pub fn try_acquire_request(&self, group: GroupId) -> Result<BreakerGuard<'_>, Overflow> {
        self.try_acquire(group, Limit::Requests)
    }

    /// Counts one request of `group` waiting for a connection.
    #[inline]
    pub fn try_acquire_pending(&self, group: GroupId) -> Result<BreakerGuard<'_>, Overflow> {
        self.try_acquire(group, Limit::PendingRequests)
    }

    /// Counts one retry of `group` in flight.
    #[inline]
    pub fn try_acquire_retry(&self, group: GroupId) -> Result<BreakerGuard<'_>, Overflow> {
        self.try_acquire(group, Limit::Retries)
    }

    /// Counts one new upstream connection of `group`; the slot is released when dropped
    /// (keep it with the connection).
    pub fn try_acquire_connection(&self, group: GroupId) -> Result<ConnectionSlot, Overflow> {
        let Some((breaker, limit)) = self.limited(group, Limit::Connections) else {
            return Ok(ConnectionSlot(None));
        };
        if take(&breaker.counters.0[Limit::Connections.index()], limit) {
            Ok(ConnectionSlot(Some(Arc::clone(&breaker.counters))))
        } else {
            Err(Overflow(Limit::Connections))
        }
    }

    /// A connection slot, waiting for one (as a pending request) while `maxConnections` is
    /// reached: the wait polls with a backoff of 1 to 16 ms until `deadline`. Fails at once
    /// when `maxPendingRequests` is reached too, and with `Connections` at the deadline.
    pub async fn acquire_connection(
        &self,
        group: GroupId,
        deadline: Instant,
    ) -> Result<ConnectionSlot, Overflow> {
        if let Ok(slot) = self.try_acquire_connection(group) {
            return Ok(slot);
        }
        let _pending = self.try_acquire_pending(group)?;
        let mut backoff = Duration::from_millis(1);
        loop {
            if Instant::now() + backoff > deadline {
                return Err(Overflow(Limit::Connections));
            }
            monoio::time::sleep(backoff).await;
            if let Ok(slot) = self.try_acquire_connection(group) {
                return Ok(slot);
            }
            backoff = (backoff * 2).min(Duration::from_millis(16));
        }
    }

    /// Whether `group` configures `limit` (and so pays for counting it).
    pub fn is_limited(&self, group: GroupId, limit: Limit) -> bool {
        self.limited(group, limit).is_some()
    }

    /// What `group` has in flight now (zeros for limits it does not configure).
    pub fn in_use(&self, group: GroupId) -> InUse {
        let Some(Some(breaker)) = self.groups.get(group.index()) else {
            return InUse::default();
        };
        let count = |limit: Limit| breaker.counters.0[limit.index()].load(Ordering::Relaxed);
        InUse {
            connections: count(Limit::Connections),
            requests: count(Limit::Requests),
            pending_requests: count(Limit::PendingRequests),
            retries: count(Limit::Retries),
        }
    }

    #[inline]
    fn limited(&self, group: GroupId, limit: Limit) -> Option<(&GroupBreaker, u32)> {
        let breaker = self.groups.get(group.index())?.as_ref()?;
        Some((breaker, breaker.limits[limit.index()]?))
    }

    #[inline]
    fn try_acquire(&self, group: GroupId, limit: Limit) -> Result<BreakerGuard<'_>, Overflow> {
        let Some((breaker, max)) = self.limited(group, limit) else {
            return Ok(BreakerGuard(None));
        };
        let counter = &breaker.counters.0[limit.index()];
        if take(counter, max) {
            Ok(BreakerGuard(Some(counter)))
        } else {
            Err(Overflow(limit))
        }
    }
}

/// Increments `counter` if it is below `limit`: never past it, even for an instant.
fn take(counter: &AtomicU32, limit: u32) -> bool {
    let mut current = counter.load(Ordering::Relaxed);
    loop {
        if current >= limit {
            return false;
        }
        match counter.compare_exchange_weak(
            current,
            current + 1,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
}

/// One counted request, pending request or retry; gives its count back when dropped. Holds
/// nothing (and costs nothing) when the group does not configure the limit.
#[derive(Debug)]
#[must_use = "the count is released when the guard is dropped"]
pub struct BreakerGuard<'a>(Option<&'a AtomicU32>);

impl BreakerGuard<'_> {
    /// Whether this guard holds a count (the group configures the limit).
    pub fn is_counted(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        if let Some(counter) = self.0 {
            counter.fetch_sub(1, Ordering::Release);
        }
    }
}

/// One counted upstream connection; owns its group's counters so that it can live in the
/// idle pool across reloads. Gives its count back when dropped.
#[derive(Debug)]
#[must_use = "the connection is uncounted when the slot is dropped"]
pub struct ConnectionSlot(Option<Arc<CachePadded<Counters>>>);

impl ConnectionSlot {
    /// A slot of a group without a connection limit.
    pub fn uncounted() -> Self {
        Self(None)
    }

    pub fn is_counted(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(counters) = &self.0 {
            counters.0[Limit::Connections.index()].fetch_sub(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests;
