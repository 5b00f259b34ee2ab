//! Tiers made global through a real `redis-server` (started here on an ephemeral loopback
//! port): two `shardgate run` processes share one limit; Redis killed mid-run makes each fall
//! back to its local share, and they recover by themselves when it is back. Counts only;
//! waits are bounded and only for state changes.
//!
//! These tests need `redis-server` (Debian's package; `.ci/run` installs it) and fail, rather
//! than skip, when it is missing.

use crate::support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{admin_request, eventually, Backend, Client, GatewayProcess};

/// A `redis-server` child with an append-only file, so that a count survives a kill.
struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("an ephemeral port");
        RedisServer::start_in(port, tempfile::tempdir().unwrap())
    }

    fn start_in(port: u16, dir: tempfile::TempDir) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs redis-server (apt-get install -y redis-server; .ci/run installs it): {e}")
            });
        let server = RedisServer { child, port, dir };
        assert!(
            eventually(Duration::from_secs(10), || server.cli(&["PING"]) == "PONG"),
            "redis-server did not start on port {port}"
        );
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server; its output, trimmed.
    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// SIGKILL; returns what a restart needs (the port and the data directory).
    fn kill(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        // `self` is dropped without killing twice: take the directory out first.
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (port, dir)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway process with 2 shards serving `/svc` under tier `T` through `redis`.
fn gateway(
    dir: &Path,
    name: &str,
    backend: &Backend,
    redis: &str,
    requests: u32,
) -> GatewayProcess {
    let api = format!(
        "openapi: 3.0.1\ninfo: {{title: svc, version: '1'}}\nx-wso2-basePath: /svc\nx-wso2-disable-security: true\nx-wso2-throttling-tier: T\nx-wso2-production-endpoints:\n  urls: ['{}']\npaths:\n  /*:\n    get: {{}}\n",
        backend.url("")
    );
    let api_path = dir.join(format!("{name}-api.yaml"));
    std::fs::write(&api_path, api).unwrap();
    let config = format!(
        "listeners:\n  http: [\"127.0.0.1:0\"]\n  https: []\nadmin: \"127.0.0.1:0\"\nworkers: 2\napis: ['{}']\nrate_limits:\n  tiers:\n    T: {{requests: {requests}, per: 1h}}\n  redis: {redis}\n  redis_timeout_ms: 200\n  instances: 2\n",
        api_path.display()
    );
    let config_path = dir.join(format!("{name}-gateway.yaml"));
    std::fs::write(&config_path, config).unwrap();
    GatewayProcess::start(&["--config", config_path.to_str().unwrap()])
}

/// `count` GETs on `connections` parallel connections; (200s, 429s).
fn hammer(addr: SocketAddr, connections: usize, count: usize) -> (usize, usize) {
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let share = count / connections + usize::from(c < count % connections);
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let (mut ok, mut throttled) = (0, 0);
                for _ in 0..share {
                    let response = client.get("/svc/x");
                    match response.status {
                        200 => ok += 1,
                        429 => {
                            assert_eq!(response.json()["code"], "900800");
                            assert!(response.header("retry-after").is_some());
                            throttled += 1
                        }
                        other => panic!("unexpected status {other}: {}", response.text()),
                    }
                }
                (ok, throttled)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// The value of an unlabelled metric, or of the first series whose line contains `series`.
fn metric(gateway: &GatewayProcess, series: &str) -> u64 {
    let (status, body) = admin_request(gateway.admin_addr(), "GET", "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(series) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

const ADMITTED: &str =
    "shardgate_rate_limit_requests_total{api=\"/svc\",tier=\"T\",outcome=\"admitted\"}";
/// What the instances together may leave unused at most (docs/design-notes.md): per
/// instance one and a half Redis batches plus a batch per shard; here every batch is 1.
const STRANDED: usize = 2 * 4;

/// Waits until the current hour has at least 10 s left: the tests' windows are hours.
fn align_to_the_hour() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = 3_600_000 - now % 3_600_000;
    if left < 10_000 {
        std::thread::sleep(Duration::from_millis(left + 20));
    }
}

#[test]
fn two_instances_share_one_tier_through_redis() {
    let redis = RedisServer::start();
    let backend = Backend::echo("a");
    let dir = tempfile::tempdir().unwrap();
    align_to_the_hour();
    let a = gateway(dir.path(), "a", &backend, &redis.url(), 50);
    let b = gateway(dir.path(), "b", &backend, &redis.url(), 50);
    let (addr_a, addr_b) = (a.addr, b.addr);
    let in_a = std::thread::spawn(move || hammer(addr_a, 4, 40));
    let (ok_b, throttled_b) = hammer(addr_b, 4, 40);
    let (ok_a, throttled_a) = in_a.join().unwrap();
    let ok = ok_a + ok_b;
    assert!(
        (50 - STRANDED..=50).contains(&ok),
        "{ok_a} + {ok_b} admitted of a global 50"
    );
    assert_eq!(ok + throttled_a + throttled_b, 80);
    assert_eq!(backend.request_count(), ok);
    assert!(ok_a > 0 && ok_b > 0, "{ok_a} {ok_b}");
    // The instances count their own admissions; Redis counted at least as many.
    assert_eq!(metric(&a, ADMITTED) + metric(&b, ADMITTED), ok as u64);
    let keys = redis.cli(&["KEYS", "shardgate:/svc:3600:*"]);
    assert_eq!(
        keys.lines().count(),
        1,
        "one key per (limit, window): {keys}"
    );
    let counted: u64 = redis.cli(&["GET", keys.trim()]).parse().unwrap();
    assert!(counted >= ok as u64, "{counted} < {ok}");
    let ttl: i64 = redis.cli(&["PTTL", keys.trim()]).parse().unwrap();
    assert!(ttl > 0, "the window's key expires ({ttl})");
    for gateway in [&a, &b] {
        assert_eq!(metric(gateway, "shardgate_rate_limit_redis_fallback "), 0);
        assert!(metric(gateway, "shardgate_rate_limit_redis_batches_total") > 0);
    }
}

#[test]
fn redis_killed_mid_run_falls_back_to_the_local_share_then_recovers() {
    let redis = RedisServer::start();
    let backend = Backend::echo("a");
    let dir = tempfile::tempdir().unwrap();
    align_to_the_hour();
    // 60 per hour for 2 instances: a local share of 30 each.
    let a = gateway(dir.path(), "a", &backend, &redis.url(), 60);
    let b = gateway(dir.path(), "b", &backend, &redis.url(), 60);

    let (first, _) = hammer(a.addr, 2, 10);
    assert_eq!(first, 10);
    let (port, data) = redis.kill();

    // A had 10 (and maybe a prefetched token) from Redis: its share tops that up to 30.
    let (ok_a, throttled_a) = hammer(a.addr, 2, 30);
    assert_eq!((first + ok_a, throttled_a), (30, 10));
    // B had nothing from Redis: 10 requests are under its share.
    let (ok_b, _) = hammer(b.addr, 2, 10);
    assert_eq!(ok_b, 10);
    for gateway in [&a, &b] {
        assert_eq!(metric(gateway, "shardgate_rate_limit_redis_fallback "), 1);
        assert_eq!(
            metric(gateway, "shardgate_rate_limit_redis_fallbacks_total"),
            1
        );
    }
    // Probes keep failing (every 500 ms), and none of them is logged again.
    assert!(eventually(Duration::from_secs(10), || metric(
        &a,
        "shardgate_rate_limit_redis_errors_total"
    ) >= 3));
    let warnings = a.log_text().matches("is unreachable").count();
    assert_eq!(warnings, 1, "{}", a.log_text());

    let redis = RedisServer::start_in(port, data);
    for gateway in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(10), || metric(
                gateway,
                "shardgate_rate_limit_redis_fallback "
            ) == 0),
            "no recovery:\n{}",
            gateway.log_text()
        );
        assert_eq!(gateway.log_text().matches("reachable again").count(), 1);
    }
    // Back on Redis: what the fallback handed out was reported, what it had not was given
    // back, so B can still have the rest of the global limit, and no more.
    let (ok_after, _) = hammer(b.addr, 2, 40);
    assert!(
        ok_after > 0,
        "nothing admitted through Redis after recovery"
    );
    let total = first + ok_a + ok_b + ok_after;
    assert!(
        (60 - STRANDED..=60).contains(&total),
        "{total} admitted of a global 60 ({first} + {ok_a} + {ok_b} + {ok_after})"
    );
    assert_eq!(backend.request_count(), total);
    let key = redis.cli(&["KEYS", "shardgate:/svc:3600:*"]);
    let counted: u64 = redis.cli(&["GET", key.trim()]).parse().unwrap();
    assert!(counted >= total as u64, "{counted} < {total}");
    drop(TcpStream::connect(("127.0.0.1", port)));
}
