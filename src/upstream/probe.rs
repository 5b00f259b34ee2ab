//! Active health checks: a TCP connect (or an HTTP `GET <path>` expecting 2xx/3xx) to each
//! endpoint of the groups with more than one URL, every interval, off the request path. The
//! results go to the shared [`HealthTable`] through a [`ProbeTracker`], which decides when
//! consecutive results are enough to suspend or revive an endpoint. Runs on a shard's monoio
//! runtime; each endpoint has exactly one checker across all shards (the caller assigns
//! them), and a check never blocks the shard.
//!
//! # How checks compose with passive suspension and the probe claim
//!
//! Requests and checks write the same word, under the same rules:
//!
//! - Healthy endpoint: `unhealthy_threshold` failed checks in a row suspend it
//!   (`report_failure`, the initial duration). A failed *request* suspends it at once; the
//!   checker is the slower, traffic-free path that finds a dead backup before it is needed.
//! - Suspended: `healthy_threshold` good checks in a row make it healthy at once, however
//!   long the suspension has grown (BEHAVIOUR.md 3: failback after a long outage takes at most
//!   `healthy_threshold x interval_ms`, not `suspension.max_ms`), but only checks that
//!   disprove the suspension's cause: a TCP check that connects disproves connect failures,
//!   not a backend that connects and never answers (a frozen process still completes TCP
//!   handshakes); an HTTP check's 2xx/3xx disproves both.
//! - Suspended and due: the checker competes for the probe claim like any request. If it wins,
//!   its check *is* the one probe of this expiry: a failure re-suspends with the next, longer,
//!   duration; a success that cannot revive it leaves the claim to lapse after its short
//!   lease (the check timeout plus a margin), and the next request or check may probe. If it
//!   loses the claim, a request is probing: the check only counts.
//! - Whenever the word moved without the checker (a request suspended or revived it), the
//!   streak that contradicts the new state is reset, so a revival needs successes seen
//!   after the last failure, and a suspension needs failures seen after the last success.
//! - A request's success revives the endpoint at once whatever the checker counted ("one
//!   success resets it"): an answer to a real request is the strongest evidence there is.
//!
//! # Checkers outlive reloads
//!
//! Each upstream has one checker task across all shards (upstream `i` on shard
//! `i mod workers`: the id is the process-wide one, so the assignment never moves). A reload
//! updates a running checker's settings in place; its streaks and schedule carry on, so
//! reloads at any cadence never reset health checking. A checker stops only when its
//! upstream leaves the configuration (or stops being checked) or the shard drains.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::compile::config::gateway::HealthCheck;
use crate::ids::UpstreamId;
use crate::upstream::health::{
    FailureCause, HealthTable, HealthWord, Pick, SuspensionPolicy, Transition,
};

/// How to check one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSettings {
    /// Time between two checks (jittered by ±10%).
    pub interval: Duration,
    /// Time one check may take, connect included.
    pub timeout: Duration,
    /// Failed checks in a row that suspend a healthy endpoint.
    pub unhealthy_threshold: u32,
    /// Good checks in a row that revive a suspended one.
    pub healthy_threshold: u32,
    /// `GET` this path (expecting 2xx/3xx); `None` means a TCP connect check.
    pub path: Option<Box<str>>,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self::from(&HealthCheck::default())
    }
}

impl From<&HealthCheck> for HealthCheckSettings {
    fn from(config: &HealthCheck) -> Self {
        Self {
            interval: Duration::from_millis(config.interval_ms.max(1)),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            unhealthy_threshold: config.unhealthy_threshold.max(1),
            healthy_threshold: config.healthy_threshold.max(1),
            path: config.path.as_deref().map(Box::from),
        }
    }
}

/// One endpoint to check, with the settings of its group.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeTarget {
    pub upstream: UpstreamId,
    /// Its current addresses; the first that accepts is checked, as requests do.
    pub addrs: Rc<[SocketAddr]>,
    /// `http://host:port`, for logs.
    pub origin: Box<str>,
    /// The `Host` header value for HTTP checks.
    pub authority: Box<str>,
    pub settings: HealthCheckSettings,
    /// The suspension policy to apply when a check suspends the endpoint.
    pub policy: SuspensionPolicy,
}

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Connected (TCP check), or a 2xx/3xx answer (HTTP check).
    Passed,
    /// No address accepted a connection in time.
    ConnectFailed,
    /// Connected, but no acceptable answer in time (HTTP check).
    NoAnswer,
}

impl CheckOutcome {
    pub fn passed(self) -> bool {
        self == CheckOutcome::Passed
    }

    /// What a failed check says is wrong, for the suspension it causes.
    fn cause(self) -> FailureCause {
        match self {
            CheckOutcome::NoAnswer => FailureCause::Response,
            CheckOutcome::Passed | CheckOutcome::ConnectFailed => FailureCause::Connect,
        }
    }
}

/// Checks an endpoint once: connects to the first of `addrs` that accepts, then, with a
/// `path`, sends `GET <path> HTTP/1.1` (`Host: <authority>`, `Connection: close`) and expects
/// a 2xx or 3xx status line. All within `check.timeout`. Only plain TCP: for an `https`
/// endpoint pass settings without a path (a TCP check).
pub async fn probe(
    addrs: &[SocketAddr],
    authority: &str,
    check: &HealthCheckSettings,
) -> CheckOutcome {
    let connected = Cell::new(false);
    monoio::time::timeout(
        check.timeout,
        probe_untimed(addrs, authority, check.path.as_deref(), &connected),
    )
    .await
    .unwrap_or(if connected.get() {
        CheckOutcome::NoAnswer
    } else {
        CheckOutcome::ConnectFailed
    })
}

async fn probe_untimed(
    addrs: &[SocketAddr],
    authority: &str,
    path: Option<&str>,
    connected: &Cell<bool>,
) -> CheckOutcome {
    for &addr in addrs {
        let Ok(stream) = TcpStream::connect_addr(addr).await else {
            continue;
        };
        connected.set(true);
        return match path {
            None => CheckOutcome::Passed,
            Some(path) if http_check(stream, authority, path).await => CheckOutcome::Passed,
            Some(_) => CheckOutcome::NoAnswer,
        };
    }
    CheckOutcome::ConnectFailed
}

/// The longest status line we read before giving up on a response.
const MAX_STATUS_LINE: usize = 1024;

async fn http_check(mut stream: TcpStream, authority: &str, path: &str) -> bool {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\nUser-Agent: shardgate-health-check\r\n\r\n"
    );
    let (result, _) = stream.write_all(request.into_bytes()).await;
    if result.is_err() {
        return false;
    }
    let mut head: Vec<u8> = Vec::with_capacity(256);
    loop {
        if let Some(verdict) = status_passes(&head) {
            return verdict;
        }
        if head.len() >= MAX_STATUS_LINE {
            return false;
        }
        let buf = Vec::with_capacity(256);
        let (result, buf) = stream.read(buf).await;
        match result {
            Ok(0) | Err(_) => return false,
            Ok(_) => head.extend_from_slice(&buf),
        }
    }
}

/// Whether the status line at the start of `head` is a 2xx or 3xx (`Some(false)` for any
/// other status or for bytes that are not a status line), or `None` when more bytes are
/// needed to tell.
fn status_passes(head: &[u8]) -> Option<bool> {
    // "HTTP/1.1 200" is enough to decide; anything shorter needs more bytes, unless what
    // is there already cannot be the start of a status line.
    const PREFIX: &[u8] = b"HTTP/1.";
    let prefix_len = head.len().min(PREFIX.len());
    if head[..prefix_len] != PREFIX[..prefix_len] {
        return Some(false);
    }
    if head.len() < 13 {
        return None;
    }
    let well_formed = head[7].is_ascii_digit()
        && head[8] == b' '
        && head[9..12].iter().all(u8::is_ascii_digit)
        && (head[12] == b' ' || head[12] == b'\r');
    Some(well_formed && matches!(head[9], b'2' | b'3'))
}

/// What the checker should write after a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Keep,
    /// `report_failure`: suspend a healthy endpoint, or re-suspend after a claimed probe.
    Suspend,
    /// `report_success`: the claimed probe completed the healthy streak.
    Revive,
}

/// Consecutive check results of one endpoint against its thresholds. Pure logic; see the
/// module documentation for how it composes with requests and the probe claim.
#[derive(Clone, Debug)]
pub struct ProbeTracker {
    successes: u32,
    failures: u32,
    /// The epoch of the word as this tracker last saw or wrote it.
    epoch: Option<u16>,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl ProbeTracker {
    pub fn new(settings: &HealthCheckSettings) -> Self {
        Self {
            successes: 0,
            failures: 0,
            epoch: None,
            healthy_threshold: settings.healthy_threshold.max(1),
            unhealthy_threshold: settings.unhealthy_threshold.max(1),
        }
    }

    /// Follows a reload that changed the thresholds; the streaks carry on.
    pub fn set_thresholds(&mut self, settings: &HealthCheckSettings) {
        self.healthy_threshold = settings.healthy_threshold.max(1);
        self.unhealthy_threshold = settings.unhealthy_threshold.max(1);
    }

    /// Records one check. `before` is the word loaded before the check (and before the
    /// claim); `claimed` whether this checker won the probe claim for it; `ok` the result;
    /// `disproves` whether a passed check disproves the cause of `before`'s suspension (an
    /// HTTP check always does, a TCP check only a connect-failure suspension).
    pub fn record(
        &mut self,
        before: HealthWord,
        claimed: bool,
        ok: bool,
        disproves: bool,
    ) -> Verdict {
        if self.epoch != Some(before.epoch()) {
            // Someone else moved the word: keep only the streak that agrees with it.
            if before.is_healthy() {
                self.failures = 0;
            } else {
                self.successes = 0;
            }
        }
        // A winning claim wrote exactly one more epoch.
        self.epoch = Some(if claimed {
            before.epoch().wrapping_add(1)
        } else {
            before.epoch()
        });
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        if before.is_healthy() {
            if !ok && self.failures >= self.unhealthy_threshold {
                return Verdict::Suspend;
            }
            return Verdict::Keep;
        }
        match (claimed, ok) {
            (_, true) if disproves && self.successes >= self.healthy_threshold => Verdict::Revive,
            (true, false) => Verdict::Suspend,
            _ => Verdict::Keep,
        }
    }

    pub fn successes(&self) -> u32 {
        self.successes
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Runs the checks of `targets` on the current monoio runtime (one loop each) until `stop()`
/// says so; returns when every loop has ended. For tests and tools: a shard keeps its
/// checkers in [`HealthCheckers`] instead, so that they survive reloads.
#[cfg(test)]
pub async fn run_health_checks(
    table: Arc<HealthTable>,
    targets: Vec<ProbeTarget>,
    stop: impl Fn() -> bool + 'static,
) {
    let stop: Rc<dyn Fn() -> bool> = Rc::new(stop);
    let loops: Vec<_> = targets
        .into_iter()
        .map(|target| {
            let checker = Rc::new(Checker::new(target));
            let (table, stop, watched) =
                (Arc::clone(&table), Rc::clone(&stop), Rc::clone(&checker));
            monoio::spawn(async move {
                let stopped = move || stop() || watched.stopped.get();
                check_loop(&table, &checker, &stopped).await
            })
        })
        .collect();
    for handle in loops {
        handle.await;
    }
}

/// One running checker: its target (updated in place by a reload) and its stop flag.
struct Checker {
    target: RefCell<ProbeTarget>,
    stopped: Cell<bool>,
}

impl Checker {
    fn new(target: ProbeTarget) -> Self {
        Self {
            target: RefCell::new(target),
            stopped: Cell::new(false),
        }
    }
}

/// A shard's running checkers, by upstream. Shard-local.
#[derive(Default)]
pub struct HealthCheckers {
    running: HashMap<UpstreamId, Rc<Checker>>,
}

impl HealthCheckers {
    /// Makes the running checkers match `targets`: a checker already running for an
    /// upstream takes the new settings and addresses and carries on (streaks, schedule);
    /// new upstreams get a checker; the others stop.
    pub fn sync(&mut self, table: &Arc<HealthTable>, targets: Vec<ProbeTarget>) {
        let mut wanted: HashMap<UpstreamId, ProbeTarget> =
            targets.into_iter().map(|t| (t.upstream, t)).collect();
        self.running.retain(|id, checker| match wanted.remove(id) {
            Some(target) => {
                if *checker.target.borrow() != target {
                    *checker.target.borrow_mut() = target;
                }
                true
            }
            None => {
                checker.stopped.set(true);
                false
            }
        });
        for (id, target) in wanted {
            let checker = Rc::new(Checker::new(target));
            let (table, running) = (Arc::clone(table), Rc::clone(&checker));
            monoio::spawn(async move {
                let stopped = || running.stopped.get();
                check_loop(&table, &running, &stopped).await
            });
            self.running.insert(id, checker);
        }
    }

    /// Stops every checker (the shard drains).
    pub fn stop_all(&mut self) {
        for (_, checker) in self.running.drain() {
            checker.stopped.set(true);
        }
    }
}

/// How often a sleeping loop looks at `stop`.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Added to the check timeout for the probe claim's lease.
const LEASE_MARGIN: Duration = Duration::from_millis(100);

async fn check_loop(table: &HealthTable, checker: &Checker, stop: &dyn Fn() -> bool) {
    let first = checker.target.borrow().clone();
    let mut jitter = Jitter::new(first.upstream);
    let mut tracker = ProbeTracker::new(&first.settings);
    // The first check comes soon (within a tenth of the interval), spread over that window.
    let mut wait = first.settings.interval.mul_f64(jitter.unit() / 10.0);
    loop {
        if !sleep_unless_stopped(wait, stop).await {
            return;
        }
        // The settings as of now: a reload may have changed them while this loop slept.
        let target = checker.target.borrow().clone();
        let settings = &target.settings;
        tracker.set_thresholds(settings);
        let id = target.upstream;
        let now = Instant::now();
        let before = table.load(id);
        let claimed = table.pick_of(before, now) == Pick::ProbeDue
            && table.try_claim_probe(id, now, settings.timeout + LEASE_MARGIN);
        let outcome = probe(&target.addrs, &target.authority, settings).await;
        let kind = if settings.path.is_some() {
            "HTTP"
        } else {
            "TCP"
        };
        let disproves = settings.path.is_some() || before.cause() == FailureCause::Connect;
        match tracker.record(before, claimed, outcome.passed(), disproves) {
            Verdict::Keep => {}
            Verdict::Suspend => {
                let cause = outcome.cause();
                match table.report_failure(id, Instant::now(), &target.policy, cause) {
                    Transition::Suspended { for_ms } | Transition::Resuspended { for_ms, .. } => {
                        log::warn!(
                            "endpoint {} suspended for {for_ms} ms: {} ({} failed {kind} \
                             health checks in a row)",
                            target.origin,
                            cause.as_str(),
                            tracker.failures()
                        )
                    }
                    Transition::Unchanged | Transition::Recovered => {}
                }
            }
            Verdict::Revive => {
                if table.report_success(id) == Transition::Recovered {
                    log::info!(
                        "endpoint {} healthy again: {} {kind} health checks passed in a row",
                        target.origin,
                        tracker.successes()
                    );
                }
            }
        }
        wait = jitter.around(settings.interval);
    }
}

/// Sleeps for `wait`, looking at `stop` every [`STOP_POLL`]; false when stopped.
async fn sleep_unless_stopped(wait: Duration, stop: &dyn Fn() -> bool) -> bool {
    let end = Instant::now() + wait;
    loop {
        if stop() {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        monoio::time::sleep(left.min(STOP_POLL)).await;
    }
}

/// A tiny xorshift generator for spreading checks; no cryptographic or statistical claims.
struct Jitter(u64);

impl Jitter {
    /// Seeded from the upstream id and the clock, so endpoints and restarts differ.
    fn new(id: UpstreamId) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = (u64::from(id.0) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ clock;
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `interval` ±10%, at least a millisecond.
    fn around(&mut self, interval: Duration) -> Duration {
        interval
            .mul_f64(0.9 + 0.2 * self.unit())
            .max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests;
