//! The scheduling tests: achieved rate and coordinated-omission correction.
//!
//! They run one at a time (a lock below), so that they do not share the two cores with each
//! other. Their only wall-clock assertions are the ones that are the feature: the achieved
//! rate (scheduling, not speed) and the corrected latency of a server stall.

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
    assert!(
        (h.achieved_rate - target).abs() <= target * 0.01,
        "achieved {:.1} req/s is not within 1% of {target}",
        h.achieved_rate
    );
    // Exactly the scheduled number of requests belongs to the window.
    assert_eq!(c.issued + c.unsent, (target * 5.0) as u64);
    assert_eq!(c.total_errors(), 0);
    assert_eq!(c.completed, c.issued);
    assert_eq!(c.status[200], c.completed);
    assert_eq!(r.timeline.len(), 5);
    assert_eq!(r.timeline.iter().map(|t| t.sent).sum::<u64>(), c.issued);
}

#[test]
fn achieved_rate_within_1_percent_at_2000() {
    rate_test(2_000, 16);
}

#[test]
fn achieved_rate_within_1_percent_at_20000() {
    rate_test(20_000, 64);
}

#[test]
fn a_200ms_stall_shows_in_corrected_latency_only() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    let url = server.url("/");
    // 1000 req/s over 2 connections for 4 s: 4000 requests. During the 200 ms stall about
    // 200 requests fall due; measured from their intended time about 50 of them wait 150 ms
    // or more (> 0.1%), but only the 2 in flight at the stall wait that long after their
    // actual send (< 0.1%).
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
    let corrected = t.corrected.value_at_quantile(0.999);
    let uncorrected = t.uncorrected.value_at_quantile(0.999);
    eprintln!(
        "stall: corrected p99.9 {corrected}us max {}us; uncorrected p99.9 {uncorrected}us max {}us; n {}",
        t.corrected.max(),
        t.uncorrected.max(),
        t.corrected.len()
    );
    assert_eq!(t.counters.total_errors(), 0);
    assert!(
        corrected >= 150_000,
        "corrected p99.9 {corrected}us < 150ms"
    );
    assert!(
        uncorrected < 150_000,
        "uncorrected p99.9 {uncorrected}us >= 150ms"
    );
    // The stall itself is seen by the requests in flight.
    assert!(t.uncorrected.max() >= 150_000);
}
