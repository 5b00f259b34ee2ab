//! Backends that misbehave: one that accepts and never answers (the route timeout fires, the
//! connection is closed), one that resets mid-body (the client connection is closed, never a
//! short body that looks complete), one that sends an endless header block (the response head
//! limit cuts it), one that answers before reading the request body, one that sends interim
//! 1xx responses before the final one (or forever), and one that sends more than it announced
//! (never pooled, never served to the next request).

use crate::support;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use support::hostile::{panics, Peer, ScriptedBackend};
use support::{eventually, open_api, Gateway};

fn gateway_for(backend: &ScriptedBackend, timeout_ms: Option<u64>, yaml: &str) -> Gateway {
    let mut api = open_api(&[backend.url("")], "load_balance");
    if let Some(ms) = timeout_ms {
        api = api.replace(
            "  type: load_balance\n",
            &format!("  type: load_balance\n  advanceEndpointConfig:\n    timeoutInMillis: {ms}\n"),
        );
    }
    Gateway::start_with(&api, yaml, 1)
}

#[test]
fn backend_that_accepts_and_never_answers_gets_504_and_its_connection_closed() {
    // Never reads, never writes: waits for the gateway to give up.
    let backend = ScriptedBackend::start(|peer| {
        peer.wait_closed(Duration::from_secs(60));
    });
    let gateway = gateway_for(&backend, Some(400), "");
    let mut client = gateway.client();
    for i in 0..4 {
        let started = Instant::now();
        let response = client.get(&format!("/svc/hang/{i}"));
        assert_eq!(response.status, 504);
        assert_eq!(response.json()["code"], "102504");
        assert!(started.elapsed() >= Duration::from_millis(400));
    }
    // Each timed-out attempt's connection was closed, none was pooled and reused.
    assert!(
        eventually(Duration::from_secs(10), || backend.peer_closed() == 4),
        "{} of {} upstream connections closed",
        backend.peer_closed(),
        backend.connections()
    );
    assert_eq!(backend.connections(), 4);
    assert_eq!(panics(&gateway), 0);
}

/// `/reset-length` and `/reset-chunked`: a head and part of the body, then a TCP reset;
/// `/reset-early`: a reset right after the request; anything else: `200 ok`.
fn resetting(peer: &mut Peer) {
    while let Some(request) = peer.read_request() {
        let partial: &[u8] = match request.target.as_str() {
            "/reset-length" => b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nfirst part",
            "/reset-chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nfirst part\r\n10\r\nsecond"
            }
            "/reset-early" => b"",
            _ => {
                if !peer.reply_ok(b"ok") {
                    return;
                }
                continue;
            }
        };
        peer.write(partial);
        thread::sleep(Duration::from_millis(20));
        peer.reset_on_close();
        return;
    }
}

#[test]
fn backend_resetting_mid_body_closes_the_client_connection() {
    let backend = ScriptedBackend::start(resetting);
    let gateway = gateway_for(&backend, None, "");
    for path in ["/svc/reset-length", "/svc/reset-chunked"] {
        let mut client = gateway.client();
        client.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let outcome = client.read_response(false);
        assert!(
            outcome.is_err(),
            "{path}: a reset mid-body must not look like a complete response: {outcome:?}"
        );
        let received = client.read_to_close();
        assert!(received.len() < 1000, "{path}");
    }
    // A reset before any response byte: idempotent requests fail over (here there is no
    // other endpoint: 503); others get 502. The client connection stays usable.
    let mut client = gateway.client();
    let get = client.get("/svc/reset-early");
    assert_eq!(get.status, 503, "{}", get.text());
    let post = client.request("POST", "/svc/reset-early", &[], b"data");
    assert_eq!(post.status, 502, "{}", post.text());
    // The gateway keeps serving with fresh connections.
    assert_eq!(client.get("/svc/ok").text(), "ok");
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn endless_response_header_block_is_cut_at_the_limit_with_502() {
    let backend = ScriptedBackend::start(|peer| {
        if peer.read_request().is_none() {
            return;
        }
        if !peer.write(b"HTTP/1.1 200 OK\r\n") {
            return;
        }
        let line = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for _ in 0..10_000_000 {
            if !peer.write(line) {
                return;
            }
        }
    });
    for (yaml, limit) in [
        ("", 64 * 1024),
        ("limits:\n  max_response_head_bytes: 4096\n", 4096),
    ] {
        let before = backend.peer_closed();
        let gateway = gateway_for(&backend, None, yaml);
        let mut client = gateway.client();
        let response = client.get("/svc/endless");
        assert_eq!(response.status, 502, "limit {limit}");
        assert_eq!(response.json()["code"], "102502");
        assert!(
            eventually(Duration::from_secs(10), || backend.peer_closed() > before),
            "limit {limit}: upstream connection not closed"
        );
        // Still serving: another request gets the same answer, not a stuck connection.
        assert_eq!(client.get("/svc/endless").status, 502);
        assert_eq!(panics(&gateway), 0);
    }
    eprintln!(
        "endless header block: 502 at the head limit; the backend wrote {} KiB in all \
         (the rest sat in socket buffers)",
        backend.written() >> 10
    );
}

#[test]
fn trickled_endless_header_block_is_cut_by_the_route_timeout_or_the_limit() {
    // One header line every 2 ms: the head never completes; the route timeout (or the size
    // limit, whichever comes first) ends it.
    let backend = ScriptedBackend::start(|peer| {
        if peer.read_request().is_none() {
            return;
        }
        peer.write(b"HTTP/1.1 200 OK\r\n");
        while peer.write(b"X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n") {
            thread::sleep(Duration::from_millis(2));
        }
    });
    let gateway = gateway_for(&backend, Some(1_000), "");
    let mut client = gateway.client();
    let started = Instant::now();
    let response = client.get("/svc/trickle");
    assert!(matches!(response.status, 502 | 504), "{}", response.status);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(eventually(Duration::from_secs(10), || backend
        .peer_closed()
        == 1));
}

/// Answers at once, without reading the body. `/early-close`: 413 and close (the unread
/// body makes the kernel send a reset); `/early-drain`: 200, then reads and discards the body.
fn answers_early(peer: &mut Peer) {
    while let Some(head) = peer.read_head() {
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if head.target == "/early-hold" {
            // Answers at once, then neither reads the body nor closes: a gateway that sends
            // the whole body before reading the answer waits on a full socket forever.
            peer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nno way");
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        if head.target == "/early-close" {
            peer.write(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
            );
            return;
        }
        if !peer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly") {
            return;
        }
        if !peer.skip(length) {
            return;
        }
    }
}

/// Sends a `size`-byte upload from another thread (the gateway may stop reading it) and
/// returns the status the client got, or the error.
fn upload(gateway: &Gateway, path: &str, size: usize) -> Result<u16, String> {
    let mut client = gateway.client();
    let mut writer = client.stream.try_clone().unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n");
    let sender = thread::spawn(move || {
        writer.write_all(head.as_bytes())?;
        let piece = vec![b'u'; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let n = piece.len().min(size - sent);
            writer.write_all(&piece[..n])?;
            sent += n;
        }
        Ok::<_, std::io::Error>(sent)
    });
    let outcome = client
        .read_response(false)
        .map(|r| r.status)
        .map_err(|e| e.to_string());
    let _ = client.stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    outcome
}

#[test]
fn backend_answering_before_reading_the_request_body() {
    let backend = ScriptedBackend::start(answers_early);
    let gateway = gateway_for(&backend, None, "");

    // A small body goes upstream in one write with the head; the backend's early answer is
    // read as the response: the client gets it.
    assert_eq!(upload(&gateway, "/svc/early-close", 10_000), Ok(413));
    // A backend that answers early but then reads the body: the client gets that answer
    // once its body has been forwarded, whatever its size.
    assert_eq!(
        upload(&gateway, "/svc/early-drain", 4 * 1024 * 1024),
        Ok(200)
    );
    // A large streamed body the backend refuses and closes on: the gateway's next write of
    // the body fails (the backend's kernel reset the connection), so the client gets a clean
    // 502 and close, never a hang and never a half-relayed answer.
    for _ in 0..3 {
        let outcome = upload(&gateway, "/svc/early-close", 8 * 1024 * 1024);
        assert!(
            matches!(outcome, Ok(502) | Ok(413)),
            "early answer on a streamed body: {outcome:?}"
        );
        eprintln!("backend answered 413 before reading an 8 MiB body; the client got {outcome:?}");
    }
    // The upstream answered and stopped reading: its answer reaches the client while the
    // upload is still going (it would never come if the body had to be sent first).
    assert_eq!(
        upload(&gateway, "/svc/early-hold", 64 * 1024 * 1024),
        Ok(401)
    );
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn interim_responses_before_the_final_one() {
    let backend = ScriptedBackend::start(|peer| {
        while let Some(request) = peer.read_request() {
            let mut out = Vec::new();
            out.extend_from_slice(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            );
            out.extend_from_slice(b"HTTP/1.1 102 Processing\r\n\r\n");
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            out.extend_from_slice(
                b"HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\n\r\n",
            );
            let body = format!("final {}", request.body.len());
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            if !peer.write(&out) {
                return;
            }
        }
    });
    let gateway = gateway_for(&backend, None, "");

    // HTTP/1.1: every interim response but the upstream's own 100, in order, then the final.
    let mut client = gateway.client();
    client.send(b"GET /svc/hints HTTP/1.1\r\nHost: h\r\n\r\n");
    let statuses: Vec<u16> = (0..4)
        .map(|_| client.read_any_response(false).unwrap().status)
        .collect();
    assert_eq!(statuses, [103, 102, 103, 200]);

    // Expect: 100-continue: the gateway's own 100 before the body, the upstream's 100 never.
    client.send(
        b"POST /svc/hints HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n",
    );
    assert_eq!(client.read_any_response(false).unwrap().status, 100);
    client.send(&vec![b'b'; 70_000]);
    let (statuses, last) = client.read_through_interim();
    assert_eq!(statuses, [103, 102, 103, 200]);
    assert_eq!(last.text(), "final 70000");

    // HTTP/1.0 clients get no interim responses at all.
    let mut old = gateway.client();
    old.send(b"GET /svc/hints HTTP/1.0\r\nHost: h\r\n\r\n");
    let response = old.read_any_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "final 0");
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn endless_interim_responses_are_bounded_by_the_route_timeout() {
    let backend = ScriptedBackend::start(|peer| {
        if peer.read_request().is_none() {
            return;
        }
        while peer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n") {
            thread::sleep(Duration::from_millis(10));
        }
    });
    let gateway = gateway_for(&backend, Some(500), "");
    let mut client = gateway.client();
    client.send(b"GET /svc/forever HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut interim = 0;
    let last = loop {
        let response = client.read_any_response(false).unwrap();
        if response.status >= 200 {
            break response;
        }
        interim += 1;
    };
    assert_eq!(last.status, 504);
    assert!(interim > 0);
    assert!(eventually(Duration::from_secs(10), || backend
        .peer_closed()
        == 1));
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn backend_sending_more_than_it_announced_is_never_pooled_or_served_to_the_next_request() {
    let backend = ScriptedBackend::start(|peer| {
        while let Some(request) = peer.read_request() {
            let ok = match request.target.as_str() {
                // A response with an extra "response" in the same write.
                "/extra" => peer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
                ),
                // The same after a body large enough to be spliced: the splice stops at the
                // announced length and leaves the extra bytes in the socket.
                "/extra-large" => {
                    let mut response =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n").into_bytes();
                    response.extend(std::iter::repeat_n(b'L', LARGE));
                    response.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
                    );
                    peer.write(&response)
                }
                // The extra response arrives a little after the real one.
                "/late" => {
                    let ok = peer.reply_ok(b"ok");
                    thread::sleep(Duration::from_millis(100));
                    ok && peer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
                }
                target => peer.reply_ok(target.as_bytes()),
            };
            if !ok {
                return;
            }
        }
    });
    // Both ways of checking a pooled connection before reuse, with either body relay.
    for relay in ["copy", "splice"] {
        for reuse_check in ["peek", "watch"] {
            let yaml = format!("upstream:\n  reuse_check: {reuse_check}\n  body_relay: {relay}\n");
            let gateway = gateway_for(&backend, None, &yaml);
            desynchronised_connections_are_never_reused(
                &gateway,
                &backend,
                &format!("{relay}, {reuse_check}"),
            );
            let spliced = gateway.shard_sum(|m| m.spliced_body_bytes.get());
            assert_eq!(
                spliced > 0,
                relay == "splice",
                "{relay}, {reuse_check}: the large body was spliced only by the splice relay ({spliced} B)"
            );
        }
    }
}

/// A body the splice relay splices (more than 16 KiB beyond the head's read).
const LARGE: usize = 64 * 1024;

fn desynchronised_connections_are_never_reused(
    gateway: &Gateway,
    backend: &ScriptedBackend,
    reuse_check: &str,
) {
    let mut client = gateway.client();
    for path in ["/svc/extra", "/svc/extra-large", "/svc/late"] {
        let connections = backend.connections();
        let response = client.get(path);
        if path.ends_with("large") {
            assert!(
                response.body.len() == LARGE && response.body.iter().all(|&b| b == b'L'),
                "{reuse_check} {path}: the announced body, nothing more"
            );
        } else {
            assert_eq!(response.text(), "ok", "{reuse_check} {path}");
        }
        thread::sleep(Duration::from_millis(300));
        for i in 0..3 {
            let target = format!("/next{i}");
            assert_eq!(
                client.get(&format!("/svc{target}")).text(),
                target,
                "{reuse_check} {path}"
            );
        }
        assert!(
            backend.connections() > connections,
            "{reuse_check} {path}: the desynchronised connection was reused"
        );
    }
    assert_eq!(panics(gateway), 0);
}

#[test]
fn a_backend_closing_an_idle_pooled_connection_is_answered_with_a_close_at_once() {
    // Answers, then closes its end and waits for the gateway to close its own: a pooled
    // connection is watched while idle (`reuse_check: watch`), so the gateway does not keep
    // the half-closed socket until it would next be taken or expire (`upstream_idle_ms`,
    // 60 s here).
    let backend = ScriptedBackend::start(|peer| {
        if peer.read_request().is_some() && peer.reply_ok(b"ok") {
            let _ = peer.stream().shutdown(std::net::Shutdown::Write);
            peer.wait_closed(Duration::from_secs(60));
        }
    });
    let gateway = gateway_for(&backend, None, "upstream:\n  reuse_check: watch\n");
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/first").text(), "ok");
    assert!(
        eventually(Duration::from_secs(20), || backend.peer_closed() == 1),
        "the gateway kept the connection the backend closed"
    );
    // The next request goes out on a new connection.
    assert_eq!(client.get("/svc/second").text(), "ok");
    assert_eq!(backend.connections(), 2);
    assert_eq!(panics(&gateway), 0);
}

// ---------------------------------------------------------------- soak

/// What the soak backend does for each path, and what the client must see.
const SOAK_PATHS: [(&str, &str); 8] = [
    ("/ok", "200"),
    ("/hang", "504 (route timeout)"),
    ("/reset", "read error (reset mid-body)"),
    ("/endless", "502 (endless header block)"),
    ("/close", "503 (closed before any response byte)"),
    ("/interim", "201 after 103 and 100"),
    ("/extra", "202 with bytes after it (never pooled)"),
    ("/chunked", "203 chunked with trailers"),
];

/// The soak backend: one behaviour per path (`SOAK_PATHS`).
fn soak_backend(peer: &mut Peer) {
    while let Some(request) = peer.read_request() {
        let ok = match request.target.as_str() {
            "/hang" => {
                peer.wait_closed(Duration::from_secs(120));
                return;
            }
            "/reset" => {
                peer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial");
                peer.reset_on_close();
                return;
            }
            "/endless" => {
                peer.write(b"HTTP/1.1 200 OK\r\n");
                while peer.write(b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n") {}
                return;
            }
            "/close" => return,
            "/interim" => peer.write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
            ),
            "/extra" => peer.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra",
            ),
            "/chunked" => peer.write(
                b"HTTP/1.1 203 Non-Authoritative Information\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n",
            ),
            _ => peer.reply_ok(b"ok"),
        };
        if !ok {
            return;
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sums `shardgate_requests_total` by status class from the admin `/metrics`.
fn gateway_requests_by_class(
    admin: std::net::SocketAddr,
) -> std::collections::BTreeMap<String, u64> {
    let (_, metrics) = support::admin_request(admin, "GET", "/metrics");
    let mut classes = std::collections::BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("shardgate_requests_total{"))
    {
        let class = line
            .split("class=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?")
            .to_owned();
        let value: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *classes.entry(class).or_insert(0) += value;
    }
    classes
}

fn metric(admin: std::net::SocketAddr, name: &str) -> u64 {
    let (_, metrics) = support::admin_request(admin, "GET", "/metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Kills and reaps a child process when dropped (a failing soak leaves nothing running).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bounded soak at a fixed rate: the gateway process (2 shards) in front of a backend whose
/// faults rotate request by request (`SOAK_PATHS`, the ok path 9 times in 16), driven open
/// loop by loadgen. Every second the gateway's RSS and fds are sampled. Every request must be
/// accounted for: loadgen's outcome per path matches the number of requests sent to it, and
/// the gateway counted as many requests as loadgen issued. Run by `scripts/soak.sh`:
/// `SOAK_DURATION` (s, default 300), `SOAK_RATE` (req/s, default 200), `SOAK_OUT` (directory
/// for series.csv, loadgen.json, summary.txt), `LOADGEN` (the loadgen binary).
#[test]
#[ignore = "soak: minutes long; run by scripts/soak.sh"]
fn soak_with_rotating_backend_faults() {
    use std::fmt::Write as _;
    let duration: u64 = env_or("SOAK_DURATION", 300);
    let rate: u64 = env_or("SOAK_RATE", 200);
    let out_dir = std::path::PathBuf::from(env_or(
        "SOAK_OUT",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/soak").to_owned(),
    ));
    std::fs::create_dir_all(&out_dir).unwrap();
    let loadgen = env_or(
        "LOADGEN",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/loadgen").to_owned(),
    );

    let backend = ScriptedBackend::start(soak_backend);
    let dir = tempfile::tempdir().unwrap();
    let api = open_api(&[backend.url("")], "load_balance").replace(
        "  type: load_balance\n",
        "  type: load_balance\n  advanceEndpointConfig:\n    timeoutInMillis: 1000\n",
    );
    std::fs::write(dir.path().join("api.yaml"), api).unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\nadmin: \"127.0.0.1:0\"\nworkers: 2\n\
         apis: [api.yaml]\ntimeouts:\n  upstream_idle_ms: 2000\n",
    )
    .unwrap();
    let gateway = support::GatewayProcess::start(&["--config", config.to_str().unwrap()]);
    let admin = gateway.admin_addr();
    let pid = gateway.pid();
    let baseline_fds = support::hostile::open_fds(pid);
    let baseline_kb = support::hostile::rss_kb(pid);

    // The URL list: 9 ok, then each fault once; loadgen sends request i to URL i mod 16.
    let mut paths: Vec<&str> = vec!["/ok"; 8];
    paths.extend(SOAK_PATHS.iter().map(|(p, _)| *p));
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("http://{}/svc{p}", gateway.addr))
        .collect();
    let json_path = out_dir.join("loadgen.json");
    let mut command = std::process::Command::new(&loadgen);
    command
        .args(["--rate", &rate.to_string(), "-c", "64", "-t", "1"])
        .args([
            "-d",
            &format!("{duration}s"),
            "--timeout",
            "10s",
            "-q",
            "--no-timeline",
        ])
        .arg("--json")
        .arg(&json_path)
        .args(&urls)
        .stdout(std::process::Stdio::null());
    let started = Instant::now();
    let mut load = ChildGuard(command.spawn().unwrap_or_else(|e| {
        panic!("cannot run {loadgen}: {e} (build it: cargo build --release -p loadgen)")
    }));

    // RSS and fds every second while the load runs, and 10 s after.
    let mut series: Vec<(u64, u64, usize)> = Vec::new();
    let mut load_ended = None;
    loop {
        thread::sleep(Duration::from_secs(1));
        let t = started.elapsed().as_secs();
        series.push((
            t,
            support::hostile::rss_kb(pid),
            support::hostile::open_fds(pid),
        ));
        match load_ended {
            None => {
                if let Ok(Some(status)) = load.0.try_wait() {
                    assert!(status.success(), "loadgen failed: {status}");
                    load_ended = Some(t);
                }
            }
            Some(ended) if t >= ended + 10 => break,
            Some(_) => {}
        }
        assert!(t < duration + 120, "loadgen did not finish in time");
    }
    let load_ended = load_ended.unwrap();

    // Accounting.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let requests = &report["requests"];
    let issued = requests["issued"].as_u64().unwrap();
    let completed = requests["completed"].as_u64().unwrap();
    let errors = requests["errors"].as_u64().unwrap();
    let unsent = requests["unsent"].as_u64().unwrap();
    let status = |code: &str| report["statusCodeDistribution"][code].as_u64().unwrap_or(0);
    let error_kind = |kind: &str| report["errors"][kind].as_u64().unwrap_or(0);
    // Requests to each path: request i went to URL i mod 16.
    let sent_to = |path: &str| -> u64 {
        paths
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == path)
            .map(|(u, _)| issued / 16 + u64::from((u as u64) < issued % 16))
            .sum()
    };
    let expected = [
        ("200", sent_to("/ok")),
        ("201", sent_to("/interim")),
        ("202", sent_to("/extra")),
        ("203", sent_to("/chunked")),
        ("502", sent_to("/endless")),
        ("503", sent_to("/close")),
        ("504", sent_to("/hang")),
    ];
    let classes = gateway_requests_by_class(admin);
    let panics = metric(admin, "shardgate_connection_panics_total");

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "soak: {duration} s at {rate} req/s, gateway pid {pid} (2 shards), faults rotating per \
         request: 9 of 16 requests ok, 1 of 16 each: hang, reset mid-body, endless header \
         block, close before response, 103+100 interim, extra bytes, chunked with trailers"
    );
    let _ = writeln!(
        summary,
        "loadgen: issued {issued}, completed {completed}, transport errors {errors}, unsent {unsent}"
    );
    for (code, want) in expected {
        let _ = writeln!(
            summary,
            "  status {code}: {} (expected {want})",
            status(code)
        );
    }
    let _ = writeln!(
        summary,
        "  read errors: {} (expected {}: resets mid-body); connect {}, write {}, timeout {}, protocol {}",
        error_kind("read"),
        sent_to("/reset"),
        error_kind("connect"),
        error_kind("write"),
        error_kind("timeout"),
        error_kind("protocol")
    );
    let _ = writeln!(
        summary,
        "gateway: requests by class {classes:?} (total {}), panics {panics}",
        classes.values().sum::<u64>()
    );

    // The series: warm-up (first 20% of the load) excluded; compare the halves of the rest.
    let load_samples: Vec<&(u64, u64, usize)> =
        series.iter().filter(|(t, _, _)| *t <= load_ended).collect();
    let skip = load_samples.len() / 5;
    let steady = &load_samples[skip..];
    let (first, second) = steady.split_at(steady.len() / 2);
    let mean =
        |s: &[&(u64, u64, usize)]| s.iter().map(|x| x.1).sum::<u64>() / s.len().max(1) as u64;
    let (rss_first, rss_second) = (mean(first), mean(second));
    let rss_max = series.iter().map(|x| x.1).max().unwrap_or(0);
    let fds_max = series.iter().map(|x| x.2).max().unwrap_or(0);
    let fds_after = series.last().map_or(0, |x| x.2);
    let _ = writeln!(
        summary,
        "RSS: baseline {baseline_kb} kB, steady first half mean {rss_first} kB, second half mean \
         {rss_second} kB, max {rss_max} kB; fds: baseline {baseline_fds}, max {fds_max}, 10 s \
         after the load {fds_after}"
    );
    print!("{summary}");
    std::fs::write(out_dir.join("summary.txt"), &summary).unwrap();
    let mut csv = String::from("second,rss_kb,fds\n");
    for (t, rss, fds) in &series {
        let _ = writeln!(csv, "{t},{rss},{fds}");
    }
    std::fs::write(out_dir.join("series.csv"), csv).unwrap();

    assert_eq!(unsent, 0, "requests never sent");
    assert_eq!(
        issued,
        completed + errors,
        "requests lost by loadgen's own count"
    );
    for (code, want) in expected {
        assert_eq!(status(code), want, "status {code}");
    }
    assert_eq!(error_kind("read"), sent_to("/reset"), "read errors");
    for kind in ["connect", "write", "timeout", "protocol"] {
        assert_eq!(error_kind(kind), 0, "{kind} errors");
    }
    assert_eq!(
        classes.values().sum::<u64>(),
        issued,
        "requests the gateway counted"
    );
    assert_eq!(panics, 0);
    assert!(
        rss_second <= rss_first + rss_first / 10 + 2048,
        "RSS grew from {rss_first} kB to {rss_second} kB"
    );
    assert!(fds_max <= baseline_fds + 300, "fds reached {fds_max}");
    assert!(
        fds_after <= baseline_fds + 2,
        "fds {fds_after} after the load"
    );
}
