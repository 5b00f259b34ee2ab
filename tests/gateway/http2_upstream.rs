//! HTTP/2 upstreams (`x-wso2-http2-backend-enabled: true`, BEHAVIOUR.md §8) and gRPC end to
//! end: h2c prior knowledge on http, h2 over TLS by ALPN on https, streams multiplexed on a
//! few connections per shard; gRPC unary and streaming calls with trailers, and gateway
//! failures answered as gRPC errors. Peers are python `h2` and `grpcio` (installed by
//! `.ci/run`; a missing one fails with a message saying so).

use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// A python peer process, killed on drop.
struct Peer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start(script: &str, args: &[&str]) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(script_path(script))
            .args(args.iter().take(1).copied())
            .arg(&port_file)
            .args(args.iter().skip(1).copied())
            .spawn()
            .expect("python3 is required (installed by .ci/run)");
        let mut peer = Peer {
            child,
            port: 0,
            _dir: dir,
        };
        let started = eventually(Duration::from_secs(30), || {
            std::fs::read_to_string(&port_file).is_ok_and(|p| !p.is_empty())
        });
        if !started {
            let status = peer.child.try_wait();
            panic!(
                "{script} did not start ({status:?}); python h2 and grpcio are required \
                 (`pip install h2 grpcio`, done by .ci/run)"
            );
        }
        peer.port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        peer
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/http2")
        .join(name)
}

fn json_of(out: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "python h2/grpcio are required (done by .ci/run): {stderr}"
    );
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"))
}

/// Many requests multiplexed on one client connection (tests/http2/h2client.py).
fn h2_requests(addr: std::net::SocketAddr, spec: Value) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(script_path("h2client.py"))
        .args(["requests", &addr.to_string(), &spec.to_string()])
        .output()
        .expect("python3");
    json_of(out)["responses"].as_array().unwrap().clone()
}

fn grpc_calls(addr: std::net::SocketAddr, calls: Value) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(script_path("grpc_peer.py"))
        .args(["client", &addr.to_string(), &calls.to_string()])
        .output()
        .expect("python3");
    json_of(out).as_array().unwrap().clone()
}

/// An HTTP/2-backed API at `base` over `urls`.
fn h2_api(base: &str, urls: &[String], extra: &str) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "openapi: 3.0.1\ninfo: {{title: t, version: '1'}}\nx-wso2-basePath: {base}\nx-wso2-disable-security: true\nx-wso2-http2-backend-enabled: true\nx-wso2-production-endpoints:\n  urls: [{urls}]\n  type: failover\n{extra}paths:\n  /*:\n    get: {{}}\n    post: {{}}\n"
    )
}

#[test]
fn h2c_upstream_multiplexes_streams_on_few_connections() {
    let upstream = Peer::start("h2server.py", &["serve", "200"]);
    let gateway = Gateway::start(&h2_api(
        "/m",
        &[format!("http://127.0.0.1:{}/up", upstream.port)],
        "",
    ));
    // Two client connections, 15 requests each, all in flight together (the upstream answers
    // each after 200 ms): at most `http2.upstream_connections` (2) upstream connections.
    let spec: Vec<Value> = (0..15)
        .map(|i| json!({"path": format!("/m/r/{i}?q={i}"), "headers": [["x-n", i.to_string()]]}))
        .collect();
    let spec = Value::Array(spec);
    let addr = gateway.addr;
    let other = {
        let spec = spec.clone();
        std::thread::spawn(move || h2_requests(addr, spec))
    };
    let mut responses = h2_requests(addr, spec);
    responses.extend(other.join().unwrap());
    let mut connections = std::collections::BTreeSet::new();
    for response in &responses {
        assert_eq!(response["status"], 200, "{response}");
        let seen: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        connections.insert(seen["conn"].as_u64().unwrap());
        let n = seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "x-n")
            .unwrap()[1]
            .clone();
        assert_eq!(
            seen["path"],
            format!("/up/r/{}?q={}", n.as_str().unwrap(), n.as_str().unwrap())
        );
        assert_eq!(seen["authority"], format!("127.0.0.1:{}", upstream.port));
        assert_eq!(response["trailers"], json!([["x-upstream-trailer", "yes"]]));
    }
    assert_eq!(responses.len(), 30);
    assert!(connections.len() <= 2, "{connections:?}");
    // HTTP/1.1 clients are served from the same HTTP/2 upstream.
    let mut client = gateway.client();
    let response = client.get("/m/h1");
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("\"/up/h1\""),
        "{}",
        response.text()
    );
}

#[test]
fn grpc_unary_and_streaming_calls_pass_end_to_end() {
    let server = Peer::start("grpc_peer.py", &["server"]);
    let gateway = Gateway::start(&h2_api(
        "/echo.Echo",
        &[format!("http://127.0.0.1:{}/echo.Echo", server.port)],
        "",
    ));
    let results = grpc_calls(
        gateway.addr,
        json!([
            {"method": "Unary", "request": "hello"},
            {"method": "ServerStream", "request": "5"},
            {"method": "ClientStream", "requests": ["a", "b", "c"]},
            {"method": "Fail"},
        ]),
    );
    assert_eq!(results[0]["code"], "OK", "{results:?}");
    assert_eq!(results[0]["response"], "echo:hello");
    assert_eq!(results[0]["trailing"]["x-served-by"], "python-grpc");
    assert_eq!(
        results[1]["responses"],
        json!(["msg-0", "msg-1", "msg-2", "msg-3", "msg-4"])
    );
    assert_eq!(results[2]["response"], "3:a+b+c");
    // The upstream's own gRPC error (grpc-status in the trailers) reaches the client.
    assert_eq!(results[3]["code"], "NOT_FOUND");
    assert_eq!(results[3]["details"], "no such thing");
}

#[test]
fn gateway_failures_answer_grpc_requests_with_grpc_statuses() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let server = Peer::start("grpc_peer.py", &["server"]);
    let down = h2_api("/down.Svc", &[format!("http://{dead}/down.Svc")], "");
    let slow = h2_api(
        "/echo.Echo",
        &[format!("http://127.0.0.1:{}/echo.Echo", server.port)],
        "",
    )
    .replace(
        "  type: failover\n",
        "  type: failover\n  advanceEndpointConfig:\n    timeoutInMillis: 500\n",
    );
    let gateway = Gateway::start_apis(&[&down, &slow], "", 1);
    let results = grpc_calls(
        gateway.addr,
        json!([
            {"method": "Unary", "prefix": "/down.Svc/", "request": "x"},
            {"method": "Slow"},
            {"method": "Unary", "prefix": "/nowhere.Svc/", "request": "x"},
        ]),
    );
    // 503 (no upstream) is UNAVAILABLE, 504 (route timeout) DEADLINE_EXCEEDED, 404
    // UNIMPLEMENTED: trailers-only answers a gRPC client can read.
    assert_eq!(results[0]["code"], "UNAVAILABLE", "{results:?}");
    assert_eq!(results[0]["details"], "Upstream connection failed");
    assert_eq!(results[1]["code"], "DEADLINE_EXCEEDED", "{results:?}");
    assert_eq!(results[2]["code"], "UNIMPLEMENTED", "{results:?}");
}

#[test]
fn https_upstreams_speak_h2_by_alpn() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/tls/testdata");
    let cert = dir.join("dev-only-rsa.cert.pem");
    let key = dir.join("dev-only-rsa.pkcs1.key.pem");
    let server = Peer::start(
        "grpc_peer.py",
        &["server", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let gateway = Gateway::start_with(
        &h2_api(
            "/echo.Echo",
            &[format!("https://127.0.0.1:{}/echo.Echo", server.port)],
            "",
        ),
        "upstream:\n  tls:\n    insecure_skip_verify: true\n",
        1,
    );
    let results = grpc_calls(
        gateway.addr,
        json!([{"method": "Unary", "request": "over tls"}, {"method": "ServerStream", "request": "2"}]),
    );
    assert_eq!(results[0]["code"], "OK", "{results:?}");
    assert_eq!(results[0]["response"], "echo:over tls");
    assert_eq!(results[1]["responses"], json!(["msg-0", "msg-1"]));
}

#[test]
fn a_dead_h2_member_fails_over_to_the_next() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let upstream = Peer::start("h2server.py", &["serve"]);
    let gateway = Gateway::start(&h2_api(
        "/f",
        &[
            format!("http://{dead}/x"),
            format!("http://127.0.0.1:{}/y", upstream.port),
        ],
        "",
    ));
    let responses = h2_requests(
        gateway.addr,
        json!([{"path": "/f/a"}, {"path": "/f/b"}, {"method": "POST", "path": "/f/c", "body_len": 70000}]),
    );
    for response in &responses {
        assert_eq!(response["status"], 200, "{response}");
    }
    let posted: Value = serde_json::from_str(responses[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(posted["body_len"], 70000);
    assert_eq!(posted["path"], "/y/c");
}

#[test]
fn an_upstream_retiring_its_connection_with_goaway_is_no_failure() {
    // Like nginx after http2's per-connection request limit: GOAWAY after 3 streams.
    let upstream = Peer::start("h2server.py", &["serve", "0", "3"]);
    let gateway = Gateway::start(&h2_api(
        "/g",
        &[format!("http://127.0.0.1:{}/up", upstream.port)],
        "",
    ));
    let mut client = gateway.client();
    let mut connections = std::collections::BTreeSet::new();
    for i in 0..10 {
        let response = client.get(&format!("/g/{i}"));
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        let seen: Value = serde_json::from_str(&response.text()).unwrap();
        connections.insert(seen["conn"].as_u64().unwrap());
    }
    assert!(connections.len() >= 4, "{connections:?}");
}
