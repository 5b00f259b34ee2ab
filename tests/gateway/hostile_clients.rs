//! Hostile clients: slowloris connections trickling head bytes (well-behaved clients keep being
//! served, and the head timeout closes the tricklers with 408), slow readers of large
//! responses (the gateway's memory stays bounded), and clients that vanish mid-request or
//! mid-response (the upstream connection is closed, never pooled half-used).

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::hostile::{open_fds, panics, percentile, rss_kb, Peer, ScriptedBackend};
use support::{api_file, eventually, open_api, Client, Gateway, GatewayProcess};

/// Connections that send a request line and then one header byte every 100 to 500 ms.
struct Slowloris {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<usize>>,
}

impl Slowloris {
    fn start(addr: SocketAddr, connections: usize) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            const TRICKLE: &[u8] = b"X-Slow: still-coming\r\n";
            let mut streams: Vec<(TcpStream, Instant, Duration, usize)> = (0..connections)
                .map(|i| {
                    let mut s = TcpStream::connect(addr).expect("slowloris connect");
                    s.write_all(b"GET /svc/slow HTTP/1.1\r\nHost: h\r\n")
                        .unwrap();
                    // Spread the intervals over 100..500 ms, deterministically.
                    let every = Duration::from_millis(100 + (i as u64 * 37) % 401);
                    (s, Instant::now() + every, every, 0)
                })
                .collect();
            let _ = ready_tx.send(());
            let mut bytes = 0;
            while !stopping.load(Ordering::Acquire) {
                let now = Instant::now();
                for (stream, due, every, sent) in &mut streams {
                    if *due <= now {
                        if stream.write_all(&[TRICKLE[*sent % TRICKLE.len()]]).is_ok() {
                            bytes += 1;
                        }
                        *sent += 1;
                        *due = now + *every;
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
            bytes
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("slowloris connections opened");
        Slowloris {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops trickling; returns the bytes trickled.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// `count` requests 10 ms apart, each on a new connection; all must succeed. Returns their
/// latencies.
fn well_behaved_requests(addr: SocketAddr, count: usize) -> Vec<Duration> {
    (0..count)
        .map(|i| {
            thread::sleep(Duration::from_millis(10));
            let started = Instant::now();
            let mut client = Client::connect(addr);
            let response = client.get(&format!("/svc/good/{i}"));
            assert_eq!(response.status, 200, "well-behaved request {i}");
            started.elapsed()
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn slowloris_does_not_starve_well_behaved_clients() {
    const ATTACKERS: usize = 500;
    const REQUESTS: usize = 300;
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));

    let mut before = well_behaved_requests(gateway.addr, REQUESTS);
    let attack = Slowloris::start(gateway.addr, ATTACKERS);
    let mut during = well_behaved_requests(gateway.addr, REQUESTS);
    let trickled = attack.stop();

    let (p50_before, p99_before) = (percentile(&mut before, 50.0), percentile(&mut before, 99.0));
    let (p50_during, p99_during) = (percentile(&mut during, 50.0), percentile(&mut during, 99.0));
    eprintln!(
        "slowloris ({ATTACKERS} connections, {trickled} bytes trickled): well-behaved client \
         (new connection per request, {REQUESTS} requests) p50 {:.2} ms / p99 {:.2} ms before, \
         p50 {:.2} ms / p99 {:.2} ms during",
        ms(p50_before),
        ms(p99_before),
        ms(p50_during),
        ms(p99_during)
    );
    // All requests succeeded (asserted above); the bound is only against starvation.
    assert!(
        p99_during < Duration::from_secs(2),
        "p99 {p99_during:?} during the attack"
    );
    assert_eq!(
        backend.requests().len(),
        2 * REQUESTS,
        "no trickling request ever reached the backend"
    );
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn head_timeout_closes_trickling_connections_with_408() {
    const TRICKLERS: usize = 50;
    let backend = ScriptedBackend::echo_targets();
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "timeouts:\n  client_head_ms: 700\n",
        1,
    );
    let mut streams: Vec<TcpStream> = (0..TRICKLERS)
        .map(|_| {
            let mut s = TcpStream::connect(gateway.addr).unwrap();
            s.write_all(b"GET /svc/slow HTTP/1.1\r\n").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut answers: Vec<Option<Vec<u8>>> = vec![None; TRICKLERS];
    // One header byte every 100 ms per connection, until the gateway answers it.
    while answers.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(20) {
        for (stream, answer) in streams.iter_mut().zip(&mut answers) {
            if answer.is_some() {
                continue;
            }
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf) {
                Ok(n) if n > 0 => {
                    *answer = Some(buf[..n].to_vec());
                    continue;
                }
                _ => {}
            }
            let _ = stream.write_all(b"X");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    for (i, (stream, answer)) in streams.iter_mut().zip(&answers).enumerate() {
        let answer = answer
            .as_ref()
            .unwrap_or_else(|| panic!("trickler {i} got no answer in {elapsed:?}"));
        assert!(
            answer.starts_with(b"HTTP/1.1 408 "),
            "trickler {i}: {}",
            String::from_utf8_lossy(answer)
        );
        // Then end of stream (the rest of the 408 may still be in flight).
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        let closed = match stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(closed, "trickler {i} left open");
    }
    eprintln!("{TRICKLERS} trickling connections answered 408 and closed within {elapsed:?} (head timeout 700 ms)");
    assert!(backend.requests().is_empty());
    assert_eq!(panics(&gateway), 0);
}

/// A response body of 64 MiB, written in 64 KiB pieces as fast as the gateway takes them.
const BIG: usize = 64 * 1024 * 1024;
static PIECE: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// `/big`: the 64 MiB body; `/upload`: reads the head only and waits for the gateway to
/// close; anything else: `200` with the target.
fn big_or_echo(peer: &mut Peer) {
    while let Some(request) = match peer.read_head() {
        Some(head) if head.target == "/upload" => {
            peer.wait_closed(Duration::from_secs(60));
            None
        }
        Some(head) => Some(head),
        None => None,
    } {
        if request.target == "/big" {
            if !peer.write(format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").as_bytes()) {
                return;
            }
            for _ in 0..BIG / PIECE.len() {
                if !peer.write(&PIECE) {
                    return;
                }
            }
        } else if !peer.reply_ok(request.target.as_bytes()) {
            return;
        }
    }
}

fn start_process(backend: &ScriptedBackend) -> (tempfile::TempDir, GatewayProcess) {
    let (dir, api) = api_file(&open_api(&[backend.url("")], "load_balance"));
    let gateway = GatewayProcess::start(&[
        "--api",
        &api,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--admin",
        "off",
    ]);
    (dir, gateway)
}

#[test]
fn slow_readers_of_large_responses_keep_gateway_memory_bounded_and_vanishing_frees_upstreams() {
    const READERS: usize = 32;
    let backend = ScriptedBackend::start(big_or_echo);
    let (_dir, gateway) = start_process(&backend);
    // Warm up: one request, so that the baseline includes a used connection.
    assert_eq!(gateway.client().get("/svc/warm").status, 200);
    let baseline_kb = gateway.status_kb("VmRSS");
    let baseline_fds = gateway.open_fds();

    let mut readers: Vec<Client> = (0..READERS)
        .map(|_| {
            let mut c = gateway.client();
            c.send(b"GET /svc/big HTTP/1.1\r\nHost: h\r\n\r\n");
            c
        })
        .collect();
    // Read 16 KiB per reader every 50 ms for 2 s: far slower than the backend writes.
    let mut received = 0usize;
    let mut peak_kb = 0;
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..40 {
        for reader in &mut readers {
            received += reader.stream.read(&mut buf).unwrap_or(0);
        }
        peak_kb = peak_kb.max(gateway.status_kb("VmRSS"));
        thread::sleep(Duration::from_millis(50));
    }
    let written = backend.written();
    eprintln!(
        "{READERS} slow readers of {} MiB responses: gateway RSS {baseline_kb} kB before, peak \
         {peak_kb} kB while they read {} KiB in total and the backend had written {} MiB",
        BIG >> 20,
        received >> 10,
        written >> 20
    );
    assert!(received < READERS * BIG);
    assert!(
        peak_kb < baseline_kb + 24 * 1024,
        "RSS grew from {baseline_kb} kB to {peak_kb} kB with {READERS} slow readers"
    );

    // The readers vanish mid-response: every upstream connection carrying a big response is
    // closed by the gateway (the backend's writes fail), and the gateway's fds come back.
    drop(readers);
    assert!(
        eventually(Duration::from_secs(20), || backend.peer_closed() >= READERS),
        "only {} of {READERS} upstream connections were closed",
        backend.peer_closed()
    );
    assert!(
        eventually(Duration::from_secs(10), || gateway.open_fds()
            <= baseline_fds),
        "fds {} after the readers left, {baseline_fds} before",
        gateway.open_fds()
    );
    assert_eq!(gateway.client().get("/svc/after").status, 200);
}

#[test]
fn client_vanishing_mid_request_body_frees_the_upstream_connection() {
    let backend = ScriptedBackend::start(big_or_echo);
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));

    // A streamed body (over the 64 KiB the gateway buffers): the upstream has the head and
    // part of the body when the client leaves; the gateway must close that connection.
    for (name, head, part) in [
        (
            "Content-Length",
            b"POST /svc/upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n".to_vec(),
            vec![b'x'; 200 * 1024],
        ),
        (
            "chunked",
            b"POST /svc/upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            {
                let mut body = Vec::new();
                for _ in 0..50 {
                    body.extend_from_slice(b"1000\r\n");
                    body.extend_from_slice(&[b'x'; 0x1000]);
                    body.extend_from_slice(b"\r\n");
                }
                body
            },
        ),
    ] {
        let closed_before = backend.peer_closed();
        let connections_before = backend.connections();
        {
            let mut client = gateway.client();
            client.send(&head);
            client.send(&part);
            assert!(
                eventually(Duration::from_secs(10), || backend.connections()
                    > connections_before),
                "{name}: the body never started streaming"
            );
        }
        assert!(
            eventually(Duration::from_secs(10), || backend.peer_closed()
                > closed_before),
            "{name}: upstream connection not closed after the client left mid-body"
        );
    }

    // A small body is buffered before any upstream is contacted: a client that leaves
    // half-way never costs an upstream connection.
    let connections_before = backend.connections();
    {
        let mut client = gateway.client();
        client.send(b"POST /svc/small HTTP/1.1\r\nHost: h\r\nContent-Length: 10000\r\n\r\n");
        client.send(&[b'x'; 5000]);
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(backend.connections(), connections_before);

    // Nothing half-used was pooled: the next requests are answered normally.
    let mut client = gateway.client();
    for _ in 0..3 {
        assert_eq!(client.get("/svc/next").text(), "/next");
    }
    assert!(backend.requests().iter().all(|r| r.target == "/next"));
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn client_vanishing_while_the_upstream_is_silent_frees_it_by_the_route_timeout() {
    // The gateway does not watch the client socket while it waits for a response head, so
    // the upstream connection of a vanished client is closed when the route timeout fires
    // (docs/robustness.md). Bounded, never pooled.
    let backend = ScriptedBackend::start(|peer| {
        if peer.read_head().is_some() {
            peer.wait_closed(Duration::from_secs(60));
        }
    });
    let api = open_api(&[backend.url("")], "load_balance").replace(
        "  type: load_balance\n",
        "  type: load_balance\n  advanceEndpointConfig:\n    timeoutInMillis: 1000\n",
    );
    let gateway = Gateway::start(&api);
    let started = Instant::now();
    {
        let mut client = gateway.client();
        client.send(b"GET /svc/silent HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(eventually(Duration::from_secs(10), || backend
            .connections()
            == 1));
    }
    assert!(
        eventually(Duration::from_secs(15), || backend.peer_closed() == 1),
        "upstream connection of a vanished client still open"
    );
    eprintln!(
        "vanished client: upstream connection closed {:?} after the request (route timeout 1 s)",
        started.elapsed()
    );
    assert_eq!(panics(&gateway), 0);
}

#[test]
fn many_clients_vanishing_mid_response_leave_no_fds_behind() {
    let backend = ScriptedBackend::start(big_or_echo);
    let (_dir, gateway) = start_process(&backend);
    assert_eq!(gateway.client().get("/svc/warm").status, 200);
    let baseline_fds = gateway.open_fds();
    for round in 0..3 {
        let clients: Vec<Client> = (0..50)
            .map(|_| {
                let mut c = gateway.client();
                c.send(b"GET /svc/big HTTP/1.1\r\nHost: h\r\n\r\n");
                let mut first = [0u8; 1024];
                let _ = c.stream.read(&mut first);
                c
            })
            .collect();
        drop(clients);
        assert!(
            eventually(Duration::from_secs(20), || open_fds(gateway.pid())
                <= baseline_fds),
            "round {round}: {} fds, {baseline_fds} at the start",
            open_fds(gateway.pid())
        );
    }
    assert!(
        eventually(Duration::from_secs(20), || backend.peer_closed() >= 150),
        "{} of 150 upstream connections closed",
        backend.peer_closed()
    );
    eprintln!(
        "150 clients vanished mid-response: gateway fds back to {baseline_fds}, RSS {} kB",
        rss_kb(gateway.pid())
    );
}

/// Debug builds only: the panic comes from a test hook that release builds do not have.
#[cfg(debug_assertions)]
#[test]
fn a_panicking_connection_does_not_take_down_the_shard() {
    // One shard, so every connection below shares it.
    let backend = ScriptedBackend::start(|peer| {
        while let Some(request) = peer.read_request() {
            if request.target == "/slow" {
                thread::sleep(Duration::from_millis(300));
            }
            if !peer.reply_ok(request.target.as_bytes()) {
                return;
            }
        }
    });
    let url = backend.url("");
    let api = format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\n\
         x-wso2-disable-security: true\nx-wso2-production-endpoints: {{urls: ['{url}']}}\n\
         paths:\n  /*:\n    get: {{}}\n"
    );
    let gateway = Gateway::start_with(&api, "", 1);
    shardgate::data::proxy::test_hooks::arm_panics();
    let panic_request = format!(
        "GET /svc{} HTTP/1.1\r\nHost: h\r\n\r\n",
        std::str::from_utf8(shardgate::data::proxy::test_hooks::PANIC_PATH_SUFFIX).unwrap()
    );
    let mut keep_alive = gateway.client();
    assert_eq!(keep_alive.get("/svc/before").text(), "/before");
    // A request in flight on the same shard while other connections panic.
    let mut in_flight = gateway.client();
    in_flight.send(b"GET /svc/slow HTTP/1.1\r\nHost: h\r\n\r\n");
    for i in 0..5 {
        let mut victim = gateway.client();
        victim.send(panic_request.as_bytes());
        assert!(
            victim.read_response(false).is_err(),
            "panic {i}: the connection is closed without an answer"
        );
    }
    assert_eq!(in_flight.read_response(false).unwrap().text(), "/slow");
    assert_eq!(keep_alive.get("/svc/after").text(), "/after");
    assert_eq!(gateway.client().get("/svc/new").text(), "/new");
    assert_eq!(panics(&gateway), 5, "each panic is counted");
}
