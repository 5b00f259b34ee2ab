//! Endpoints that stay themselves under change (BEHAVIOUR.md 3b): reloads that renumber or
//! swap endpoints with keep-alive clients idle and requests in flight, health checking that
//! survives reloads at any cadence, failback after a long outage by active checks, DNS
//! changes, admin drain, removed endpoints drained, a second gateway refused, and the
//! in-flight gauge. Every assertion is on which backend got what, never on timing.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{
    admin_request, dead_url, echo_action, eventually, Action, Backend, Client, GatewayProcess,
};

/// An open API at `base` over one group of `urls`, with optional basic-auth credentials.
fn api(title: &str, base: &str, urls: &[String], kind: &str, user: Option<&str>) -> String {
    let urls = urls
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let security = user.map_or(String::new(), |u| {
        format!("\n  securityConfig: {{type: basic, username: {u}, password: secret-{u}}}")
    });
    format!(
        "openapi: 3.0.1\ninfo: {{title: {title}, version: '1'}}\nx-wso2-basePath: {base}\n\
         x-wso2-disable-security: true\nx-wso2-production-endpoints:\n  urls: [{urls}]\n  \
         type: {kind}{security}\npaths:\n  /*:\n    get: {{}}\n"
    )
}

/// A gateway process over the definitions in `dir`, with `config` as its gateway file.
fn start_dir(dir: &Path, config: &str, workers: &str) -> GatewayProcess {
    let config_path = dir.join("gateway.yaml");
    std::fs::write(&config_path, config).unwrap();
    let apis = dir.join("apis");
    GatewayProcess::start(&[
        "--config",
        &config_path.to_string_lossy(),
        "--api",
        &apis.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        workers,
        "--admin",
        "127.0.0.1:0",
    ])
}

fn reload(gateway: &GatewayProcess) {
    let (status, body) = admin_request(gateway.admin_addr(), "POST", "/reload");
    assert_eq!(status, 200, "reload failed: {body}\n{}", gateway.log_text());
}

fn backend_of(client: &mut Client, path: &str) -> String {
    let response = client.get(path);
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()["backend"].as_str().unwrap_or("").to_owned()
}

/// What `backend` must have received, whatever a reload did: only its own paths, with its
/// own `Host` and its own group's credentials.
fn assert_only_own_requests(backend: &Backend, path_prefix: &str, user: Option<&str>) {
    let host = format!("127.0.0.1:{}", backend.port());
    for r in backend.received() {
        assert!(
            r.target.starts_with(path_prefix),
            "backend {host} got {} (meant for another endpoint)",
            r.target
        );
        assert_eq!(r.header("host"), Some(host.as_str()), "{}", r.target);
        if let Some(user) = user {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret-{user}"))
            );
            assert_eq!(
                r.header("authorization"),
                Some(expected.as_str()),
                "backend {host} got another group's credentials"
            );
        }
    }
}

const NO_CHECKS: &str = "health_check: {enabled: false}\n";

#[test]
fn a_reload_that_renumbers_endpoints_sends_idle_keepalive_clients_to_the_right_backend() {
    renumbering_reload_with_idle_clients(Duration::ZERO, NO_CHECKS);
}

/// The same with pooled upstream connections watched while idle (`reuse_check: watch`):
/// the watches end with their connections, and no watched connection is lent to another
/// endpoint after the renumbering.
#[test]
fn a_reload_that_renumbers_endpoints_keeps_watched_pooled_connections_to_their_own_backend() {
    let config = format!("{NO_CHECKS}upstream:\n  reuse_check: watch\n");
    renumbering_reload_with_idle_clients(Duration::ZERO, &config);
}

/// The same with the clients parked (silent for over a second, src/data/proxy/idle.rs) when
/// the reload lands: a parked connection's next request is routed on the new snapshot too.
#[test]
fn a_reload_that_renumbers_endpoints_sends_parked_keepalive_clients_to_the_right_backend() {
    renumbering_reload_with_idle_clients(Duration::from_millis(1_500), NO_CHECKS);
}

fn renumbering_reload_with_idle_clients(silent_for: Duration, config: &str) {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    std::fs::write(
        dir.path().join("apis/m.yaml"),
        api("m", "/m", &[b.url("/m")], "load_balance", Some("bee")),
    )
    .unwrap();
    let gateway = start_dir(dir.path(), config, "2");
    // Keep-alive clients, one request each, then idle: their pooled upstream connections
    // are B's.
    let mut clients: Vec<Client> = (0..8).map(|_| gateway.client()).collect();
    for client in &mut clients {
        assert_eq!(backend_of(client, "/m/x"), "b");
    }
    std::thread::sleep(silent_for);
    // A file that sorts first: A takes the dense endpoint id B had.
    std::fs::write(
        dir.path().join("apis/a.yaml"),
        api("a", "/a", &[a.url("/a")], "load_balance", Some("ay")),
    )
    .unwrap();
    reload(&gateway);
    assert!(eventually(Duration::from_secs(10), || gateway
        .log_text()
        .matches("now serving configuration generation 2")
        .count()
        == 2));
    for round in 0..3 {
        for client in &mut clients {
            assert_eq!(backend_of(client, "/m/x"), "b", "round {round}");
            assert_eq!(backend_of(client, "/a/x"), "a", "round {round}");
        }
    }
    let mut fresh = gateway.client();
    for _ in 0..10 {
        assert_eq!(backend_of(&mut fresh, "/a/y"), "a");
        assert_eq!(backend_of(&mut fresh, "/m/y"), "b");
    }
    assert_only_own_requests(&a, "/a", Some("ay"));
    assert_only_own_requests(&b, "/m", Some("bee"));
    assert_eq!(a.request_count(), 24 + 10);
    assert_eq!(b.request_count(), 8 + 24 + 10);
}

#[test]
fn a_reload_that_swaps_two_apis_backends_under_load_misroutes_nothing() {
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    let write = |x: &Backend, y: &Backend| {
        // Each API's path prefix on the upstream names the backend it is meant for, so a
        // backend can tell a request meant for the other one.
        std::fs::write(
            dir.path().join("apis/x.yaml"),
            api(
                "x",
                "/x",
                &[x.url(&format!("/for-{}", x.port()))],
                "load_balance",
                Some(&format!("u{}", x.port())),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("apis/y.yaml"),
            api(
                "y",
                "/y",
                &[y.url(&format!("/for-{}", y.port()))],
                "load_balance",
                Some(&format!("u{}", y.port())),
            ),
        )
        .unwrap();
    };
    write(&a, &b);
    let gateway = start_dir(dir.path(), NO_CHECKS, "2");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let failed = Arc::new(AtomicUsize::new(0));
    let addr = gateway.addr;
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (stop, answered, failed) = (
                Arc::clone(&stop),
                Arc::clone(&answered),
                Arc::clone(&failed),
            );
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let path = if i % 2 == 0 { "/x/r" } else { "/y/r" };
                while !stop.load(Ordering::Acquire) {
                    client.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
                    match client.read_response(false) {
                        Ok(r) if r.status == 200 => {
                            let slot = usize::from(r.json()["backend"] == "b");
                            answered[slot].fetch_add(1, Ordering::AcqRel);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::AcqRel);
                            client = Client::connect(addr);
                        }
                    }
                }
            })
        })
        .collect();
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        if round % 2 == 0 {
            write(&b, &a);
        } else {
            write(&a, &b);
        }
        reload(&gateway);
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Release);
    for thread in load {
        thread.join().unwrap();
    }
    let (by_a, by_b) = (
        answered[0].load(Ordering::Acquire),
        answered[1].load(Ordering::Acquire),
    );
    eprintln!(
        "swap under load: {by_a} answered by a, {by_b} by b, {} failed",
        failed.load(Ordering::Acquire)
    );
    assert_eq!(failed.load(Ordering::Acquire), 0);
    assert!(by_a > 20 && by_b > 20, "{by_a} / {by_b}");
    assert_only_own_requests(
        &a,
        &format!("/for-{}", a.port()),
        Some(&format!("u{}", a.port())),
    );
    assert_only_own_requests(
        &b,
        &format!("/for-{}", b.port()),
        Some(&format!("u{}", b.port())),
    );
}

fn endpoint_state(gateway: &GatewayProcess, url: &str) -> String {
    let (_, body) = admin_request(gateway.admin_addr(), "GET", "/endpoints");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == url)
        .map_or_else(String::new, |e| {
            e["state"].as_str().unwrap_or("").to_owned()
        })
}

#[test]
fn reloads_every_half_second_do_not_stop_active_checks_from_finding_a_dead_member() {
    let live = Backend::echo("live");
    let dead = dead_url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    let file = dir.path().join("apis/svc.yaml");
    std::fs::write(
        &file,
        api(
            "svc",
            "/svc",
            &[dead.clone(), live.url("")],
            "failover",
            None,
        ),
    )
    .unwrap();
    // Three failed checks 400 ms apart suspend it: with checkers restarted by every reload
    // (as they once were), no run of three would ever complete between two reloads.
    let config = "health_check: {interval_ms: 400, timeout_ms: 200, unhealthy_threshold: 3}\n";
    let gateway = start_dir(dir.path(), config, "2");
    let mut reloads = 0;
    let found = eventually(Duration::from_secs(30), || {
        // A changing definition (a new resource each time) and no traffic at all.
        std::fs::write(
            &file,
            api(
                "svc",
                "/svc",
                &[dead.clone(), live.url("")],
                "failover",
                None,
            ) + &format!("  /r{reloads}:\n    get: {{}}\n"),
        )
        .unwrap();
        reload(&gateway);
        reloads += 1;
        std::thread::sleep(Duration::from_millis(500));
        endpoint_state(&gateway, &dead) == "suspended"
    });
    assert!(found, "after {reloads} reloads:\n{}", gateway.log_text());
    assert_eq!(live.request_count(), 0, "found by checks, not by traffic");
    assert!(gateway
        .log_text()
        .contains("failed TCP health checks in a row"));
}

#[test]
fn active_checks_end_a_long_suspension_as_soon_as_the_primary_is_back() {
    let primary = Backend::echo("primary");
    let port = primary.port();
    let backup = Backend::echo("backup");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    std::fs::write(
        dir.path().join("apis/svc.yaml"),
        api(
            "svc",
            "/svc",
            &[primary.url(""), backup.url("")],
            "failover",
            None,
        ),
    )
    .unwrap();
    // A suspension of ten minutes: only the checks can end it within this test.
    let config = "suspension: {initial_ms: 600000, max_ms: 600000}\n\
                  health_check: {interval_ms: 200, timeout_ms: 200, healthy_threshold: 2}\n";
    let gateway = start_dir(dir.path(), config, "2");
    let mut client = gateway.client();
    assert_eq!(backend_of(&mut client, "/svc/a"), "primary");
    primary.stop();
    // The failed connect moves the request to the backup and suspends the primary.
    assert_eq!(backend_of(&mut client, "/svc/b"), "backup");
    assert!(eventually(Duration::from_secs(10), || endpoint_state(
        &gateway,
        &format!("http://127.0.0.1:{port}")
    ) == "suspended"));
    let revived = Backend::start_on(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "primary",
        |r| echo_action("primary", r),
    )
    .expect("rebind the primary's port");
    assert!(
        eventually(Duration::from_secs(60), || backend_of(
            &mut client,
            "/svc/c"
        ) == "primary"),
        "traffic did not return to the primary:\n{}",
        gateway.log_text()
    );
    assert!(revived.request_count() >= 1);
    assert!(gateway
        .log_text()
        .contains("healthy again: 2 TCP health checks passed in a row"));
}

#[test]
fn a_host_name_is_resolved_again_and_connections_to_its_old_address_are_closed() {
    // Two loopback addresses on one port: the name moves from one to the other.
    let first = Backend::start_on("127.0.0.2:0".parse().unwrap(), "first", |r| {
        echo_action("first", r)
    })
    .expect("127.0.0.2 is loopback on Linux");
    let port = first.port();
    let second = Backend::start_on(
        format!("127.0.0.3:{port}").parse().unwrap(),
        "second",
        |r| echo_action("second", r),
    )
    .expect("127.0.0.3 is loopback on Linux");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 svc.test\n").unwrap();
    std::fs::write(
        dir.path().join("apis/svc.yaml"),
        api(
            "svc",
            "/svc",
            &[format!("http://svc.test:{port}")],
            "load_balance",
            None,
        ),
    )
    .unwrap();
    let config = format!(
        "upstream: {{dns_refresh_ms: 100, hosts_file: {}}}\n{NO_CHECKS}",
        hosts.display()
    );
    let gateway = start_dir(dir.path(), &config, "1");
    let mut client = gateway.client();
    assert_eq!(backend_of(&mut client, "/svc/a"), "first");
    assert_eq!(first.closed_connections(), 0, "pooled");
    std::fs::write(&hosts, "127.0.0.3 svc.test\n").unwrap();
    assert!(
        eventually(Duration::from_secs(20), || first.closed_connections() >= 1),
        "the pooled connection to the old address was not closed:\n{}",
        gateway.log_text()
    );
    assert_eq!(backend_of(&mut client, "/svc/b"), "second");
    assert!(gateway.log_text().contains("now resolves to 127.0.0.3"));
    // A name that stops resolving keeps its last good address.
    std::fs::write(&hosts, "# svc.test gone\n").unwrap();
    assert!(eventually(Duration::from_secs(20), || gateway
        .log_text()
        .contains("keeping the last good addresses")));
    assert_eq!(backend_of(&mut client, "/svc/c"), "second");
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 2);
}

#[test]
fn an_admin_drain_stops_new_requests_on_every_shard_until_enabled() {
    let primary = Backend::echo("primary");
    let backup = Backend::echo("backup");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    std::fs::write(
        dir.path().join("apis/svc.yaml"),
        api(
            "svc",
            "/svc",
            &[primary.url(""), backup.url("")],
            "failover",
            None,
        ),
    )
    .unwrap();
    let gateway = start_dir(dir.path(), NO_CHECKS, "2");
    let mut clients: Vec<Client> = (0..6).map(|_| gateway.client()).collect();
    for client in &mut clients {
        assert_eq!(backend_of(client, "/svc/a"), "primary");
    }
    let url = primary.url("");
    let (status, body) = admin_request(
        gateway.admin_addr(),
        "POST",
        &format!("/endpoints/drain?url={url}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(endpoint_state(&gateway, &url), "drained");
    // Within a control interval every shard knows, and the idle connections go.
    assert!(eventually(Duration::from_secs(10), || primary
        .closed_connections()
        >= primary.connections()));
    let served_before = primary.request_count();
    for _ in 0..3 {
        for client in &mut clients {
            assert_eq!(backend_of(client, "/svc/b"), "backup");
        }
    }
    assert_eq!(primary.request_count(), served_before);
    let (status, _) = admin_request(
        gateway.admin_addr(),
        "POST",
        &format!("/endpoints/enable?url={url}"),
    );
    assert_eq!(status, 200);
    assert!(eventually(Duration::from_secs(10), || backend_of(
        &mut clients[0],
        "/svc/c"
    ) == "primary"));
    let (status, _) = admin_request(
        gateway.admin_addr(),
        "POST",
        "/endpoints/drain?url=http://127.0.0.1:1",
    );
    assert_eq!(status, 404);
    let (status, _) = admin_request(gateway.admin_addr(), "POST", "/endpoints/drain");
    assert_eq!(status, 400);
}

#[test]
fn an_endpoint_removed_by_a_reload_finishes_its_in_flight_request_then_closes() {
    let slow = Backend::start("slow", |r| {
        Action::Delay(Duration::from_millis(800), Box::new(echo_action("slow", r)))
    });
    let other = Backend::echo("other");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    let file = dir.path().join("apis/svc.yaml");
    std::fs::write(
        &file,
        api("svc", "/svc", &[slow.url("")], "load_balance", None),
    )
    .unwrap();
    let gateway = start_dir(dir.path(), NO_CHECKS, "1");
    let addr = gateway.addr;
    let in_flight = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        backend_of(&mut client, "/svc/long")
    });
    assert!(eventually(Duration::from_secs(10), || slow.connections() == 1));
    std::fs::write(
        &file,
        api("svc", "/svc", &[other.url("")], "load_balance", None),
    )
    .unwrap();
    reload(&gateway);
    assert_eq!(
        in_flight.join().unwrap(),
        "slow",
        "the in-flight request finishes"
    );
    // Its connection is not pooled for an endpoint the configuration dropped.
    assert!(eventually(Duration::from_secs(10), || slow
        .closed_connections()
        == 1));
    let mut client = gateway.client();
    assert_eq!(backend_of(&mut client, "/svc/next"), "other");
    assert_eq!(slow.request_count(), 1);
}

#[test]
fn a_second_gateway_on_the_same_port_refuses_to_start() {
    let backend = Backend::echo("b");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    std::fs::write(
        dir.path().join("apis/svc.yaml"),
        api("svc", "/svc", &[backend.url("")], "load_balance", None),
    )
    .unwrap();
    let first = start_dir(dir.path(), NO_CHECKS, "2");
    let taken: SocketAddr = first.addr;
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args([
            "run",
            "--api",
            &dir.path().join("apis").to_string_lossy(),
            "--listen",
            &taken.to_string(),
            "--admin",
            "off",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run a second gateway");
    // It must exit by itself; one that started instead is killed so the test ends.
    let exited = eventually(Duration::from_secs(20), || {
        matches!(second.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = second.kill();
    }
    let output = second.wait_with_output().expect("collect its output");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(exited, "a second gateway started on {taken}:\n{log}");
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("already in use"), "{log}");
    assert!(!log.contains("listening http"), "{log}");
    // The first one serves on, alone.
    let mut client = first.client();
    assert_eq!(backend_of(&mut client, "/svc/x"), "b");
}

#[test]
fn the_in_flight_gauge_returns_to_zero_after_refused_connects() {
    let dead = dead_url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    std::fs::write(
        dir.path().join("apis/svc.yaml"),
        api(
            "svc",
            "/svc",
            std::slice::from_ref(&dead),
            "load_balance",
            None,
        ),
    )
    .unwrap();
    let gateway = start_dir(dir.path(), NO_CHECKS, "2");
    let mut client = gateway.client();
    for _ in 0..20 {
        assert_eq!(client.get("/svc/x").status, 503);
    }
    let (_, body) = admin_request(gateway.admin_addr(), "GET", "/endpoints");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let endpoint = &json["endpoints"][0];
    assert_eq!(endpoint["in_flight"], 0, "{endpoint}");
    assert!(endpoint["attempts"].as_i64().unwrap() >= 20, "{endpoint}");
}

#[test]
fn after_switching_an_api_to_new_backends_no_new_request_reaches_the_old_ones() {
    let [a, b, c, d] = ["a", "b", "c", "d"].map(Backend::echo);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apis")).unwrap();
    let file = dir.path().join("apis/svc.yaml");
    let group = |x: &Backend, y: &Backend, user: &str| {
        api(
            "svc",
            "/svc",
            &[x.url(""), y.url("")],
            "load_balance",
            Some(user),
        )
    };
    std::fs::write(&file, group(&a, &b, "old")).unwrap();
    let gateway = start_dir(dir.path(), NO_CHECKS, "2");
    let stop = Arc::new(AtomicBool::new(false));
    let switched = Arc::new(AtomicBool::new(false));
    // (answered by a/b, by c/d) before and after every shard serves the new configuration.
    let counts = Arc::new([
        [AtomicUsize::new(0), AtomicUsize::new(0)],
        [AtomicUsize::new(0), AtomicUsize::new(0)],
    ]);
    let addr = gateway.addr;
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, switched, counts) = (
                Arc::clone(&stop),
                Arc::clone(&switched),
                Arc::clone(&counts),
            );
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                while !stop.load(Ordering::Acquire) {
                    // Read before sending: a request sent after the switch was seen must be
                    // answered by the new backends.
                    let after = usize::from(switched.load(Ordering::Acquire));
                    let backend = backend_of(&mut client, "/svc/r");
                    let new = usize::from(backend == "c" || backend == "d");
                    counts[after][new].fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, group(&c, &d, "new")).unwrap();
    reload(&gateway);
    assert!(eventually(Duration::from_secs(10), || gateway
        .log_text()
        .matches("now serving configuration generation 2")
        .count()
        == 2));
    switched.store(true, Ordering::Release);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    for thread in load {
        thread.join().unwrap();
    }
    let read = |i: usize, j: usize| counts[i][j].load(Ordering::Acquire);
    eprintln!(
        "before the switch: {} old, {} new; after: {} old, {} new",
        read(0, 0),
        read(0, 1),
        read(1, 0),
        read(1, 1)
    );
    assert!(read(0, 0) > 0 && read(1, 1) > 0);
    assert_eq!(
        read(1, 0),
        0,
        "requests sent after the switch reached A or B"
    );
    assert_only_own_requests(&a, "/", Some("old"));
    assert_only_own_requests(&b, "/", Some("old"));
    assert_only_own_requests(&c, "/", Some("new"));
    assert_only_own_requests(&d, "/", Some("new"));
    // The old backends' pooled connections were closed.
    assert!(eventually(Duration::from_secs(10), || a
        .closed_connections()
        == a.connections()
        && b.closed_connections() == b.connections()));
}

/// A snapshot from a fresh `Snapshot::load` interns its upstreams into a table of its own:
/// with a definition that sorts first, A gets the upstream id B's pooled connections and
/// health word carry in the serving table. Publishing it once sent every A request to B.
/// It is refused, as is a second reload built from the snapshot the first one replaced; the
/// serving configuration is untouched by both, and a proper reload then routes each API to
/// its own backend.
#[test]
fn a_snapshot_not_built_from_the_serving_one_is_refused_and_routing_stays_true() {
    use shardgate::compile::snapshot::{PublishRefused, Snapshot};
    let a = Backend::echo("a");
    let b = Backend::echo("b");
    let gateway = support::Gateway::start_apis(
        &[&api("m", "/m", &[b.url("/m")], "load_balance", None)],
        "",
        2,
    );
    let mut clients: Vec<Client> = (0..4).map(|_| gateway.client()).collect();
    for client in &mut clients {
        assert_eq!(backend_of(client, "/m/x"), "b");
    }
    std::fs::write(
        gateway.dir.path().join("apis/0-first.yaml"),
        api("a", "/a", &[a.url("/a")], "load_balance", None),
    )
    .unwrap();
    let generation = gateway.server().shared().generation();

    let foreign = Snapshot::load(&gateway.load_options()).unwrap();
    assert_eq!(
        gateway.server().publish(foreign),
        Err(PublishRefused::ForeignUpstreams)
    );
    let (serving, _) = gateway.server().shared().snapshot();
    let first = Snapshot::load_next(&gateway.load_options(), &serving).unwrap();
    let stale = Snapshot::load_next(&gateway.load_options(), &serving).unwrap();
    drop(serving);
    assert_eq!(gateway.server().shared().generation(), generation);
    // Nothing was published: the new API is unknown, the old one still goes to B.
    std::thread::sleep(Duration::from_millis(300));
    for client in &mut clients {
        assert_eq!(client.get("/a/x").status, 404);
        assert_eq!(backend_of(client, "/m/x"), "b");
    }

    gateway
        .server()
        .publish(first)
        .expect("built from the serving one");
    assert_eq!(
        gateway.server().publish(stale),
        Err(PublishRefused::NotBuiltFromCurrent {
            built_from: 0,
            current: 1
        })
    );
    assert_eq!(gateway.server().shared().generation(), generation + 1);
    // Each shard adopts the published snapshot on its own turn: every client's shard must
    // have it before the rounds.
    for client in &mut clients {
        assert!(eventually(Duration::from_secs(30), || client
            .get("/a/probe")
            .status
            == 200));
    }
    for round in 0..3 {
        for client in &mut clients {
            assert_eq!(backend_of(client, "/a/x"), "a", "round {round}");
            assert_eq!(backend_of(client, "/m/x"), "b", "round {round}");
        }
    }
    assert_only_own_requests(&a, "/a", None);
    assert_only_own_requests(&b, "/m", None);
}
