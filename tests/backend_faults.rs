//! Backends that misbehave: one that accepts and never answers (the route timeout fires, the
//! connection is closed), one that resets mid-body (the client connection is closed, never a
//! short body that looks complete), one that sends an endless header block (the response head
//! limit cuts it), one that answers before reading the request body, one that sends interim
//! 1xx responses before the final one (or forever), and one that sends more than it announced
//! (never pooled, never served to the next request).

mod support;

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
    let mut statuses = Vec::new();
    let last = loop {
        let response = client.read_any_response(false).unwrap();
        statuses.push(response.status);
        if response.status >= 200 {
            break response;
        }
    };
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
    let gateway = gateway_for(&backend, None, "");
    let mut client = gateway.client();
    for path in ["/svc/extra", "/svc/late"] {
        let connections = backend.connections();
        assert_eq!(client.get(path).text(), "ok", "{path}");
        thread::sleep(Duration::from_millis(300));
        for i in 0..3 {
            let target = format!("/next{i}");
            assert_eq!(
                client.get(&format!("/svc{target}")).text(),
                target,
                "{path}"
            );
        }
        assert!(
            backend.connections() > connections,
            "{path}: the desynchronised connection was reused"
        );
    }
    assert_eq!(panics(&gateway), 0);
}
