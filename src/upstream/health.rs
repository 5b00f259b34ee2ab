//! The shared health of every upstream: one word per [`UpstreamId`], read by every shard when
//! it picks an endpoint and written only on a transition (healthy -> suspended -> probing ->
//! healthy). Also each shard's reconciliation of its local state with the table
//! (`LocalHealth`). Never locks, never blocks; it grows (on the control thread, when a reload
//! interns a new upstream) without moving a word, so the table lives as long as the process
//! and a reload has nothing to carry over.
//!
//! # The health word
//!
//! ```text
//!  63          48 47     42 41  40 39                                    0
//! +--------------+---------+------+---------------------------------------+
//! | epoch (16)   | level(6)|st (2)|c| until_ms (39)                        |
//! +--------------+---------+------+-+--------------------------------------+
//! ```
//!
//! - `state`: 0 healthy, 1 suspended, 2 probing (3 is never written).
//! - `c`, the cause of the suspension: 0 the endpoint refused or dropped connects (a TCP
//!   check that connects disproves it), 1 it connected but did not answer (an attempt
//!   timeout, a reset before the response: only an answer disproves it). 0 when healthy.
//! - `until_ms`: milliseconds since the table's base `Instant`: the end of the suspension, or
//!   the end of a probe claim's lease. 39 bits last 17 years; 0 when healthy.
//! - `level`: how many failed probes in a row the current suspension follows. A suspension at
//!   level `n` lasts `min(initial_ms * factor^n, max_ms)`; 0 when healthy ("one success
//!   resets it"). Saturates at 63.
//! - `epoch`: +1 on every successful write (suspend, claim, re-suspend, recover), wrapping
//!   after 65,536 transitions. Shards compare it for equality only.
//!
//! The all-zero word is "healthy, epoch 0": a new table is all healthy.
//!
//! # Transitions
//!
//! ```text
//!  Healthy --failure--> Suspended(level 0, until now+initial, its cause)
//!  Suspended --failure--> (unchanged: a stale report from a request already in flight)
//!  Suspended(expired) --claim--> Probing(same level, until now+lease)    one winner
//!  Probing(lease over) --claim--> Probing(same level, until now+lease)   the claimer died
//!  Probing --failure--> Suspended(level+1, until now+duration(level+1), its cause)
//!  Suspended | Probing --success--> Healthy(level 0)         an answer, or enough checks
//!  Healthy --success--> (unchanged, and nothing is written)
//! ```
//!
//! Any success makes the endpoint healthy for every shard at once, whoever reports it: an
//! endpoint that answered is alive. Any failure while probing counts as the probe's failure,
//! whoever reports it: it was observed after the suspension expired.
//!
//! # Memory ordering, in plain words
//!
//! - The word is the whole truth. The state machine lives in one 64-bit atomic; no other
//!   memory is published through it. All cores agree on a single order of the writes to one
//!   atomic location, whatever orderings are used, and a compare-and-swap always acts on the
//!   latest value in that order. Every write here is a CAS from the exact value just read,
//!   never a blind store, so no transition can overwrite another one it did not see.
//! - Exactly one prober: two shards that both read the same expired word both try
//!   `CAS(expired -> probing)`; only the first matches. The second fails, gets the probing
//!   word with a live lease back, and gives up. Likewise two failure reports against a healthy
//!   word make one suspension, not two escalations: the second one finds "suspended" and
//!   does nothing.
//! - No ABA: every write bumps the epoch, so a word value never comes back (before the
//!   16-bit epoch wraps, and even then the until field differs).
//! - Why Acquire/Release at all: the CAS is `AcqRel` and loads are `Acquire`, so a
//!   transition happens-before whatever a shard does after seeing it. The state machine does
//!   not need it (see above), but it keeps the table safe to extend (e.g. data written before
//!   a transition and read after seeing it), and costs nothing on x86 (every load is acquire,
//!   every CAS a full barrier) and one `ldar` on ARM. `SeqCst` buys nothing: no decision
//!   depends on the order of writes to two different endpoints' words.
//! - What a shard may see stale, and why that is harmless: a load may return the value from
//!   just before a transition another core is making. Then a shard (a) sends one more request
//!   to an endpoint that was just suspended: it fails as the first did, is retried on the next
//!   endpoint (nothing was sent), and its failure report finds "suspended" and changes
//!   nothing; (b) skips a just-recovered endpoint for one more request; (c) sees "probe due"
//!   on a word another shard has just claimed: its claim CAS fails, and it skips the
//!   endpoint. None of these loses a transition, because every write is a CAS on the current
//!   value.
//! - The hot path never writes: `pick_state` and `report_success` on a healthy endpoint are
//!   plain loads, so the cache line stays shared in every core's cache until a transition.
//!
//! # Checking it
//!
//! The unit tests cover every transition; a stress test runs racing threads in the normal
//! suite; and a loom model explores every interleaving of racing reports and claims:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --lib upstream::health --release
//! ```
//!
//! (The separate target directory keeps the loom build from invalidating the normal one.)

// `cfg(loom)` is declared in Cargo.toml (`[lints.rust]`) and set only by the command above.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

use crate::compile::config::gateway::Suspension;
use crate::ids::UpstreamId;
use crate::upstream::segmented::Segmented;

const UNTIL_BITS: u32 = 39;
const UNTIL_MASK: u64 = (1 << UNTIL_BITS) - 1;
const CAUSE_SHIFT: u32 = 39;
const STATE_SHIFT: u32 = 40;
const STATE_MASK: u64 = 0b11;
const LEVEL_SHIFT: u32 = 42;
const LEVEL_MASK: u64 = 0b11_1111;
const EPOCH_SHIFT: u32 = 48;

/// The largest time the word can hold, in milliseconds since the table's base (17 years).
pub const MAX_MILLIS: u64 = UNTIL_MASK;
/// The highest progression level the word can hold.
pub const MAX_LEVEL: u8 = LEVEL_MASK as u8;

/// Where an endpoint is in its health cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Failed; not to be used until `until_ms`.
    Suspended,
    /// One caller holds the right to test it, until `until_ms` (the claim's lease).
    Probing,
}

/// Why an endpoint was suspended: what evidence can end the suspension early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCause {
    /// Connects were refused, timed out or failed their TLS handshake: a check that
    /// connects disproves it.
    Connect,
    /// It connected but gave no answer (an attempt timeout, a close or reset before the
    /// response): a frozen process still completes TCP handshakes, so only an answer (an
    /// HTTP check, a request) disproves it.
    Response,
}

impl FailureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Connect => "connect failure",
            FailureCause::Response => "no response",
        }
    }
}

/// One decoded value of an endpoint's health word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HealthWord(u64);

impl HealthWord {
    /// Healthy, epoch 0: every endpoint of a new table.
    pub const HEALTHY: HealthWord = HealthWord(0);

    fn pack(epoch: u16, state: State, level: u8, cause: FailureCause, until_ms: u64) -> HealthWord {
        let state = match state {
            State::Healthy => 0,
            State::Suspended => 1,
            State::Probing => 2,
        };
        let cause = match cause {
            FailureCause::Connect => 0,
            FailureCause::Response => 1,
        };
        HealthWord(
            (u64::from(epoch) << EPOCH_SHIFT)
                | ((u64::from(level) & LEVEL_MASK) << LEVEL_SHIFT)
                | (state << STATE_SHIFT)
                | (cause << CAUSE_SHIFT)
                | (until_ms.min(UNTIL_MASK)),
        )
    }

    /// Why the endpoint is suspended (or being probed); meaningless when healthy.
    pub fn cause(self) -> FailureCause {
        if (self.0 >> CAUSE_SHIFT) & 1 == 0 {
            FailureCause::Connect
        } else {
            FailureCause::Response
        }
    }

    /// Bumped by every transition; compare for equality (it wraps).
    pub fn epoch(self) -> u16 {
        (self.0 >> EPOCH_SHIFT) as u16
    }

    pub fn state(self) -> State {
        match (self.0 >> STATE_SHIFT) & STATE_MASK {
            0 => State::Healthy,
            2 => State::Probing,
            // 3 is never written; reading it as suspended is the safe side.
            _ => State::Suspended,
        }
    }

    #[inline]
    pub fn is_healthy(self) -> bool {
        (self.0 >> STATE_SHIFT) & STATE_MASK == 0
    }

    /// Failed probes in a row behind the current suspension; 0 when healthy.
    pub fn level(self) -> u8 {
        ((self.0 >> LEVEL_SHIFT) & LEVEL_MASK) as u8
    }

    /// End of the suspension or of the probe lease, in the table's milliseconds.
    pub fn until_ms(self) -> u64 {
        self.0 & UNTIL_MASK
    }

    /// The raw word (for logs and the admin endpoint).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// What a request may do with the endpoint at `now_ms`.
    pub fn pick_at(self, now_ms: u64) -> Pick {
        match self.state() {
            State::Healthy => Pick::Usable,
            State::Suspended | State::Probing if now_ms >= self.until_ms() => Pick::ProbeDue,
            State::Suspended | State::Probing => Pick::Suspended,
        }
    }

    /// The word after a failure observed at `now_ms`, or `None` when nothing changes.
    fn after_failure(
        self,
        now_ms: u64,
        policy: &SuspensionPolicy,
        cause: FailureCause,
    ) -> Option<HealthWord> {
        let level = match self.state() {
            State::Healthy => 0,
            State::Probing => self.level().saturating_add(1).min(MAX_LEVEL),
            State::Suspended => return None,
        };
        let until = now_ms.saturating_add(policy.duration_ms(level));
        Some(Self::pack(
            self.epoch().wrapping_add(1),
            State::Suspended,
            level,
            cause,
            until,
        ))
    }

    /// The word after a success, or `None` when it is already healthy.
    fn after_success(self) -> Option<HealthWord> {
        if self.is_healthy() {
            return None;
        }
        Some(Self::pack(
            self.epoch().wrapping_add(1),
            State::Healthy,
            0,
            FailureCause::Connect,
            0,
        ))
    }

    /// The word after a successful probe claim at `now_ms`, or `None` when no probe is due.
    fn after_claim(self, now_ms: u64, lease_ms: u64) -> Option<HealthWord> {
        if self.pick_at(now_ms) != Pick::ProbeDue {
            return None;
        }
        Some(Self::pack(
            self.epoch().wrapping_add(1),
            State::Probing,
            self.level(),
            self.cause(),
            now_ms.saturating_add(lease_ms.max(1)),
        ))
    }
}

impl fmt::Debug for HealthWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthWord")
            .field("epoch", &self.epoch())
            .field("state", &self.state())
            .field("level", &self.level())
            .field("cause", &self.cause())
            .field("until_ms", &self.until_ms())
            .finish()
    }
}

/// What a request may do with an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Healthy: use it.
    Usable,
    /// Suspended, or another caller is probing it: skip it.
    Suspended,
    /// The suspension (or an abandoned probe's lease) is over: whoever wins
    /// [`HealthTable::try_claim_probe`] may send one request; the others skip it.
    ProbeDue,
}

/// What a report did to the shared word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing: already in that state, or a stale report.
    Unchanged,
    /// A healthy endpoint failed: suspended for the initial duration.
    Suspended { for_ms: u64 },
    /// A probe failed: suspended again, `level` failed probes in a row, for `for_ms`.
    Resuspended { level: u8, for_ms: u64 },
    /// Healthy again, for every shard.
    Recovered,
}

/// How long failed endpoints stay suspended (the WSO2 APIM model).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuspensionPolicy {
    /// The first suspension after a failure of a healthy endpoint.
    pub initial_ms: u64,
    /// Each failed probe multiplies the suspension by this.
    pub factor: f64,
    /// Upper bound of a suspension.
    pub max_ms: u64,
}

impl Default for SuspensionPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 2_000,
            factor: 2.0,
            max_ms: 60_000,
        }
    }
}

impl From<&Suspension> for SuspensionPolicy {
    fn from(config: &Suspension) -> Self {
        Self {
            initial_ms: config.initial_ms,
            factor: config.progression_factor,
            max_ms: config.max_ms,
        }
    }
}

impl SuspensionPolicy {
    /// The length of a suspension `level` failed probes in: `initial * factor^level`, capped
    /// at `max_ms` (also when the product overflows or the factor is not a number).
    pub fn duration_ms(&self, level: u8) -> u64 {
        let ms = self.initial_ms as f64 * self.factor.powi(i32::from(level));
        if ms < self.max_ms as f64 {
            ms as u64
        } else {
            self.max_ms
        }
    }
}

/// The health of every upstream the process has interned, shared by all shards. It only
/// grows: an upstream's word is where it was for the life of the process.
pub struct HealthTable {
    words: Segmented<CachePadded<AtomicU64>>,
    /// Time zero of the words' millisecond fields.
    base: Instant,
}

impl fmt::Debug for HealthTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthTable")
            .field("capacity", &self.words.capacity())
            .finish_non_exhaustive()
    }
}

impl HealthTable {
    /// Room for `upstreams`, all healthy; time counts from now.
    pub fn new(upstreams: usize) -> Self {
        Self::with_base(upstreams, Instant::now())
    }

    /// Room for `upstreams`, all healthy; time counts from `base`.
    pub fn with_base(upstreams: usize, base: Instant) -> Self {
        let table = Self {
            words: Segmented::default(),
            base,
        };
        table.grow_to(upstreams);
        table
    }

    /// Makes room for ids below `upstreams` (new words are healthy). Control thread only,
    /// before a snapshot naming them is published.
    pub fn grow_to(&self, upstreams: usize) {
        self.words.grow_to(upstreams);
    }

    /// How many words exist (at least every id interned so far).
    pub fn capacity(&self) -> usize {
        self.words.capacity()
    }

    /// Time zero of the words' millisecond fields.
    pub fn base(&self) -> Instant {
        self.base
    }

    /// `now` in the words' milliseconds (saturating at both ends).
    pub fn millis(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.base).as_millis();
        ms.min(u128::from(MAX_MILLIS)) as u64
    }

    /// The endpoint's current word (one Acquire load). An id outside the table reads as
    /// healthy.
    #[inline]
    pub fn load(&self, id: UpstreamId) -> HealthWord {
        self.words
            .get(id.index())
            .map_or(HealthWord::HEALTHY, |slot| {
                HealthWord(slot.load(Ordering::Acquire))
            })
    }

    /// What a request may do with the endpoint now. One Acquire load, no write; the clock is
    /// only consulted when the endpoint is not healthy.
    #[inline]
    pub fn pick_state(&self, id: UpstreamId, now: Instant) -> Pick {
        self.pick_of(self.load(id), now)
    }

    /// [`pick_state`](Self::pick_state) of a word already loaded (for a shard that also
    /// passes it to [`LocalHealth::observe_word`]: one load for both).
    #[inline]
    pub fn pick_of(&self, word: HealthWord, now: Instant) -> Pick {
        if word.is_healthy() {
            return Pick::Usable;
        }
        word.pick_at(self.millis(now))
    }

    /// Claims the right to test an endpoint whose suspension is over: exactly one caller
    /// across all shards wins per expiry. The winner sends one request (or an active probe)
    /// and reports its outcome; until then every other shard sees `Pick::Suspended`. If the
    /// winner never reports (it died, or gave up without a verdict), the claim lapses after
    /// `lease` and the endpoint is due again. Pick a lease that covers the winner's longest
    /// wait for a verdict (the route timeout for a real request, the check timeout for an
    /// active probe).
    pub fn try_claim_probe(&self, id: UpstreamId, now: Instant, lease: Duration) -> bool {
        self.claim(id, now, lease).is_some()
    }

    /// Records a failure of the endpoint observed at `now`: a healthy endpoint is suspended
    /// for `policy.initial_ms`; a probing one (its probe failed) for the next, longer,
    /// duration; a suspended one is left alone (a stale report must not extend it). `cause`
    /// is kept in the word: it says which evidence can end the suspension early.
    pub fn report_failure(
        &self,
        id: UpstreamId,
        now: Instant,
        policy: &SuspensionPolicy,
        cause: FailureCause,
    ) -> Transition {
        let now_ms = self.millis(now);
        match self.fail(id, now_ms, policy, cause) {
            None => Transition::Unchanged,
            Some((old, new)) if old.is_healthy() => Transition::Suspended {
                for_ms: new.until_ms() - now_ms,
            },
            Some((_, new)) => Transition::Resuspended {
                level: new.level(),
                for_ms: new.until_ms() - now_ms,
            },
        }
    }

    /// Records a success (an answer from the endpoint): a suspended or probing endpoint is
    /// healthy again for all shards, its progression reset. On a healthy endpoint (the common
    /// case) this is one load and a compare: nothing is written.
    #[inline]
    pub fn report_success(&self, id: UpstreamId) -> Transition {
        match self.succeed(id) {
            Some(_) => Transition::Recovered,
            None => Transition::Unchanged,
        }
    }

    /// The failure report, with the words it replaced and wrote.
    fn fail(
        &self,
        id: UpstreamId,
        now_ms: u64,
        policy: &SuspensionPolicy,
        cause: FailureCause,
    ) -> Option<(HealthWord, HealthWord)> {
        self.update(id, |word| word.after_failure(now_ms, policy, cause))
    }

    /// The success report, with the words it replaced and wrote.
    #[inline]
    fn succeed(&self, id: UpstreamId) -> Option<(HealthWord, HealthWord)> {
        if self.load(id).is_healthy() {
            return None;
        }
        self.update(id, HealthWord::after_success)
    }

    /// The claim, with the word it wrote.
    fn claim(&self, id: UpstreamId, now: Instant, lease: Duration) -> Option<HealthWord> {
        let word = self.load(id);
        if word.is_healthy() {
            return None;
        }
        let now_ms = self.millis(now);
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(MAX_MILLIS);
        self.update(id, |word| word.after_claim(now_ms, lease_ms))
            .map(|(_, new)| new)
    }

    /// The CAS loop: applies `next` to the current word until it either declines (`None`,
    /// nothing written) or the CAS from the value it saw succeeds. Returns (old, new).
    fn update(
        &self,
        id: UpstreamId,
        next: impl Fn(HealthWord) -> Option<HealthWord>,
    ) -> Option<(HealthWord, HealthWord)> {
        let slot = self.words.get(id.index())?;
        let mut current = HealthWord(slot.load(Ordering::Acquire));
        loop {
            let new = next(current)?;
            match slot.compare_exchange_weak(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some((current, new)),
                Err(actual) => current = HealthWord(actual),
            }
        }
    }

    /// Sets a word directly (tests only: the data path never stores blindly).
    #[cfg(test)]
    fn set(&self, id: UpstreamId, word: HealthWord) {
        if let Some(slot) = self.words.get(id.index()) {
            slot.store(word.0, Ordering::Release);
        }
    }
}

/// What a shard should do about an endpoint whose shared word moved since it last looked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It went down: close the idle pooled connections to it, wake the requests waiting on it.
    Down,
    /// It came back: nothing to undo.
    Up,
    /// It went down and came back while this shard was not looking: a restarted server has
    /// closed the pooled connections, so they are closed here too.
    Bounced,
}

impl Change {
    /// Whether idle pooled connections to the endpoint should be closed.
    pub fn drains_pool(self) -> bool {
        matches!(self, Change::Down | Change::Bounced)
    }
}

/// What one shard last saw of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    epoch: u16,
    healthy: bool,
}

const FRESH: Seen = Seen {
    epoch: 0,
    healthy: true,
};

/// One shard's view of the table: the last epoch it saw per endpoint. Plain `Cell`s: owned
/// by one shard (`!Sync`), no atomics.
#[derive(Debug)]
pub struct LocalHealth {
    seen: Vec<Cell<Seen>>,
}

impl LocalHealth {
    /// A view of a new table (every upstream healthy at epoch 0).
    pub fn new(upstreams: usize) -> Self {
        Self {
            seen: vec![Cell::new(FRESH); upstreams],
        }
    }

    /// Loads the endpoint's word and tells whether it moved since this shard last looked.
    #[cfg(test)]
    pub fn observe(&self, table: &HealthTable, id: UpstreamId) -> Option<Change> {
        self.observe_word(id, table.load(id))
    }

    /// [`observe`](Self::observe) with a word already loaded. A plain compare when nothing
    /// moved (the common case).
    #[inline]
    pub fn observe_word(&self, id: UpstreamId, word: HealthWord) -> Option<Change> {
        let cell = self.seen.get(id.index())?;
        let seen = cell.get();
        if seen.epoch == word.epoch() {
            return None;
        }
        let healthy = word.is_healthy();
        cell.set(Seen {
            epoch: word.epoch(),
            healthy,
        });
        match (seen.healthy, healthy) {
            (true, false) => Some(Change::Down),
            (false, true) => Some(Change::Up),
            (true, true) => Some(Change::Bounced),
            // Still down (a probe failed, or a lease lapsed): nothing new to do.
            (false, false) => None,
        }
    }

    /// Makes room for ids below `upstreams` (a reload interned new ones). A new id's first
    /// observation reports the change from "healthy at epoch 0", which at worst drains a pool
    /// that is still empty.
    pub fn grow_to(&mut self, upstreams: usize) {
        if self.seen.len() < upstreams {
            self.seen.resize(upstreams, Cell::new(FRESH));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
