//! The scheduling tests: rate accounting and coordinated-omission correction.
//!
//! They run one at a time (a lock below), so that they do not share the two cores with each
//! other. Nothing here depends on how fast the machine is: the achieved rate itself is a
//! figure of `bench/loadgen_rate.sh` (within 1 % of the target on a quiet machine), and the
//! tests assert what must hold however slow the run: every scheduled request is accounted
//! for, the generator's report agrees with its own counts, and it says so when it fell short.

mod common;

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use common::{run, TestServer};

static SERIAL: Mutex<()> = Mutex::new(());

fn rate_test(rate: u32, connections: u32) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    let url = server.url("/");
    let (rate_s, conns) = (rate.to_string(), connections.to_string());
    let r = run(&[
        "--rate", &rate_s, "-c", &conns, "-d", "5s", "--warmup", "500ms", &url,
    ])
    .unwrap();
    let c = &r.totals.counters;
    let h = &r.honesty;
    let target = rate as f64;
    eprintln!(
        "rate {rate}: achieved {:.1}, throughput {:.1}, issued {}, completed {}, unsent {}, errors {}, lag p99 {}us",
        h.achieved_rate,
        h.throughput,
        c.issued,
        c.completed,
        c.unsent,
        c.total_errors(),
        h.schedule_lag_p99_us
    );
    // Exactly the scheduled number of requests belongs to the window: each was either sent
    // or counted as not sent.
    assert_eq!(c.issued + c.unsent, (target * 5.0) as u64);
    assert_eq!(c.total_errors(), 0);
    assert_eq!(c.completed, c.issued);
    assert_eq!(c.status[200], c.completed);
    assert_eq!(r.timeline.len(), 5);
    assert_eq!(r.timeline.iter().map(|t| t.sent).sum::<u64>(), c.issued);
    // The achieved rate counts the issued requests over at least the 5 s window (longer when
    // the last one went out late), never more than were issued.
    assert!(
        h.achieved_rate <= c.issued as f64 / 5.0 + 1e-6,
        "achieved {:.1} req/s is more than {} issued in 5 s",
        h.achieved_rate,
        c.issued
    );
    // Falling short is reported, never hidden.
    if h.achieved_rate < target * 0.99 {
        assert!(h.rate_below_target && h.could_not_keep_up, "{h:?}");
    } else {
        assert!(!h.rate_below_target, "{h:?}");
    }
}

#[test]
fn every_scheduled_request_is_accounted_for_at_2000() {
    rate_test(2_000, 16);
}

#[test]
fn every_scheduled_request_is_accounted_for_at_20000() {
    rate_test(20_000, 64);
}

#[test]
fn a_200ms_stall_shows_in_corrected_latency_only() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    let url = server.url("/");
    // 1000 req/s over 2 connections for 4 s: 4000 requests. During the 200 ms stall about
    // 200 requests fall due; the first 50 or so of them are due 150 ms or more before the
    // stall ends, so measured from their intended time they wait at least that long, however
    // fast the machine. Measured from their actual send (uncorrected), they do not: only the
    // requests in flight when the stall began see it.
    let stall = {
        let shared = server.shared.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(500 + 1500));
            *shared.stall_until.lock().unwrap() =
                Some(std::time::Instant::now() + Duration::from_millis(200));
        })
    };
    let r = run(&[
        "--rate", "1000", "-c", "2", "-t", "1", "-d", "4s", "--warmup", "500ms", &url,
    ])
    .unwrap();
    stall.join().unwrap();
    let t = &r.totals;
    const LONG_US: u64 = 150_000;
    let corrected_long = t.corrected.count_between(LONG_US, u64::MAX);
    let uncorrected_long = t.uncorrected.count_between(LONG_US, u64::MAX);
    eprintln!(
        "stall: corrected >= 150 ms: {corrected_long} (max {}us); uncorrected >= 150 ms: \
         {uncorrected_long} (max {}us); n {}",
        t.corrected.max(),
        t.uncorrected.max(),
        t.corrected.len()
    );
    assert_eq!(t.counters.total_errors(), 0);
    assert_eq!(t.corrected.len(), t.uncorrected.len());
    // The requests that fell due early in the stall waited through the rest of it.
    assert!(
        corrected_long >= 40,
        "{corrected_long} corrected latencies >= 150 ms"
    );
    // The stall itself is seen by the requests in flight.
    assert!(uncorrected_long >= 1);
    // Correction only ever adds time: each request's corrected latency is at least its
    // uncorrected one, and the requests that queued behind the stall add to it.
    assert!(
        corrected_long > uncorrected_long,
        "corrected {corrected_long} vs uncorrected {uncorrected_long}"
    );
}
