//! Throttling tiers on a real gateway (in process, real sockets on 127.0.0.1): exact counts
//! per instance whatever the spread of connections over shards, the 429 and its
//! `Retry-After`, the window's reset and the counters. Counts, never rates or timings; waits
//! only to line a test up with a window boundary.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Backend, Client, Gateway};

/// An open API at `/svc` with `tier` on the whole API and `Own` on `GET /own`.
fn api(backend: &Backend, tier: &str) -> String {
    format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-throttling-tier: {tier}\nx-wso2-production-endpoints:\n  urls: ['{}']\npaths:\n  /*:\n    get: {{}}\n  /own:\n    get:\n      x-wso2-throttling-tier: Own\n",
        backend.url("")
    )
}

fn tiers(list: &str) -> String {
    format!("rate_limits:\n  tiers:\n{list}")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits (at most `per_ms`) until at least `needed_ms` of the current window are left, so
/// that a test's requests all fall in one window.
fn align_to_window(per_ms: u64, needed_ms: u64) {
    let left = per_ms - unix_ms() % per_ms;
    if left < needed_ms {
        std::thread::sleep(Duration::from_millis(left + 20));
    }
}

/// Sends `count` GETs of `path` on `connections` keep-alive connections in parallel;
/// returns (200s, 429s).
fn hammer(gateway: &Gateway, path: &str, connections: usize, count: usize) -> (usize, usize) {
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let addr = gateway.addr;
            let path = path.to_owned();
            let share = count / connections + usize::from(c < count % connections);
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let (mut ok, mut throttled) = (0, 0);
                for _ in 0..share {
                    let response = client.get(&path);
                    match response.status {
                        200 => ok += 1,
                        429 => throttled += 1,
                        other => panic!("unexpected status {other}: {}", response.text()),
                    }
                }
                (ok, throttled)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

const HOUR_MS: u64 = 3_600_000;

#[test]
fn a_tier_admits_exactly_its_limit_with_connections_spread_over_two_shards() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &api(&backend, "T"),
        &tiers("    T: {requests: 300, per: 1h}\n    Own: {requests: 5, per: 1h}\n"),
        2,
    );
    align_to_window(HOUR_MS, 10_000);
    let (ok, throttled) = hammer(&gateway, "/svc/items", 16, 400);
    assert_eq!((ok, throttled), (300, 100));
    assert_eq!(
        backend.request_count(),
        300,
        "throttled requests never reach the upstream"
    );
    let counts = gateway.server().shared().rate_limits.counts("/svc", "T");
    assert_eq!(counts, (300, 100));
    // An operation with its own tier is limited on its own, not by the API's.
    let (ok, throttled) = hammer(&gateway, "/svc/own", 2, 8);
    assert_eq!((ok, throttled), (5, 3));
}

#[test]
fn one_client_pinned_to_one_shard_gets_the_whole_limit() {
    let backend = Backend::echo("a");
    // 1000 per window on 2 shards: batches of 5 tokens.
    let gateway = Gateway::start_with(
        &api(&backend, "T"),
        &tiers("    T: {requests: 1000, per: 1h}\n    Own: {requests: 5, per: 1h}\n"),
        2,
    );
    align_to_window(HOUR_MS, 10_000);
    let (ok, throttled) = hammer(&gateway, "/svc/x", 1, 1050);
    assert_eq!((ok, throttled), (1000, 50));
}

#[test]
fn batched_allowances_stay_within_a_batch_per_shard_when_spread() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &api(&backend, "T"),
        &tiers("    T: {requests: 1000, per: 1h}\n    Own: {requests: 5, per: 1h}\n"),
        2,
    );
    align_to_window(HOUR_MS, 10_000);
    let (ok, throttled) = hammer(&gateway, "/svc/x", 8, 1200);
    // Never over the limit; under it by at most the tokens two shards' batches (5 each) can
    // hold (docs/design-notes.md).
    assert!((1000 - 2 * 5..=1000).contains(&ok), "{ok} admitted");
    assert_eq!(ok + throttled, 1200);
}

#[test]
fn over_the_limit_is_a_429_with_retry_after_until_the_window_ends() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &api(&backend, "T"),
        &tiers("    T: {requests: 3, per: 2s}\n    Own: {requests: 5, per: 1h}\n"),
        1,
    );
    align_to_window(2000, 1500);
    let mut client = gateway.client();
    for _ in 0..3 {
        assert_eq!(client.get("/svc/a").status, 200);
    }
    let refused = client.get("/svc/a");
    assert_eq!(refused.status, 429, "{}", refused.text());
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        refused.json(),
        serde_json::json!({"code":"900800","message":"Message throttled out","description":"You have exceeded your quota"})
    );
    assert_eq!(refused.header("content-type"), Some("application/json"));
    // The connection stays usable, and the next window admits again.
    std::thread::sleep(Duration::from_millis(retry_after * 1000 + 50));
    assert_eq!(client.get("/svc/a").status, 200);
    assert_eq!(backend.request_count(), 4);
}

#[test]
fn unlimited_and_untiered_apis_are_not_counted() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &api(&backend, "Unlimited"),
        &tiers("    Own: {requests: 1, per: 1h}\n"),
        1,
    );
    let (ok, throttled) = hammer(&gateway, "/svc/x", 1, 50);
    assert_eq!((ok, throttled), (50, 0));
    assert_eq!(
        gateway
            .server()
            .shared()
            .rate_limits
            .counts("/svc", "Unlimited"),
        (0, 0)
    );
}

#[test]
fn unauthenticated_requests_spend_no_tokens() {
    let backend = Backend::echo("a");
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    let secured = format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\nx-wso2-throttling-tier: T\nx-wso2-production-endpoints:\n  urls: ['{}']\npaths:\n  /*:\n    get: {{}}\n",
        backend.url("")
    );
    let gateway = Gateway::start_with(
        &secured,
        &format!("jwt:\n  issuers:\n    - issuer: https://localhost/dev-only\n      certificate: {cert}\n{}", tiers("    T: {requests: 2, per: 1h}\n")),
        1,
    );
    let mut client = gateway.client();
    for _ in 0..5 {
        assert_eq!(client.get("/svc/x").status, 401, "401s, not 429s");
    }
    assert_eq!(
        gateway.server().shared().rate_limits.counts("/svc", "T"),
        (0, 0)
    );
}
