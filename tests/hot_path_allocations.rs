//! The common path (small GET, keep-alive on both sides) allocates nothing per request once
//! warm. A counting global allocator counts every allocation in the process; the client and
//! the backend used here allocate nothing inside the measured window, so what is counted is
//! the gateway's. Counts, not times.

#[path = "gateway/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};

use support::{open_api, Gateway};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; the counter is a side effect only.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";

/// A keep-alive backend that answers each request head with a fixed response, using only a
/// stack buffer.
fn fixed_backend() -> u16 {
    backend_answering(RESPONSE)
}

/// Like [`fixed_backend`], answering with `response`.
fn backend_answering(response: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 8192];
                let mut filled = 0;
                loop {
                    match stream.read(&mut buf[filled..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => filled += n,
                    }
                    // Answer every complete head in the buffer.
                    while let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                        if stream.write_all(response).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..filled, 0);
                        filled -= end + 4;
                    }
                }
            });
        }
    });
    port
}

/// Sends `count` requests on one connection and reads each complete response, with stack
/// buffers only. Returns the number of 200 responses.
fn run_requests(stream: &mut TcpStream, count: usize) -> usize {
    const REQUEST: &[u8] =
        b"GET /svc/hello HTTP/1.1\r\nHost: gateway.test\r\nUser-Agent: alloc-test\r\n\r\n";
    send_requests(stream, REQUEST, count)
}

/// Sends `request` `count` times on one connection, reading each response into a stack
/// buffer. Returns the number of 200 responses.
fn send_requests(stream: &mut TcpStream, request: &[u8], count: usize) -> usize {
    let mut ok = 0;
    let mut buf = [0u8; 4096];
    for _ in 0..count {
        stream.write_all(request).unwrap();
        let mut filled = 0;
        loop {
            filled += stream.read(&mut buf[filled..]).unwrap();
            if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = &buf[..end];
                let length_at = head
                    .windows(16)
                    .position(|w| w.eq_ignore_ascii_case(b"content-length: "))
                    .unwrap();
                let digits = &head[length_at + 16..];
                let length: usize = digits
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .fold(0, |n, d| n * 10 + usize::from(d - b'0'));
                if filled >= end + 4 + length {
                    if head.starts_with(b"HTTP/1.1 200") {
                        ok += 1;
                    }
                    break;
                }
            }
        }
    }
    ok
}

/// Sends `count` requests on one connection, reading each response (of any length) through
/// a stack buffer. Returns the number of whole 200 responses.
fn fetch_bodies(stream: &mut TcpStream, count: usize) -> usize {
    const REQUEST: &[u8] = b"GET /svc/large HTTP/1.1\r\nHost: gateway.test\r\n\r\n";
    let mut ok = 0;
    let mut buf = [0u8; 16384];
    for _ in 0..count {
        stream.write_all(REQUEST).unwrap();
        let mut filled = 0;
        let (end, length) = loop {
            filled += stream.read(&mut buf[filled..]).unwrap();
            if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .or_else(|| {
                        head.lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                    })
                    .unwrap()
                    .parse()
                    .unwrap();
                if head.starts_with("HTTP/1.1 200") {
                    ok += 1;
                }
                break (end + 4, length);
            }
        };
        let mut left = end + length - filled;
        while left > 0 {
            let n = stream.read(&mut buf[..left.min(16384)]).unwrap();
            assert_ne!(n, 0, "the response ended {left} bytes early");
            left -= n;
        }
    }
    ok
}

/// Runs `serve` for `requests` requests (it returns how many were answered 200) and asserts
/// that the process allocated nothing meanwhile.
fn assert_allocates_nothing(requests: usize, what: &str, serve: impl FnOnce(usize) -> usize) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(serve(requests), requests);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    eprintln!("{allocations} allocations in {requests} {what}");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations over {requests} {what} on the warm path"
    );
}

/// The allocation counter is process-wide: one measuring test at a time.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn small_keep_alive_requests_allocate_nothing_once_warm() {
    small_keep_alive_requests_allocate_nothing("");
}

/// The same with idle upstream connections watched instead of peeked: the watch is started
/// once per connection, and nothing per request.
#[test]
fn watched_upstream_connections_allocate_nothing_per_request() {
    small_keep_alive_requests_allocate_nothing("upstream:\n  reuse_check: watch\n");
}

fn small_keep_alive_requests_allocate_nothing(gateway_yaml: &str) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let at_start = ALLOCATIONS.load(Ordering::Relaxed);
    let port = fixed_backend();
    let gateway = Gateway::start_with(
        &open_api(&[format!("http://127.0.0.1:{port}")], "load_balance"),
        gateway_yaml,
        1,
    );
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    assert_eq!(run_requests(&mut stream, 2_000), 2_000, "warm-up");
    assert!(
        ALLOCATIONS.load(Ordering::Relaxed) > at_start,
        "the counting allocator is not counting"
    );

    assert_allocates_nothing(20_000, "proxied requests", |requests| {
        run_requests(&mut stream, requests)
    });
}

/// A secured route with scopes, behind an API-key alternative that is tried first: once the
/// token is cached, the check (cache hit, environment, scope bits) allocates nothing either.
#[test]
fn secured_requests_with_scopes_allocate_nothing_once_the_token_is_cached() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let port = fixed_backend();
    let root = env!("CARGO_MANIFEST_DIR");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /svc\nx-wso2-production-endpoints: {{urls: ['http://127.0.0.1:{port}']}}\ncomponents:\n  securitySchemes:\n    oauth: {{type: oauth2, flows: {{}}}}\n    key: {{type: apiKey, in: query, name: apikey}}\npaths:\n  /hello:\n    get:\n      security: [{{key: []}}, {{oauth: [read, write]}}, {{oauth: [admin]}}]\n"
    );
    let gateway_yaml = format!(
        "jwt:\n  issuers:\n    - issuer: https://localhost/dev-only\n      certificate: {root}/config/dev-only/jwt-dev-only.cert.pem\n    - issuer: https://localhost/keys\n      certificate: {root}/config/dev-only/jwt-dev-only.cert.pem\n      api_key: true\n"
    );
    let gateway = Gateway::start_with(&api, &gateway_yaml, 1);
    let key = std::fs::read(format!("{root}/config/dev-only/jwt-dev-only.key.pem")).unwrap();
    let mut options = shardgate::auth::MintOptions::new("https://localhost/dev-only");
    options.extra_claims = vec![("scope".into(), serde_json::json!("read other admin"))];
    let token = shardgate::auth::mint_token(&key, &options).unwrap();
    let request = format!(
        "GET /svc/hello HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .into_bytes();
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    assert_eq!(
        send_requests(&mut stream, &request, 2_000),
        2_000,
        "warm-up"
    );

    assert_allocates_nothing(20_000, "secured requests", |requests| {
        send_requests(&mut stream, &request, requests)
    });
}

/// A route with a throttling tier: the allowance check (a local decrement, a batch from the
/// pool now and then, the counters) allocates nothing either.
#[test]
fn rate_limited_requests_allocate_nothing_once_warm() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let port = fixed_backend();
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-throttling-tier: Big\nx-wso2-production-endpoints: {{urls: ['http://127.0.0.1:{port}']}}\npaths:\n  /hello:\n    get: {{}}\n"
    );
    let gateway = Gateway::start_with(
        &api,
        "rate_limits:\n  tiers:\n    Big: {requests: 1000000, per: 1d}\n",
        1,
    );
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    assert_eq!(run_requests(&mut stream, 2_000), 2_000, "warm-up");

    assert_allocates_nothing(20_000, "rate-limited requests", |requests| {
        run_requests(&mut stream, requests)
    });
}

/// Large bodies on keep-alive connections: a 64 KiB body with its head (one read, one
/// gathered write), one a little longer than the body read buffer, and one that takes
/// several reads. The body read buffer, grown for the first large body, circulates through
/// the shard's pool at that size: nothing is allocated per request.
#[test]
fn large_bodies_allocate_nothing_once_warm() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    for body in [64 * 1024, 68 * 1024 + 100, 200 * 1024] {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body}\r\n\r\n"
        )
        .into_bytes();
        response.resize(response.len() + body, b'x');
        let port = backend_answering(Vec::leak(response));
        let gateway = Gateway::start_with(
            &open_api(&[format!("http://127.0.0.1:{port}")], "load_balance"),
            "",
            1,
        );
        let mut stream = TcpStream::connect(gateway.addr).unwrap();
        stream.set_nodelay(true).unwrap();
        assert_eq!(fetch_bodies(&mut stream, 500), 500, "warm-up");

        assert_allocates_nothing(
            3_000,
            &format!("requests with {body}-byte bodies"),
            |requests| fetch_bodies(&mut stream, requests),
        );
    }
}
