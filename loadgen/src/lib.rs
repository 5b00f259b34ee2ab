//! shardgate's load generator and latency profiler.
//!
//! [`run`] drives a whole run in-process: one monoio runtime per worker thread, each pinned
//! to a core, each with its own connections, statistics and (open loop) schedule; nothing is
//! shared between the threads while requests flow. The main thread only collects one message
//! per thread per second (timeline, progress) and merges everything after the threads join.
//!
//! The output formats ([`report`], [`json`], [`hgrm`], [`svg`]) all work from a [`RunResult`].

pub mod args;
pub mod hgrm;
pub mod http;
pub mod json;
mod queue;
pub mod report;
pub mod request;
pub mod stats;
pub mod svg;
pub mod timer;
mod tls;
pub mod url;
mod worker;

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use args::Config;
use stats::{Msg, SecondStats, ThreadStats};
use url::{ConnectTo, Url};
use worker::{Plan, PlannedUrl, Target};

/// Open loop at a target rate, or closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Open { rate: f64 },
    Closed,
}

/// One second of the measured window, all threads merged. Latencies are corrected (from the
/// intended send time) and in microseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimelineRow {
    /// 1-based: row 1 covers the first second after the warmup.
    pub second: usize,
    pub sent: u64,
    pub completed: u64,
    /// Transport errors plus responses with status >= 400.
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Requests issued and not finished at the end of the second.
    pub in_flight: u64,
}

/// The generator's account of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Honesty {
    /// Open loop: the requested total rate.
    pub target_rate: Option<f64>,
    /// Requests issued (taken up by a connection) per second of the window.
    pub achieved_rate: f64,
    /// Complete responses per second.
    pub throughput: f64,
    /// p99 of the dispatcher's lag behind its schedule, in microseconds (open loop).
    pub schedule_lag_p99_us: u64,
    /// p99 of intended-to-actual send time (lag, waiting for a free connection, connecting).
    pub send_delay_p99_us: u64,
    /// Schedule lag p99 above 1 ms.
    pub lag_exceeded: bool,
    /// Achieved rate below 99% of the target.
    pub rate_below_target: bool,
    /// Either of the two: the run did not deliver the load it was asked for.
    pub could_not_keep_up: bool,
    /// Whether the microsecond timerfd timer was used (else monoio's 1 ms wheel).
    pub precise_timer: bool,
    /// Plain-words findings for the summary.
    pub notes: Vec<String>,
}

/// Everything a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub mode: Mode,
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub method: String,
    pub urls: Vec<String>,
    /// All threads merged (its timeline part is unused; see `timeline`).
    pub totals: ThreadStats,
    pub timeline: Vec<TimelineRow>,
    /// CPU time of the worker threads over the run (user + system).
    pub cpu: Duration,
    /// Every worker ran on io_uring (else some fell back to epoll).
    pub io_uring: bool,
    pub honesty: Honesty,
}

impl RunResult {
    pub fn is_open_loop(&self) -> bool {
        matches!(self.mode, Mode::Open { .. })
    }
}

/// Why a run did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// Bad input (exit status 2).
    Invalid(String),
    /// Nothing could connect, or the run could not be set up (exit status 1).
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Invalid(m) | RunError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RunError {}

/// Progress notifications from [`run`] (called on the calling thread).
#[derive(Debug)]
pub enum Event<'a> {
    /// All connections were attempted; the schedule starts now (warmup first).
    Started {
        connected: usize,
        warmup: Duration,
        duration: Duration,
    },
    /// A second of the measured window is complete.
    Second { row: &'a TimelineRow, of: usize },
}

/// Resolves URLs and connect-to rules into targets and pre-rendered requests.
fn plan_urls(cfg: &Config) -> Result<(Vec<Target>, Vec<PlannedUrl>), RunError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut keys: Vec<(bool, std::net::SocketAddr, String)> = Vec::new();
    let mut urls = Vec::with_capacity(cfg.urls.len());
    for raw in &cfg.urls {
        let url = Url::parse(raw).map_err(|e| RunError::Invalid(e.0))?;
        let (host, port) = ConnectTo::resolve(&cfg.connect_to, &url);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| RunError::Failed(format!("cannot resolve {host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| RunError::Failed(format!("{host}:{port} resolves to no address")))?;
        let key = (url.tls, addr, url.host.clone());
        let target = match keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                let tls_name = if url.tls {
                    Some(tls::server_name(&url.host).map_err(RunError::Invalid)?)
                } else {
                    None
                };
                targets.push(Target { addr, tls_name });
                keys.push(key);
                targets.len() - 1
            }
        };
        urls.push(PlannedUrl {
            target,
            request: request::render(cfg, &url),
            head_only: cfg.method.eq_ignore_ascii_case("HEAD"),
        });
    }
    Ok((targets, urls))
}

/// Runs the load described by `cfg` and returns what it measured.
pub fn run(cfg: &Config, mut on_event: impl FnMut(Event<'_>)) -> Result<RunResult, RunError> {
    let (targets, urls) = plan_urls(cfg)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let default_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cfg
        .threads
        .unwrap_or(default_threads)
        .min(cfg.connections)
        .max(1);
    let conns_per_thread: Vec<usize> = (0..threads)
        .map(|k| cfg.connections / threads + usize::from(k < cfg.connections % threads))
        .collect();
    let plan = Arc::new(Plan {
        targets,
        urls,
        threads,
        conns_per_thread,
        rate: cfg.rate,
        warmup: cfg.warmup,
        duration: cfg.duration,
        timeout: cfg.timeout,
        insecure: cfg.insecure,
    });

    let (ready_tx, ready_rx) = mpsc::channel();
    let (msg_tx, msg_rx) = mpsc::channel::<Msg>();
    let mut start_txs = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for k in 0..threads {
        let (start_tx, start_rx) = mpsc::channel();
        start_txs.push(start_tx);
        let plan = plan.clone();
        let ready_tx = ready_tx.clone();
        let msg_tx = msg_tx.clone();
        let core = (!cores.is_empty()).then(|| cores[k % cores.len()]);
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{k}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                worker::run_worker(k, plan, ready_tx, start_rx, msg_tx)
            })
            .map_err(|e| RunError::Failed(format!("cannot start a worker thread: {e}")))?;
        handles.push(h);
    }
    drop(ready_tx);
    drop(msg_tx);

    let mut connected = 0;
    let mut first_error = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok((_, r)) => {
                connected += r.connected;
                if first_error.is_none() {
                    first_error = r.first_error;
                }
            }
            Err(_) => break,
        }
    }
    if connected == 0 {
        for tx in &start_txs {
            let _ = tx.send(None);
        }
        for h in handles {
            let _ = h.join();
        }
        return Err(RunError::Failed(format!(
            "could not connect at all: {}",
            first_error.unwrap_or_else(|| "no worker started".into())
        )));
    }
    let t0 = Instant::now() + Duration::from_millis(20);
    for tx in &start_txs {
        let _ = tx.send(Some(t0));
    }
    on_event(Event::Started {
        connected,
        warmup: cfg.warmup,
        duration: cfg.duration,
    });

    // Collect the per-second messages until every worker has dropped its sender.
    let seconds = (cfg.duration.as_secs_f64().ceil() as usize).max(1);
    let mut pending: BTreeMap<usize, (usize, SecondStats)> = BTreeMap::new();
    let mut rows: Vec<Option<TimelineRow>> = vec![None; seconds];
    let finalize = |sec: usize, s: &SecondStats| TimelineRow {
        second: sec + 1,
        sent: s.sent,
        completed: s.completed,
        errors: s.errors,
        p50_us: s.hist.value_at_quantile(0.5),
        p99_us: s.hist.value_at_quantile(0.99),
        max_us: s.hist.max(),
        in_flight: s.in_flight,
    };
    while let Ok(Msg::Second { sec, stats, .. }) = msg_rx.recv() {
        let e = pending
            .entry(sec)
            .or_insert_with(|| (0, SecondStats::new()));
        e.0 += 1;
        e.1.merge(&stats);
        if e.0 == threads {
            let (_, s) = pending.remove(&sec).expect("present");
            let row = finalize(sec, &s);
            on_event(Event::Second {
                row: &row,
                of: seconds,
            });
            if sec < seconds {
                rows[sec] = Some(row);
            }
        }
    }
    for (sec, (_, s)) in pending {
        if sec < seconds {
            rows[sec] = Some(finalize(sec, &s));
        }
    }
    let timeline: Vec<TimelineRow> = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or(TimelineRow {
                second: i + 1,
                ..Default::default()
            })
        })
        .collect();

    let measure_start = t0 + cfg.warmup;
    let mut totals = ThreadStats::new(0, measure_start, cfg.duration, None);
    let mut cpu = Duration::ZERO;
    let mut precise = true;
    let mut io_uring = true;
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(Some(out))) => {
                totals.merge(&out.stats);
                cpu += out.cpu;
                precise &= out.precise_timer;
                io_uring &= out.io_uring;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a worker thread panicked".to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(RunError::Failed(errors.join("; ")));
    }

    let mode = match cfg.rate {
        Some(rate) => Mode::Open { rate },
        None => Mode::Closed,
    };
    let honesty = assess(mode, cfg, &totals, precise);
    Ok(RunResult {
        mode,
        threads,
        connections: cfg.connections,
        duration: cfg.duration,
        warmup: cfg.warmup,
        timeout: cfg.timeout,
        method: cfg.method.clone(),
        urls: cfg.urls.clone(),
        totals,
        timeline,
        cpu,
        io_uring,
        honesty,
    })
}

/// Schedule lag (p99) beyond which the generator is said not to keep up.
pub const MAX_LAG_P99_US: u64 = 1000;
/// Share of the target rate below which the generator is said not to keep up.
pub const MIN_RATE_SHARE: f64 = 0.99;

fn assess(mode: Mode, cfg: &Config, t: &ThreadStats, precise: bool) -> Honesty {
    let c = &t.counters;
    let dur = cfg.duration.as_secs_f64();
    let issue_elapsed = dur.max(c.last_issue_ns as f64 / 1e9);
    let done_elapsed = dur.max(c.last_done_ns as f64 / 1e9);
    let achieved = c.issued as f64 / issue_elapsed;
    let throughput = c.completed as f64 / done_elapsed;
    let lag_p99 = t.lag.value_at_quantile(0.99);
    let delay_p99 = t.send_delay.value_at_quantile(0.99);
    let mut notes = Vec::new();
    let (target, lag_exceeded, rate_below) = match mode {
        Mode::Open { rate } => (
            Some(rate),
            lag_p99 > MAX_LAG_P99_US,
            achieved < rate * MIN_RATE_SHARE,
        ),
        Mode::Closed => (None, false, false),
    };
    match mode {
        Mode::Open { rate } => {
            if lag_exceeded {
                notes.push(format!(
                    "The generator fell behind its own schedule: its lag p99 is {} (limit {}). \
                     Latencies include up to that much generator delay; use more threads (-t), \
                     a lower --rate, or a less busy machine.",
                    report::fmt_us(lag_p99),
                    report::fmt_us(MAX_LAG_P99_US)
                ));
            }
            if rate_below {
                notes.push(format!(
                    "Only {achieved:.1} of the {rate} req/s target were sent ({:.1}%); {} due \
                     requests were never sent. Requests waited for a free connection (send delay \
                     p99 {}): the server cannot answer this rate with {} connections; add \
                     connections (-c) or lower --rate.",
                    100.0 * achieved / rate,
                    c.unsent,
                    report::fmt_us(delay_p99),
                    cfg.connections
                ));
            }
            if !lag_exceeded && !rate_below {
                notes.push(format!(
                    "The generator kept up: schedule lag p99 {} (limit {}), {:.1}% of the target \
                     rate sent.",
                    report::fmt_us(lag_p99),
                    report::fmt_us(MAX_LAG_P99_US),
                    100.0 * achieved / rate
                ));
            }
            if !precise {
                notes.push(
                    "No timerfd: the 1 ms monoio timer was used, so up to 2 ms of schedule lag \
                     is the timer's."
                        .to_string(),
                );
            }
        }
        Mode::Closed => notes.push(
            "Closed loop: each connection waits for a response before sending the next \
             request, so a server stall also stops the sending and the requests that would \
             have waited are never measured (coordinated omission, as with wrk). Use --rate \
             for latencies that count from the intended send time."
                .to_string(),
        ),
    }
    Honesty {
        target_rate: target,
        achieved_rate: achieved,
        throughput,
        schedule_lag_p99_us: lag_p99,
        send_delay_p99_us: delay_p99,
        lag_exceeded,
        rate_below_target: rate_below,
        could_not_keep_up: lag_exceeded || rate_below,
        precise_timer: precise,
        notes,
    }
}
