//! Operating the gateway process: admin endpoints, metrics after a known sequence, reload by
//! `POST /reload` and SIGHUP (valid and invalid), zero failed requests across reloads under
//! load, pools of removed endpoints drained, SIGTERM drain and exit code.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{admin_request, eventually, open_api, Action, Backend, GatewayProcess};

/// A gateway process over `api` written to a temp dir, with the admin on an ephemeral port.
fn start(
    api: &str,
    extra_args: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, GatewayProcess) {
    let dir = tempfile::tempdir().unwrap();
    let api_path = dir.path().join("api.yaml");
    std::fs::write(&api_path, api).unwrap();
    let api_arg = api_path.to_string_lossy().into_owned();
    let mut args = vec![
        "--api",
        &api_arg,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--admin",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra_args);
    let gateway = GatewayProcess::start(&args);
    (dir, api_path, gateway)
}

/// The value of a metric line `name{labels} value`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[test]
fn health_ready_routes_and_endpoints() {
    let backend = Backend::echo("a");
    let (_dir, _, gateway) = start(&open_api(&[backend.url("/v1")], "load_balance"), &[]);
    let admin = gateway.admin_addr();
    assert_eq!(
        admin_request(admin, "GET", "/health"),
        (200, r#"{"status":"healthy"}"#.to_owned())
    );
    let (status, body) = admin_request(admin, "GET", "/ready");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["shards_ready"], 2);
    let (status, routes) = admin_request(admin, "GET", "/routes");
    assert_eq!(status, 200);
    assert!(
        routes.contains("/svc") && routes.contains(&backend.url("/v1")),
        "{routes}"
    );
    assert_eq!(gateway.client().get("/svc/x").status, 200);
    let (status, body) = admin_request(admin, "GET", "/endpoints");
    assert_eq!(status, 200);
    let endpoints: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &endpoints["endpoints"][0];
    assert_eq!(
        first["endpoint"],
        format!("http://127.0.0.1:{}", backend.port())
    );
    assert_eq!(first["attempts"], 1);
    assert_eq!(admin_request(admin, "GET", "/nope").0, 404);
    assert_eq!(admin_request(admin, "DELETE", "/health").0, 405);
}

#[test]
fn metrics_after_a_known_sequence_including_a_failover() {
    let good = Backend::echo("good");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let (_dir, _, gateway) = start(
        &open_api(&[dead_url.clone(), good.url("")], "failover"),
        &["--workers", "1"],
    );
    let admin = gateway.admin_addr();
    let mut client = gateway.client();
    for _ in 0..3 {
        assert_eq!(client.get("/svc/ok").status, 200);
    }
    assert_eq!(client.get("/nothing/here").status, 404);
    assert_eq!(client.request("DELETE", "/svc/x", &[], b"").status, 200);
    // Histograms are published once a second.
    std::thread::sleep(Duration::from_millis(1300));
    let (status, text) = admin_request(admin, "GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &text,
            r#"shardgate_requests_total{api="/svc",method="GET",class="2xx"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"shardgate_requests_total{api="/svc",method="DELETE",class="2xx"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"shardgate_requests_total{api="",method="GET",class="4xx"}"#
        ),
        Some(1.0),
        "{text}"
    );
    let dead_label = format!(r#"{{endpoint="{dead_url}"}}"#);
    let good_label = format!(r#"{{endpoint="http://127.0.0.1:{}"}}"#, good.port());
    assert!(
        metric(
            &text,
            &format!("shardgate_upstream_failures_total{dead_label}")
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("shardgate_upstream_attempts_total{good_label}")
        ),
        Some(4.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            &format!("shardgate_upstream_retries_total{good_label}")
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "shardgate_request_duration_seconds_count"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "shardgate_upstream_duration_seconds_count"),
        Some(4.0),
        "{text}"
    );
    // Nothing in flight: every open upstream connection is an idle pooled one.
    let idle = metric(
        &text,
        &format!("shardgate_upstream_connections_idle{good_label}"),
    )
    .unwrap();
    assert!(idle >= 1.0, "{text}");
    assert_eq!(
        metric(&text, "shardgate_upstream_connections_open"),
        Some(idle),
        "{text}"
    );
    assert_eq!(metric(&text, "shardgate_config_generation"), Some(1.0));
    assert!(text.contains("# TYPE shardgate_request_duration_seconds histogram"));
}

fn api_with_paths(backend: &Backend, paths: &[&str]) -> String {
    let paths: String = paths
        .iter()
        .map(|p| format!("  {p}:\n    get: {{}}\n"))
        .collect();
    format!(
        "openapi: 3.0.1\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-production-endpoints: {{urls: ['{}']}}\npaths:\n{paths}",
        backend.url("")
    )
}

#[test]
fn post_reload_applies_a_valid_change_and_rejects_an_invalid_one() {
    let backend = Backend::echo("a");
    let (_dir, api_path, gateway) = start(&api_with_paths(&backend, &["/one"]), &[]);
    let admin = gateway.admin_addr();
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/two").status, 404);
    std::fs::write(&api_path, api_with_paths(&backend, &["/one", "/two"])).unwrap();
    let (status, body) = admin_request(admin, "POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert!(eventually(Duration::from_secs(2), || gateway
        .client()
        .get("/svc/two")
        .status
        == 200));
    // An invalid definition is rejected with its error and the old one keeps serving.
    std::fs::write(&api_path, "openapi: 3.0.1\nx-wso2-basePath: /svc\npaths:\n  /one:\n    get:\n      x-wso2-production-endpoints: {urls: ['nope']}\n").unwrap();
    let (status, body) = admin_request(admin, "POST", "/reload");
    assert_eq!(status, 400, "{body}");
    let rejected: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rejected["status"], "rejected");
    assert!(
        rejected["errors"][0]
            .as_str()
            .unwrap()
            .contains("'nope' is not a URL"),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(gateway.client().get("/svc/two").status, 200);
}

#[test]
fn sighup_reloads_and_an_invalid_config_keeps_the_old_one() {
    let backend = Backend::echo("a");
    let (_dir, api_path, gateway) = start(&api_with_paths(&backend, &["/one"]), &[]);
    std::fs::write(&api_path, api_with_paths(&backend, &["/one", "/three"])).unwrap();
    gateway.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(3), || gateway
        .client()
        .get("/svc/three")
        .status
        == 200));
    std::fs::write(&api_path, "not: an api\n").unwrap();
    gateway.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(3), || gateway
        .log_text()
        .contains("reload rejected")));
    assert_eq!(gateway.client().get("/svc/three").status, 200);
}

#[test]
fn watch_reloads_when_a_definition_changes() {
    let backend = Backend::echo("a");
    let (_dir, api_path, gateway) = start(&api_with_paths(&backend, &["/one"]), &["--watch"]);
    assert!(eventually(Duration::from_secs(10), || gateway
        .log_text()
        .contains("watching the configuration files")));
    std::fs::write(&api_path, api_with_paths(&backend, &["/one", "/watched"])).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || gateway
            .client()
            .get("/svc/watched")
            .status
            == 200),
        "{}",
        gateway.log_text()
    );
}

#[test]
fn reloads_under_load_fail_no_request() {
    let backend = Backend::echo("a");
    let (_dir, api_path, gateway) = start(&api_with_paths(&backend, &["/load"]), &[]);
    let admin = gateway.admin_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = gateway.addr;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            std::thread::spawn(move || {
                // Half the clients keep their connection, half reconnect every time.
                let mut client = support::Client::connect(addr);
                while !stop.load(Ordering::Acquire) {
                    if i % 2 == 1 {
                        client = support::Client::connect(addr);
                    }
                    client.send(b"GET /svc/load HTTP/1.1\r\nHost: h\r\n\r\n");
                    match client.read_response(false) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::AcqRel),
                        _ => failed.fetch_add(1, Ordering::AcqRel),
                    };
                }
            })
        })
        .collect();
    for round in 0..6 {
        let paths: Vec<String> = std::iter::once("/load".to_owned())
            .chain((0..=round).map(|k| format!("/extra{k}")))
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        std::fs::write(&api_path, api_with_paths(&backend, &refs)).unwrap();
        assert_eq!(admin_request(admin, "POST", "/reload").0, 200);
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Release);
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        ok.load(Ordering::Acquire) > 100,
        "too little traffic to mean anything"
    );
    assert_eq!(
        failed.load(Ordering::Acquire),
        0,
        "{} of {} requests failed across reloads",
        failed.load(Ordering::Acquire),
        ok.load(Ordering::Acquire)
    );
}

#[test]
fn endpoints_removed_by_a_reload_have_their_pools_drained() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    // Active health checks would open and close connections to both backends of their own.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "health_check: {enabled: false}\n").unwrap();
    let config_arg = config.path().to_string_lossy().into_owned();
    let (_dir, api_path, gateway) = start(
        &open_api(&[a.url(""), b.url("")], "load_balance"),
        &["--workers", "1", "--config", &config_arg],
    );
    let mut client = gateway.client();
    for _ in 0..4 {
        assert_eq!(client.get("/svc/x").status, 200);
    }
    assert_eq!(b.closed_connections(), 0, "b's connection is pooled");
    std::fs::write(&api_path, open_api(&[a.url("")], "load_balance")).unwrap();
    assert_eq!(
        admin_request(gateway.admin_addr(), "POST", "/reload").0,
        200
    );
    assert!(
        eventually(Duration::from_secs(3), || b.closed_connections() >= 1),
        "b's idle connection was not closed"
    );
    assert_eq!(
        a.closed_connections(),
        0,
        "a is still present: its pool survives"
    );
    assert_eq!(client.get("/svc/x").json()["backend"], "a");
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let backend = Backend::start("slow", |_| {
        Action::Delay(Duration::from_millis(800), Box::new(Action::ok("finished")))
    });
    let (_dir, _, mut gateway) = start(&open_api(&[backend.url("")], "load_balance"), &[]);
    let admin = gateway.admin_addr();
    let mut client = gateway.client();
    client.send(b"GET /svc/slow HTTP/1.1\r\nHost: h\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    gateway.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = admin_request(admin, "GET", "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let response = client.read_response(false).unwrap();
    assert_eq!(response.text(), "finished");
    assert_eq!(
        gateway.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        gateway.log_text()
    );
}

#[test]
fn access_log_writes_one_line_per_request() {
    let backend = Backend::echo("a");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        dir.path().join("gateway.yaml"),
        format!(
            "access_log:\n  enabled: true\n  format: json\n  path: {}\n",
            log.display()
        ),
    )
    .unwrap();
    let config = dir.path().join("gateway.yaml");
    let (_api_dir, _, mut gateway) = start(
        &open_api(&[backend.url("")], "load_balance"),
        &["--config", config.to_str().unwrap()],
    );
    let mut client = gateway.client();
    assert_eq!(client.get("/svc/one?x=1").status, 200);
    assert_eq!(client.get("/missing").status, 404);
    gateway.signal(libc::SIGTERM);
    assert_eq!(gateway.wait(Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["path"], "/svc/one?x=1");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(
        lines[0]["upstream"],
        format!("127.0.0.1:{}", backend.port())
    );
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[1]["upstream"], serde_json::Value::Null);
}

#[test]
fn ready_is_false_until_every_shard_accepts() {
    use shardgate::cli::Driver;
    use shardgate::compile::snapshot::{LoadOptions, Snapshot};
    use shardgate::control::admin::AdminServer;
    use shardgate::control::server::Server;
    let backend = Backend::echo("a");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api.yaml"),
        open_api(&[backend.url("")], "load_balance"),
    )
    .unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\nworkers: 2\nadmin: \"127.0.0.1:0\"\napis: [api.yaml]\n").unwrap();
    let snapshot = Snapshot::load(&LoadOptions {
        config: Some(dir.path().join("gateway.yaml")),
        apis: vec![],
        resolve_hosts: true,
    })
    .unwrap();
    let bound = Server::bind(snapshot).unwrap();
    let admin = AdminServer::start(
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::clone(bound.shared()),
        std::sync::Arc::new(|| Ok(String::new())),
    )
    .unwrap();
    let (status, body) = admin_request(admin.addr, "GET", "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"status\":\"starting\"") && body.contains("\"shards_ready\":0"),
        "{body}"
    );
    let server = bound.start(Driver::Auto).unwrap();
    let (status, body) = admin_request(admin.addr, "GET", "/ready");
    assert_eq!(status, 200, "{body}");
    server.stop();
    admin.stop();
}
