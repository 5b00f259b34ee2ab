//! Connection handling, error taxonomy, TLS, host overrides and the honesty flag, in-process
//! against the test server. Short runs; only counts are asserted.

mod common;

use common::{run, tls_server_config, TestServer};
use loadgen::stats::ErrorKind;
use loadgen::RunError;

fn errors(r: &loadgen::RunResult, k: ErrorKind) -> u64 {
    r.totals.counters.errors[k as usize]
}

#[test]
fn reconnects_after_connection_close() {
    let server = TestServer::start();
    let (a, b) = (server.url("/"), server.url("/close"));
    // Round robin over a keep-alive URL and one answered with `Connection: close`.
    let r = run(&["--rate", "400", "-c", "2", "-t", "1", "-d", "1s", &a, &b]).unwrap();
    let c = &r.totals.counters;
    assert_eq!(c.total_errors(), 0, "{:?}", r.totals.causes);
    assert_eq!(c.completed, 400);
    assert_eq!(c.status[200], 400);
    // Every `/close` response closes its connection; the next request reconnects.
    assert!(
        c.closed_by_server >= 199,
        "closed by server {}",
        c.closed_by_server
    );
    assert!(c.reconnects >= 198, "reconnects {}", c.reconnects);
    assert_eq!(c.connects, 2 + c.reconnects);
    assert_eq!(server.connections(), c.connects);
}

#[test]
fn keepalive_off_and_http10_connect_per_request() {
    let server = TestServer::start();
    let url = server.url("/");
    for flag in ["--no-keepalive", "--http1.0"] {
        let before = server.connections();
        let r = run(&["-c", "2", "-t", "1", "-d", "300ms", flag, &url]).unwrap();
        let c = &r.totals.counters;
        assert_eq!(c.total_errors(), 0, "{flag}: {:?}", r.totals.causes);
        assert!(c.completed > 10, "{flag}: {}", c.completed);
        // Each connection carried exactly one request (the last one may be cut by the end).
        let conns = server.connections() - before;
        assert!(
            conns >= c.completed && conns <= c.completed + 2,
            "{flag}: {conns} connections for {} responses ({} connects, {} reconnects, {} closed)",
            c.completed,
            c.connects,
            c.reconnects,
            c.closed_by_server
        );
    }
}

#[test]
fn errors_are_classified() {
    let server = TestServer::start();
    let urls = [
        server.url("/status/404"),
        server.url("/status/503"),
        server.url("/broken"),
        server.url("/garbage"),
        server.url("/eof"),
        server.url("/"),
    ];
    let mut args = vec!["--rate", "300", "-c", "4", "-t", "1", "-d", "1s"];
    args.extend(urls.iter().map(String::as_str));
    let r = run(&args).unwrap();
    let c = &r.totals.counters;
    // 300 requests, 50 per URL.
    assert_eq!(c.issued, 300);
    assert_eq!(c.status[404], 50);
    assert_eq!(c.status[503], 50);
    assert_eq!(c.status[200], 50);
    assert_eq!(c.status_errors(), 100);
    assert_eq!(c.completed, 150);
    // /broken (cut short) and /eof (closed before answering) are read errors, /garbage a
    // protocol error.
    assert_eq!(errors(&r, ErrorKind::Read), 100, "{:?}", r.totals.causes);
    assert_eq!(errors(&r, ErrorKind::Protocol), 50);
    assert_eq!(errors(&r, ErrorKind::Connect), 0);
    assert_eq!(errors(&r, ErrorKind::Timeout), 0);
    let text = loadgen::report::summary(&r, false);
    assert!(text.contains("404: 50"), "{text}");
    assert!(text.contains("read 100"), "{text}");
}

#[test]
fn timeouts_are_classified() {
    let server = TestServer::start();
    let url = server.url("/sleep/400");
    let r = run(&[
        "--rate",
        "20",
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "1s",
        "--timeout",
        "100ms",
        &url,
    ])
    .unwrap();
    let c = &r.totals.counters;
    assert_eq!(c.issued, 20);
    assert_eq!(errors(&r, ErrorKind::Timeout), 20, "{:?}", r.totals.causes);
    assert_eq!(c.completed, 0);
    // Timed-out connections are dropped and replaced.
    assert!(c.reconnects >= 16, "{}", c.reconnects);
}

#[test]
fn connect_errors_when_nothing_listens() {
    // Find a free port, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    match run(&["-c", "2", "-d", "1s", &url]) {
        Err(RunError::Failed(msg)) => assert!(msg.contains("could not connect"), "{msg}"),
        other => panic!("expected a connect failure, got {other:?}"),
    }
}

#[test]
fn connect_errors_are_counted_when_the_server_goes_away() {
    let server = TestServer::start();
    let url = server.url("/");
    // Connections up, but every request closes its connection and the server stops
    // accepting halfway through: later reconnects are refused.
    let listener_addr = server.addr;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(400));
        drop(server);
    });
    let r = run(&[
        "--rate",
        "200",
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1s",
        "--no-keepalive",
        &url,
    ])
    .unwrap();
    killer.join().unwrap();
    let c = &r.totals.counters;
    assert!(c.completed > 0);
    // After the drop the accept loop ends; connects are refused (or accepted by the kernel
    // backlog and then reset): either way they are errors, not silent gaps.
    assert_eq!(
        c.completed + c.total_errors() + c.unsent,
        200,
        "{:?} {listener_addr}",
        r.totals.causes
    );
    assert!(c.total_errors() > 0, "{:?}", r.totals.causes);
}

#[test]
fn chunked_and_head() {
    let server = TestServer::start();
    let r = run(&[
        "--rate",
        "100",
        "-c",
        "1",
        "-t",
        "1",
        "-d",
        "1s",
        &server.url("/chunked"),
    ])
    .unwrap();
    let c = &r.totals.counters;
    assert_eq!((c.completed, c.total_errors()), (100, 0));
    assert_eq!(c.body_bytes, 100 * 29);
    assert_eq!(c.reconnects, 0);

    let r = run(&[
        "--rate",
        "100",
        "-c",
        "1",
        "-t",
        "1",
        "-d",
        "1s",
        "-m",
        "HEAD",
        &server.url("/"),
    ])
    .unwrap();
    let c = &r.totals.counters;
    assert_eq!((c.completed, c.total_errors(), c.body_bytes), (100, 0, 0));
    assert_eq!(c.reconnects, 0);
}

#[test]
fn connect_to_and_host_override() {
    let server = TestServer::start();
    let port = server.addr.port().to_string();
    *server.shared.expect_host.lock().unwrap() = "api.example.test".into();
    let rule = format!("api.example.test:80:127.0.0.1:{port}");
    let r = run(&[
        "--rate",
        "50",
        "-c",
        "1",
        "-d",
        "1s",
        "--connect-to",
        &rule,
        "http://api.example.test/host",
    ])
    .unwrap();
    assert_eq!(
        r.totals.counters.status[200], 50,
        "{:?}",
        r.totals.counters.errors
    );

    *server.shared.expect_host.lock().unwrap() = "override.test".into();
    let r = run(&[
        "--rate",
        "50",
        "-c",
        "1",
        "-d",
        "1s",
        "-H",
        "Host: override.test",
        &server.url("/host"),
    ])
    .unwrap();
    assert_eq!(r.totals.counters.status[200], 50);
    assert_eq!(*server.shared.last_host.lock().unwrap(), "override.test");
}

#[test]
fn https_with_and_without_verification() {
    let server = TestServer::start_tls(tls_server_config());
    let url = server.https_url("/");
    // `localhost` may resolve to ::1 first; the server listens on 127.0.0.1 (SNI stays
    // `localhost`).
    let to = "localhost::127.0.0.1:";
    let r = run(&[
        "--rate",
        "100",
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1s",
        "--insecure",
        "--connect-to",
        to,
        &url,
    ])
    .unwrap();
    let c = &r.totals.counters;
    assert_eq!(
        (c.completed, c.total_errors()),
        (100, 0),
        "{:?}",
        r.totals.causes
    );
    assert_eq!(c.status[200], 100);

    // A self-signed certificate fails verification by default.
    match run(&["-c", "1", "-t", "1", "-d", "1s", "--connect-to", to, &url]) {
        Err(RunError::Failed(msg)) => {
            assert!(msg.contains("TLS") || msg.contains("certificate"), "{msg}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[test]
fn the_honesty_flag_is_raised_when_the_rate_is_not_reached() {
    let server = TestServer::start();
    // One connection, 50 ms per response: at most 20 req/s can be sent, 200 are asked.
    let url = server.url("/sleep/50");
    let r = run(&[
        "--rate",
        "200",
        "-c",
        "1",
        "-t",
        "1",
        "-d",
        "1s",
        "--timeout",
        "300ms",
        &url,
    ])
    .unwrap();
    let h = &r.honesty;
    assert!(h.rate_below_target && h.could_not_keep_up, "{h:?}");
    assert!(h.achieved_rate < 100.0, "{h:?}");
    assert!(
        r.totals.counters.unsent > 100,
        "{}",
        r.totals.counters.unsent
    );
    let text = loadgen::report::summary(&r, false);
    assert!(text.contains("WARNING: Only"), "{text}");
    let json = loadgen::json::to_json(&r);
    assert_eq!(json["honesty"]["couldNotKeepUp"], serde_json::json!(true));
    assert_eq!(json["honesty"]["rateBelowTarget"], serde_json::json!(true));
    // The requests that waited for the connection count from their intended time.
    assert!(r.totals.corrected.max() > 10 * r.totals.uncorrected.value_at_quantile(0.5));
}

#[test]
fn closed_loop_runs_like_wrk() {
    let server = TestServer::start();
    let r = run(&[
        "-c",
        "4",
        "-t",
        "2",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        &server.url("/"),
    ])
    .unwrap();
    let c = &r.totals.counters;
    assert!(c.completed > 100, "{}", c.completed);
    assert_eq!(c.total_errors(), 0);
    assert_eq!(r.threads, 2);
    // Closed loop: corrected and uncorrected are the same measurement.
    assert_eq!(r.totals.corrected.len(), r.totals.uncorrected.len());
    assert_eq!(r.totals.corrected.max(), r.totals.uncorrected.max());
    assert!(!r.honesty.could_not_keep_up);
    assert!(r.honesty.notes[0].contains("coordinated omission"));
}
