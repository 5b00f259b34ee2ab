//! WebSocket APIs (BEHAVIOUR.md 7) with real peers: the python `websockets` library as the
//! origin (`tests/peers/ws_echo.py`) and as the client (`tests/peers/ws_client.py`), AsyncAPI
//! definitions in Choreo Connect's shape, through the gateway on loopback.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shardgate::auth::{mint_token, MintOptions};
use support::{eventually, Backend, Gateway};

const ISSUER: &str = "https://localhost/dev-only";

fn peer(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(script)
}

/// `python3 -c "import websockets"` must work: CI installs it (`.ci/run`).
fn require_websockets() {
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests need python3 with the websockets package (pip install websockets==13.1; .ci/run installs it)"
    );
}

/// A running `ws_echo.py` origin.
struct EchoOrigin {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl EchoOrigin {
    fn start(name: &str) -> EchoOrigin {
        require_websockets();
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(peer("ws_echo.py"))
            .arg(name)
            .arg(&port_file)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the websocket origin");
        let mut port = 0;
        assert!(
            eventually(Duration::from_secs(20), || {
                port = std::fs::read_to_string(&port_file)
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(0);
                port != 0
            }),
            "the websocket origin did not start"
        );
        EchoOrigin {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for EchoOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ws_client.py` and returns what it printed.
fn client(url: &str, scenario: &[&str], headers: &[String]) -> Value {
    require_websockets();
    let output = Command::new("python3")
        .arg(peer("ws_client.py"))
        .arg(url)
        .args(scenario)
        .args(headers)
        .output()
        .expect("run the websocket client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client output {stdout:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// An AsyncAPI 2 definition of a WebSocket API at `/ws` over `urls`, in Choreo Connect's
/// shape (`servers.production.url`, or `x-wso2-production-endpoints` for several URLs).
fn asyncapi(urls: &[String], kind: &str, channels: &str, root_extra: &str) -> String {
    let endpoints = if urls.len() == 1 {
        format!(
            "servers:\n  production:\n    url: '{}'\n    protocol: ws\n",
            urls[0]
        )
    } else {
        let list = urls
            .iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("x-wso2-production-endpoints:\n  urls: [{list}]\n  type: {kind}\n")
    };
    format!(
        "asyncapi: 2.0.0\ninfo:\n  title: WebSocketAPI\n  version: '1.0.0'\nx-wso2-basePath: /ws\n\
         {root_extra}{endpoints}channels:\n{channels}components:\n  securitySchemes:\n    \
         oauth2:\n      type: oauth2\n      flows:\n        implicit:\n          \
         authorizationUrl: 'http://localhost:9999'\n          scopes:\n            reader: ''\n"
    )
}

const OPEN_ALL: &str = "  /*:\n    publish: {}\n";

fn gateway_yaml(extra: &str) -> String {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.cert.pem"
    );
    format!("jwt:\n  issuers:\n    - issuer: {ISSUER}\n      certificate: {cert}\nhealth_check: {{enabled: false}}\n{extra}")
}

fn bearer(scopes: &str) -> String {
    let key = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-only/jwt-dev-only.key.pem"
    ))
    .unwrap();
    let mut options = MintOptions::new(ISSUER);
    if !scopes.is_empty() {
        options
            .extra_claims
            .push(("scope".to_owned(), Value::String(scopes.to_owned())));
    }
    format!(
        "Authorization=Bearer {}",
        mint_token(&key, &options).unwrap()
    )
}

fn gateway_ws(gateway: &Gateway, path: &str) -> String {
    format!("ws://{}{path}", gateway.addr)
}

/// The sum of a WebSocket counter over the gateway's shards.
fn websocket_counter(
    gateway: &Gateway,
    get: impl Fn(&shardgate::metrics::WebSocketCounters) -> i64,
) -> i64 {
    let shared = gateway.server().shared();
    let labels = shared.metrics.labels();
    let Some(api) = labels.apis().iter().position(|a| a == "/ws") else {
        return 0;
    };
    shared
        .metrics
        .shard_metrics()
        .iter()
        .filter_map(|m| m.websocket(api as u32))
        .map(&get)
        .sum()
}

#[test]
fn messages_of_every_kind_pass_through_and_the_close_handshake_completes() {
    let origin = EchoOrigin::start("echo");
    let gateway = Gateway::start_apis(
        &[&asyncapi(
            &[origin.url("/v2")],
            "",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        )],
        &gateway_yaml(""),
        2,
    );
    let result = client(&gateway_ws(&gateway, "/ws/chat"), &["echo"], &[]);
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["text"], "hello");
    assert_eq!(result["binary"], "000162696e617279ff");
    assert_eq!(result["pong"], true);
    assert_eq!(result["big_ok"], true, "a 16 MiB message came back changed");
    assert_eq!(result["close_code"], 1000);
    assert!(eventually(Duration::from_secs(10), || websocket_counter(
        &gateway,
        |c| c.open.get()
    ) == 0));
    assert_eq!(websocket_counter(&gateway, |c| c.upgraded.get() as i64), 1);
    let to_upstream = websocket_counter(&gateway, |c| c.bytes_to_upstream.get() as i64);
    assert!(to_upstream > 16 * 1024 * 1024, "{to_upstream}");
}

#[test]
fn tunnels_work_through_the_https_listener() {
    let origin = EchoOrigin::start("tls");
    let gateway = Gateway::start_tls(
        &asyncapi(
            &[origin.url("/v2")],
            "",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        ),
        &gateway_yaml(""),
    );
    let url = format!("wss://{}/ws/secure", gateway.https_addr.unwrap());
    let result = client(&url, &["echo"], &[]);
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["text"], "hello");
    assert_eq!(result["big_ok"], true);
    assert_eq!(result["close_code"], 1000);
}

#[test]
fn the_token_is_checked_at_the_handshake_before_any_upgrade() {
    let never = Backend::echo("never");
    let gateway = Gateway::start_apis(
        &[&asyncapi(&[never.url("")], "", OPEN_ALL, "")],
        &gateway_yaml(""),
        1,
    );
    let result = client(&gateway_ws(&gateway, "/ws/chat"), &["handshake"], &[]);
    assert_eq!(result["status"], 401, "{result}");
    assert_eq!(never.request_count(), 0, "nothing reached the upstream");

    let origin = EchoOrigin::start("secured");
    let secured = Gateway::start_apis(
        &[&asyncapi(&[origin.url("")], "", OPEN_ALL, "")],
        &gateway_yaml(""),
        1,
    );
    let result = client(
        &gateway_ws(&secured, "/ws/chat"),
        &["whoami"],
        &[bearer("")],
    );
    assert_eq!(result["status"], 101, "{result}");
    let headers = &result["answer"]["headers"];
    assert_eq!(headers["upgrade"], "websocket");
    assert!(
        headers.get("authorization").is_none(),
        "the token header is removed before forwarding: {headers}"
    );
}

#[test]
fn channel_scopes_are_required_at_the_handshake() {
    let origin = EchoOrigin::start("scoped");
    // `x-scopes` as API Manager exports it for a channel: a mapping from index to scope.
    let channels =
        "  /*:\n    subscribe:\n      x-scopes:\n        \"0\": reader\n    x-auth-type: Any\n";
    let gateway = Gateway::start_apis(
        &[&asyncapi(&[origin.url("")], "", channels, "")],
        &gateway_yaml(""),
        1,
    );
    let url = gateway_ws(&gateway, "/ws/feed");
    assert_eq!(
        client(&url, &["handshake"], &[bearer("writer")])["status"],
        403
    );
    assert_eq!(
        client(&url, &["whoami"], &[bearer("reader")])["status"],
        101
    );
}

#[test]
fn a_dead_first_member_moves_the_handshake_to_the_next() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}", listener.local_addr().unwrap())
    };
    let origin = EchoOrigin::start("second");
    let gateway = Gateway::start_apis(
        &[&asyncapi(
            &[dead, origin.url("")],
            "failover",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        )],
        &gateway_yaml(""),
        1,
    );
    let result = client(&gateway_ws(&gateway, "/ws/x"), &["whoami"], &[]);
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["answer"]["backend"], "second");
}

#[test]
fn an_upstream_that_refuses_the_upgrade_has_its_answer_relayed() {
    let origin = EchoOrigin::start("refusing");
    let gateway = Gateway::start_apis(
        &[&asyncapi(
            &[origin.url("")],
            "",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        )],
        &gateway_yaml(""),
        1,
    );
    let result = client(&gateway_ws(&gateway, "/ws/refuse/me"), &["handshake"], &[]);
    assert_eq!(result["status"], 403, "{result}");
    assert!(result["body"]
        .as_str()
        .unwrap_or("")
        .contains("refused by the origin"));
    assert_eq!(websocket_counter(&gateway, |c| c.refused.get() as i64), 1);
}

/// A handshake written by hand, so that the test can vanish without a close frame.
fn raw_handshake(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the handshake was cut");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nupgrade: websocket\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
            || head
                .to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    stream
}

#[test]
fn a_vanishing_client_closes_the_upstream_and_frees_the_tunnel() {
    let origin = EchoOrigin::start("left");
    let gateway = Gateway::start_apis(
        &[&asyncapi(
            &[origin.url("")],
            "",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        )],
        &gateway_yaml(""),
        1,
    );
    let stream = raw_handshake(gateway.addr, "/ws/gone");
    assert!(eventually(Duration::from_secs(10), || websocket_counter(
        &gateway,
        |c| c.open.get()
    ) == 1));
    // Reset, no close frame: as a client whose host vanished.
    let socket = socket2::SockRef::from(&stream);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
    assert!(
        eventually(Duration::from_secs(20), || websocket_counter(
            &gateway,
            |c| c.open.get()
        ) == 0),
        "the tunnel of a vanished client stayed open"
    );
}

#[test]
fn an_idle_tunnel_is_closed_after_websocket_idle_ms() {
    let origin = EchoOrigin::start("idle");
    let gateway = Gateway::start_apis(
        &[&asyncapi(
            &[origin.url("")],
            "",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        )],
        &gateway_yaml("timeouts: {websocket_idle_ms: 300}\n"),
        1,
    );
    let result = client(&gateway_ws(&gateway, "/ws/quiet"), &["hold", "20"], &[]);
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["closed_by_server"], true, "{result}");
}

#[test]
fn a_drain_lets_tunnels_run_until_drain_ms_then_closes_them() {
    let origin = EchoOrigin::start("draining");
    let gateway = Gateway::start_apis(
        &[&asyncapi(
            &[origin.url("")],
            "",
            OPEN_ALL,
            "x-wso2-disable-security: true\n",
        )],
        &gateway_yaml("timeouts: {drain_ms: 300}\n"),
        1,
    );
    let url = gateway_ws(&gateway, "/ws/long");
    let holder = std::thread::spawn(move || client(&url, &["hold", "30"], &[]));
    assert!(eventually(Duration::from_secs(20), || websocket_counter(
        &gateway,
        |c| c.open.get()
    ) == 1));
    gateway.stop();
    let result = holder.join().unwrap();
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["closed_by_server"], true, "{result}");
}

#[test]
fn choreo_connect_shaped_definitions_load_and_route_with_uri_mappings() {
    let origin = EchoOrigin::start("topics");
    let channels = "  /notifications:\n    publish:\n      x-uri-mapping: /notifications\n    x-auth-type: None\n  \
                    /noMapping:\n    publish: {}\n    x-wso2-disable-security: true\n  \
                    '/rooms/{roomID}':\n    publish:\n      x-uri-mapping: '/rooms?room={uri.var.roomID}'\n    \
                    parameters:\n      roomID:\n        description: ''\n        schema:\n          type: string\n    \
                    x-auth-type: None\n";
    let gateway = Gateway::start_apis(
        &[&asyncapi(&[origin.url("/v2")], "", channels, "")],
        &gateway_yaml(""),
        1,
    );
    let path_of = |path: &str| {
        let result = client(&gateway_ws(&gateway, path), &["whoami"], &[]);
        assert_eq!(result["status"], 101, "{path}: {result}");
        result["answer"]["path"].as_str().unwrap_or("").to_owned()
    };
    assert_eq!(path_of("/ws/notifications"), "/v2/notifications");
    assert_eq!(path_of("/ws/noMapping"), "/v2/noMapping");
    assert_eq!(path_of("/ws/rooms/r42"), "/v2/rooms?room=r42");
    // A channel not defined is not served.
    assert_eq!(
        client(&gateway_ws(&gateway, "/ws/other"), &["handshake"], &[])["status"],
        404
    );
}
