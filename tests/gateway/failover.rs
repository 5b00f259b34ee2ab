//! Failover and resilience (BEHAVIOUR.md 3) with real backends killed and restarted on
//! loopback: failover groups, round robin around a dead member, all-down answers and
//! recovery, suspension shared by shards, status-code retries, circuit breakers, active
//! health checks.

use crate::support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{
    admin_request, dead_url, eventually, open_api, Action, Backend, Client, Gateway, GatewayProcess,
};

fn backend_of(response: &support::Response) -> String {
    response.json()["backend"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

/// Fast suspension for tests that wait for recovery; active checks off unless asked.
const FAST: &str = "suspension:\n  initial_ms: 300\n  progression_factor: 2.0\n  max_ms: 1000\nhealth_check:\n  enabled: false\n";

#[test]
fn first_url_never_listening_every_request_succeeds_via_the_second() {
    let b = Backend::echo("b");
    let gateway = Gateway::start_with(&open_api(&[dead_url(), b.url("")], "failover"), FAST, 1);
    let mut client = gateway.client();
    for _ in 0..20 {
        let response = client.get("/svc/x");
        assert_eq!(response.status, 200);
        assert_eq!(backend_of(&response), "b");
    }
}

#[test]
fn primary_killed_during_sequential_requests_causes_no_error() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let gateway = Gateway::start_with(&open_api(&[a.url(""), b.url("")], "failover"), FAST, 1);
    let mut client = gateway.client();
    let mut a = Some(a);
    let mut served = (0, 0);
    for i in 0..300 {
        if i == 100 {
            a.take().unwrap().stop();
        }
        let response = client.get("/svc/seq");
        assert_eq!(
            response.status,
            200,
            "request {i} failed: {}",
            response.text()
        );
        match backend_of(&response).as_str() {
            "a" => served.0 += 1,
            _ => served.1 += 1,
        }
    }
    assert_eq!(
        served.0, 100,
        "everything goes to the primary while it is up"
    );
    assert_eq!(served.1, 200);
}

#[test]
fn primary_killed_under_concurrent_clients_causes_no_error() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let gateway = Gateway::start_with(&open_api(&[a.url(""), b.url("")], "failover"), FAST, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = gateway.addr;
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, bad) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&bad));
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                while !stop.load(Ordering::Acquire) {
                    client.send(b"GET /svc/c HTTP/1.1\r\nHost: h\r\n\r\n");
                    match client.read_response(false) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::AcqRel),
                        _ => {
                            client = Client::connect(addr);
                            bad.fetch_add(1, Ordering::AcqRel)
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    a.stop();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    for l in loops {
        l.join().unwrap();
    }
    assert!(ok.load(Ordering::Acquire) > 200);
    assert_eq!(
        bad.load(Ordering::Acquire),
        0,
        "non-2xx answers while the primary died"
    );
    assert!(b.request_count() > 0);
}

#[test]
fn traffic_returns_to_the_primary_after_it_recovers() {
    let a = Backend::echo("a");
    let a_addr = a.addr;
    let b = Backend::echo("b");
    let gateway = Gateway::start_with(&open_api(&[a.url(""), b.url("")], "failover"), FAST, 1);
    let mut client = gateway.client();
    assert_eq!(backend_of(&client.get("/svc/r")), "a");
    a.stop();
    assert_eq!(backend_of(&client.get("/svc/r")), "b");
    let _a = Backend::start_on(a_addr, "a", |r| support::echo_action("a", r)).unwrap();
    let restarted = Instant::now();
    // Suspension 300 ms, then the next request probes the primary.
    assert!(
        eventually(Duration::from_secs(3), || backend_of(&client.get("/svc/r"))
            == "a"),
        "traffic did not return to the primary"
    );
    assert!(
        restarted.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        restarted.elapsed()
    );
    for _ in 0..5 {
        assert_eq!(backend_of(&client.get("/svc/r")), "a");
    }
}

#[test]
fn three_url_failover_chain() {
    let c = Backend::echo("c");
    let gateway = Gateway::start_with(
        &open_api(&[dead_url(), dead_url(), c.url("")], "failover"),
        FAST,
        1,
    );
    let mut client = gateway.client();
    for _ in 0..10 {
        assert_eq!(backend_of(&client.get("/svc/x")), "c");
    }
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let c2 = Backend::echo("c2");
    let gateway = Gateway::start_with(
        &open_api(&[a.url(""), b.url(""), c2.url("")], "failover"),
        FAST,
        1,
    );
    let mut client = gateway.client();
    assert_eq!(backend_of(&client.get("/svc/x")), "a");
    a.stop();
    assert_eq!(backend_of(&client.get("/svc/x")), "b");
    b.stop();
    assert_eq!(backend_of(&client.get("/svc/x")), "c2");
}

#[test]
fn resource_level_failover_under_api_level_load_balance() {
    let (a, b, c, d) = (
        Backend::echo("a"),
        Backend::echo("b"),
        Backend::echo("c"),
        Backend::echo("d"),
    );
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: ['{}', '{}']\n  type: load_balance\npaths:\n  /lb: {{get: {{}}}}\n  /fo:\n    get:\n      x-wso2-production-endpoints:\n        urls: ['{}', '{}']\n        type: failover\n",
        a.url(""),
        b.url(""),
        c.url(""),
        d.url("")
    );
    let gateway = Gateway::start_with(&api, FAST, 1);
    let mut client = gateway.client();
    let lb: Vec<String> = (0..4).map(|_| backend_of(&client.get("/svc/lb"))).collect();
    assert_eq!(lb, ["a", "b", "a", "b"]);
    for _ in 0..3 {
        assert_eq!(backend_of(&client.get("/svc/fo")), "c");
    }
    c.stop();
    for _ in 0..3 {
        assert_eq!(backend_of(&client.get("/svc/fo")), "d");
    }
}

#[test]
fn round_robin_skips_a_dead_member_and_stays_even() {
    let a = Backend::echo("a");
    let c = Backend::echo("c");
    let gateway = Gateway::start_with(
        &open_api(&[a.url(""), dead_url(), c.url("")], "load_balance"),
        FAST.replace("initial_ms: 300", "initial_ms: 60000")
            .replace("max_ms: 1000", "max_ms: 60000")
            .as_str(),
        1,
    );
    let mut client = gateway.client();
    for _ in 0..40 {
        assert_eq!(client.get("/svc/rr").status, 200);
    }
    assert_eq!(a.request_count() + c.request_count(), 40);
    assert!(
        (a.request_count() as i64 - c.request_count() as i64).abs() <= 1,
        "a={} c={}",
        a.request_count(),
        c.request_count()
    );
}

#[test]
fn all_down_gives_503_and_the_first_to_return_is_found_at_once() {
    let a = Backend::echo("a");
    let (a_addr, a_url) = (a.addr, a.url(""));
    a.stop();
    let gateway = Gateway::start_with(&open_api(&[a_url, dead_url()], "failover"), FAST, 1);
    let mut client = gateway.client();
    for _ in 0..3 {
        let response = client.get("/svc/down");
        assert_eq!(response.status, 503);
        assert_eq!(response.json()["code"], "102503");
        assert_eq!(response.json()["message"], "Upstream connection failed");
    }
    let _a = Backend::start_on(a_addr, "a", |r| support::echo_action("a", r)).unwrap();
    // Everything is suspended: tried anyway, in order; the recovered one answers at once.
    let response = client.get("/svc/down");
    assert_eq!(response.status, 200);
    assert_eq!(backend_of(&response), "a");
}

/// A listener that accepts and closes at once, counting connection attempts.
fn closing_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::AcqRel);
            drop(stream);
        }
    });
    (addr, count)
}

#[test]
fn a_failure_seen_by_one_shard_is_respected_by_the_other() {
    let (bad, attempts) = closing_listener();
    let good = Backend::echo("good");
    let slow_suspension =
        "suspension:\n  initial_ms: 30000\n  max_ms: 60000\nhealth_check:\n  enabled: false\n";
    let gateway = Gateway::start_with(
        &open_api(&[format!("http://{bad}"), good.url("")], "failover"),
        slow_suspension,
        2,
    );
    // Many fresh connections, spread over both shards by SO_REUSEPORT.
    for _ in 0..60 {
        let mut client = gateway.client();
        assert_eq!(client.get("/svc/x").status, 200);
    }
    assert_eq!(good.request_count(), 60);
    // Both shards served clients...
    let per_shard: Vec<u64> = gateway
        .server()
        .shared()
        .metrics
        .shard_metrics()
        .iter()
        .map(|m| m.client_connections_total.get())
        .collect();
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "connections per shard: {per_shard:?}"
    );
    // ...but only the first request ever reached the dead endpoint: the other shard read the
    // suspension from the shared table (a per-shard suspension would make this 2).
    assert_eq!(
        attempts.load(Ordering::Acquire),
        1,
        "connection attempts at the failed endpoint (per shard: {per_shard:?})"
    );
}

fn with_advanced(urls: &[String], kind: &str, advanced: &str) -> String {
    open_api(urls, kind).replace(
        &format!("  type: {kind}\n"),
        &format!("  type: {kind}\n  advanceEndpointConfig:\n{advanced}"),
    )
}

#[test]
fn retry_config_retries_a_listed_status() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let backend = Backend::start("flaky", move |_| {
        if seen.fetch_add(1, Ordering::AcqRel) % 2 == 0 {
            Action::status(502, "bad gateway")
        } else {
            Action::ok("fine")
        }
    });
    let retrying = with_advanced(
        &[backend.url("")],
        "load_balance",
        "    retryConfig: {count: 1, statusCodes: [502]}\n",
    );
    let gateway = Gateway::start_with(&retrying, FAST, 1);
    let mut client = gateway.client();
    for _ in 0..3 {
        let response = client.get("/svc/r");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "fine");
    }
    // Without retryConfig the 502 reaches the client (an answer is not a failure).
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), FAST, 1);
    let statuses: Vec<u16> = (0..2)
        .map(|_| gateway.client().get("/svc/r").status)
        .collect();
    assert!(statuses.contains(&502), "{statuses:?}");
}

#[test]
fn retry_count_is_not_exceeded() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let backend = Backend::start("broken", move |_| {
        seen.fetch_add(1, Ordering::AcqRel);
        Action::status(503, "nope")
    });
    let gateway = Gateway::start_with(
        &with_advanced(
            &[backend.url("")],
            "load_balance",
            "    retryConfig: {count: 2, statusCodes: [503]}\n",
        ),
        FAST,
        1,
    );
    let response = gateway
        .client()
        .request("GET", "/svc/r", &[("X-Retry-Count", "9")], b"");
    assert_eq!(response.status, 503);
    assert_eq!(
        calls.load(Ordering::Acquire),
        3,
        "one try and two retries; a client header cannot raise the count"
    );
}

#[test]
fn circuit_breaker_limits_concurrent_requests_without_calling_the_upstream() {
    let backend = Backend::start("slow", |_| {
        Action::Delay(Duration::from_millis(500), Box::new(Action::ok("done")))
    });
    let gateway = Gateway::start_with(
        &with_advanced(
            &[backend.url("")],
            "load_balance",
            "    circuitBreakers: {maxRequests: 1}\n",
        ),
        FAST,
        1,
    );
    let addr = gateway.addr;
    let first = std::thread::spawn(move || Client::connect(addr).get("/svc/one").status);
    std::thread::sleep(Duration::from_millis(150));
    let second = gateway.client().get("/svc/two");
    assert_eq!(second.status, 503);
    assert_eq!(second.json()["code"], "102505");
    assert_eq!(second.json()["message"], "Upstream overflow");
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(
        backend.request_count(),
        1,
        "the overflowing request never reached the upstream"
    );
}

#[test]
fn active_health_checks_find_a_dead_member_and_a_recovered_one_without_traffic() {
    let a = Backend::echo("a");
    let a_addr = a.addr;
    let b = Backend::echo("b");
    let dir = tempfile::tempdir().unwrap();
    let api = dir.path().join("api.yaml");
    std::fs::write(&api, open_api(&[a.url(""), b.url("")], "failover")).unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, "health_check:\n  interval_ms: 100\n  timeout_ms: 100\n  unhealthy_threshold: 2\n  healthy_threshold: 2\nsuspension:\n  initial_ms: 200\n  max_ms: 400\n").unwrap();
    let gateway = GatewayProcess::start(&[
        "--config",
        config.to_str().unwrap(),
        "--api",
        api.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "2",
    ]);
    let admin = gateway.admin_addr();
    let state_of_a = || {
        let (_, body) = admin_request(admin, "GET", "/endpoints");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["endpoint"] == format!("http://127.0.0.1:{}", a_addr.port()))
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state_of_a(), "healthy");
    a.stop();
    assert!(
        eventually(Duration::from_secs(3), || state_of_a() != "healthy"),
        "checks did not notice the dead primary"
    );
    let _a = Backend::start_on(a_addr, "a", |r| support::echo_action("a", r)).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || state_of_a() == "healthy"),
        "checks did not find the recovered primary"
    );
    assert_eq!(backend_of(&gateway.client().get("/svc/x")), "a");
}
