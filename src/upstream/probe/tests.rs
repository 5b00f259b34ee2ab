use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;
use crate::upstream::health::State;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a monoio runtime")
        .block_on(future)
}

fn settings(path: Option<&str>) -> HealthCheckSettings {
    HealthCheckSettings {
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(1000),
        unhealthy_threshold: 2,
        healthy_threshold: 2,
        path: path.map(Box::from),
    }
}

/// An address nothing listens on (bound, then closed).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A server that answers each of `connections` connections with `response` after reading
/// the request head; sends the request heads it read.
fn http_server(
    response: &'static [u8],
    connections: usize,
) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(response);
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        }
    });
    (addr, rx)
}

#[test]
fn tcp_check_passes_on_a_listening_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(
        block_on(probe(&[addr], "backend", &settings(None))),
        CheckOutcome::Passed
    );
}

#[test]
fn tcp_check_fails_on_a_closed_port_and_without_addresses() {
    assert_eq!(
        block_on(probe(&[closed_port()], "backend", &settings(None))),
        CheckOutcome::ConnectFailed
    );
    assert_eq!(
        block_on(probe(&[], "backend", &settings(None))),
        CheckOutcome::ConnectFailed
    );
}

#[test]
fn tcp_check_uses_the_first_address_that_accepts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = [closed_port(), listener.local_addr().unwrap()];
    assert!(block_on(probe(&addrs, "backend", &settings(None))).passed());
}

#[test]
fn http_check_sends_a_closing_get_with_the_host() {
    let (addr, requests) = http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1);
    assert!(block_on(probe(
        &[addr],
        "pets.example:8080",
        &settings(Some("/healthz"))
    ))
    .passed());
    let head = requests.recv().unwrap();
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nHost: pets.example:8080\r\n"), "{head}");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
}

#[test]
fn http_check_passes_on_2xx_and_3xx() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 301 Moved\r\n\r\n",
    ] {
        let (addr, _) = http_server(response, 1);
        assert!(
            block_on(probe(&[addr], "backend", &settings(Some("/")))).passed(),
            "{}",
            String::from_utf8_lossy(response)
        );
    }
}

#[test]
fn http_check_fails_on_other_statuses_and_garbage() {
    for response in [
        &b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"",
    ] {
        let (addr, _) = http_server(response, 1);
        assert!(
            block_on(probe(&[addr], "backend", &settings(Some("/")))) == CheckOutcome::NoAnswer,
            "{}",
            String::from_utf8_lossy(response)
        );
    }
}

#[test]
fn http_check_fails_when_the_server_never_answers() {
    // Accepts (by the backlog) but never reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut quick = settings(Some("/"));
    quick.timeout = Duration::from_millis(100);
    // It connected: the failure is "no answer", which a TCP check could not have seen.
    assert_eq!(
        block_on(probe(&[listener.local_addr().unwrap()], "backend", &quick)),
        CheckOutcome::NoAnswer
    );
}

#[test]
fn status_lines_are_judged_once_complete() {
    assert_eq!(status_passes(b""), None);
    assert_eq!(status_passes(b"HTTP/1.1 20"), None);
    assert_eq!(status_passes(b"HTTP/1.1 200 OK"), Some(true));
    assert_eq!(status_passes(b"HTTP/1.1 399\r\n"), Some(true));
    assert_eq!(status_passes(b"HTTP/1.1 400 Bad"), Some(false));
    assert_eq!(status_passes(b"HTTP/1.1 199 X"), Some(false));
    assert_eq!(status_passes(b"HTTP/2 200 OK\r\n"), Some(false));
    assert_eq!(status_passes(b"X"), Some(false));
    assert_eq!(status_passes(b"HTTP/1.1 2x0 OK"), Some(false));
}

fn word(table: &HealthTable) -> HealthWord {
    table.load(UpstreamId(0))
}

#[test]
fn tracker_suspends_a_healthy_endpoint_after_the_unhealthy_threshold() {
    let table = HealthTable::new(1);
    let mut t = ProbeTracker::new(&settings(None));
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Suspend);
    // A success in between restarts the count.
    let mut t = ProbeTracker::new(&settings(None));
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, true, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Suspend);
}

#[test]
fn checks_that_disprove_the_cause_end_a_suspension_at_once() {
    let table = HealthTable::new(1);
    let now = Instant::now();
    // However long the suspension has grown: the threshold of good checks ends it.
    let long = SuspensionPolicy {
        initial_ms: 60_000,
        factor: 2.0,
        max_ms: 60_000,
    };
    table.report_failure(UpstreamId(0), now, &long, FailureCause::Connect);
    let mut t = ProbeTracker::new(&settings(None));
    assert_eq!(t.record(word(&table), false, true, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, true, true), Verdict::Revive);
    // Failures during a suspension write nothing (no claim: the back-off is honoured).
    let mut t = ProbeTracker::new(&settings(None));
    for _ in 0..3 {
        assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    }
}

#[test]
fn checks_that_cannot_disprove_the_cause_never_revive() {
    let table = HealthTable::new(1);
    let now = Instant::now();
    let policy = SuspensionPolicy::default();
    table.report_failure(UpstreamId(0), now, &policy, FailureCause::Response);
    // A frozen backend still accepts TCP connections: those checks pass but prove nothing.
    let mut t = ProbeTracker::new(&settings(None));
    for _ in 0..5 {
        assert_eq!(t.record(word(&table), false, true, false), Verdict::Keep);
    }
}

#[test]
fn a_claimed_probe_failure_resuspends_and_a_claimed_success_revives_after_the_threshold() {
    let table = HealthTable::new(1);
    let id = UpstreamId(0);
    let base = table.base();
    let policy = SuspensionPolicy::default();
    table.report_failure(id, base, &policy, FailureCause::Connect);
    let mut t = ProbeTracker::new(&settings(None));
    // During the suspension: one good check (counted, short of the threshold).
    assert_eq!(t.record(word(&table), false, true, true), Verdict::Keep);
    // Due: claimed; the second good check in a row revives it.
    let due = base + Duration::from_millis(2000);
    let before = word(&table);
    assert!(table.try_claim_probe(id, due, Duration::from_secs(1)));
    assert_eq!(t.record(before, true, true, true), Verdict::Revive);
    assert_eq!(table.report_success(id), Transition::Recovered);

    // A claimed failure re-suspends whatever the streak.
    let mut t = ProbeTracker::new(&settings(None));
    table.report_failure(id, due, &policy, FailureCause::Connect);
    let before = word(&table);
    assert!(table.try_claim_probe(
        id,
        due + Duration::from_millis(2000),
        Duration::from_secs(1)
    ));
    assert_eq!(t.record(before, true, false, true), Verdict::Suspend);
}

#[test]
fn a_claimed_success_short_of_the_threshold_lets_the_lease_lapse_then_completes() {
    let table = HealthTable::new(1);
    let id = UpstreamId(0);
    let base = table.base();
    table.report_failure(
        id,
        base,
        &SuspensionPolicy::default(),
        FailureCause::Connect,
    );
    let mut t = ProbeTracker::new(&settings(None));
    let due = base + Duration::from_millis(2000);
    let before = word(&table);
    assert!(table.try_claim_probe(id, due, Duration::from_millis(100)));
    assert_eq!(t.record(before, true, true, true), Verdict::Keep);
    // Nobody else came; the lease lapsed; the next check claims again and completes the
    // streak: the tracker's own claim did not count as "someone else moved the word".
    let later = due + Duration::from_millis(500);
    let before = word(&table);
    assert!(table.try_claim_probe(id, later, Duration::from_millis(100)));
    assert_eq!(t.successes(), 1);
    assert_eq!(t.record(before, true, true, true), Verdict::Revive);
}

#[test]
fn a_request_failure_resets_the_success_streak() {
    let table = HealthTable::new(1);
    let id = UpstreamId(0);
    let base = table.base();
    let mut t = ProbeTracker::new(&settings(None));
    for _ in 0..5 {
        assert_eq!(t.record(word(&table), false, true, true), Verdict::Keep);
    }
    // A request fails: the endpoint is suspended by someone else.
    table.report_failure(
        id,
        base,
        &SuspensionPolicy::default(),
        FailureCause::Connect,
    );
    let due = base + Duration::from_millis(2000);
    let before = word(&table);
    assert!(table.try_claim_probe(id, due, Duration::from_millis(100)));
    // Five earlier successes do not count: this is the first since the failure.
    assert_eq!(t.record(before, true, true, true), Verdict::Keep);
    assert_eq!(t.successes(), 1);
}

#[test]
fn a_request_success_resets_the_failure_streak() {
    let table = HealthTable::new(1);
    let id = UpstreamId(0);
    let mut t = ProbeTracker::new(&settings(None));
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    table.report_failure(
        id,
        table.base(),
        &SuspensionPolicy::default(),
        FailureCause::Connect,
    );
    table.report_success(id);
    // The endpoint bounced while the checker was not looking: its failure is stale.
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Suspend);
}

#[test]
fn a_lost_claim_only_counts() {
    let table = HealthTable::new(1);
    let id = UpstreamId(0);
    let base = table.base();
    table.report_failure(
        id,
        base,
        &SuspensionPolicy::default(),
        FailureCause::Connect,
    );
    let mut t = ProbeTracker::new(&settings(None));
    let due = base + Duration::from_millis(2000);
    assert!(table.try_claim_probe(id, due, Duration::from_secs(1)));
    assert_eq!(t.record(word(&table), false, false, true), Verdict::Keep);
    assert_eq!(t.record(word(&table), false, true, true), Verdict::Keep);
}

#[test]
fn settings_come_from_the_health_check_config() {
    let s = HealthCheckSettings::default();
    assert_eq!(
        s,
        HealthCheckSettings {
            interval: Duration::from_millis(10_000),
            timeout: Duration::from_millis(1000),
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            path: None,
        }
    );
}

#[test]
fn jitter_stays_within_ten_percent() {
    let mut j = Jitter::new(UpstreamId(3));
    let interval = Duration::from_millis(10_000);
    for _ in 0..10_000 {
        let d = j.around(interval);
        assert!(
            d >= Duration::from_millis(9000) && d <= Duration::from_millis(11_000),
            "{d:?}"
        );
    }
    assert_eq!(j.around(Duration::ZERO), Duration::from_millis(1));
}

fn target(addr: SocketAddr, policy: SuspensionPolicy) -> ProbeTarget {
    ProbeTarget {
        upstream: UpstreamId(0),
        addrs: Rc::from(vec![addr]),
        origin: "http://backend".into(),
        authority: "backend".into(),
        settings: settings(None),
        policy,
    }
}

/// Runs the checks of one target until `done(table)` or 10 s (a safety net, not a
/// measurement).
fn run_until(
    target: ProbeTarget,
    table: &Arc<HealthTable>,
    done: impl Fn(&HealthTable) -> bool + 'static,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let watched = Arc::clone(table);
    block_on(run_health_checks(
        Arc::clone(table),
        vec![target],
        move || done(&watched) || Instant::now() > deadline,
    ));
}

#[test]
fn a_listening_endpoint_stays_healthy() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let table = Arc::new(HealthTable::new(1));
    let seen = Arc::clone(&accepted);
    run_until(
        target(addr, SuspensionPolicy::default()),
        &table,
        move |_| seen.load(Ordering::Relaxed) >= 4,
    );
    assert!(accepted.load(Ordering::Relaxed) >= 4);
    assert_eq!(table.load(UpstreamId(0)), HealthWord::HEALTHY);
}

#[test]
fn a_closed_endpoint_is_suspended_by_the_checks() {
    let table = Arc::new(HealthTable::new(1));
    run_until(
        target(closed_port(), SuspensionPolicy::default()),
        &table,
        |t| !t.load(UpstreamId(0)).is_healthy(),
    );
    let w = table.load(UpstreamId(0));
    assert_eq!((w.state(), w.level()), (State::Suspended, 0));
}

#[test]
fn a_dead_endpoint_is_resuspended_longer_by_claimed_checks() {
    let table = Arc::new(HealthTable::new(1));
    let quick = SuspensionPolicy {
        initial_ms: 10,
        factor: 2.0,
        max_ms: 1000,
    };
    run_until(target(closed_port(), quick), &table, |t| {
        t.load(UpstreamId(0)).level() >= 2
    });
    let w = table.load(UpstreamId(0));
    assert!(!w.is_healthy());
    assert!(w.level() >= 2, "{w:?}");
}

#[test]
fn a_recovered_endpoint_is_found_without_traffic() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let table = Arc::new(HealthTable::new(1));
    let quick = SuspensionPolicy {
        initial_ms: 10,
        factor: 2.0,
        max_ms: 1000,
    };
    table.report_failure(UpstreamId(0), Instant::now(), &quick, FailureCause::Connect);
    run_until(target(addr, quick), &table, |t| {
        t.load(UpstreamId(0)).is_healthy()
    });
    assert!(table.load(UpstreamId(0)).is_healthy());
    drop(listener);
}
