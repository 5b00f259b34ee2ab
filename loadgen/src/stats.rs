//! Per-thread statistics, the per-second timeline, and the merge after the threads join.
//!
//! Every worker thread owns its [`ThreadStats`]; nothing here is shared while the run goes.
//! At each second boundary a worker sends that second's [`SecondStats`] to the main thread
//! over a channel (for the progress line and the timeline); at the end the main thread
//! merges the threads' [`ThreadStats`].

use std::io;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Histograms cover 1 us to 60 s with 3 significant figures; values are microseconds.
pub const HIST_LOW_US: u64 = 1;
pub const HIST_HIGH_US: u64 = 60_000_000;
pub const HIST_SIGFIG: u8 = 3;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
        .expect("valid histogram bounds")
}

/// Records `d` in microseconds, clamped into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_nanos() / 1000) as u64;
    h.saturating_record(us.clamp(HIST_LOW_US, HIST_HIGH_US));
}

/// The error taxonomy (like wrk's, plus malformed responses kept apart from read errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    Connect = 0,
    Read = 1,
    Write = 2,
    Timeout = 3,
    Protocol = 4,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
        }
    }
}

/// Why an error happened: an OS error kind or a fixed text (no allocation), or, for the
/// rare TLS failures, rustls' message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    Io(io::ErrorKind),
    Text(&'static str),
    Other(String),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Io(k) => write!(f, "{k}"),
            Cause::Text(t) => f.write_str(t),
            Cause::Other(t) => f.write_str(t),
        }
    }
}

/// Plain counters; all of them count only requests that belong to the measured window
/// (open loop: intended time in the window; closed loop: sent in the window), except the
/// connection counters, which count the whole run.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Requests taken up by a connection (completed + errors).
    pub issued: u64,
    /// Responses received in full (any status).
    pub completed: u64,
    pub errors: [u64; 5],
    /// Completed responses by status code (index = code, 0..1000).
    pub status: Vec<u64>,
    /// Open loop: requests due in the window that no connection took up before the drain
    /// deadline.
    pub unsent: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub body_bytes: u64,
    /// Successful connection establishments (TCP, plus TLS when https).
    pub connects: u64,
    /// Establishments after a connection's first one.
    pub reconnects: u64,
    /// Connections the server closed (`Connection: close`, close-delimited body, or EOF on
    /// an idle keep-alive connection).
    pub closed_by_server: u64,
    /// Last issue / completion, as nanoseconds after the start of the measured window.
    pub last_issue_ns: u64,
    pub last_done_ns: u64,
}

impl Counters {
    pub fn new() -> Self {
        Counters {
            status: vec![0; 1000],
            ..Default::default()
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn status_errors(&self) -> u64 {
        self.status[400..].iter().sum()
    }

    pub fn merge(&mut self, o: &Counters) {
        self.issued += o.issued;
        self.completed += o.completed;
        for (a, b) in self.errors.iter_mut().zip(o.errors.iter()) {
            *a += b;
        }
        if self.status.len() < o.status.len() {
            self.status.resize(o.status.len(), 0);
        }
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        self.unsent += o.unsent;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.body_bytes += o.body_bytes;
        self.connects += o.connects;
        self.reconnects += o.reconnects;
        self.closed_by_server += o.closed_by_server;
        self.last_issue_ns = self.last_issue_ns.max(o.last_issue_ns);
        self.last_done_ns = self.last_done_ns.max(o.last_done_ns);
    }
}

/// One second of one thread.
#[derive(Debug, Clone)]
pub struct SecondStats {
    pub sent: u64,
    pub completed: u64,
    pub errors: u64,
    /// Corrected latency of the responses completed in this second.
    pub hist: Histogram<u64>,
    /// Requests issued and not yet finished when the second was closed.
    pub in_flight: u64,
}

impl SecondStats {
    pub fn new() -> Self {
        SecondStats {
            sent: 0,
            completed: 0,
            errors: 0,
            hist: new_hist(),
            in_flight: 0,
        }
    }

    pub fn merge(&mut self, o: &SecondStats) {
        self.sent += o.sent;
        self.completed += o.completed;
        self.errors += o.errors;
        self.in_flight += o.in_flight;
        self.hist.add(&o.hist).expect("same histogram bounds");
    }
}

impl Default for SecondStats {
    fn default() -> Self {
        Self::new()
    }
}

/// What workers tell the main thread while running.
#[derive(Debug)]
pub enum Msg {
    /// Thread `thread` finished second `sec` (0-based within the measured window).
    Second {
        thread: usize,
        sec: usize,
        stats: Box<SecondStats>,
    },
}

/// The per-second bookkeeping of one thread.
#[derive(Debug)]
struct Timeline {
    thread: usize,
    measure_start: Instant,
    seconds: usize,
    cur_sec: usize,
    cur: SecondStats,
    tx: Option<Sender<Msg>>,
    /// Issued minus finished, in the window, for the in-flight column.
    in_flight: u64,
    closed: bool,
}

impl Timeline {
    fn sec_of(&self, t: Instant) -> usize {
        let s = t.saturating_duration_since(self.measure_start).as_secs() as usize;
        s.min(self.seconds.saturating_sub(1))
    }

    /// Closes every second before `sec`.
    fn roll_to(&mut self, sec: usize) {
        while self.cur_sec < sec && !self.closed {
            self.flush_current();
        }
    }

    fn flush_current(&mut self) {
        let mut done = std::mem::take(&mut self.cur);
        done.in_flight = self.in_flight;
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Second {
                thread: self.thread,
                sec: self.cur_sec,
                stats: Box::new(done),
            });
        }
        self.cur_sec += 1;
        if self.cur_sec >= self.seconds {
            self.closed = true;
        }
    }

    fn at(&mut self, t: Instant) -> Option<&mut SecondStats> {
        let s = self.sec_of(t);
        self.roll_to(s);
        if self.closed {
            None
        } else {
            Some(&mut self.cur)
        }
    }
}

/// Everything one worker thread measures.
#[derive(Debug)]
pub struct ThreadStats {
    pub counters: Counters,
    /// Latency from the intended send time (open loop); equal to `uncorrected` in closed loop.
    pub corrected: Histogram<u64>,
    /// Latency from the actual send.
    pub uncorrected: Histogram<u64>,
    /// Generator schedule lag: when the dispatcher released a request minus its intended time.
    pub lag: Histogram<u64>,
    /// Time from a request's intended time to its actual send (lag + waiting for a free
    /// connection + connecting).
    pub send_delay: Histogram<u64>,
    /// TCP connect (+ TLS handshake) time.
    pub connect: Histogram<u64>,
    /// Distinct (kind, cause) pairs with counts; grows only when a new pair shows up.
    pub causes: Vec<(ErrorKind, Cause, u64)>,
    measure_start: Instant,
    timeline: Timeline,
}

impl ThreadStats {
    pub fn new(
        thread: usize,
        measure_start: Instant,
        duration: Duration,
        tx: Option<Sender<Msg>>,
    ) -> Self {
        let seconds = (duration.as_secs_f64().ceil() as usize).max(1);
        ThreadStats {
            counters: Counters::new(),
            corrected: new_hist(),
            uncorrected: new_hist(),
            lag: new_hist(),
            send_delay: new_hist(),
            connect: new_hist(),
            causes: Vec::with_capacity(8),
            measure_start,
            timeline: Timeline {
                thread,
                measure_start,
                seconds,
                cur_sec: 0,
                cur: SecondStats::new(),
                tx,
                in_flight: 0,
                closed: false,
            },
        }
    }

    fn ns_since_start(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.measure_start).as_nanos() as u64
    }

    /// A connection took up a request at `t` (`counted`: it belongs to the window).
    pub fn on_issue(&mut self, t: Instant, counted: bool) {
        if !counted {
            return;
        }
        self.counters.issued += 1;
        self.counters.last_issue_ns = self.counters.last_issue_ns.max(self.ns_since_start(t));
        self.timeline.in_flight += 1;
        if let Some(s) = self.timeline.at(t) {
            s.sent += 1;
        }
    }

    /// A response completed at `done`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_response(
        &mut self,
        counted: bool,
        intended: Instant,
        sent: Instant,
        done: Instant,
        status: u16,
        body_bytes: u64,
    ) {
        if !counted {
            return;
        }
        let c = &mut self.counters;
        c.completed += 1;
        c.body_bytes += body_bytes;
        if let Some(slot) = c.status.get_mut(status as usize) {
            *slot += 1;
        }
        let corrected = done.saturating_duration_since(intended);
        record(&mut self.corrected, corrected);
        record(&mut self.uncorrected, done.saturating_duration_since(sent));
        record(
            &mut self.send_delay,
            sent.saturating_duration_since(intended),
        );
        self.counters.last_done_ns = self.counters.last_done_ns.max(self.ns_since_start(done));
        self.timeline.in_flight = self.timeline.in_flight.saturating_sub(1);
        if let Some(s) = self.timeline.at(done) {
            s.completed += 1;
            if status >= 400 {
                s.errors += 1;
            }
            record(&mut s.hist, corrected);
        }
    }

    /// A request failed at `t`.
    pub fn on_error(&mut self, counted: bool, t: Instant, kind: ErrorKind, cause: Cause) {
        if !counted {
            return;
        }
        self.counters.errors[kind as usize] += 1;
        self.counters.last_done_ns = self.counters.last_done_ns.max(self.ns_since_start(t));
        match self
            .causes
            .iter_mut()
            .find(|(k, c, _)| *k == kind && *c == cause)
        {
            Some(e) => e.2 += 1,
            None => self.causes.push((kind, cause, 1)),
        }
        self.timeline.in_flight = self.timeline.in_flight.saturating_sub(1);
        if let Some(s) = self.timeline.at(t) {
            s.errors += 1;
        }
    }

    pub fn on_lag(&mut self, lag: Duration) {
        record(&mut self.lag, lag);
    }

    pub fn on_connect(&mut self, took: Duration, reconnect: bool) {
        self.counters.connects += 1;
        if reconnect {
            self.counters.reconnects += 1;
        }
        record(&mut self.connect, took);
    }

    /// Closes the seconds that ended before `now` (called by the per-second ticker).
    pub fn tick(&mut self, now: Instant) {
        let s = now.saturating_duration_since(self.measure_start).as_secs() as usize;
        self.timeline.roll_to(s);
    }

    /// Closes every remaining second (end of the run) and drops the channel.
    pub fn finish_timeline(&mut self) {
        let n = self.timeline.seconds;
        self.timeline.roll_to(n);
        self.timeline.tx = None;
    }

    pub fn merge(&mut self, o: &ThreadStats) {
        self.counters.merge(&o.counters);
        for (a, b) in [
            (&mut self.corrected, &o.corrected),
            (&mut self.uncorrected, &o.uncorrected),
            (&mut self.lag, &o.lag),
            (&mut self.send_delay, &o.send_delay),
            (&mut self.connect, &o.connect),
        ] {
            a.add(b).expect("same histogram bounds");
        }
        for (k, c, n) in &o.causes {
            match self
                .causes
                .iter_mut()
                .find(|(k2, c2, _)| k2 == k && c2 == c)
            {
                Some(e) => e.2 += n,
                None => self.causes.push((*k, c.clone(), *n)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn records_and_rolls_seconds() {
        let start = Instant::now();
        let (tx, rx) = channel();
        let mut s = ThreadStats::new(0, start, Duration::from_secs(3), Some(tx));
        let ms = Duration::from_millis;
        s.on_issue(start + ms(10), true);
        s.on_response(true, start, start + ms(10), start + ms(30), 200, 5);
        s.on_issue(start + ms(1500), true);
        s.on_error(true, start + ms(1600), ErrorKind::Read, Cause::Text("x"));
        s.on_issue(start + ms(2500), true);
        // Completion after the end of the window lands in the last second.
        s.on_response(
            true,
            start + ms(2500),
            start + ms(2500),
            start + ms(3200),
            503,
            0,
        );
        s.on_issue(start, false); // warmup: ignored
        s.finish_timeline();
        let secs: Vec<_> = rx.iter().collect();
        assert_eq!(secs.len(), 3);
        let Msg::Second { sec, stats, .. } = &secs[0];
        assert_eq!(
            (*sec, stats.sent, stats.completed, stats.errors),
            (0, 1, 1, 0)
        );
        assert_eq!(stats.hist.max(), stats.hist.highest_equivalent(30_000));
        let Msg::Second { stats, .. } = &secs[1];
        assert_eq!((stats.sent, stats.errors), (1, 1));
        let Msg::Second { stats, .. } = &secs[2];
        assert_eq!(
            (stats.sent, stats.completed, stats.errors, stats.in_flight),
            (1, 1, 1, 0)
        );
        assert_eq!(s.counters.issued, 3);
        assert_eq!(s.counters.completed, 2);
        assert_eq!(s.counters.status[503], 1);
        assert_eq!(s.counters.status_errors(), 1);
        assert_eq!(s.counters.errors[ErrorKind::Read as usize], 1);
        assert_eq!(s.corrected.len(), 2);
        // The corrected latency counts from the intended time, the uncorrected from the send.
        assert!(s.corrected.max() > s.uncorrected.max() - 1 || s.corrected.len() == 2);
    }

    #[test]
    fn merges() {
        let start = Instant::now();
        let mut a = ThreadStats::new(0, start, Duration::from_secs(1), None);
        let mut b = ThreadStats::new(1, start, Duration::from_secs(1), None);
        a.on_error(
            true,
            start,
            ErrorKind::Connect,
            Cause::Io(io::ErrorKind::ConnectionRefused),
        );
        b.on_error(
            true,
            start,
            ErrorKind::Connect,
            Cause::Io(io::ErrorKind::ConnectionRefused),
        );
        b.on_connect(Duration::from_micros(100), true);
        a.merge(&b);
        assert_eq!(a.counters.errors[0], 2);
        assert_eq!(a.causes.len(), 1);
        assert_eq!(a.causes[0].2, 2);
        assert_eq!((a.counters.connects, a.counters.reconnects), (1, 1));
        assert_eq!(a.connect.len(), 1);
    }
}
