//! Outages that refuse nothing (BEHAVIOUR.md 3): a frozen primary (accepts and reads, never
//! answers), a black-holed one (connects never complete), a slow one, one answering 503, a
//! black-holed first address of a host; status retries and `maxRetries`; the probing request
//! after a suspension. Concurrent clients against a gateway with 2 workers; every assertion
//! is on counts (which backend answered, how many errors), never on how long anything took.

use crate::support;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{echo_action, eventually, Action, Backend, Client, Gateway};

/// A failover API `/svc` over `urls` with endpoint settings `advance` (YAML flow mapping).
fn failover_api(urls: &[String], advance: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\n\
         x-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: [{urls}]\n  \
         type: failover\n  advanceEndpointConfig: {advance}\npaths:\n  /*:\n    get: {{}}\n    \
         post: {{}}\n"
    )
}

/// Health checks off: only requests find the failures here.
const GATEWAY: &str = "health_check: {enabled: false}\n";

/// A listening socket whose accept queue is full and never drained: further connects are
/// never answered (their SYNs are dropped), as with a black-holed host. The returned
/// streams hold the queue full.
fn black_hole(addr: SocketAddr) -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let bound = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    // Fill the queue until a connect no longer completes.
    for _ in 0..16 {
        match TcpStream::connect_timeout(&bound, Duration::from_millis(200)) {
            Ok(stream) => held.push(stream),
            Err(_) => return (socket, bound, held),
        }
    }
    panic!("the accept queue of {bound} never filled");
}

/// Runs `clients` threads sending `each` GETs (keep-alive); returns (status, backend) of all.
fn run_clients(gateway: &Gateway, clients: usize, each: usize) -> Vec<(u16, String)> {
    let addr = gateway.addr;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                (0..each)
                    .map(|i| {
                        let r = client.get(&format!("/svc/c{c}/r{i}"));
                        let backend = if r.status == 200 {
                            r.json()["backend"].as_str().unwrap_or("").to_owned()
                        } else {
                            r.text()
                        };
                        (r.status, backend)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn assert_all_from(results: &[(u16, String)], backend: &str) {
    let failed: Vec<_> = results
        .iter()
        .filter(|(status, who)| *status != 200 || who != backend)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests not answered by {backend}: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
}

fn state_of(gateway: &Gateway, id: usize) -> (String, Option<&'static str>) {
    let health = gateway.server().shared().health_of(id);
    (health.state.to_owned(), health.cause)
}

#[test]
fn a_frozen_primary_costs_no_request_and_is_suspended_for_not_answering() {
    let frozen = Backend::start("frozen", |_| Action::Hang);
    let backup = Backend::echo("backup");
    let gateway = Gateway::start_with(
        &failover_api(&[frozen.url(""), backup.url("")], "{timeoutInMillis: 2000}"),
        GATEWAY,
        2,
    );
    let results = run_clients(&gateway, 8, 10);
    assert_all_from(&results, "backup");
    assert_eq!(backup.request_count(), 80);
    // Only the requests in flight before the suspension reached it: not one per request.
    assert!(frozen.request_count() < 80, "{}", frozen.request_count());
    assert_eq!(
        state_of(&gateway, 0),
        ("suspended".to_owned(), Some("no response"))
    );
}

#[test]
fn a_black_holed_primary_costs_no_request() {
    let (_hole, addr, _held) = black_hole("127.0.0.1:0".parse().unwrap());
    let backup = Backend::echo("backup");
    let gateway = Gateway::start_with(
        &failover_api(
            &[format!("http://{addr}"), backup.url("")],
            "{timeoutInMillis: 2000}",
        ),
        GATEWAY,
        2,
    );
    let results = run_clients(&gateway, 8, 10);
    assert_all_from(&results, "backup");
    assert_eq!(
        state_of(&gateway, 0),
        ("suspended".to_owned(), Some("connect failure"))
    );
}

#[test]
fn a_primary_slower_than_the_route_budget_allows_moves_to_the_backup() {
    let slow = Backend::start("slow", |r| {
        Action::Delay(
            Duration::from_millis(2000),
            Box::new(echo_action("slow", r)),
        )
    });
    let backup = Backend::echo("backup");
    let gateway = Gateway::start_with(
        &failover_api(&[slow.url(""), backup.url("")], "{timeoutInMillis: 1000}"),
        GATEWAY,
        2,
    );
    let results = run_clients(&gateway, 4, 10);
    assert_all_from(&results, "backup");
}

#[test]
fn a_post_whose_bytes_reached_a_frozen_endpoint_gets_504_and_is_never_resent() {
    let frozen = Backend::start("frozen", |_| Action::Hang);
    let backup = Backend::echo("backup");
    let gateway = Gateway::start_with(
        &failover_api(&[frozen.url(""), backup.url("")], "{timeoutInMillis: 1000}"),
        GATEWAY,
        1,
    );
    let mut client = gateway.client();
    let response = client.request("POST", "/svc/order", &[], b"pay once");
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.json()["code"], "102504");
    assert_eq!(frozen.request_count(), 1);
    assert_eq!(
        backup.request_count(),
        0,
        "a non-idempotent request was sent twice"
    );
}

#[test]
fn status_retries_go_to_the_next_member_not_back_to_the_one_that_answered() {
    let failing = Backend::start("failing", |_| Action::status(503, "busy"));
    let backup = Backend::echo("backup");
    let gateway = Gateway::start_with(
        &failover_api(
            &[failing.url(""), backup.url("")],
            "{retryConfig: {count: 2, statusCodes: [503]}}",
        ),
        GATEWAY,
        2,
    );
    let results = run_clients(&gateway, 4, 10);
    assert_all_from(&results, "backup");
    // One attempt on the failing member per request: its 503 moved the retry on.
    assert_eq!(failing.request_count(), 40);
    assert_eq!(backup.request_count(), 40);
}

#[test]
fn over_max_retries_the_upstreams_own_answer_is_returned() {
    let failing = Backend::start("failing", |_| Action::status(503, "busy"));
    let backup = Backend::echo("backup");
    let gateway = Gateway::start_with(
        &failover_api(
            &[failing.url(""), backup.url("")],
            "{retryConfig: {count: 1, statusCodes: [503]}, circuitBreakers: {maxRetries: 1}}",
        ),
        GATEWAY,
        2,
    );
    // Sequentially, every request has the one retry slot to itself.
    let mut client = gateway.client();
    for _ in 0..5 {
        assert_eq!(client.get("/svc/x").json()["backend"], "backup");
    }
    // Concurrently, a request that finds the slot taken relays the real answer: never a
    // gateway-made 503 for a request that got an answer.
    let results = run_clients(&gateway, 6, 10);
    for (status, body) in &results {
        match status {
            200 => assert_eq!(body, "backup"),
            503 => assert_eq!(
                body, "busy",
                "a gateway error replaced the upstream's answer"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
}

#[test]
fn an_empty_status_code_list_retries_504_by_default() {
    // Choreo Connect's RetryTestCase.testInvalidRetryConfigReplaceByDefaultForSand: the first
    // answer is a 504, the retry gets 200.
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let flaky = Backend::start("flaky", move |r| {
        if seen.fetch_add(1, Ordering::AcqRel) % 2 == 0 {
            Action::status(504, "timeout")
        } else {
            echo_action("flaky", r)
        }
    });
    let gateway = Gateway::start_with(
        &failover_api(
            &[flaky.url("")],
            "{retryConfig: {count: 1, statusCodes: [200, 999]}}",
        ),
        GATEWAY,
        1,
    );
    let mut client = gateway.client();
    for _ in 0..3 {
        assert_eq!(client.get("/svc/x").status, 200);
    }
    assert_eq!(count.load(Ordering::Acquire), 6);
}

#[test]
fn probes_of_a_black_holed_primary_never_reach_a_client() {
    let (_hole, addr, _held) = black_hole("127.0.0.1:0".parse().unwrap());
    let backup = Backend::echo("backup");
    // Short suspensions: the primary's suspension expires over and over during the run, and
    // each expiry is probed by a real request.
    let gateway = Gateway::start_with(
        &failover_api(
            &[format!("http://{addr}"), backup.url("")],
            "{timeoutInMillis: 600}",
        ),
        "health_check: {enabled: false}\nsuspension: {initial_ms: 100, max_ms: 100}\n",
        2,
    );
    let results = run_clients(&gateway, 4, 15);
    assert_all_from(&results, "backup");
}

#[test]
fn a_black_holed_first_address_does_not_starve_the_next_one() {
    let (_hole, hole_addr, _held) = black_hole("127.0.0.4:0".parse().unwrap());
    let port = hole_addr.port();
    let good = Backend::start_on(format!("127.0.0.5:{port}").parse().unwrap(), "good", |r| {
        echo_action("good", r)
    })
    .expect("127.0.0.5 is loopback on Linux");
    let hosts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(hosts.path(), "127.0.0.4 svc.test\n127.0.0.5 svc.test\n").unwrap();
    let gateway = Gateway::start_with(
        &failover_api(
            &[format!("http://svc.test:{port}")],
            "{timeoutInMillis: 4000}",
        ),
        &format!(
            "{GATEWAY}timeouts: {{upstream_connect_ms: 2000}}\nupstream: {{hosts_file: {}}}\n",
            hosts.path().display()
        ),
        1,
    );
    let mut client = gateway.client();
    let response = client.get("/svc/x");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["backend"], "good");
    assert!(eventually(Duration::from_secs(1), || good.request_count() == 1));
}
