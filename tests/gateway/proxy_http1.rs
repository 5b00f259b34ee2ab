//! The HTTP/1.1 data path against real backends on loopback: routing, round robin, path
//! rewriting, keep-alive on both sides, pipelining, bodies both ways, framing edge cases,
//! smuggling defences, limits and timeouts.

use crate::support;

use std::io::Write;
use std::time::Duration;

use support::{eventually, open_api, Action, Backend, Client, Gateway};

fn backend_of(response: &support::Response) -> String {
    response.json()["backend"].as_str().unwrap().to_owned()
}

#[test]
fn round_robin_with_one_worker_rotates_in_url_order() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let c = Backend::echo("c");
    let gateway = Gateway::start(&open_api(
        &[a.url(""), b.url(""), c.url("")],
        "load_balance",
    ));
    let mut client = gateway.client();
    let order: Vec<String> = (0..7).map(|_| backend_of(&client.get("/svc/x"))).collect();
    assert_eq!(order, ["a", "b", "c", "a", "b", "c", "a"]);
}

#[test]
fn round_robin_with_two_workers_spreads_evenly() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let gateway = Gateway::start_with(&open_api(&[a.url(""), b.url("")], "load_balance"), "", 2);
    // Many short connections land on both shards; each shard rotates on its own.
    for _ in 0..40 {
        let mut client = gateway.client();
        client.get("/svc/x");
        client.get("/svc/x");
    }
    assert_eq!(a.request_count() + b.request_count(), 80);
    assert_eq!(
        a.request_count(),
        40,
        "each shard alternates, so the totals are equal"
    );
}

#[test]
fn failover_group_sends_everything_to_the_first_url() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let gateway = Gateway::start(&open_api(&[a.url(""), b.url("")], "failover"));
    let mut client = gateway.client();
    for _ in 0..5 {
        assert_eq!(backend_of(&client.get("/svc/x")), "a");
    }
    assert_eq!(b.request_count(), 0);
}

#[test]
fn upstream_path_is_endpoint_path_plus_the_rest_with_the_query_unchanged() {
    let backend = Backend::echo("a");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /petstore/v1\nx-wso2-disable-security: true\nx-wso2-production-endpoints: {{urls: ['{}']}}\npaths:\n  /pet/findByStatus: {{get: {{}}}}\n  /pet/{{petId}}: {{get: {{}}}}\n  /: {{get: {{}}}}\n  /files/*: {{get: {{}}}}\n  /slash:\n    get:\n      x-wso2-production-endpoints: {{urls: ['{}']}}\n  /root:\n    get:\n      x-wso2-production-endpoints: {{urls: ['{}']}}\n",
        backend.url("/v2"),
        backend.url("/v2/"),
        backend.url(""),
    );
    let gateway = Gateway::start(&api);
    let mut client = gateway.client();
    for (request, upstream) in [
        (
            "/petstore/v1/pet/findByStatus?status=sold",
            "/v2/pet/findByStatus?status=sold",
        ),
        ("/petstore/v1/pet/42", "/v2/pet/42"),
        ("/petstore/v1/pet/42/", "/v2/pet/42/"),
        ("/petstore/v1", "/v2"),
        ("/petstore/v1/", "/v2/"),
        (
            "/petstore/v1/files/a/b.txt?x=%20y",
            "/v2/files/a/b.txt?x=%20y",
        ),
        ("/petstore/v1/slash", "/v2/slash"),
        ("/petstore/v1/root", "/root"),
        ("/petstore/v1/pet/findByStatus?", "/v2/pet/findByStatus?"),
    ] {
        let response = client.get(request);
        assert_eq!(response.status, 200, "{request}");
        assert_eq!(response.json()["target"], upstream, "{request}");
    }
}

#[test]
fn forwarded_headers_host_and_hop_by_hop_rules() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(
        b"GET /svc/h HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\nUpgrade: websocket\r\nX-Custom: kept\r\n\r\n",
    );
    let response = client.read_response(false).unwrap();
    let received = &backend.received()[0];
    assert_eq!(
        received.header("host"),
        Some(format!("127.0.0.1:{}", backend.port()).as_str())
    );
    assert_eq!(
        received.header("x-forwarded-for"),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(received.header("x-forwarded-proto"), Some("http"));
    assert_eq!(received.header("x-forwarded-host"), Some("api.example.com"));
    assert_eq!(received.header("x-custom"), Some("kept"));
    for hop in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert_eq!(received.header(hop), None, "{hop} must not be forwarded");
    }
    assert_eq!(response.status, 200);
}

#[test]
fn keep_alive_reuses_upstream_connections() {
    // Neither check before reuse mistakes a connection's own responses for stray bytes.
    for reuse_check in ["peek", "watch"] {
        let backend = Backend::echo("a");
        let gateway = Gateway::start_with(
            &open_api(&[backend.url("")], "load_balance"),
            &format!("upstream:\n  reuse_check: {reuse_check}\n"),
            1,
        );
        let mut clients: Vec<Client> = (0..4).map(|_| gateway.client()).collect();
        for _ in 0..50 {
            for client in &mut clients {
                assert_eq!(client.get("/svc/k").status, 200);
            }
        }
        assert_eq!(backend.request_count(), 200);
        assert!(
            backend.connections() <= 4,
            "{reuse_check}: {} upstream connections for 200 sequential requests",
            backend.connections()
        );
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    let mut batch = Vec::new();
    for i in 0..10 {
        if i % 3 == 0 {
            batch.extend_from_slice(
                format!("POST /svc/p{i} HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
                    .as_bytes(),
            );
        } else {
            batch
                .extend_from_slice(format!("GET /svc/p{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        }
    }
    client.send(&batch);
    for i in 0..10 {
        let response = client.read_response(false).unwrap();
        assert_eq!(response.json()["target"], format!("/p{i}"));
    }
}

#[test]
fn request_and_response_bodies_stream_intact() {
    let backend = Backend::start("a", |r| {
        // Echo the body back, reversed, so that both directions are checked.
        let mut body = r.body.clone();
        body.reverse();
        Action::ok(body)
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    for size in [
        0usize,
        1,
        16 * 1024 - 1,
        64 * 1024,
        64 * 1024 + 1,
        1024 * 1024 + 7,
    ] {
        let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let response = client.request("POST", "/svc/b", &[], &body);
        assert_eq!(response.status, 200);
        let mut expected = body.clone();
        expected.reverse();
        assert_eq!(response.body.len(), size);
        assert!(response.body == expected, "body of {size} bytes corrupted");
    }
}

#[test]
fn chunked_request_body_is_forwarded_and_chunked_response_relayed_with_trailers() {
    let backend = Backend::start("a", |r| Action::Chunked {
        status: 200,
        chunks: vec![b"got ".to_vec(), r.body.clone(), b"!".to_vec()],
        trailers: vec![("X-Checksum".into(), "42".into())],
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(b"POST /svc/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.text(), "got hello world!");
    assert_eq!(backend.received()[0].body, b"hello world");
    // The connection is still usable.
    assert_eq!(client.get("/svc/next").status, 200);
}

#[test]
fn http10_client_gets_a_dechunked_close_delimited_body() {
    let backend = Backend::start("a", |_| Action::Chunked {
        status: 200,
        chunks: vec![b"one".to_vec(), b"two".to_vec()],
        trailers: vec![],
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(b"GET /svc/old HTTP/1.0\r\nHost: h\r\n\r\n");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.text(), "onetwo");
    assert!(response.until_close);
}

#[test]
fn http10_keep_alive_is_honoured() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    for _ in 0..3 {
        client.send(b"GET /svc/ka HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    client.send(b"GET /svc/ka HTTP/1.0\r\nHost: h\r\n\r\n");
    assert_eq!(client.read_response(false).unwrap().status, 200);
    assert!(
        client.is_closed(Duration::from_secs(2)),
        "HTTP/1.0 without keep-alive closes"
    );
}

#[test]
fn head_204_and_304_have_no_body() {
    let backend = Backend::start("a", |r| match r.target.as_str() {
        "/head" => Action::ok("this body is not sent for HEAD"),
        "/nocontent" => Action::status(204, ""),
        _ => Action::Reply {
            status: 304,
            headers: vec![("ETag".into(), "\"x\"".into())],
            body: vec![],
        },
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    let head = client.request("HEAD", "/svc/head", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("30"));
    let no_content = client.get("/svc/nocontent");
    assert_eq!(no_content.status, 204);
    let not_modified = client.get("/svc/notmodified");
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some("\"x\""));
    // Framing stayed in sync: another request works on the same connection.
    assert_eq!(client.get("/svc/after").status, 304);
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(
        b"POST /svc/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
    );
    let interim = client.read_any_response(false).unwrap();
    assert_eq!(interim.status, 100);
    client.send(b"hello world");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body_len"], 11);
    assert_eq!(backend.received()[0].header("expect"), None);
}

#[test]
fn not_found_and_method_not_allowed_answers() {
    let backend = Backend::echo("a");
    let api = format!(
        "openapi: 3.0.1\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-production-endpoints: {{urls: ['{}']}}\npaths:\n  /pet:\n    get: {{}}\n    post: {{}}\n",
        backend.url("")
    );
    let gateway = Gateway::start(&api);
    let mut client = gateway.client();
    let missing = client.get("/svc/nothing");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(
        missing.json(),
        serde_json::json!({"code":"404","message":"Not Found","description":"The requested resource is not available."})
    );
    assert_eq!(client.get("/other").status, 404);
    let wrong = client.request("DELETE", "/svc/pet", &[], b"");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, POST"));
    assert_eq!(wrong.json()["code"], "405");
    let options = client.request("OPTIONS", "/svc/pet", &[], b"");
    assert_eq!(options.status, 204);
    assert_eq!(options.header("allow"), Some("GET, POST, OPTIONS"));
    // The connection survived all of it.
    assert_eq!(client.get("/svc/pet").status, 200);
    assert_eq!(backend.request_count(), 1);
}

/// Sends a raw request and expects `status` and a closed connection, with nothing reaching
/// the backend.
fn rejected(gateway: &Gateway, backend: &Backend, request: &[u8], status: u16) {
    let before = backend.request_count();
    let mut client = gateway.client();
    client.send(request);
    let response = client
        .read_response(false)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(request)));
    assert_eq!(
        response.status,
        status,
        "{:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "{:?}",
        String::from_utf8_lossy(request)
    );
    assert!(
        client.is_closed(Duration::from_secs(2)),
        "connection left open after {:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(
        backend.request_count(),
        before,
        "{:?} reached the backend",
        String::from_utf8_lossy(request)
    );
}

#[test]
fn smuggling_vectors_get_400_and_a_closed_connection() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let vectors: &[&[u8]] = &[
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello",
        b"POST /svc/s HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /svc/s HTTP/1.1\nHost: h\n\n",
        b"GET /svc/s HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
        b"GET /svc/s HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
        b"GET /svc/s HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
        b"GET /svc/s HTTP/1.1\r\n\r\n",
        b"GET /svc/s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        // The whole client preface is h2c (tests/http2.rs); a broken one is refused.
        b"PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n",
        b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        b"GET http://other.example/svc/s HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for vector in vectors {
        rejected(&gateway, &backend, vector, 400);
    }
}

#[test]
fn bad_chunk_sizes_are_rejected_before_anything_is_forwarded() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"fffffffffffffffff\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
    ] {
        let mut request =
            b"POST /svc/s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        rejected(&gateway, &backend, &request, 400);
    }
}

#[test]
fn oversized_heads_get_431_and_long_request_lines_414() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut big = b"GET /svc/x HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..70 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(1000)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    rejected(&gateway, &backend, &big, 431);
    let mut many = b"GET /svc/x HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    rejected(&gateway, &backend, &many, 431);
    let long = format!("GET /svc/{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000));
    rejected(&gateway, &backend, long.as_bytes(), 414);
}

#[test]
fn body_over_the_configured_limit_gets_413() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "limits:\n  max_body_bytes: 10\n",
        1,
    );
    rejected(
        &gateway,
        &backend,
        b"POST /svc/x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        413,
    );
    let mut client = gateway.client();
    assert_eq!(
        client.request("POST", "/svc/x", &[], b"0123456789").status,
        200
    );
}

#[test]
fn slow_request_head_gets_408() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "timeouts:\n  client_head_ms: 300\n",
        1,
    );
    let mut client = gateway.client();
    client.send(b"GET /svc/slow HTTP/1.1\r\nHost: h\r\n");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 408);
    assert!(client.is_closed(Duration::from_secs(2)));
    assert_eq!(backend.request_count(), 0);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_timeout() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "timeouts:\n  client_keepalive_ms: 200\n",
        1,
    );
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/a").status, 200);
    assert!(client.is_closed(Duration::from_secs(3)));
}

/// An idle connection is parked in a small task after a second of silence (src/data/proxy):
/// woken by its next request, it serves it (pipelined ones too) and its keep-alive time
/// still counts from the last response.
#[test]
fn a_parked_keep_alive_connection_serves_its_next_requests_then_times_out() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "timeouts:\n  client_keepalive_ms: 2500\n",
        1,
    );
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/a").status, 200);
    std::thread::sleep(Duration::from_millis(1_400));
    assert_eq!(client.get("/svc/b").status, 200);
    std::thread::sleep(Duration::from_millis(1_400));
    client.send(b"GET /svc/c HTTP/1.1\r\nHost: h\r\n\r\nGET /svc/d HTTP/1.1\r\nHost: h\r\n\r\n");
    for target in ["/c", "/d"] {
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["target"], target);
    }
    assert_eq!(backend.request_count(), 4);
    assert!(client.is_closed(Duration::from_secs(10)));
}

/// Requests that arrive around the moment their connection parks, on many connections over
/// two shards: some land just before the park, some just after, and each is served once.
/// (The narrower race, bytes completing a read in the microseconds its cancel is in flight,
/// cannot be lined up from outside; `read_until_parked` awaits the cancelled read for it.)
#[test]
fn requests_arriving_as_their_connection_parks_are_all_served() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(&open_api(&[backend.url("")], "load_balance"), "", 2);
    let threads: Vec<_> = (0..16u64)
        .map(|c| {
            let addr = gateway.addr;
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for round in 0..4u64 {
                    assert_eq!(client.get("/svc/p").status, 200);
                    let offset = (c * 7 + round * 13) % 21;
                    std::thread::sleep(Duration::from_millis(990 + offset));
                }
                assert_eq!(client.get("/svc/p").status, 200);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(backend.request_count(), 16 * 5);
}

#[test]
fn upstream_closing_mid_body_closes_the_client_connection() {
    let backend = Backend::start("a", |_| {
        Action::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part".to_vec())
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(b"GET /svc/cut HTTP/1.1\r\nHost: h\r\n\r\n");
    // The client sees the connection end before the announced length: never a short body
    // that looks complete.
    let error = client.read_response(false).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
    assert!(
        error.to_string().contains("body cut at 9 of 100"),
        "{error}"
    );
}

#[test]
fn upstream_closing_mid_chunked_body_closes_the_client_connection() {
    let backend = Backend::start("a", |_| {
        Action::RawThenClose(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
        )
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(b"GET /svc/cut HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        client.read_response(false).is_err(),
        "a truncated chunked body must not look complete"
    );
}

#[test]
fn upstream_garbage_gets_502_json() {
    let backend = Backend::start("a", |_| {
        Action::RawThenClose(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec())
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    let response = client.get("/svc/g");
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["code"], "102502");
    assert_eq!(response.json()["message"], "Bad upstream response");
}

#[test]
fn no_upstream_listening_gets_503_json() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let gateway = Gateway::start(&open_api(&[url], "load_balance"));
    let mut client = gateway.client();
    let response = client.get("/svc/down");
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["code"], "102503");
    assert_eq!(response.json()["message"], "Upstream connection failed");
    // The connection is still usable.
    assert_eq!(client.get("/svc/down").status, 503);
}

#[test]
fn slow_upstream_gets_504_after_the_endpoint_timeout() {
    let backend = Backend::start("a", |_| Action::Hang);
    let api = open_api(&[backend.url("")], "load_balance").replace(
        "  type: load_balance\n",
        "  type: load_balance\n  advanceEndpointConfig:\n    timeoutInMillis: 300\n",
    );
    let gateway = Gateway::start(&api);
    let mut client = gateway.client();
    let started = std::time::Instant::now();
    let response = client.get("/svc/slow");
    assert_eq!(response.status, 504);
    assert_eq!(response.json()["code"], "102504");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn interim_responses_before_the_final_one_are_relayed() {
    let backend = Backend::start("a", |_| {
        Action::Raw(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(b"GET /svc/hints HTTP/1.1\r\nHost: h\r\n\r\n");
    let first = client.read_any_response(false).unwrap();
    assert_eq!(first.status, 103);
    assert_eq!(first.header("link"), Some("</style.css>; rel=preload"));
    let last = client.read_any_response(false).unwrap();
    assert_eq!(last.status, 200, "the upstream's 100 is not relayed");
    assert_eq!(last.text(), "ok");
}

#[test]
fn stale_pooled_connection_is_retried_on_a_fresh_one_for_idempotent_requests() {
    // The backend closes every connection after its response without saying so, so the
    // pooled connection is stale by the next request.
    let backend = Backend::start("a", |_| {
        Action::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    for _ in 0..5 {
        let response = client.get("/svc/stale");
        assert_eq!(response.status, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_that_vanishes_mid_response_frees_the_upstream_connection() {
    let backend = Backend::start("a", |r| {
        if r.target == "/big" {
            Action::ok(vec![b'x'; 8 * 1024 * 1024])
        } else {
            Action::ok("small")
        }
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    {
        let mut client = gateway.client();
        client.send(b"GET /svc/big HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut first = [0u8; 1024];
        let _ = std::io::Read::read(&mut client.stream, &mut first);
    }
    // The gateway notices, drops that upstream connection and keeps serving.
    std::thread::sleep(Duration::from_millis(200));
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/small").text(), "small");
}

#[test]
fn drained_gateway_finishes_in_flight_requests() {
    let backend = Backend::start("a", |_| {
        Action::Delay(Duration::from_millis(300), Box::new(Action::ok("done")))
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    client.send(b"GET /svc/slow HTTP/1.1\r\nHost: h\r\n\r\n");
    std::thread::sleep(Duration::from_millis(50));
    let stopper = std::thread::spawn(move || gateway.stop());
    let response = client.read_response(false).unwrap();
    assert_eq!(response.text(), "done");
    assert_eq!(response.header("connection"), Some("close"));
    stopper.join().unwrap();
}

#[test]
fn partial_writes_from_a_slow_client_still_parse() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    for byte in b"GET /svc/trickle HTTP/1.1\r\nHost: h\r\n\r\n" {
        client.stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        client.read_response(false).unwrap().json()["target"],
        "/trickle"
    );
}

/// The request path reads the clock once per connection-task poll (`src/clock.rs`), not
/// once per deadline, timer and latency: about nine reads per keep-alive request before.
/// Counts, not times: a keep-alive request takes a handful of polls whatever the machine.
#[test]
fn a_keep_alive_request_reads_the_clock_once_per_poll_not_per_deadline() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut client = gateway.client();
    let reads = |gateway: &Gateway| gateway.shard_sum(|m| m.clock_reads.get() as u64);
    let settled = |gateway: &Gateway| {
        // The shard publishes the count about once a second: settled is two equal samples
        // further apart than that, after the requests' count has appeared.
        let mut last = reads(gateway);
        assert!(eventually(Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(1_200));
            let now = reads(gateway);
            std::mem::replace(&mut last, now) == now
        }));
        last
    };
    for _ in 0..100 {
        assert_eq!(client.get("/svc/warm").status, 200);
    }
    assert!(eventually(Duration::from_secs(30), || reads(&gateway) > 0));
    let before = settled(&gateway);
    let requests = 2_000;
    for _ in 0..requests {
        assert_eq!(client.get("/svc/x").status, 200);
    }
    let per_request = (settled(&gateway) - before) as f64 / requests as f64;
    eprintln!("{per_request:.2} clock reads per request");
    assert!(
        (1.0..=4.5).contains(&per_request),
        "{per_request:.2} clock reads per keep-alive request"
    );
}
