//! HTTP/2 downstream (BEHAVIOUR.md §8): h2 over TLS (ALPN) and h2c with prior knowledge, each
//! stream through the HTTP/1.1 lifecycle, and the connection-level defences. Real clients:
//! curl (built with nghttp2) and python's `h2`/`hpack` for the scripted ones
//! (`tests/http2/h2client.py`); `.ci/run` installs both, and a missing one fails here with
//! a message saying so. Waits are bounded generously; assertions are on counts and order.

use crate::support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::hostile::ScriptedBackend;
use support::*;

/// GOAWAY / RST_STREAM error codes (RFC 9113 §7).
const INTERNAL_ERROR: u64 = 0x2;
const ENHANCE_YOUR_CALM: u64 = 0xb;

/// curl with HTTP/2 support, or a clear failure: CI installs it (`.ci/run`).
fn curl() -> Command {
    let version = Command::new("curl")
        .arg("-V")
        .output()
        .expect("curl is required (installed by .ci/run)");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("HTTP2"),
        "curl without HTTP/2 support; install Debian's curl (nghttp2)"
    );
    Command::new("curl")
}

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/http2/h2client.py").to_owned()
}

/// Runs the scripted client; its last stdout line is JSON.
fn h2client(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 is required (installed by .ci/run)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "python h2 is required (`pip install h2`, done by .ci/run): {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"))
}

fn requests(addr: std::net::SocketAddr, spec: Value, tls: bool) -> Vec<Value> {
    let addr = addr.to_string();
    let spec = spec.to_string();
    let mut args = vec!["requests", &addr, &spec];
    if tls {
        args.push("--tls");
    }
    let result = h2client(&args);
    result["responses"].as_array().unwrap().clone()
}

fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

fn echoed(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

/// An open API at `base` over `url`.
fn api_at(base: &str, url: &str) -> String {
    format!(
        "openapi: 3.0.1\ninfo: {{title: t, version: '1'}}\nx-wso2-basePath: {base}\nx-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: ['{url}']\npaths:\n  /*:\n    get: {{}}\n    post: {{}}\n"
    )
}

#[test]
fn h2c_prior_knowledge_and_http11_share_the_plain_listener() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("/base")], "load_balance"));
    let out = curl()
        .args(["-sS", "--http2-prior-knowledge", "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}"])
        .arg(format!("http://{}/svc/pets?x=1", gateway.addr))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = curl()
        .args([
            "-sS",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("http://{}/svc/pets", gateway.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1 200");
    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].target, "/base/pets?x=1");
    assert_eq!(received[0].header("x-forwarded-proto"), Some("http"));
}

#[test]
fn https_listeners_offer_alpn_h2_and_http11() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_tls(&open_api(&[backend.url("")], "load_balance"), "");
    let https = gateway.https_addr.unwrap();
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl()
            .args([
                "-sSk",
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg(format!("https://127.0.0.1:{}/svc/x", https.port()))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{version} 200"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let received = backend.received();
    assert_eq!(received.len(), 2);
    assert!(received
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    // The scripted client over TLS, too.
    let responses = requests(https, json!([{"path": "/svc/tls"}]), true);
    assert_eq!(responses[0]["status"], 200);
}

#[test]
fn multiplexed_streams_across_routes_reach_their_own_backends() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let gateway = Gateway::start_apis(
        &[&api_at("/a", &a.url("")), &api_at("/b", &b.url(""))],
        "",
        1,
    );
    let spec: Vec<Value> = (0..20)
        .map(|i| json!({"path": format!("/{}/item/{i}", if i % 2 == 0 { "a" } else { "b" })}))
        .collect();
    let responses = requests(gateway.addr, Value::Array(spec), false);
    assert_eq!(responses.len(), 20);
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response["status"], 200, "{response}");
        let echo = echoed(response);
        assert_eq!(echo["backend"], if i % 2 == 0 { "a" } else { "b" });
        assert_eq!(echo["target"], format!("/item/{i}"));
        assert!(header(response, "date").is_some(), "responses carry Date");
        assert!(header(response, "connection").is_none());
    }
    assert_eq!((a.request_count(), b.request_count()), (10, 10));
}

#[test]
fn large_bodies_stream_both_ways() {
    const UP: usize = 3 * 1024 * 1024 + 17;
    const DOWN: usize = 5 * 1024 * 1024 + 3;
    let backend = Backend::start("big", |r| {
        if r.method == "POST" {
            echo_action("big", r)
        } else {
            Action::ok(vec![b'z'; DOWN])
        }
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    // Larger than every window (stream 256 KiB, connection 1 MiB): flow control must move.
    let responses = requests(
        gateway.addr,
        json!([
            {"method": "POST", "path": "/svc/up", "body_len": UP, "headers": [["content-length", UP.to_string()]]},
            {"method": "POST", "path": "/svc/up-chunked", "body_len": UP},
            {"path": "/svc/down"},
        ]),
        false,
    );
    for response in &responses[..2] {
        assert_eq!(response["status"], 200, "{response}");
        assert_eq!(echoed(response)["body_len"], UP);
    }
    assert_eq!(responses[2]["status"], 200);
    assert_eq!(responses[2]["body_len"], DOWN);
    let received = backend.received();
    assert_eq!(received.iter().filter(|r| r.body.len() == UP).count(), 2);
    // A body without content-length reached the HTTP/1.1 upstream chunked.
    let chunked = received.iter().find(|r| r.target == "/up-chunked").unwrap();
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));
}

#[test]
fn trailers_pass_both_ways() {
    let scripted = ScriptedBackend::start(|peer| {
        while peer.read_request().is_some() {
            peer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/grpc\r\n\r\n\
                  5\r\nhello\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n",
            );
        }
    });
    let gateway = Gateway::start(&open_api(&[scripted.url("")], "load_balance"));
    let responses = requests(
        gateway.addr,
        json!([{"method": "POST", "path": "/svc/t", "body": "payload",
                "headers": [["te", "trailers"], ["content-type", "application/grpc"]],
                "trailers": [["x-checksum", "42"], ["authorization", "Bearer not-forwarded"]]}]),
        false,
    );
    let response = &responses[0];
    assert_eq!(response["status"], 200, "{response}");
    assert_eq!(response["body"], "hello");
    assert_eq!(
        response["trailers"],
        json!([["grpc-status", "0"], ["grpc-message", "fine"]])
    );
    let raw = String::from_utf8_lossy(&scripted.raw(0)).to_string();
    assert!(
        raw.to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{raw}"
    );
    assert!(
        raw.contains("\r\n7\r\npayload\r\n0\r\nx-checksum: 42\r\n\r\n"),
        "{raw}"
    );
    assert!(
        !raw.to_ascii_lowercase().contains("not-forwarded"),
        "credentials in trailers are dropped: {raw}"
    );
}

#[test]
fn jwt_is_checked_for_every_stream() {
    let backend = Backend::echo("secure");
    let api = format!(
        "openapi: 3.0.1\ninfo: {{title: t, version: '1'}}\nx-wso2-basePath: /sec\nx-wso2-production-endpoints:\n  urls: ['{}']\npaths:\n  /*:\n    get: {{}}\n",
        backend.url("")
    );
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    let issuer = "https://localhost/dev-only";
    let gateway = Gateway::start_with(
        &api,
        &format!("jwt:\n  issuers:\n    - issuer: {issuer}\n      certificate: {cert}\n"),
        1,
    );
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    ))
    .unwrap();
    let token =
        shardgate::auth::mint_token(&key, &shardgate::auth::MintOptions::new(issuer)).unwrap();
    let responses = requests(
        gateway.addr,
        json!([
            {"path": "/sec/a"},
            {"path": "/sec/b", "headers": [["authorization", format!("Bearer {token}")]]},
            {"path": "/sec/c", "headers": [["authorization", "Bearer not.a.token"]]},
        ]),
        false,
    );
    assert_eq!(responses[0]["status"], 401);
    assert!(header(&responses[0], "www-authenticate").is_some());
    assert_eq!(responses[1]["status"], 200);
    assert_eq!(responses[2]["status"], 401);
    let received = backend.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].header("authorization"),
        None,
        "the token stays at the gateway"
    );
}

#[test]
fn failover_moves_a_stream_to_the_next_member() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let backup = Backend::echo("backup");
    let gateway = Gateway::start(&open_api(
        &[format!("http://{dead}"), backup.url("")],
        "failover",
    ));
    let spec: Vec<Value> = (0..4)
        .map(|i| json!({"path": format!("/svc/f{i}")}))
        .collect();
    let responses = requests(gateway.addr, Value::Array(spec), false);
    for response in &responses {
        assert_eq!(response["status"], 200, "{response}");
        assert_eq!(echoed(response)["backend"], "backup");
    }
}

#[test]
fn header_lists_over_the_limit_get_431_and_streams_over_the_limit_are_refused() {
    let backend = Backend::start("slow", |_| {
        Action::Delay(Duration::from_millis(300), Box::new(Action::ok("late")))
    });
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "http2:\n  max_concurrent_streams: 5\n  max_header_list_bytes: 4096\n",
        1,
    );
    let responses = requests(
        gateway.addr,
        json!([{"path": "/svc/big", "headers": [["x-big", "a".repeat(8000)]]}]),
        false,
    );
    assert_eq!(responses[0]["status"], 431, "{}", responses[0]);
    let result = h2client(&["concurrent", &gateway.addr.to_string(), "/svc/c", "8"]);
    assert_eq!(
        result["settings"]["3"], 5,
        "SETTINGS_MAX_CONCURRENT_STREAMS: {result}"
    );
    assert_eq!(result["answered"], 5, "{result}");
    assert_eq!(result["refused"], 3, "{result}");
}

fn assert_enhance_your_calm(result: &Value) {
    assert_eq!(result["goaway"], ENHANCE_YOUR_CALM, "{result}");
    assert_eq!(
        result["closed"], true,
        "the connection ends after GOAWAY: {result}"
    );
}

#[test]
fn ping_settings_and_priority_floods_get_goaway() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "http2:\n  max_control_frames: 200\n",
        1,
    );
    let addr = gateway.addr.to_string();
    let pings = h2client(&["flood", &addr, "ping", "5000"]);
    assert_enhance_your_calm(&pings);
    assert!(pings["ping_acks"].as_u64().unwrap() < 5000, "{pings}");
    assert_enhance_your_calm(&h2client(&["flood", &addr, "settings", "5000"]));
    assert_enhance_your_calm(&h2client(&["flood", &addr, "priority", "5000"]));
    assert_eq!(backend.request_count(), 0);
    // A well-behaved connection is unaffected.
    assert_eq!(
        requests(gateway.addr, json!([{"path": "/svc/ok"}]), false)[0]["status"],
        200
    );
}

#[test]
fn rapid_reset_gets_goaway_before_the_upstream_sees_the_flood() {
    let backend = Backend::start("slow", |_| {
        Action::Delay(Duration::from_millis(50), Box::new(Action::ok("x")))
    });
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "http2:\n  max_client_resets: 50\n",
        1,
    );
    let result = h2client(&[
        "flood",
        &gateway.addr.to_string(),
        "reset",
        "2000",
        "/svc/r",
    ]);
    assert_enhance_your_calm(&result);
    // Whatever was accepted before the GOAWAY, the flood did not reach the upstream.
    assert!(
        eventually(Duration::from_secs(10), || backend.request_count() < 2000),
        "{}",
        backend.request_count()
    );
    assert!(
        backend.request_count() <= 200,
        "{}",
        backend.request_count()
    );
}

#[test]
fn continuation_and_empty_frame_floods_get_goaway() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let addr = gateway.addr.to_string();
    let continuation = h2client(&["flood", &addr, "continuation", "5000", "/svc/c"]);
    assert_enhance_your_calm(&continuation);
    let empty = h2client(&["flood", &addr, "empty", "5000", "/svc/e"]);
    assert_enhance_your_calm(&empty);
    assert_eq!(backend.request_count(), 0, "no flood became a request");
}

#[test]
fn a_client_that_never_opens_its_window_is_reset_by_the_io_timeout() {
    let backend = Backend::start("big", |_| Action::ok(vec![b'x'; 256 * 1024]));
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "timeouts:\n  client_io_ms: 500\n",
        1,
    );
    let result = h2client(&["zero-window", &gateway.addr.to_string(), "/svc/stall"]);
    assert_eq!(result["headers"], true, "{result}");
    assert_eq!(result["data"], 0, "{result}");
    assert_eq!(result["reset"], INTERNAL_ERROR, "{result}");
    assert_eq!(
        result["ping_ack"], true,
        "the connection outlives the stream: {result}"
    );
}

#[test]
fn drain_sends_goaway_and_lets_the_stream_in_flight_finish() {
    let backend = Backend::start("slow", |_| {
        Action::Delay(
            Duration::from_millis(1500),
            Box::new(Action::ok("finished")),
        )
    });
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut child = Command::new("python3")
        .arg(script())
        .args(["slow", &gateway.addr.to_string(), "/svc/slow"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("sent"));
    assert!(eventually(Duration::from_secs(10), || backend
        .request_count()
        == 1));
    gateway.stop();
    let result: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = child.wait();
    assert_eq!(result["goaway_before_end"], true, "{result}");
    assert_eq!(result["last_stream_id"], 1, "{result}");
    assert_eq!(result["ended"], true, "{result}");
    assert_eq!(result["body"], "finished");
    assert_eq!(result["closed_after"], true);
}

/// The upstream's view of a request: method, target, header fields (names in lower case,
/// sorted) and body.
fn upstream_view(
    request: &support::hostile::RawRequest,
) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    headers.sort();
    (
        request.method.clone(),
        request.target.clone(),
        headers,
        request.body.clone(),
    )
}

#[test]
fn the_upstream_receives_the_same_request_over_http11_and_http2() {
    let scripted = ScriptedBackend::echo_targets();
    let gateway = Gateway::start_tls(&open_api(&[scripted.url("/base")], "load_balance"), "");
    let headers = [
        ("accept", "application/json"),
        ("x-request-id", "r-1"),
        ("x_underscored", "dropped"),
        ("x-forwarded-for", "10.9.9.9"),
    ];
    let cases: [(&str, &str, &[u8]); 3] = [
        ("GET", "/svc/./pets//1?status=sold&x=%41", b""),
        ("POST", "/svc/pets", b"{\"name\":\"rex\"}"),
        ("DELETE", "/svc/pets/%7E1", b""),
    ];
    for (method, path, body) in cases {
        // HTTP/1.1 on the plain listener.
        let mut client = gateway.client();
        let response = client.request(method, path, &headers, body);
        assert_eq!(response.status, 200);
        // HTTP/2 on the same plain listener (h2c): the same fields, `:authority` for Host.
        let mut fields: Vec<[String; 2]> = headers
            .iter()
            .map(|(n, v)| [n.to_string(), v.to_string()])
            .collect();
        if method == "POST" {
            fields.push(["content-length".into(), body.len().to_string()]);
        }
        let spec = json!([{"method": method, "path": path, "authority": "gateway.test",
                           "headers": fields, "body": String::from_utf8_lossy(body)}]);
        let responses = requests(gateway.addr, spec, false);
        assert_eq!(responses[0]["status"], 200, "{}", responses[0]);
        let received = scripted.requests();
        let (h1, h2) = (&received[received.len() - 2], &received[received.len() - 1]);
        assert_eq!(upstream_view(h1), upstream_view(h2), "{method} {path}");
    }
}

#[test]
fn with_h2c_off_the_preface_is_an_http11_400() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start_with(
        &open_api(&[backend.url("")], "load_balance"),
        "http2:\n  h2c: false\n",
        1,
    );
    let mut client = gateway.client();
    client.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(backend.request_count(), 0);
}

#[test]
fn a_reload_sends_goaway_after_serving_the_next_stream() {
    let backend = Backend::echo("a");
    let gateway = Gateway::start(&open_api(&[backend.url("")], "load_balance"));
    let mut child = Command::new("python3")
        .arg(script())
        .args(["two", &gateway.addr.to_string(), "/svc/x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["goaway_before"], false, "{first}");
    // Reload: the same configuration, published again (a new generation).
    gateway.reload();
    // Shards take a new snapshot on their control tick (every 50 ms): wait generously.
    std::thread::sleep(Duration::from_secs(2));
    use std::io::Write;
    writeln!(child.stdin.as_mut().unwrap()).unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = child.wait();
    assert_eq!(second["second_answered"], true, "{second}");
    assert_eq!(second["goaway"], true, "{second}");
    assert_eq!(second["closed"], true, "{second}");
    assert_eq!(backend.request_count(), 2);
}
